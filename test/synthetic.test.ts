// Random-weight model synthesis: the values are what was promised (N(0, std²), norms 1, seeded,
// the same underlying weights in every type), the files are valid llama-family GGUFs, and the
// generators stream one tensor at a time.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { getStringArray } from '../src/gguf/metadata.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { readRange } from '../src/io/byte-source.js';
import { readHParams } from '../src/model/hparams.js';
import { streamGGUF } from '../src/model/quantize-model.js';
import { NormalRng, SyntheticModelError, synthesizeLlama, writeSyntheticLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { fileSource } from '../src/runtime/file-source.js';
import { dequantize } from '../src/tensor/dequant.js';
import { GGMLType, typeTraits } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { disposeLlamaCpp, llamaCppLoad, llamaCppStatus } from './oracle/llama-cpp.js';

const sharedModels = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'models');
const haveLlama2Vocab = existsSync(join(sharedModels, 'llama-2-tiny-random.gguf'));
if (!haveLlama2Vocab) process.stderr.write(`synthetic: 'llama2' vocab tests skipped, ${sharedModels}/llama-2-tiny-random.gguf not found\n`);

const small: SyntheticLlamaOptions = { dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 512, vocab: 300, type: GGMLType.F32, seed: 7 };

async function tensorData(opts: SyntheticLlamaOptions): Promise<Map<string, { type: GGMLType; dims: readonly number[]; data: Uint8Array }>> {
  const m = await synthesizeLlama(opts);
  const out = new Map<string, { type: GGMLType; dims: readonly number[]; data: Uint8Array }>();
  for (const t of m.tensors) out.set(t.name, { type: t.type, dims: t.dims, data: await t.data() });
  return out;
}

function f32(data: Uint8Array): Float32Array {
  return new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
}

function moments(x: Float32Array): { mean: number; std: number; within1: number; within2: number } {
  let s = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  let ss = 0;
  for (const v of x) ss += (v - mean) ** 2;
  const std = Math.sqrt(ss / x.length);
  let w1 = 0, w2 = 0;
  for (const v of x) {
    if (Math.abs(v - mean) < std) w1++;
    if (Math.abs(v - mean) < 2 * std) w2++;
  }
  return { mean, std, within1: w1 / x.length, within2: w2 / x.length };
}

describe('NormalRng', () => {
  it('is seeded and gives the same stream however the output is split', () => {
    const whole = new Float32Array(10001);
    new NormalRng(5).fillNormal(whole, 1);
    const parts = new Float32Array(10001);
    const rng = new NormalRng(5);
    // Odd split points exercise the spare value of each Box-Muller pair.
    for (const [a, b] of [[0, 1], [1, 4], [4, 777], [777, 10001]]) rng.fillNormal(parts, 1, a, b);
    expect(parts).toEqual(whole);
    const other = new Float32Array(10001);
    new NormalRng(6).fillNormal(other, 1);
    expect(other).not.toEqual(whole);
  });

  it('draws standard normal values', () => {
    const x = new Float32Array(400_000);
    new NormalRng(123).fillNormal(x, 1);
    const m = moments(x);
    // Standard errors at n = 400k: mean 0.0016, std 0.0011, fractions about 0.0007.
    expect(Math.abs(m.mean)).toBeLessThan(0.006);
    expect(Math.abs(m.std - 1)).toBeLessThan(0.005);
    expect(Math.abs(m.within1 - 0.6827)).toBeLessThan(0.003);
    expect(Math.abs(m.within2 - 0.9545)).toBeLessThan(0.002);
    let kurt = 0;
    for (const v of x) kurt += v ** 4;
    expect(Math.abs(kurt / x.length - 3)).toBeLessThan(0.05);
  });
});

describe('synthesizeLlama', () => {
  it('lays out a llama model with the requested shapes and readable hyperparameters', async () => {
    const m = await synthesizeLlama({ ...small, type: GGMLType.Q4_0 });
    const names = m.tensors.map((t) => t.name);
    expect(names.length).toBe(1 + 2 * 9 + 2);
    const shape = (n: string) => m.tensors.find((t) => t.name === n)!.dims;
    expect(shape('token_embd.weight')).toEqual([256, 300]);
    expect(shape('blk.1.attn_q.weight')).toEqual([256, 256]);
    expect(shape('blk.1.attn_k.weight')).toEqual([256, 128]);
    expect(shape('blk.0.ffn_down.weight')).toEqual([512, 256]);
    expect(shape('output.weight')).toEqual([256, 300]);
    expect(names.some((n) => n.endsWith('.bias'))).toBe(false);

    const bytes = writeGGUF(m.metadata, await Promise.all(m.tensors.map(async (t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: await t.data() }))));
    const { bufferSource } = await import('../src/io/byte-source.js');
    const gguf = await readGGUF(bufferSource(bytes));
    const hp = readHParams(gguf);
    expect(hp).toMatchObject({ architecture: 'llama', embeddingLength: 256, blockCount: 2, headCount: 4, headCountKv: 2, feedForwardLength: 512, headDim: 64, ropeStyle: 'normal' });
    expect(gguf.metadata.get('general.file_type')!.value).toBe(2);
    expect(gguf.metadata.get('general.quantization_version')!.value).toBe(2);
    expect(getStringArray(gguf.metadata, 'tokenizer.ggml.tokens')!.length).toBe(300);
    expect(m.nParams).toBe(gguf.tensors.reduce((a, t) => a + t.nElements, 0));
    expect(m.nBytes).toBe(gguf.tensors.reduce((a, t) => a + t.nBytes, 0));
  });

  it('draws weights N(0, 0.02²) with norms of 1, deterministically per seed', async () => {
    const a = await tensorData(small);
    const w = moments(f32(a.get('blk.0.ffn_up.weight')!.data));
    // n = 131072: standard errors mean 5.5e-5, std 3.9e-5.
    expect(Math.abs(w.mean)).toBeLessThan(3e-4);
    expect(Math.abs(w.std - 0.02)).toBeLessThan(2e-4);
    expect(Math.abs(w.within1 - 0.6827)).toBeLessThan(0.006);
    for (const n of ['blk.0.attn_norm.weight', 'blk.1.ffn_norm.weight', 'output_norm.weight']) {
      expect(Array.from(f32(a.get(n)!.data)).every((v) => v === 1)).toBe(true);
    }
    const again = await tensorData(small);
    for (const [n, t] of a) expect(Buffer.from(again.get(n)!.data).equals(Buffer.from(t.data))).toBe(true);
    const other = await tensorData({ ...small, seed: 8 });
    expect(Buffer.from(other.get('blk.0.ffn_up.weight')!.data).equals(Buffer.from(a.get('blk.0.ffn_up.weight')!.data))).toBe(false);
    // Distinct tensors of one model hold distinct values.
    expect(Buffer.from(a.get('blk.0.ffn_up.weight')!.data).equals(Buffer.from(a.get('blk.0.ffn_gate.weight')!.data))).toBe(false);
  });

  it('holds the same underlying weights in every type: each tensor is the F32 one quantized', async () => {
    const ref = await tensorData(small);
    for (const type of [GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.BF16, GGMLType.IQ4_NL]) {
      const q = await tensorData({ ...small, type });
      for (const [name, t] of q) {
        const r = ref.get(name)!;
        if (r.dims.length === 1) {
          expect(t.type).toBe(GGMLType.F32);
          expect(Buffer.from(t.data).equals(Buffer.from(r.data))).toBe(true);
        } else {
          expect(t.type).toBe(type);
          expect(Buffer.from(t.data).equals(Buffer.from(quantize(type, f32(r.data), r.dims[0])))).toBe(true);
        }
      }
    }
  });

  it('falls back per tensor where the rows do not fit the blocks, and makes qwen2 biases', async () => {
    const m = await tensorData({ ...small, dim: 64, nHeads: 4, nKvHeads: 4, ffnDim: 172, arch: 'qwen2', type: GGMLType.Q4_K });
    expect(m.get('token_embd.weight')!.type).toBe(GGMLType.Q5_0); // 64-wide rows: Q4_K → Q5_0
    expect(m.get('blk.0.ffn_up.weight')!.type).toBe(GGMLType.Q5_0);
    expect(m.get('blk.0.ffn_down.weight')!.type).toBe(GGMLType.F16); // 172 fits neither
    const bias = m.get('blk.1.attn_k.bias')!;
    expect(bias.type).toBe(GGMLType.F32);
    expect(bias.dims).toEqual([64]);
    expect(Math.abs(moments(f32(bias.data)).std - 0.02)).toBeLessThan(0.006);
    const model = await synthesizeLlama({ ...small, arch: 'qwen2' });
    expect(model.metadata.find(([k]) => k === 'general.architecture')![1].value).toBe('qwen2');
    expect(model.metadata.some(([k]) => k === 'qwen2.rope.freq_base')).toBe(true);
    expect(model.metadata.some(([k]) => k === 'general.quantization_version')).toBe(false);
  });

  it('ties, copies or rescales the embeddings on request', async () => {
    const tied = await synthesizeLlama({ ...small, tiedEmbeddings: true });
    expect(tied.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    const copy = await tensorData({ ...small, outputFromEmbedding: true, embeddingStd: 0.05, outputType: GGMLType.Q8_0 });
    const emb = f32(copy.get('token_embd.weight')!.data);
    expect(Math.abs(moments(emb).std - 0.05)).toBeLessThan(0.001);
    expect(copy.get('output.weight')!.type).toBe(GGMLType.Q8_0);
    expect(Buffer.from(copy.get('output.weight')!.data).equals(Buffer.from(quantize(GGMLType.Q8_0, emb, 256)))).toBe(true);
  });

  it('builds tensors from a pool of distinct blocks when asked, keeping the value distribution', async () => {
    const m = await tensorData({ ...small, type: GGMLType.Q4_K, distinctBlocks: 64 });
    const t = m.get('blk.0.ffn_gate.weight')!;
    const bb = typeTraits(GGMLType.Q4_K)!.blockBytes;
    const blocks = new Set<string>();
    for (let o = 0; o < t.data.length; o += bb) blocks.add(Buffer.from(t.data.subarray(o, o + bb)).toString('hex'));
    expect(blocks.size).toBeLessThanOrEqual(64);
    expect(blocks.size).toBeGreaterThan(50); // 512 picks among 64 leave almost none unused
    const values = dequantize(GGMLType.Q4_K, t.data, 256 * 512);
    expect(Math.abs(moments(values).std - 0.02)).toBeLessThan(0.002);
    // Another tensor of the same type draws from the same pool, in another order.
    const u = m.get('blk.1.ffn_up.weight')!;
    expect(Buffer.from(u.data).equals(Buffer.from(t.data))).toBe(false);
    expect(blocks.has(Buffer.from(u.data.subarray(0, bb)).toString('hex'))).toBe(true);
  });

  it('rejects impossible shapes and vocabularies', async () => {
    await expect(synthesizeLlama({ ...small, nKvHeads: 3 })).rejects.toThrow(SyntheticModelError);
    await expect(synthesizeLlama({ ...small, nHeads: 6 })).rejects.toThrow(/head dimension/);
    await expect(synthesizeLlama({ ...small, vocab: 100 })).rejects.toThrow(/at least 260/);
    await expect(synthesizeLlama({ ...small, type: GGMLType.IQ2_XXS })).rejects.toThrow(/cannot be written/);
    await expect(synthesizeLlama({ ...small, distinctBlocks: 0 })).rejects.toThrow(/distinctBlocks/);
    await expect(synthesizeLlama({ ...small, tiedEmbeddings: true, outputFromEmbedding: true })).rejects.toThrow(/outputFromEmbedding/);
  });
});

describe('streaming', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wasmforge-synth-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await disposeLlamaCpp();
  });

  it('streamGGUF writes the bytes writeGGUF would, producing each tensor once, in order', async () => {
    const m = await synthesizeLlama({ ...small, type: GGMLType.Q5_1, nLayers: 1 });
    const calls: string[] = [];
    const lazy = m.tensors.map((t) => ({ ...t, data: () => (calls.push(t.name), t.data()) }));
    const chunks: Uint8Array[] = [];
    const n = await streamGGUF(m.metadata, lazy, (c) => void chunks.push(c.slice()));
    expect(calls).toEqual(m.tensors.map((t) => t.name));
    const whole = writeGGUF(m.metadata, await Promise.all(m.tensors.map(async (t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: await t.data() }))));
    expect(n).toBe(whole.length);
    expect(Buffer.concat(chunks).equals(Buffer.from(whole))).toBe(true);
    // A producer that returns the wrong size is caught before its bytes are written.
    const bad = m.tensors.map((t, i) => (i === 2 ? { ...t, data: () => new Uint8Array(3) } : t));
    await expect(streamGGUF(m.metadata, bad, () => {})).rejects.toThrow(/produced 3 bytes/);
  });

  it('writes a file that reads back tensor for tensor', async () => {
    const path = join(dir, 'q6k.gguf');
    const opts = { ...small, type: GGMLType.Q6_K, nLayers: 1 };
    const written = await writeSyntheticLlama(path, opts);
    const source = await fileSource(path);
    try {
      const gguf: GGUFFile = await readGGUF(source);
      expect(gguf.fileSize).toBe(written.bytes);
      const expected = await tensorData(opts);
      for (const t of gguf.tensors) {
        const e = expected.get(t.name)!;
        expect(t.type).toBe(e.type);
        expect(Buffer.from(await readRange(source, t.fileOffset, t.nBytes)).equals(Buffer.from(e.data))).toBe(true);
      }
    } finally {
      await source.close();
    }
  });

  it.skipIf(!haveLlama2Vocab)("copies the Llama 2 vocab for vocab 'llama2', and llama.cpp loads the result", async () => {
    const path = join(dir, 'llama2-vocab.gguf');
    const m = await writeSyntheticLlama(path, { ...small, dim: 64, nHeads: 2, nKvHeads: 2, ffnDim: 128, nLayers: 1, vocab: 'llama2', type: GGMLType.Q8_0 });
    const tokens = m.metadata.find(([k]) => k === 'tokenizer.ggml.tokens')![1].value as { values: string[] };
    expect(tokens.values.length).toBe(32000);
    expect(m.tensors.find((t) => t.name === 'token_embd.weight')!.dims).toEqual([64, 32000]);
    const status = await llamaCppStatus();
    if (!status.available) {
      process.stderr.write(`synthetic: llama.cpp load check skipped (${status.reason})\n`);
      return;
    }
    expect(await llamaCppLoad(path)).toMatchObject({ vocabSize: 32000, trainContextSize: 2048 });
  });

  it.skipIf(!haveLlama2Vocab)('pads the vocab with unused tokens on request: embedding and head grow, text encodes as before, llama.cpp loads it', async () => {
    const path = join(dir, 'llama2-padded.gguf');
    const shape = { ...small, dim: 64, nHeads: 2, nKvHeads: 2, ffnDim: 128, nLayers: 1, vocab: 'llama2' as const, type: GGMLType.Q8_0 };
    const m = await writeSyntheticLlama(path, { ...shape, padVocabTo: 32100 });
    const entry = (key: string) => m.metadata.find(([k]) => k === key)![1].value as { values: ArrayLike<unknown> };
    expect(entry('tokenizer.ggml.tokens').values.length).toBe(32100);
    expect(entry('tokenizer.ggml.tokens').values[32099]).toBe('<unused_32099>');
    expect(entry('tokenizer.ggml.scores').values.length).toBe(32100);
    expect(entry('tokenizer.ggml.token_type').values[32000]).toBe(5); // UNUSED
    expect(entry('tokenizer.ggml.token_type').values[31999]).toBe(1);
    expect(m.tensors.find((t) => t.name === 'output.weight')!.dims).toEqual([64, 32100]);
    const plain = await synthesizeLlama(shape);
    const text = 'Once upon a time, a <unused_5> shell sang.';
    const encode = (meta: typeof m.metadata) => Tokenizer.fromGGUF(new Map(meta)).encode(text, { addSpecial: true });
    expect(encode(m.metadata)).toEqual(encode(plain.metadata));
    await expect(synthesizeLlama({ ...shape, padVocabTo: 31999 })).rejects.toThrow(/padVocabTo/);
    const status = await llamaCppStatus();
    if (!status.available) {
      process.stderr.write(`synthetic: llama.cpp load check skipped (${status.reason})\n`);
      return;
    }
    expect(await llamaCppLoad(path)).toMatchObject({ vocabSize: 32100 });
  });
});
