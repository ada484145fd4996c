// Hugging Face model directories (issue 13): a random-weight GGUF model (test/helpers/synthetic.ts) written
// out as the directory transformers saves (test/helpers/hf-model-dir.ts: config.json, safetensors with
// llama's q/k rows in Hugging Face's order, tokenizer.json) loads with logits bit-identical to the GGUF
// itself, for llama with GQA (F32, F16, BF16), qwen2 with biases and tied embeddings (sharded), qwen3 with
// per-head q/k norms and its own head_dim, and llama 3 / linear RoPE scaling; from a path and a base URL.
// Each identity is paired with the change that must break it (the q/k permutation skipped, the scaling
// dropped). Hostile directories fail with typed errors naming the file and field.
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../examples/serve.js';
import { GGUFValueType } from '../src/gguf/constants.js';
import type { GGUFEntry } from '../src/gguf/reader.js';
import { llama3RopeFactors } from '../src/hf/config.js';
import { permutedReader } from '../src/hf/model-dir.js';
import { permutedSourceRow } from '../src/hf/tensors.js';
import { bufferSource } from '../src/io/byte-source.js';
import { loadModel, type Model } from '../src/model/model.js';
import { writeLazyGGUFFile } from '../src/runtime/file-sink.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { writeHFDirectory, type HFDirectoryOptions, type HFTensor } from './helpers/hf-model-dir.js';
import { synthesizeLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';

const TOKENS = [1, 50, 120, 7, 299, 33, 260, 2, 14, 101];
const BASE: SyntheticLlamaOptions = { dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, vocab: 300, type: GGMLType.F32, seed: 7, std: 0.08 };

// llama.cpp's converter's llama3 factors (conversion/llama.py generate_extra_tensors) for head_dim 16,
// rope_theta 10000, factor 8, low/high_freq_factor 1/4, original_max_position_embeddings 64, computed in
// float32 with numpy as its torch code does; and the smooth band of Llama 3.1's (head_dim 128, theta 5e5, 8192).
const LLAMA3_FACTORS_16 = [1.0, 1.293975830078125, 7.667385101318359, 8, 8, 8, 8, 8];
const LLAMA31_SMOOTH = [1.2074838876724243, 1.5534145832061768, 2.026313066482544, 2.6945300102233887, 3.684253215789795, 5.257327079772949];

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'wasmforge-hf-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A GGUF of the options (with extra metadata and a replaced rope_freqs) and its Hugging Face directory. */
async function makeModel(opts: Partial<SyntheticLlamaOptions>, hf: HFDirectoryOptions = {}, extra: { metadata?: [string, GGUFEntry][]; ropeFreqs?: number[] } = {}) {
  const name = `m${counter++}`;
  const gguf = join(root, `${name}.gguf`), dir = join(root, name);
  const model = await synthesizeLlama({ ...BASE, ...opts, ropeFreqs: extra.ropeFreqs !== undefined });
  const tensors = model.tensors.map((t) => (t.name === 'rope_freqs.weight' ? { ...t, data: () => new Uint8Array(Float32Array.from(extra.ropeFreqs!).buffer) } : t));
  await writeLazyGGUFFile(gguf, [...model.metadata, ...(extra.metadata ?? [])], tensors);
  const config = await writeHFDirectory(gguf, dir, hf);
  return { gguf, dir, config };
}

async function logitsOf(input: string): Promise<Float32Array[]> {
  const m = await loadModel(input, { backend: 'wasm', threads: 1, contextLength: 64 });
  try {
    return await m.evaluate(TOKENS);
  } finally {
    await m.dispose();
  }
}

async function expectSameLogits(gguf: string, dir: string): Promise<Float32Array[]> {
  const want = await logitsOf(gguf);
  const got = await logitsOf(dir);
  expect(got.length).toBe(TOKENS.length);
  expect(got).toEqual(want);
  return want;
}

describe('Hugging Face model directory: logits bit-identical to the GGUF', () => {
  it('llama, GQA (4 heads, 2 KV heads), F32: and the q/k permutation is what makes it so', async () => {
    const { gguf, dir } = await makeModel({});
    const want = await expectSameLogits(gguf, dir);
    // the same directory named by a file: URL, and by a path ending in "/"
    expect(await logitsOf(pathToFileURL(dir).href)).toEqual(want);
    expect(await logitsOf(`${dir}/`)).toEqual(want);
    // The same directory with q/k left in GGUF row order: a loader that skipped the permutation would read
    // this one right; ours permutes it and must get other logits.
    const { dir: unpermuted } = await makeModel({}, { skipUnpermute: true });
    const wrong = await logitsOf(unpermuted);
    expect(wrong).not.toEqual(want);
    expect(Math.max(...wrong[5]!.map((v, i) => Math.abs(v - want[5]![i]!)))).toBeGreaterThan(1e-3);
  });

  it('llama F16 and BF16 weights stay in their type', async () => {
    for (const type of [GGMLType.F16, GGMLType.BF16]) {
      const { gguf, dir } = await makeModel({ type, seed: 11 });
      await expectSameLogits(gguf, dir);
      const m = await loadModel(dir, { backend: 'wasm', threads: 1, contextLength: 64 });
      expect(m.file.tensorsByName.get('blk.0.attn_q.weight')!.type).toBe(type);
      expect(m.file.tensorsByName.get('blk.0.attn_norm.weight')!.type).toBe(GGMLType.F32);
      await m.dispose();
    }
  });

  it('qwen2 with q/k/v biases and tied embeddings, from an index over 2 shards', async () => {
    const { gguf, dir, config } = await makeModel({ arch: 'qwen2', tiedEmbeddings: true, seed: 3 }, { shards: 2 });
    expect(config.tie_word_embeddings).toBe(true);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(new Set(Object.values(index.weight_map)).size).toBe(2);
    await expectSameLogits(gguf, dir);
  });

  it('qwen3 (F16) with per-head q/k norms and head_dim other than hidden / heads', async () => {
    const { gguf, dir, config } = await makeModel({ arch: 'qwen3', type: GGMLType.F16, headDim: 32, seed: 5 });
    expect(config.head_dim).toBe(32);
    await expectSameLogits(gguf, dir);
  });

  it('llama 3 rope_scaling: the rope_freqs factors llama.cpp\'s converter computes', async () => {
    const llama3 = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 } as const;
    expect([...llama3RopeFactors(16, 10000, llama3)]).toEqual(LLAMA3_FACTORS_16);
    const llama31 = [...llama3RopeFactors(128, 500000, { ...llama3, originalContext: 8192 })];
    expect(llama31.filter((v) => v !== 1 && v !== 8)).toEqual(LLAMA31_SMOOTH);
    expect(llama31.slice(0, 10).every((v) => v === 1) && llama31.slice(-10).every((v) => v === 8)).toBe(true);

    const rope = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    const { gguf, dir } = await makeModel({ nHeads: 4, nKvHeads: 4, seed: 9 }, { config: (c) => (c.rope_scaling = rope) }, { ropeFreqs: LLAMA3_FACTORS_16 });
    const want = await expectSameLogits(gguf, dir);
    // Without the factors the logits move: the test would see them dropped.
    const { dir: plain } = await makeModel({ nHeads: 4, nKvHeads: 4, seed: 9 });
    expect(await logitsOf(plain)).not.toEqual(want);
  });

  it('linear rope_scaling', async () => {
    const linear: [string, GGUFEntry][] = [
      ['llama.rope.scaling.type', { type: GGUFValueType.STRING, value: 'linear' }],
      ['llama.rope.scaling.factor', { type: GGUFValueType.FLOAT32, value: 4 }],
    ];
    const { gguf, dir } = await makeModel({ seed: 13 }, { config: (c) => (c.rope_scaling = { type: 'linear', factor: 4 }) }, { metadata: linear });
    const want = await expectSameLogits(gguf, dir);
    const { dir: plain } = await makeModel({ seed: 13 });
    expect(await logitsOf(plain)).not.toEqual(want);
  });

  it('YaRN rope_scaling (factor and original context) and MistralForCausalLM (a llama to llama.cpp)', async () => {
    const yarn: [string, GGUFEntry][] = [
      ['llama.rope.scaling.type', { type: GGUFValueType.STRING, value: 'yarn' }],
      ['llama.rope.scaling.factor', { type: GGUFValueType.FLOAT32, value: 4 }],
      ['llama.rope.scaling.original_context_length', { type: GGUFValueType.UINT32, value: 32 }],
    ];
    const { gguf, dir } = await makeModel({ seed: 19 }, {
      config: (c) => {
        c.architectures = ['MistralForCausalLM'];
        c.model_type = 'mistral';
        c.rope_scaling = { type: 'yarn', factor: 4, original_max_position_embeddings: 32 };
      },
    }, { metadata: yarn });
    const want = await expectSameLogits(gguf, dir);
    const { dir: plain } = await makeModel({ seed: 19 });
    expect(await logitsOf(plain)).not.toEqual(want);
  });

  it('from a base URL (HTTP Range requests), with tokenizer, chat template and generation defaults', async () => {
    const { gguf, dir } = await makeModel({ seed: 17 }, {
      shards: 2, chatTemplate: '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}',
      generationConfig: { temperature: 0.6, top_p: 0.9, top_k: 20, eos_token_id: [2, 1] },
    });
    const server = await startServer({ isolated: false, mounts: { '/hf/': root } });
    try {
      const url = `${server.url}/hf/${dir.slice(root.length + 1)}/`;
      expect(await logitsOf(url)).toEqual(await logitsOf(gguf));
      const m = await loadModel(url, { backend: 'wasm', threads: 1, contextLength: 64 });
      const g = await loadModel(gguf, { backend: 'wasm', threads: 1, contextLength: 64 });
      try {
        // The tokenizer is tokenizer.json's (the made-up vocabulary's merges do not rebuild every GGUF piece,
        // so its ids differ from the GGUF tokenizer's on text; test/tokenizer-hf.test.ts holds real vocabularies).
        const text = 'Once upon a time, there was a tiny model.';
        const own = Tokenizer.fromHuggingFace(readFileSync(join(dir, 'tokenizer.json'), 'utf8'), readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
        expect(m.tokenizer.encode(text, { addSpecial: true })).toEqual(own.encode(text, { addSpecial: true }));
        expect(m.tokenizer.encode(text, { addSpecial: true })[0]).toBe(1);
        expect([m.tokenizer.bosId, m.tokenizer.eosId]).toEqual([g.tokenizer.bosId, g.tokenizer.eosId]);
        expect(m.file.metadata.get('tokenizer.chat_template')?.value).toMatch(/for m in messages/);
        expect(m.file.metadata.get('general.sampling.temp')?.value).toBe(Math.fround(0.6));
        expect(m.file.metadata.get('general.sampling.top_p')?.value).toBe(Math.fround(0.9));
        expect(m.file.metadata.get('general.sampling.top_k')?.value).toBe(20);
        // ... and they are the model's sampling defaults (what a request leaves unset)
        expect(m.samplingDefaults).toEqual({ temperature: Math.fround(0.6), topP: Math.fround(0.9), topK: 20 });
        const reply = await m.engine().chat([{ role: 'user', content: 'hi' }], { maxTokens: 3, temperature: 0 }).result;
        expect(reply.completions[0]!.tokens.length).toBeGreaterThan(0);
      } finally {
        await m.dispose();
        await g.dispose();
      }
    } finally {
      await server.close();
    }
  });
});

describe('q/k permutation', () => {
  it('output rows are llama.cpp\'s permute() order', () => {
    // numpy: np.arange(8).reshape(2, 2, 2).swapaxes(1, 2).ravel(), and arange(12).reshape(2, 2, 3)...
    expect(Array.from({ length: 8 }, (_, r) => permutedSourceRow(r, 4))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    expect(Array.from({ length: 12 }, (_, r) => permutedSourceRow(r, 6))).toEqual([0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
  });

  it('reads in chunks of whole heads give the same bytes for any read offsets and lengths', async () => {
    const rows = 24, rowBytes = 10, headRows = 4, base = 7;
    const file = Uint8Array.from({ length: base + rows * rowBytes + 5 }, (_, i) => (i * 37 + 11) & 255);
    const want = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r++) want.set(file.subarray(base + permutedSourceRow(r, headRows) * rowBytes, base + (permutedSourceRow(r, headRows) + 1) * rowBytes), r * rowBytes);
    for (const chunkBytes of [1, 40, 100, 1 << 20]) {
      const read = permutedReader(bufferSource(file), base, rowBytes, headRows, chunkBytes);
      const whole = new Uint8Array(want.length);
      await read(0, whole);
      expect(whole).toEqual(want);
      for (const step of [1, 7, 33]) {
        const pieces = new Uint8Array(want.length);
        for (let at = 3; at < want.length; at += step) await read(at, pieces.subarray(at, Math.min(at + step, want.length)));
        expect(pieces.subarray(3)).toEqual(want.subarray(3));
      }
    }
  });
});

describe('hostile directories: typed errors', () => {
  let gguf: string, good: string;
  beforeAll(async () => {
    ({ gguf, dir: good } = await makeModel({ seed: 21 }, { shards: 2 }));
  });

  /** A copy of the good directory, changed. */
  async function variant(hf: HFDirectoryOptions, change?: (dir: string) => void): Promise<string> {
    const dir = join(root, `bad${counter++}`);
    await writeHFDirectory(gguf, dir, { shards: 2, ...hf });
    change?.(dir);
    return dir;
  }
  const load = (dir: string) => loadModel(dir, { backend: 'wasm', threads: 1, contextLength: 64 });

  it('config.json: not JSON, fields of the wrong type or out of range, architectures not supported', async () => {
    await expect(load(await variant({}, (d) => writeFileSync(join(d, 'config.json'), '{"hidden_size": 64,')))).rejects.toMatchObject({ name: 'HFModelError', code: 'INVALID_CONFIG', message: expect.stringMatching(/config\.json is not JSON/) });
    await expect(load(await variant({}, (d) => writeFileSync(join(d, 'config.json'), '[1, 2]')))).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/must be a JSON object/) });
    const cases: [(c: Record<string, unknown>) => void, string, RegExp][] = [
      [(c) => (c.hidden_size = '64'), 'INVALID_CONFIG', /hidden_size is "64", expected an integer/],
      [(c) => (c.num_hidden_layers = -1), 'INVALID_CONFIG', /num_hidden_layers is -1/],
      [(c) => (c.num_key_value_heads = 3), 'INVALID_CONFIG', /num_key_value_heads 3 must divide num_attention_heads 4/],
      [(c) => (c.rms_norm_eps = 'tiny'), 'INVALID_CONFIG', /rms_norm_eps is "tiny"/],
      [(c) => (c.vocab_size = 2 ** 40), 'INVALID_CONFIG', /vocab_size is 1099511627776/],
      [(c) => (c.vocab_size = 200), 'INVALID_CONFIG', /vocab_size is 200|vocab_size 200 is smaller than the 300 tokens/],
      [(c) => (c.eos_token_id = [2, 'x']), 'INVALID_CONFIG', /eos_token_id/],
      [(c) => (c.rope_scaling = { rope_type: 'dynamic', factor: 2 }), 'UNSUPPORTED_MODEL', /rope_scaling type "dynamic"/],
      [(c) => (c.rope_scaling = { rope_type: 'linear', factor: -2 }), 'INVALID_CONFIG', /rope_scaling\.factor is -2/],
      [(c) => (c.architectures = ['GPT2LMHeadModel']), 'UNSUPPORTED_MODEL', /"GPT2LMHeadModel" is not supported/],
      [(c) => { delete c.architectures; delete c.model_type; }, 'INVALID_CONFIG', /cannot tell the architecture/],
    ];
    for (const [change, code, message] of cases) {
      await expect(load(await variant({ config: change }))).rejects.toMatchObject({ name: 'HFModelError', code, message: expect.stringMatching(message) });
    }
  });

  it('a missing file: config.json, tokenizer.json, a shard the index lists', async () => {
    await expect(load(await variant({}, (d) => unlinkSync(join(d, 'config.json'))))).rejects.toMatchObject({ name: 'ByteSourceError', code: 'NOT_FOUND', message: expect.stringMatching(/has no config\.json/) });
    await expect(load(await variant({}, (d) => unlinkSync(join(d, 'tokenizer.json'))))).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/has no tokenizer\.json/) });
    await expect(load(await variant({}, (d) => unlinkSync(join(d, 'model-00002-of-00002.safetensors'))))).rejects.toMatchObject({
      name: 'ByteSourceError', code: 'NOT_FOUND', message: expect.stringMatching(/index\.json lists it, and there is no model-00002-of-00002\.safetensors/),
    });
    await expect(load(await variant({ shards: 1 }, (d) => unlinkSync(join(d, 'model.safetensors'))))).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no model\.safetensors/) });
  });

  it('tensors: a wrong shape, an unknown name, a dtype we do not run, a missing one, a truncated shard', async () => {
    const set = (name: string, change: (t: HFTensor) => void) => (ts: HFTensor[]) => change(ts.find((t) => t.name === name)!);
    await expect(load(await variant({ tensors: set('model.layers.1.mlp.up_proj.weight', (t) => (t.shape = [64, 96])) }))).rejects.toMatchObject({
      name: 'HFModelError', code: 'BAD_TENSOR_SHAPE', message: expect.stringMatching(/"model\.layers\.1\.mlp\.up_proj\.weight" has shape \[64, 96\], config\.json implies \[96, 64\]/),
    });
    await expect(load(await variant({ config: (c) => (c.intermediate_size = 128) }))).rejects.toMatchObject({ code: 'BAD_TENSOR_SHAPE', message: expect.stringMatching(/implies \[128, 64\]/) });
    await expect(load(await variant({ tensors: (ts) => ts.push({ name: 'model.layers.0.self_attn.q_norm.weight', dtype: 'F32', shape: [16], data: new Uint8Array(64) }) }))).rejects.toMatchObject({
      name: 'HFModelError', code: 'UNKNOWN_TENSOR', message: expect.stringMatching(/q_norm\.weight" is not part of a llama model/),
    });
    await expect(load(await variant({ tensors: (ts) => ts.push({ name: 'model.layers.7.mlp.up_proj.weight', dtype: 'F32', shape: [96, 64], data: new Uint8Array(96 * 64 * 4) }) }))).rejects.toMatchObject({
      code: 'UNKNOWN_TENSOR', message: expect.stringMatching(/layer 7, but config\.json has num_hidden_layers 2/),
    });
    await expect(load(await variant({ tensors: set('model.norm.weight', (t) => (t.dtype = 'I32')) }))).rejects.toMatchObject({ code: 'UNSUPPORTED_DTYPE', message: expect.stringMatching(/"model\.norm\.weight" is I32/) });
    await expect(load(await variant({ tensors: (ts) => ts.splice(ts.findIndex((t) => t.name === 'model.layers.1.self_attn.v_proj.weight'), 1) }))).rejects.toMatchObject({
      name: 'ModelError', code: 'MISSING_TENSOR', message: expect.stringMatching(/blk\.1\.attn_v\.weight/),
    });
    await expect(load(await variant({ tensors: (ts) => ts.splice(ts.findIndex((t) => t.name === 'lm_head.weight'), 1) }))).rejects.toMatchObject({
      name: 'ModelError', code: 'MISSING_TENSOR', message: expect.stringMatching(/tie_word_embeddings is false, and no file holds lm_head\.weight/),
    });
    await expect(load(await variant({}, (d) => {
      const p = join(d, 'model-00001-of-00002.safetensors');
      writeFileSync(p, readFileSync(p).subarray(0, 1000));
    }))).rejects.toMatchObject({ name: 'SafetensorsError' });
  });

  it('model.safetensors.index.json: not JSON, a tensor its shard lacks, a shard name outside the directory', async () => {
    const index = (d: string) => join(d, 'model.safetensors.index.json');
    const rewrite = (change: (map: Record<string, string>) => void) => (d: string) => {
      const j = JSON.parse(readFileSync(index(d), 'utf8'));
      change(j.weight_map);
      writeFileSync(index(d), JSON.stringify(j));
    };
    await expect(load(await variant({}, (d) => writeFileSync(index(d), '{')))).rejects.toMatchObject({ name: 'HFModelError', code: 'INVALID_INDEX', message: expect.stringMatching(/index\.json is not JSON/) });
    await expect(load(await variant({}, rewrite((m) => (m['model.norm.weight'] = m['model.norm.weight'] === 'model-00001-of-00002.safetensors' ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors'))))).rejects.toMatchObject({
      code: 'INVALID_INDEX', message: expect.stringMatching(/puts tensor "model\.norm\.weight" in model-0000\d-of-00002\.safetensors, which does not hold it/),
    });
    for (const name of ['../model.safetensors', '/etc/passwd', 'https://example.com/x.safetensors', 'a/../../b.safetensors']) {
      await expect(load(await variant({}, rewrite((m) => (m['model.norm.weight'] = name))))).rejects.toMatchObject({ code: 'INVALID_INDEX', message: expect.stringMatching(/is not a file name inside the directory/) });
    }
  });

  it('tokenizer.json that is not one is a TokenizerError; a bad generation_config.json an HFModelError', async () => {
    await expect(load(await variant({}, (d) => writeFileSync(join(d, 'tokenizer.json'), '{"model": 5}')))).rejects.toMatchObject({ name: 'TokenizerError' });
    await expect(load(await variant({ generationConfig: { temperature: 'hot' } }))).rejects.toMatchObject({ name: 'HFModelError', code: 'INVALID_CONFIG', message: expect.stringMatching(/generation_config\.json: temperature is "hot"/) });
  });

  it('the good directory loads (the variants above fail for their one change)', async () => {
    expect(await logitsOf(good)).toEqual(await logitsOf(gguf));
  });
});
