// Embeddings against llama.cpp: encoder models (BERT: all-MiniLM, bge; nomic-bert; jina-bert-v2 with
// ALiBi) and decoders that declare a pooling type (Qwen3-Embedding style); random-weight BERT-family
// files with the bge vocabulary (real WordPiece tokens, [CLS] ... [SEP]), written by our writer,
// loaded by both sides. For each weight type and pooling (mean, CLS, last) our pooled vector must
// stay within 4x the implementations' own noise of llama.cpp's (test/oracle/noise.ts: each side on
// copies whose norm weights move by a rounding-sized amount), plus, for weight types whose matmuls
// round their activations, that rounding's own effect (see A below); cosine > 0.9999; and the
// tokenization must be llama.cpp's.
// Then the API's edges: normalization, determinism, typed errors for the wrong kind of model.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as embedCli } from '../src/cli/embed.js';
import { createEngine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { ModelError } from '../src/model/errors.js';
import { loadModel } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType, typeName } from '../src/tensor/ggml-types.js';
import { synthesizeLlama, writeSyntheticLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { writeLazyGGUFFile } from '../src/runtime/file-sink.js';
import type { LazyTensor } from '../src/model/quantize-model.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppEmbedding, llamaCppTokenize } from './oracle/llama-cpp.js';
import { perturbationNoise } from './oracle/noise.js';
import { captureOutput } from './helpers/capture-output.js';
import { useSoftwareVulkanUnlessSet } from './helpers/webgpu.js';

useSoftwareVulkanUnlessSet();

const VOCAB = '../shared/vocab/ggml-vocab-bert-bge.gguf';
const haveVocab = existsSync(VOCAB);
const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveVocab) console.warn('embeddings: ../shared/vocab is absent, skipping');

const TEXTS = [
  'The quick brown fox jumps over the lazy dog.',
  'Embeddings map a sentence to a point; similar sentences land close together, unlike ones far apart.',
];
/** jina-bert-v2's texts: ALiBi's biases grow with the distance between tokens, so one runs to about 70 tokens. */
const JINA_TEXTS = [
  TEXTS[0],
  'Attention with linear biases adds to each score a penalty that grows with the distance between the two tokens, ' +
    'so a model trained on short passages still reads long ones: nearby words weigh more than far ones, and every head ' +
    'has its own slope, from steep to nearly flat, which lets some heads look across the whole document while others stay local.',
];
const NOISE_FACTOR = 4;
const POOLING = { mean: 1, cls: 2, last: 3 } as const;

let dir: string;
let vocab: GGUFFile;
const files = new Map<string, Promise<string>>();
/** An encoder architecture, and for jina-bert-v2 its layout (SyntheticLlamaOptions.jina). */
type Encoder = 'bert' | 'nomic-bert' | 'jina-bert-v2' | 'jina-bert-v2 code, split gate' | 'jina-bert-v2 ungated';
const JINA_LAYOUTS = {
  'jina-bert-v2': { ffn: 'fused' }, 'jina-bert-v2 code, split gate': { ffn: 'split', code: true }, 'jina-bert-v2 ungated': { ffn: 'ungated' },
} as const;
/**
 * A random-weight encoder in one type and pooling, written once: bge-small's shape ratios at a
 * small width; jina-bert-v2 with 6 heads (ALiBi's two slope series: 4 + 2) as jina-v2-base's 12 have.
 */
const bertFile = (type: GGMLType, pooling: keyof typeof POOLING, encoder: Encoder = 'bert'): Promise<string> => {
  const name = `${encoder.replace(/[ ,]+/g, '-')}-${typeName(type)}-${pooling}.gguf`;
  if (!files.has(name)) {
    const path = join(dir, name);
    const jina = encoder.startsWith('jina') ? JINA_LAYOUTS[encoder as keyof typeof JINA_LAYOUTS] : undefined;
    // jina's wider rows take a smaller std for the same gain per matrix (std * sqrt(cols)) as the others'
    const shape = jina ? { dim: 192, nHeads: 6, nKvHeads: 6, ffnDim: 384, std: 0.08 * Math.sqrt(128 / 192) } : { dim: 128, nHeads: 4, nKvHeads: 4, ffnDim: 512, std: 0.08 };
    files.set(name, writeSyntheticLlama(path, {
      arch: jina ? 'jina-bert-v2' : encoder as 'bert' | 'nomic-bert', jina, ...shape, nLayers: 3, type, vocab: { metadataFrom: vocab }, seed: 5,
      contextLength: 512, pooling: POOLING[pooling],
    }).then(() => path));
  }
  return files.get(name)!;
};

beforeAll(async () => {
  if (!haveVocab) return;
  dir = mkdtempSync(join(tmpdir(), 'wasmforge-embed-'));
  const src = await fileSource(VOCAB);
  vocab = await readGGUF(src);
  await src.close();
});
afterAll(async () => {
  await disposeLlamaCpp();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const maxDelta = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe.skipIf(!haveVocab || !haveLlamaCpp)('BERT embeddings against llama.cpp', () => {
  const rows: string[] = [];
  afterAll(() => console.log(`\nBERT embeddings against llama.cpp\n| case | max abs Δ | noise | A (activation rounding) | bound (4 noise + A) | cosine |\n|---|---|---|---|---|---|\n${rows.join('\n')}\n`));

  // bert in every pooling (F32) and three more weight types; nomic-bert (RoPE, fused qkv, SwiGLU) in two;
  // jina-bert-v2 (ALiBi, GEGLU) in its three layouts, two poolings and a quantized type
  const cases: [Encoder, GGMLType, keyof typeof POOLING][] = [
    ...(Object.keys(POOLING) as (keyof typeof POOLING)[]).map((p) => ['bert', GGMLType.F32, p] as [Encoder, GGMLType, keyof typeof POOLING]),
    ...[GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_K].map((t) => ['bert', t, 'mean'] as [Encoder, GGMLType, keyof typeof POOLING]),
    ['nomic-bert', GGMLType.F32, 'mean'], ['nomic-bert', GGMLType.Q8_0, 'mean'],
    ['jina-bert-v2', GGMLType.F32, 'mean'], ['jina-bert-v2', GGMLType.F32, 'cls'], ['jina-bert-v2', GGMLType.Q8_0, 'mean'],
    ['jina-bert-v2 code, split gate', GGMLType.F32, 'mean'], ['jina-bert-v2 ungated', GGMLType.F32, 'cls'],
  ];
  for (const [arch, type, pooling] of cases) {
    {
      it(`${arch} ${typeName(type)}, ${pooling} pooling: the same tokens and, within the noise, the same vectors`, async () => {
        const path = await bertFile(type, pooling, arch);
        const model = await loadModel(path, { threads: 2, kvCacheType: 'f32' });
        // jina-bert-v2 against llama.cpp's attention without flash attention, whose f16 casts of K and V
        // (ours stay f32) otherwise make most of the difference (5-60x the delta without them; within
        // the bound either way): so its ALiBi is held to f32 attention on both sides.
        const theirOptions = arch.startsWith('jina') ? { flashAttention: false } : {};
        try {
          for (const text of arch.startsWith('jina') ? JINA_TEXTS : TEXTS) {
            const tokens = model.tokenizer.encode(text, { addSpecial: true });
            const theirTokens = await llamaCppTokenize(path, text, { special: false });
            expect(tokens.slice(1, -1)).toEqual(theirTokens.filter((t) => t !== tokens[0] && t !== tokens[tokens.length - 1]));
            const ours = await model.embed(tokens, { normalize: false });
            const theirs = await llamaCppEmbedding(path, tokens, theirOptions);
            expect(ours.length).toBe(theirs.length);
            // Either implementation's own noise: how far its vector moves on the norm-perturbed copies.
            // (For quantized weights llama.cpp's alone can be tiny: its 8-bit activation roundings
            // rarely flip under so small a disturbance, while ours, in another order, flip elsewhere.)
            const noise = (await perturbationNoise(path, dir, async (copy) => {
              const perturbed = await loadModel(copy, { threads: 2, kvCacheType: 'f32' });
              try {
                return Math.max(maxDelta(theirs, await llamaCppEmbedding(copy, tokens, theirOptions)), maxDelta(ours, await perturbed.embed(tokens, { normalize: false })));
              } finally {
                await perturbed.dispose();
              }
            })).max;
            // A: the effect of rounding the activations before each dot product as the weight type asks
            // (8-bit blocks for Q8_0/Q4_K, f16 for F16): our WASM vector against the reference backend's,
            // which keeps them exact. llama.cpp rounds the same activations in another order, so its
            // vector may sit that far from ours on top of the noise (0 for F32 weights).
            const ref = await loadModel(path, { backend: 'reference', kvCacheType: 'f32' });
            const a = maxDelta(ours, await ref.embed(tokens, { normalize: false }).finally(() => ref.dispose()));
            const bound = NOISE_FACTOR * noise + (type === GGMLType.F32 ? 0 : a);
            const delta = maxDelta(ours, theirs);
            let dot = 0, na = 0, nb = 0;
            ours.forEach((v, i) => { dot += v * theirs[i]!; na += v * v; nb += theirs[i]! ** 2; });
            const cos = dot / Math.sqrt(na * nb);
            rows.push(`| ${arch} ${typeName(type)} ${pooling} "${text.slice(0, 20)}…" (${tokens.length} tokens) | ${delta.toExponential(2)} | ${noise.toExponential(2)} | ${a.toExponential(2)} | ${bound.toExponential(2)} | ${cos.toFixed(7)} |`);
            expect(delta).toBeLessThan(bound);
            expect(cos).toBeGreaterThan(0.9999);
            // The WebGPU backend against llama.cpp under the same bound: its activations stay f32 for
            // the block types (A is the distance that leaves from llama.cpp's 8-bit ones), F16 rounds them as llama.cpp.
            const gpuModel = await loadModel(path, { backend: 'webgpu', kvCacheType: 'f32' });
            const gpu = await gpuModel.embed(tokens, { normalize: false }).finally(() => gpuModel.dispose());
            const gpuDelta = maxDelta(gpu, theirs);
            rows.push(`| webgpu: ${arch} ${typeName(type)} ${pooling} (${tokens.length} tokens) | ${gpuDelta.toExponential(2)} | | | ${bound.toExponential(2)} | |`);
            expect(gpuDelta, 'webgpu').toBeLessThan(bound);
          }
        } finally {
          await model.dispose();
        }
      });
    }
  }

  it('the pooling modes differ from each other (each reads the states it should)', async () => {
    const vectors = [];
    for (const pooling of Object.keys(POOLING) as (keyof typeof POOLING)[]) {
      const model = await loadModel(await bertFile(GGMLType.F32, pooling), { threads: 1 });
      vectors.push(await model.embed(TEXTS[0]));
      await model.dispose();
    }
    expect(maxDelta(vectors[0], vectors[1])).toBeGreaterThan(0.05);
    expect(maxDelta(vectors[1], vectors[2])).toBeGreaterThan(0.05);
  });
});

describe.skipIf(!haveLlamaCpp)('decoder embedding models ({arch}.pooling_type, as Qwen3-Embedding) against llama.cpp', () => {
  // qwen3 with last-token pooling (Qwen3-Embedding's), llama with mean pooling: the final norm's output pooled.
  const cases: [string, number, 'last' | 'mean'][] = [['qwen3', 3, 'last'], ['llama', 1, 'mean']];
  for (const [arch, poolingType, pooling] of cases) {
    it(`${arch}, ${pooling} pooling: within the noise of llama.cpp's vector`, async () => {
      const path = join(dir, `decoder-${arch}.gguf`);
      await writeSyntheticLlama(path, { arch: arch as 'llama', dim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 256, type: GGMLType.F32, vocab: 'llama2', seed: 8, std: 0.08, contextLength: 512, pooling: poolingType });
      // f32 K/V on both sides (llama.cpp's context made so, without flash attention, whose f16 casts would add their own rounding).
      const model = await loadModel(path, { threads: 2, kvCacheType: 'f32' });
      try {
        expect(model.config.pooling).toBe(pooling);
        const tokens = model.tokenizer.encode(TEXTS[1]!, { addSpecial: true });
        const ours = await model.embed(tokens, { normalize: false });
        const theirs = await llamaCppEmbedding(path, tokens, { flashAttention: false, kvCacheType: 'f32' });
        const noise = (await perturbationNoise(path, dir, async (copy) => {
          const perturbed = await loadModel(copy, { threads: 2, kvCacheType: 'f32' });
          try {
            return Math.max(maxDelta(theirs, await llamaCppEmbedding(copy, tokens, { flashAttention: false, kvCacheType: 'f32' })), maxDelta(ours, await perturbed.embed(tokens, { normalize: false })));
          } finally {
            await perturbed.dispose();
          }
        })).max;
        const delta = maxDelta(ours, theirs);
        console.log(`decoder embeddings ${arch} ${pooling}: max abs delta ${delta.toExponential(2)}, noise ${noise.toExponential(2)}`);
        expect(delta).toBeLessThan(NOISE_FACTOR * noise);
        // While the same engine generates, an embedding is the same (passes take turns).
        const generation = model.generate('Once upon a time', { maxTokens: 40, temperature: 0.8, seed: 1, ignoreEos: true });
        const during = await model.embed(tokens, { normalize: false });
        await generation.result;
        expect(during).toEqual(ours);
      } finally {
        await model.dispose();
      }
    });
  }
});

describe.skipIf(!haveVocab)('Model.embed', () => {
  it('normalized by default (unit length), deterministic, concurrent calls serialized; the text and its tokens agree', async () => {
    const model = await loadModel(await bertFile(GGMLType.Q8_0, 'mean'), { threads: 2 });
    try {
      const a = await model.embed(TEXTS[1]);
      expect(Math.hypot(...a)).toBeCloseTo(1, 6);
      const [b, c, d] = await Promise.all([model.embed(TEXTS[1]), model.embed(TEXTS[0]), model.embed(model.tokenizer.encode(TEXTS[1], { addSpecial: true }))]);
      expect(Array.from(b)).toEqual(Array.from(a));
      expect(Array.from(d)).toEqual(Array.from(a));
      expect(maxDelta(a, c)).toBeGreaterThan(1e-3);
      const raw = await model.embed(TEXTS[1], { normalize: false });
      const n = Math.hypot(...raw);
      raw.forEach((v, i) => expect(v / n).toBeCloseTo(a[i]!, 6));
    } finally {
      await model.dispose();
    }
  });

  it('typed errors: an encoder does not generate, a text generator does not embed, inputs past the batch are refused', async () => {
    const bert = await loadModel(await bertFile(GGMLType.Q8_0, 'mean'), { threads: 1, maxBatchTokens: 16 });
    const llama = await loadModel(await bundledModelPath(), { threads: 1 });
    try {
      await expect(bert.generate('hi').result).rejects.toMatchObject({ name: 'EngineError', code: 'UNSUPPORTED' });
      await expect(createEngine(bert).then((e) => e.generate({ prompt: 'hi' }))).rejects.toBeInstanceOf(EngineError);
      await expect(llama.embed('hi')).rejects.toMatchObject({ name: 'ModelError', code: 'UNSUPPORTED_OPERATION' });
      await expect(llama.embed('hi')).rejects.toBeInstanceOf(ModelError);
      await expect(bert.embed('word '.repeat(40))).rejects.toMatchObject({ name: 'EngineError', code: 'PROMPT_TOO_LONG' });
      await expect(bert.embed([])).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      expect((await bert.embed('still works')).length).toBe(128);
    } finally {
      await bert.dispose();
      await llama.dispose();
    }
  });
});

describe.skipIf(!haveVocab)('jina-bert-v2 files', () => {
  const small = (): SyntheticLlamaOptions => ({
    arch: 'jina-bert-v2', dim: 64, nLayers: 2, nHeads: 2, nKvHeads: 2, ffnDim: 128, type: GGMLType.F32, vocab: { metadataFrom: vocab }, seed: 3,
  });
  const zeros = (name: string, dims: number[]): LazyTensor => ({ name, dims, type: GGMLType.F32, data: () => new Uint8Array(4 * dims[0]! * dims[1]!) });
  /** A small jina-bert-v2 file in `layout` with its tensors edited, loaded. */
  const load = async (layout: SyntheticLlamaOptions['jina'], edit: (tensors: LazyTensor[]) => LazyTensor[]) => {
    const m = await synthesizeLlama({ ...small(), jina: layout });
    const path = join(dir, 'jina-edited.gguf');
    await writeLazyGGUFFile(path, m.metadata, edit([...m.tensors]));
    const model = await loadModel(path, { threads: 1 });
    await model.dispose();
  };
  it('each layout loads; what llama.cpp would not run (or we would misread) is a typed error naming the tensor', async () => {
    for (const layout of [{ ffn: 'fused' }, { ffn: 'split', code: true }, { ffn: 'ungated' }] as const) await load(layout, (t) => t);
    await expect(load({}, (t) => t.filter((x) => x.name !== 'token_types.weight'))).rejects.toMatchObject({ name: 'ModelError', code: 'MISSING_TENSOR', message: expect.stringMatching(/token_types/) });
    // a separate gate beside an ffn_up that holds one too
    await expect(load({ ffn: 'fused' }, (t) => [...t, zeros('blk.0.ffn_gate.weight', [64, 128])])).rejects.toMatchObject({ name: 'ModelError', message: expect.stringMatching(/layer 0: has ffn_gate, so ffn_up must have 128 rows, not 256/) });
    await expect(load({ code: true }, (t) => t.filter((x) => x.name !== 'blk.1.attn_k_norm.bias'))).rejects.toMatchObject({ name: 'ModelError', message: expect.stringMatching(/layer 1: needs attn_q_norm and attn_k_norm with their biases/) });
    await expect(load({ code: true }, (t) => t.filter((x) => x.name !== 'blk.0.attn_norm_2.bias'))).rejects.toMatchObject({ name: 'ModelError', message: expect.stringMatching(/attn_norm_2/) });
    await expect(load({}, (t) => t.map((x) => (x.name === 'blk.0.ffn_up.weight' ? zeros(x.name, [64, 384]) : x)))).rejects.toMatchObject({
      name: 'ModelError', code: 'BAD_TENSOR_SHAPE', message: expect.stringMatching(/expected \[64, 128\] or \[64, 256\]/),
    });
    await expect(load({ code: true }, (t) => t.map((x) => (x.name === 'blk.0.ffn_up.bias' ? { ...x, dims: [128], data: () => new Uint8Array(512) } : x)))).rejects.toMatchObject({
      name: 'ModelError', message: expect.stringMatching(/ffn_up.bias has 128 values for ffn_up's 256 rows/),
    });
  });
});

describe.skipIf(!haveVocab)('wasmforge embed', () => {
  const io = captureOutput();
  it('prints the vectors Model.embed gives, one per line with --lines; pooling and normalization options; usage errors', async () => {
    const path = await bertFile(GGMLType.Q8_0, 'mean');
    expect(await embedCli(['-m', path, '-t', '1', '--lines', '-'], async () => `${TEXTS[0]}\n\n${TEXTS[1]}\n`)).toBe(0);
    const printed = JSON.parse(io.out) as { dimensions: number; embeddings: number[][] };
    expect(printed.dimensions).toBe(128);
    const model = await loadModel(path, { threads: 1 });
    try {
      const want = await model.embedBatch(TEXTS);
      expect(printed.embeddings).toEqual(want.map((v) => Array.from(v)));
      io.out = '';
      expect(await embedCli(['-m', path, '-t', '1', '--pooling', 'cls', '--no-normalize', TEXTS[0]])).toBe(0);
      expect((JSON.parse(io.out) as { embeddings: number[][] }).embeddings[0]).toEqual(Array.from(await model.embed(TEXTS[0], { pooling: 'cls', normalize: false })));
    } finally {
      await model.dispose();
    }
    await expect(embedCli(['-m', path, '--pooling', 'max', 'x'])).rejects.toThrow(/--pooling/);
    await expect(embedCli([TEXTS[0]])).rejects.toThrow(/embedding model/);
  });
});
