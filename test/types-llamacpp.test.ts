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
// llama.cpp applies to activations before each dot product, which depends on the weight type
// (F16/BF16 weights: activations rounded to F16/BF16; 32-element block types: Q8_0/Q8_1; K-quants:
// Q8_K), plus llama.cpp's own float rounding, which depends on the CPU's kernels. So the bound on
// max |Δ log-prob| between llama.cpp and the reference is derived in the same run, per type:
//   bound = A + N
// - A, the activation rounding's own effect: our WASM backend rounds activations exactly as
//   llama.cpp does (op by op to ~1e-7), is deterministic on every CPU, and computes from the same
//   blocks; A = max |Δ| between it and the reference. For a type the WASM backend does not run
//   (MXFP4), A is the largest A measured for the types with its activation format.
// - N, llama.cpp's own noise on this CPU (test/oracle/noise.ts): how far its log-probs move when
//   the prompt goes a token at a time or the norm weights move by a float32-rounding-sized amount.
// Measured (AMD EPYC, zen4 and haswell kernels): max |Δ| is 0.4-0.6 of its bound on every type.
// For Q8_0, IQ4_NL, Q2_K, Q4_K, Q5_K and Q6_K files, llama.cpp and our WASM backend agree to
// ~2e-6 at nearly every position on some CPUs: llama.cpp decodes our blocks exactly as our
// dequantizer does.
// A discrimination check shows the bounds are tight enough to matter: the F32 model's reference
// against llama.cpp on each ≤ 6-bit file (same seed, so the same weights before quantization)
// exceeds the bound (1.5× for Q6_K, 2-20× for the rest): llama.cpp computing with weights off by one
// quantization step would fail.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { disposeLlamaCpp, llamaCppLoad, llamaCppNextTokenLogits, llamaCppStatus, llamaCppTokenize, logSoftmax } from './oracle/llama-cpp.js';
import { loadLlamaReference } from './reference/llama-reference.js';
import { loadModel } from '../src/model/model.js';
import { createBackend } from '../src/backend/registry.js';
import { maxAbsDelta, perturbationNoise } from './oracle/noise.js';

const vocabPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'models', 'stories260K.gguf');
const haveVocab = existsSync(vocabPath);
const llamaCpp = await llamaCppStatus();
const skipReason = !haveVocab ? `${vocabPath} not found` : !llamaCpp.available ? `node-llama-cpp unavailable: ${llamaCpp.reason}` : undefined;
if (skipReason) process.stderr.write(`types-llamacpp: skipped, ${skipReason}\n`);

/** The types we write, MXFP4 after the other 32-block types (it borrows their A). */
const CASES: GGMLType[] = [
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
  GGMLType.IQ4_NL, GGMLType.MXFP4, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
];
/** The format llama.cpp rounds a type's activations to before a dot product (Q8_1 counts as Q8_0: the same 8-bit blocks). */
const activationsOf = (type: GGMLType): GGMLType => {
  const v = typeTraits(type)!.vecDotType!;
  return v === GGMLType.Q8_1 ? GGMLType.Q8_0 : v;
};
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

/** llama.cpp's own noise on its log-probs `theirs` for this file (see the header). */
async function llamaCppNoise(path: string, tokens: number[], theirs: Float32Array[], dir: string): Promise<number> {
  const oneByOne = maxAbsDelta(theirs, (await llamaCppNextTokenLogits(path, tokens, { kvCacheType: 'f32', flashAttention: false, batchSize: 1 })).map(logSoftmax));
  const perturbed = await perturbationNoise(path, dir, async (copy) => maxAbsDelta(theirs, await llamaCppLogProbs(copy, tokens)));
  return Math.max(oneByOne, perturbed.max);
}

async function wasmLogProbs(path: string, tokens: number[]): Promise<Float32Array[]> {
  const m = await loadModel(path, { threads: 2, kvCacheType: 'f32' });
  try {
    return (await m.evaluate(tokens)).map(logSoftmax);
  } finally {
    await m.dispose();
  }
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

  /** Weight types the WASM backend runs (the others borrow A, see the header). */
  let wasmTypes: ReadonlySet<GGMLType>;
  beforeAll(async () => {
    const be = await createBackend('wasm', { threads: 1 });
    wasmTypes = be.capabilities.weightTypes;
    await be.dispose();
  });

  /** The largest activation-rounding effect A measured per activation format. */
  const activationEffect = new Map<GGMLType, number>();

  /** Reference vs llama.cpp on one file, with its derived bound; returns what the table shows. */
  async function check(label: string, path: string, activations: GGMLType, wasmRuns: boolean) {
    const ours = await referenceLogProbs(path, tokens);
    const theirs = await llamaCppLogProbs(path, tokens);
    const { agreement, maxDelta } = compare(ours, theirs);
    let a: number;
    if (wasmRuns) {
      a = maxAbsDelta(await wasmLogProbs(path, tokens), ours);
      activationEffect.set(activations, Math.max(a, activationEffect.get(activations) ?? 0));
    } else {
      a = activationEffect.get(activations) ?? NaN;
      expect(a, `no type with ${typeName(activations)} activations measured before ${label}`).not.toBeNaN();
    }
    const noise = await llamaCppNoise(path, tokens, theirs, dir);
    const bound = a + noise;
    table.push(`  ${label.padEnd(11)} top-1 ${(agreement * 100).toFixed(1).padStart(5)}%  max|Δ| ${maxDelta.toExponential(2)}  bound ${bound.toExponential(2)} = A ${a.toExponential(2)} + N ${noise.toExponential(2)}`);
    return { theirs, agreement, maxDelta, bound };
  }

  for (const type of CASES) {
    const activations = activationsOf(type);
    it(`${typeName(type)}: accepted by llama.cpp, top-1 agreement >= 95%, max |Δ log-prob| within the activation rounding plus llama.cpp's noise`, async () => {
      const path = join(dir, `${typeName(type)}.gguf`);
      if (type !== GGMLType.F32) await writeSyntheticLlama(path, model(type));
      expect(await llamaCppLoad(path)).toMatchObject({ vocabSize: 512 });
      const { theirs, agreement, maxDelta, bound } = await check(typeName(type), path, activations, wasmTypes.has(type));
      expect(agreement).toBeGreaterThanOrEqual(0.95);
      expect(maxDelta).toBeLessThanOrEqual(bound);
      // The comparison sees the weights' own quantization: against the F32 model it fails.
      const vsF32 = compare(f32Reference, theirs).maxDelta;
      table.push(`              F32 weights vs llama.cpp ${vsF32.toExponential(2)} (${(vsF32 / bound).toFixed(1)}× the bound)`);
      if (LOW_BIT.has(type)) expect(vsF32).toBeGreaterThan(bound);
    });
  }

  it('qwen2 (q/k/v biases, NeoX RoPE) in Q4_K and tied embeddings in Q8_0 agree too', async () => {
    for (const [label, opts, activations] of [
      ['Q4_K qwen2', model(GGMLType.Q4_K, { arch: 'qwen2' }), activationsOf(GGMLType.Q4_K)],
      ['Q8_0 tied', model(GGMLType.Q8_0, { tiedEmbeddings: true, outputFromEmbedding: false }), activationsOf(GGMLType.Q8_0)],
    ] as const) {
      const path = join(dir, `${label.replace(' ', '-')}.gguf`);
      await writeSyntheticLlama(path, opts);
      const { agreement, maxDelta, bound } = await check(label, path, activations, true);
      expect(agreement).toBeGreaterThanOrEqual(0.95);
      expect(maxDelta).toBeLessThanOrEqual(bound);
    }
  });
});
