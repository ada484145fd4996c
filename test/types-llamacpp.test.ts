// For every tensor type we write: a model written in that type by us is accepted by llama.cpp, and
// llama.cpp's next-token log-probs agree with what the reference forward pass computes from our
// own dequantization of the same file. That checks our block encoders against llama.cpp's decoders
// (and our decoders against both) on whole models, type by type.
//
// The model: dim 256 (K-quants need 256-element rows), 2 layers, 4 heads, 2 kv heads (GQA), ffn
// 512, stories260K's 512-token vocab, weights N(0, 0.02²). A plain random model's top logits are
// near-ties (top-1/top-2 gaps of 1e-4 nats occur), so two correct implementations disagree on its
// top-1 at some positions. Here token_embd has std 0.05 and output.weight holds the same values:
// the model leans to predicting its input token, its top-1 wins by at least ~0.2 nats, and top-1
// agreement measures whether llama.cpp computes the same model rather than rounding luck.
//
// llama.cpp runs with an F32 KV cache and without flash attention (its defaults, F16 K/V and F16
// accumulation in flash attention, would add ~2e-3 to every type). What remains is the rounding
// llama.cpp applies to activations before each dot product, which depends on the weight type.
// The bounds on max |Δ log-prob| (measured on this model, llama.cpp CPU, one thread; each bound
// is about twice the largest value seen, or more where the measured value is tiny):
// - F32: no activation rounding, only float32 summation order: measured 1.9e-6 → 2e-5.
// - F16 weights: activations rounded to F16 (unit 2^-11): measured 1.5e-3 → 5e-3.
// - BF16: activations rounded to BF16 (unit 2^-8, 8× F16's): measured 9.7e-3 → 2.5e-2.
// - 32-element block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4): activations quantized
//   to Q8_0/Q8_1 (8 bits per 32-block, step = block max / 127): measured 2.9e-2 .. 4.8e-2 → 8e-2.
// - K-quants: activations quantized to Q8_K (8 bits per 256-block, whose larger max coarsens the
//   step): measured 4.4e-2 .. 5.7e-2 → 1.1e-1.
// For Q8_0, IQ4_NL, Q2_K, Q4_K, Q5_K and Q6_K files, a reference that mimics that activation rounding (our
// Q8_0/Q8_K quantizers) matches llama.cpp to ~2e-6 at nearly every position: llama.cpp decodes our
// blocks exactly as our dequantizer does. (Not asserted: the rounding is discontinuous, so one
// activation on a rounding boundary, rounded differently by llama.cpp's SIMD code, moves all later
// positions; and with Q4_0 or MXFP4 token embeddings llama.cpp's row lookup itself differs slightly
// from its own matrix-product decoding of the same blocks.)
// A discrimination check shows the bounds are tight enough to matter: the F32 model's reference
// against llama.cpp on each ≤ 6-bit file (same seed, so the same weights before quantization)
// exceeds the bound, 1.4× for Q6_K up to 19× for Q2_K: llama.cpp computing with weights off by
// one quantization step would fail.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from '../src/model/synthetic.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType, typeName } from '../src/tensor/ggml-types.js';
import { disposeLlamaCpp, llamaCppLoad, llamaCppNextTokenLogits, llamaCppStatus, llamaCppTokenize, logSoftmax } from './oracle/llama-cpp.js';
import { loadLlamaReference } from './reference/llama-reference.js';

const vocabPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'models', 'stories260K.gguf');
const haveVocab = existsSync(vocabPath);
const llamaCpp = await llamaCppStatus();
const skipReason = !haveVocab ? `${vocabPath} not found` : !llamaCpp.available ? `node-llama-cpp unavailable: ${llamaCpp.reason}` : undefined;
if (skipReason) process.stderr.write(`types-llamacpp: skipped, ${skipReason}\n`);

const Q8_ACTIVATIONS = 8e-2;
const Q8K_ACTIVATIONS = 1.1e-1;
const CASES: { type: GGMLType; bound: number }[] = [
  { type: GGMLType.F32, bound: 2e-5 },
  { type: GGMLType.F16, bound: 5e-3 },
  { type: GGMLType.BF16, bound: 2.5e-2 },
  { type: GGMLType.Q8_0, bound: Q8_ACTIVATIONS },
  { type: GGMLType.Q4_0, bound: Q8_ACTIVATIONS },
  { type: GGMLType.Q4_1, bound: Q8_ACTIVATIONS },
  { type: GGMLType.Q5_0, bound: Q8_ACTIVATIONS },
  { type: GGMLType.Q5_1, bound: Q8_ACTIVATIONS },
  { type: GGMLType.IQ4_NL, bound: Q8_ACTIVATIONS },
  { type: GGMLType.MXFP4, bound: Q8_ACTIVATIONS },
  { type: GGMLType.Q2_K, bound: Q8K_ACTIVATIONS },
  { type: GGMLType.Q3_K, bound: Q8K_ACTIVATIONS },
  { type: GGMLType.Q4_K, bound: Q8K_ACTIVATIONS },
  { type: GGMLType.Q5_K, bound: Q8K_ACTIVATIONS },
  { type: GGMLType.Q6_K, bound: Q8K_ACTIVATIONS },
];
/** Types whose weight-quantization error must stand out above the bound (the discrimination check). */
const LOW_BIT = new Set([GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.IQ4_NL, GGMLType.MXFP4, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]);

const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends and her big red ball.';

interface Comparison {
  agreement: number;
  maxDelta: number;
}

function compare(a: Float32Array[], b: Float32Array[]): Comparison {
  let agree = 0;
  let maxDelta = 0;
  a.forEach((row, i) => {
    let ia = 0, ib = 0;
    for (let k = 0; k < row.length; k++) {
      if (row[k] > row[ia]) ia = k;
      if (b[i][k] > b[i][ib]) ib = k;
      maxDelta = Math.max(maxDelta, Math.abs(row[k] - b[i][k]));
    }
    if (ia === ib) agree++;
  });
  return { agreement: agree / a.length, maxDelta };
}

/** llama.cpp's log-probs with an exact (F32) KV cache and plain attention. */
async function llamaCppLogProbs(path: string, tokens: number[]): Promise<Float32Array[]> {
  return (await llamaCppNextTokenLogits(path, tokens, { kvCacheType: 'f32', flashAttention: false })).map(logSoftmax);
}

async function referenceLogProbs(path: string, tokens: number[]): Promise<Float32Array[]> {
  const ref = await loadLlamaReference(path, { maxSeq: tokens.length });
  return tokens.map((t, i) => logSoftmax(ref.forward(t, i)));
}

describe.skipIf(skipReason !== undefined)('every tensor type we write loads in llama.cpp and computes what our dequantization predicts', () => {
  let dir: string;
  let vocab: GGUFFile;
  let tokens: number[];
  let f32Reference: Float32Array[];
  const table: string[] = [];
  const model = (type: GGMLType, extra: Partial<SyntheticLlamaOptions> = {}): SyntheticLlamaOptions => ({
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 512, vocab: { metadataFrom: vocab }, type,
    embeddingStd: 0.05, outputFromEmbedding: true, seed: 42, ...extra,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wasmforge-types-'));
    const source = await fileSource(vocabPath);
    try {
      vocab = await readGGUF(source);
    } finally {
      await source.close();
    }
    const f32Path = join(dir, 'F32.gguf');
    await writeSyntheticLlama(f32Path, model(GGMLType.F32));
    tokens = (await llamaCppTokenize(f32Path, PROMPT, { addBos: true })).slice(0, 32);
    f32Reference = await referenceLogProbs(f32Path, tokens);
  });

  afterAll(async () => {
    if (table.length) process.stderr.write(`types-llamacpp (llama.cpp vs reference, ${tokens.length} positions):\n${table.join('\n')}\n`);
    await disposeLlamaCpp();
    await rm(dir, { recursive: true, force: true });
  });

  it('tokenizes a prompt of ~32 tokens', () => {
    expect(tokens.length).toBeGreaterThanOrEqual(30);
    expect(tokens[0]).toBe(1);
  });

  for (const { type, bound } of CASES) {
    it(`${typeName(type)}: accepted by llama.cpp, top-1 agreement >= 95%, max |Δ log-prob| <= ${bound}`, async () => {
      const path = join(dir, `${typeName(type)}.gguf`);
      if (type !== GGMLType.F32) await writeSyntheticLlama(path, model(type));
      expect(await llamaCppLoad(path)).toMatchObject({ vocabSize: 512 });
      const ours = await referenceLogProbs(path, tokens);
      const theirs = await llamaCppLogProbs(path, tokens);
      const { agreement, maxDelta } = compare(ours, theirs);
      const vsF32 = compare(f32Reference, theirs).maxDelta;
      table.push(`  ${typeName(type).padEnd(7)} top-1 ${(agreement * 100).toFixed(1).padStart(5)}%  max|Δ| ${maxDelta.toExponential(2)} (bound ${bound})  vs F32 weights ${vsF32.toExponential(2)}`);
      expect(agreement).toBeGreaterThanOrEqual(0.95);
      expect(maxDelta).toBeLessThanOrEqual(bound);
      // The comparison sees the weights' own quantization: against the F32 model it fails.
      if (LOW_BIT.has(type)) expect(vsF32).toBeGreaterThan(bound);
    });
  }

  it('qwen2 (q/k/v biases, NeoX RoPE) in Q4_K and tied embeddings in Q8_0 agree too', async () => {
    for (const [label, opts, bound] of [
      ['Q4_K qwen2', model(GGMLType.Q4_K, { arch: 'qwen2' }), Q8K_ACTIVATIONS],
      ['Q8_0 tied', model(GGMLType.Q8_0, { tiedEmbeddings: true, outputFromEmbedding: false }), Q8_ACTIVATIONS],
    ] as const) {
      const path = join(dir, `${label.replace(' ', '-')}.gguf`);
      await writeSyntheticLlama(path, opts);
      const { agreement, maxDelta } = compare(await referenceLogProbs(path, tokens), await llamaCppLogProbs(path, tokens));
      table.push(`  ${label.padEnd(11)} top-1 ${(agreement * 100).toFixed(1).padStart(5)}%  max|Δ| ${maxDelta.toExponential(2)} (bound ${bound})`);
      expect(agreement).toBeGreaterThanOrEqual(0.95);
      expect(maxDelta).toBeLessThanOrEqual(bound);
    }
  });
});
