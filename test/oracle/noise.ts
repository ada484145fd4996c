// llama.cpp's own numerical noise, measured in the same run on the same CPU: the yardstick for
// every bound that compares our numbers with llama.cpp's.
//
// Why: llama.cpp picks a CPU kernel variant per machine (haswell, skylakex, icelake, zen4, ...)
// and each sums in its own order. Two correct implementations then differ by float rounding, and
// where a value is stored at low precision (8-bit activation blocks, f16/bf16 activations, the
// f16 KV cache) an ulp of difference now and then flips a rounding decision by half a step, which
// spreads through the layers. How far it spreads depends on the model, its tensor types and the
// CPU's kernels, so a bound measured on one machine is not a bound on another (issue 9: 0.33 on
// an AVX2 machine against a bound set at twice 0.17 measured on an AVX-512 one).
//
// The yardstick is how far llama.cpp's own output moves under a rounding-sized disturbance of the
// same computation on this CPU:
// - the same prompt in batches of one token (other kernels: mat×vec instead of mat×mat, the
//   one-row flash-attention kernel), and
// - copies of the model file whose F32 norm weights are each scaled by (1 + r·ε), r uniform in
//   [-1, 1] (seeded), ε = √n units of float32 rounding (2^-24) for a row of n: the typical relative
//   difference between two float32 summation orders over such a row. Norm weights scale every
//   activation that feeds a matrix product, so this disturbs every layer the way another kernel's
//   rounding does. A tiny model has few rounding boundaries, and sometimes no run crosses one; then
//   ε grows 4× (at most twice more) until one does, since the yardstick is the effect of a flip,
//   not the chance of one.
// Each measurement returns the largest deviation seen. Callers bound ours-vs-llama.cpp by a
// stated multiple of it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readGGUF } from '../../src/gguf/reader.js';
import { bufferSource } from '../../src/io/byte-source.js';
import { GGMLType } from '../../src/tensor/ggml-types.js';
import { quantizeModel } from '../../src/model/quantize-model.js';
import { fileSource } from '../../src/runtime/file-source.js';
import { writeLazyGGUFFile } from '../../src/runtime/file-sink.js';
import { llamaCppNextTokenLogits, llamaCppUnload, type LlamaCppContextOptions } from './llama-cpp.js';

/** Perturbed copies per measurement. */
const RUNS = 4;
/** How many times ε may grow 4× when no run moved the output. */
const ESCALATIONS = 2;

/** Write a copy of `path` whose F32 norm weights are scaled by (1 + r·scale·√n·2^-24), r seeded in [-1, 1]. */
export async function writeNormPerturbed(path: string, outPath: string, seed: number, scale = 1): Promise<void> {
  const bytes = new Uint8Array(readFileSync(path));
  const file = await readGGUF(bufferSource(bytes));
  let state = (seed * 2654435761) >>> 0;
  let touched = 0;
  for (const t of file.tensors) {
    if (t.type !== GGMLType.F32 || !t.name.endsWith('norm.weight')) continue;
    const values = new Float32Array(bytes.buffer, bytes.byteOffset + t.fileOffset, t.nElements);
    const epsilon = scale * Math.sqrt(t.dims[0]) * 2 ** -24;
    for (let i = 0; i < values.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0; // LCG: plenty for a sign and a size
      values[i] *= 1 + (2 * (state / 2 ** 32) - 1) * epsilon;
    }
    touched++;
  }
  if (touched === 0) throw new Error(`${path}: no F32 norm weights to perturb`);
  writeFileSync(outPath, bytes);
}

export interface Noise {
  /** Largest deviation seen over all runs. */
  max: number;
  /** Each run's deviation, labelled. */
  runs: { label: string; deviation: number }[];
}

/**
 * Run `deviation` (how far llama.cpp's result for a model file moves from its result for the
 * original) over norm-perturbed copies of `path`, growing ε until some run moves. Copies go to
 * `dir` and are unloaded from llama.cpp afterwards.
 */
export async function perturbationNoise(path: string, dir: string, deviation: (copy: string) => Promise<number>): Promise<Noise> {
  const runs: Noise['runs'] = [];
  for (let step = 0, scale = 1; step <= ESCALATIONS; step++, scale *= 4) {
    for (let seed = 1; seed <= RUNS; seed++) {
      const copy = join(dir, `${path.replace(/[^A-Za-z0-9_.-]/g, '_')}.noise-${scale}-${seed}.gguf`);
      await writeNormPerturbed(path, copy, seed, scale);
      try {
        runs.push({ label: `norms ×(1±${scale}√n·2^-24) #${seed}`, deviation: await deviation(copy) });
      } finally {
        await llamaCppUnload(copy);
      }
    }
    if (runs.some((r) => r.deviation > 0)) break;
  }
  return { max: Math.max(...runs.map((r) => r.deviation)), runs };
}

export function maxAbsDelta(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let p = 0; p < a.length; p++) for (let i = 0; i < a[p].length; i++) m = Math.max(m, Math.abs(a[p][i] - b[p][i]));
  return m;
}

/**
 * llama.cpp's logit noise for `tokens` on `path`: the largest max |Δlogit| between its logits
 * (`base`, computed with `opts` in one batch) and the same prompt in batches of one token, or on
 * norm-perturbed copies of the file.
 */
export async function llamaCppLogitNoise(path: string, tokens: number[], opts: LlamaCppContextOptions, base: Float32Array[], dir: string): Promise<Noise> {
  const oneByOne = maxAbsDelta(base, await llamaCppNextTokenLogits(path, tokens, { ...opts, batchSize: 1 }));
  const perturbed = await perturbationNoise(path, dir, async (copy) => maxAbsDelta(base, await llamaCppNextTokenLogits(copy, tokens, opts)));
  const runs = [{ label: 'batches of 1', deviation: oneByOne }, ...perturbed.runs];
  return { max: Math.max(oneByOne, perturbed.max), runs };
}

/**
 * Whether llama.cpp's F16 matmuls here keep their activations f32. ggml rounds them to f16 (the F16
 * vec_dot_type), except where its AMX buffer type takes F16 weights (CPUs with AMX: Sapphire Rapids
 * and later), whose AVX-512 kernel multiplies f16 weights by the f32 activations
 * (ggml-cpu/amx/mmq.cpp, tinygemm_kernel_avx<float, ggml_fp16_t, float>).
 */
export function llamaCppF16KeepsF32Activations(): boolean {
  try {
    return /\bamx_tile\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

/**
 * A copy of a GGUF file with its F16 tensors as F32 (exact): the same weights, whose matmuls take
 * f32 activations (the F32 vec_dot_type) where the F16 file's round them to f16.
 */
export async function writeF32Copy(path: string, outPath: string): Promise<void> {
  const source = await fileSource(path);
  try {
    const m = await quantizeModel(source, GGMLType.F32);
    await writeLazyGGUFFile(outPath, m.metadata, m.tensors);
  } finally {
    await source.close();
  }
}
