// Backend op conformance, in the spirit of llama.cpp's test-backend-ops: the ops of the Backend
// contract (src/backend/backend.ts) on every backend the registry offers, in each of its
// configurations, over tensor types and awkward shapes on seeded random inputs, through the
// contract only (allocate / upload / await read, Tensor handles). Each case is held to three
// checks:
//  (a) independent float64 math (the reference dequantizer, plain f64 arithmetic, and where ggml
//      fixes f32 steps an f32 emulation of them), with tight bounds; the reference backend is held
//      to them too;
//  (b) every configuration of one backend gives the same bits: the WASM backend on 1, 2 and 3
//      threads, its relaxed-emulated build (the relaxed-SIMD code paths with the one relaxed
//      instruction emulated exactly) and, where this runtime runs it, the real relaxed build;
//  (c) the scalar reference backend (src/backend/reference/), within bounds derived per op.
//
// (a) bounds, g = backend output, e = the f64 result:
//  - matmul: with the activations the kernel sees (F16/BF16 weights round them to f16/bf16, as
//    ggml's vec_dot_type; block types quantize them to Q8_0 per llama.cpp's x86 path, or Q8_K by
//    the reference quantizer, Q4_1/Q5_1 dotting their min with Q8_1's s = f16(d * sum q)): only f32
//    accumulation and scale rounding are left, |g - e| <= 2e-6 sum|w x| + 1e-6 |e| (the "exact
//    integer path": the integer dots are exact). The reference backend computes with the f32
//    activations, so it takes this check for the float types only. Against the f32 activations
//    the quantization's own bound comes on top: sum |w| |dx| (+ |min s| 2^-11 for Q4_1/Q5_1).
//  - getRows: the reference dequantizer, bit for bit. add, addBias: one f32 rounding of the exact
//    sum, bit for bit. storeKV: every cache byte (f16: round to nearest even; q8_0 / q4_0: the
//    reference quantizers' blocks, src/tensor/quantize.ts, bit-exact with ggml's *_ref; untouched
//    slots stay).
//  - rmsNorm: 4e-7 |e| + 1e-7. swiglu, silu, gelu: exp's polynomial is good to ~2 ulp, but exp(z)
//    inherits the f32 rounding of z, which costs |z| ulp: 1e-6 |e| (1 + |z|), against e rounded
//    to f32 (infinite past f32's range); where exp(-z) overflows f32, x / (1 + exp(-z)) is 0, off
//    by all of its tiny (< 3e-37 |x / z|) value.
//  - geglu: ggml's f16 GELU, in f64 from the f16-rounded gate, rounded to f16, times up (one f32
//    rounding): bit for bit, except where the kernel's f32 exp form (swiglu's bound) may land on
//    the other side of an f16 rounding boundary: then either neighbour. Gates <= -10 give 0, >= 10
//    the gate itself, exactly.
//  - scale: f32(x * f32(factor)), bit for bit. softcap: cap tanh(x / cap) against ggml's f32 steps
//    (x times f32(1 / cap), tanhf, times cap): tanhf within 4 ulp (musl's, which the kernels use;
//    measured 2.1), the argument's two roundings (tanh's relative condition number is <= 1) and the
//    product's: 5.5 2^-23 |e|, plus cap 2^-148 in the subnormal range.
//  - argmax: the first index of the row's largest value, exactly.
//  - rope: theta_i is built by i f32 multiplications as ggml does (relative error ~(i + 2) ulp):
//    per pair (|xa| + |xb|) (|pos| / ff_i (i + 2) 1.2e-7 + 2e-6) max(1, |cos| + |sin|) + 1e-7,
//    ff_i the pair's frequency factor (1 without); dims past ropeDims pass through bit for bit.
//  - routeExperts: the ids exactly (logits without near-ties, and exact ties); the weights within
//    their f32 steps' relative error, z = max - logit: exp(f32(-z)) (|z| + 1) 2^-24, the f64 sum's
//    (mean_p z + 1) 2^-24, 1/sum and the product: (|z| + mean_p z + 4) 2^-24; renormalized, 1/sum
//    cancels and the chosen ones' sum (largest z among them Z) adds (Z + used) 2^-24 instead.
//  - matmulRouted: each slot the bits of a plain matmul of its expert's rows over its input row;
//    per expert, matmul's checks over its slots. combineExperts: ggml's f32 steps (products, then
//    added in slot order) bit for bit where the backend takes them; every backend within
//    2 used 2^-24 sum_j |y_j w_j| of the f64 sum.
//  - attention: 2e-6 sum_p(p_p |v_p|) (1 + headDim/16) + 1e-7 over an f32 cache, or an f16 cache
//    whose head dim is a multiple of 16 (both read the same f16 values); scores past 10 (the
//    large-score cases; the others stay under 4) add the f32 rounding of the score itself,
//    headDim 2^-26 max|score| max|V| ((c)'s calibrated term). Other head dims over an f16 cache
//    follow ggml's one-row flash attention (f16 Q, the running V sum rounded to f16): an f32
//    emulation of its steps, which a backend that takes ggml's f32 steps (the WASM one) matches
//    bit for bit; the reference backend takes the same roundings in f64, within (c)'s 2^-9 max|V|.
//    Soft-capped scores c = softcap tanh(s / softcap) carry tanhf's 4 ulp and 4 roundings (the
//    f32 scale / softcap, s, the product): 0.75 2^-20 |c| each, which the softmax at most doubles:
//    + 1.5 2^-20 max|c| max|V| (in (c) too). With a softcap the one-row emulation's correctly
//    rounded tanh is not the kernel's tanhf, so an accumulator step may round to the other f16
//    neighbour: (c)'s 2^-9 max|V| there instead of bit equality.
//    Over a q8_0 / q4_0 cache the math reads what the op defines: K and V as their blocks hold them
//    (dequantized exactly) and each query head row quantized to Q8_0 by the reference quantizer
//    (ggml's flash attention quantizes Q to K's vec_dot_type); the integer block dots are exact and
//    sum_b f32(isum_b) (d_k d_q) rounds no worse than an f32 dot of headDim terms, so the f32
//    path's bounds hold unchanged, in (a) and (c). Left out, Q's quantization alone misses them
//    88-fold: a backend that skipped it fails.
//    ALiBi adds b = slope_h * -|i - j| to each score, the math with the closed-form slopes
//    2^(-maxBias k / n) (k = h + 1 below the power of two n <= nHeads, else odd multiples of 1/2):
//    a backend's f32 slope m^k (m rounded once, then the power) is off by up to (k + 2) 2^-24
//    relative, k <= nHeads, and s + b rounds once more; a score error d moves the output by at
//    most 2 d max|V|: + (nHeads + 4) 2^-23 max|b| max|V| (in (c) too). The one-row emulation adds
//    ggml's f32 slope and bias to each score and stays bit-exact.
// (c) bounds, g = backend output, r = reference output:
//  - matmul, per output element: (a) activation rounding |dx| <= amax/254 per 32- or 256-block,
//    min(worst case sum |w dx|, 6 sigma of sum w dx for independent uniform dx) + Q4_1/Q5_1's s
//    term + (K + 4) 2^-24 sum |w x| for any f32 summation order, computed from the data, so a
//    single tiny dot product (where an aggregate metric is all cancellation) is judged fairly.
//    Outputs of >= 64 elements also meet NMSE = sum (g-r)^2 / sum r^2 <= 5e-4 for block types
//    (test-backend-ops' bound; Q8 activations give ~2e-5 here), 1e-9 for the float types.
//  - getRows, add, addBias, storeKV: bit-identical.
//  - rmsNorm: f32 sum of squares (relative error ~ sqrt(n) 2^-24) and 3 roundings: 3e-6 |r|.
//  - swiglu: 3e-6 |r| + 1e-7 |up|. geglu: (a)'s f16 neighbour where (a) allows one, else bit for
//    bit. scale, argmax, routeExperts ids: bit-identical. softcap and routeExperts weights: (a)'s
//    bound plus the reference's own f32 rounding, 2^-23 |r|; combineExperts: (a)'s bound (which
//    holds that rounding already). matmulRouted: matmul's bounds per expert over its slots.
//  - rope: f32 theta carries up to ~pos * d/2 * 2^-24 rad of error (random-walk in practice):
//    mscale |pair| (2e-6 + pos d/2 2^-26); dims past ropeDims bit-identical.
//  - attention: max|V| (4e-6 + headDim 2^-26 max|score|), for f32 caches and f16 caches whose head
//    dim is a multiple of 16; other head dims over an f16 cache round Q and the running V sum to
//    f16, the reference from f64 values and the kernel from f32 ones: each accumulation step may
//    land on the other side of an f16 rounding boundary (2^-11 relative), so max|V| 2^-9.
//    Sliding windows take the same bounds over the keys inside the window; keys before it are
//    garbage and blocks holding only such keys are -1 in the block table, so reading them fails.
// The (c) bounds were calibrated against an f32, ggml-ordered emulation of each op, which lands at
// <= 0.17 of every bound (<= 0.66 for matmul's 6-sigma bound), while a slip such as a wrong GQA head
// mapping or a 1e-3 error in one element fails them. Matmul must also be batch invariant: a token's
// row is the same bits alone as inside a batch.
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { alibiSlopes, asF32, asWeight, kvElementType, MAX_TOP_K, subTensor, type AttentionArgs, type Backend, type ExpertRouting, type KVCacheType, type RopeParams, type Tensor, type WeightTensor } from '../src/backend/backend.js';
import { BackendError } from '../src/backend/errors.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/backend/reference/half.js';
import { ropeAngle } from '../src/backend/reference/reference-backend.js';
import { BACKEND_KINDS, createBackend, type BackendKind } from '../src/backend/registry.js';
import type { WasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { createWebGPUBackend, type WebGPUBackend } from '../src/backend/webgpu/webgpu-backend.js';
import { dequantize } from '../src/tensor/dequant.js';
import { GGMLType, rowBytes, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';
import { FLOAT_TYPES, modelLikeWeights, randomBlocks, rng, shuffle, uniform, WEIGHT_TYPES } from './helpers/random-tensors.js';
import { emulatedKernels, ensureWasmKernels } from './helpers/wasm-builds.js';
import { loadIntoBackend } from './reference/backend-graph.js';
import { loadLlamaReference } from './reference/llama-reference.js';
import { useSoftwareVulkanUnlessSet } from './helpers/webgpu.js';

ensureWasmKernels();
const { createWasmBackend } = await import('../src/backend/wasm/create-wasm-backend.js');

// ---------------------------------------------------------------------------------------------
// The backends under test: every kind the registry creates, each in its configurations. A
// configuration that fails to load fails the suite (a build problem must not pass as a skip); only
// the real relaxed-SIMD build may be missing, where this runtime cannot run it.

type TestedKind = Exclude<BackendKind, 'auto'>;

interface Config {
  readonly label: string;
  readonly kind: TestedKind;
  /**
   * Takes ggml's f32 steps where an op's definition leaves them to the implementation: matmul
   * quantizes block-type activations to Q8_0 / Q8_K, and one-row attention over an f16 cache runs in
   * f32. The (a) checks of those exact paths apply; the reference backend computes them in f64.
   */
  readonly ggmlSteps: boolean;
  /** Kept for the whole suite (the WASM backend: its workers start once), or made fresh for each case (the reference: its buffers go with it). */
  readonly keep: boolean;
  /** May be missing in this runtime (the real relaxed-SIMD build). */
  readonly optional?: boolean;
  /** May flush subnormal f32 values to zero, as WGSL allows GPUs to: an expected subnormal may come back as a zero. */
  readonly flushesSubnormals?: boolean;
  readonly create: () => Promise<Backend>;
}

const wasmConfig = (label: string, create: () => Promise<Backend>, optional = false): Config => ({ label, kind: 'wasm', ggmlSteps: true, keep: true, optional, create });

const CONFIGS_BY_KIND: Record<TestedKind, Config[]> = {
  reference: [{ label: 'reference', kind: 'reference', ggmlSteps: false, keep: false, create: () => createBackend('reference') }],
  // On a software adapter in CI (SwiftShader through Dawn): a missing adapter fails the suite, and so
  // does one without subgroups (the shuffles in matmul's and the norms' reductions must give the
  // bits of the path without).
  webgpu: [
    {
      label: 'webgpu', kind: 'webgpu', ggmlSteps: false, keep: true, flushesSubnormals: true,
      create: async () => {
        useSoftwareVulkanUnlessSet();
        const b = (await createBackend('webgpu')) as WebGPUBackend;
        if (!b.features.subgroups) throw new Error(`the WebGPU adapter ${b.adapter} offers no subgroups: the path with them would go untested`);
        return b;
      },
    },
    { label: 'webgpu subgroups off', kind: 'webgpu', ggmlSteps: false, keep: true, flushesSubnormals: true, create: () => (useSoftwareVulkanUnlessSet(), createWebGPUBackend({ features: { subgroups: false } })) },
  ],
  wasm: [
    ...[1, 2, 3].map((threads) => wasmConfig(`wasm threads=${threads}`, () => createBackend('wasm', { threads, relaxedSimd: false }))),
    wasmConfig('wasm relaxed-emulated', () => createWasmBackend({ threads: 1, relaxedSimd: false, kernels: emulatedKernels() })),
    ...[1, 3].map((threads) => wasmConfig(`wasm threads=${threads} relaxed`, () => createBackend('wasm', { threads, relaxedSimd: true }), true)),
  ],
};
// A new backend adds its configurations above; until then it fails here rather than go untested.
const untested = BACKEND_KINDS.filter((k) => k !== 'auto' && !CONFIGS_BY_KIND[k as TestedKind]);
if (untested.length > 0) throw new Error(`backends without conformance configurations: ${untested.join(', ')}`);

const REFERENCE = CONFIGS_BY_KIND.reference[0];
const kept = new Map<Config, Backend>();
const CONFIGS: Config[] = [];
for (const config of Object.values(CONFIGS_BY_KIND).flat()) {
  if (!config.keep) {
    CONFIGS.push(config);
    continue;
  }
  try {
    kept.set(config, await config.create());
    CONFIGS.push(config);
  } catch (e) {
    if (!config.optional || (e as BackendError).code !== 'RELAXED_SIMD_UNAVAILABLE') throw e;
    console.warn(`${config.label} unavailable in this runtime: ${(e as Error).message}`);
  }
}

afterAll(async () => {
  for (const be of kept.values()) await be.dispose();
});

async function withBackend<T>(config: Config, f: (be: Backend) => Promise<T>): Promise<T> {
  const held = kept.get(config);
  if (held) return f(held);
  const be = await config.create();
  try {
    return await f(be);
  } finally {
    await be.dispose();
  }
}

describe('backends', () => {
  it('every registry kind loads in its configurations', async () => {
    const wasm = CONFIGS.filter((c) => c.kind === 'wasm').map((c) => kept.get(c)!);
    // threads 1, 2, 3, and the relaxed-emulated build (which loads in the baseline's place)
    expect(wasm.slice(0, 4).map((be) => [be.nThreads, be.name])).toEqual([[1, 'wasm-baseline'], [2, 'wasm-baseline'], [3, 'wasm-baseline'], [1, 'wasm-baseline']]);
    for (const be of wasm.slice(4)) expect(be.name).toBe('wasm-relaxed'); // the real relaxed build, where it runs
    expect(await withBackend(REFERENCE, async (be) => be.name)).toBe('reference');
  });
});

// ---------------------------------------------------------------------------------------------
// Tensors through the contract.

/** A new tensor holding `data` (f32, i32 or raw bytes). */
function put(be: Backend, data: Float32Array | Int32Array | Uint8Array): Tensor {
  const type = data instanceof Float32Array ? GGMLType.F32 : data instanceof Int32Array ? GGMLType.I32 : GGMLType.I8;
  const t = be.allocate(type, [data.length]);
  be.upload(t, data);
  return t;
}

/** A new f32 tensor of n values (contents undefined). */
const f32Out = (be: Backend, n: number): Tensor => be.allocate(GGMLType.F32, [n]);

/**
 * A weight as models load theirs (usage 'weight': the WASM backend interleaves quantized rows in
 * fours where each matrix has whole groups of 4 rows); `experts`: a stack of that many matrices.
 */
function putWeight(be: Backend, type: GGMLType, rows: number, cols: number, bytes: Uint8Array, experts?: number): WeightTensor {
  const shape = experts === undefined ? [cols, rows] : [cols, rows / experts, experts];
  const w = asWeight(be.allocate(type, shape, 'weight'), cols, rows);
  be.upload(w, bytes);
  return w;
}

const readF32 = async (be: Backend, t: Tensor, n: number): Promise<Float32Array> => asF32(await be.read(t, 0, 4 * n));

// ---------------------------------------------------------------------------------------------
// Running one case everywhere, and the three checks.

type Bits = Float32Array | Uint8Array;
interface Run<T> {
  readonly config: Config;
  readonly out: T;
}

const skippedTypes = new Set<string>();

/** `op` on a backend of every configuration; with a weight or KV cache type, on those whose capabilities list it (the others are named once). */
async function onEveryBackend<T>(op: (be: Backend, config: Config) => Promise<T>, weightType?: GGMLType, kvType?: KVCacheType): Promise<Run<T>[]> {
  const runs: Run<T>[] = [];
  for (const config of CONFIGS) {
    await withBackend(config, async (be) => {
      const lacks = weightType !== undefined && !be.capabilities.weightTypes.has(weightType) ? `${typeName(weightType)} weights`
        : kvType !== undefined && !be.capabilities.kvTypes.has(kvType) ? `a ${kvType} KV cache` : undefined;
      if (lacks) {
        const note = `${config.label} does not run ${lacks}: skipping it there`;
        if (!skippedTypes.has(note)) console.warn(note);
        skippedTypes.add(note);
        return;
      }
      runs.push({ config, out: await op(be, config) });
    });
  }
  return runs;
}

const bytesOf = (a: Bits): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function expectSameBits(label: string, got: Bits, want: Bits): void {
  const a = bytesOf(got), b = bytesOf(want);
  let first = a.length === b.length ? -1 : Math.min(a.length, b.length);
  for (let i = 0; i < b.length && first < 0; i++) if (a[i] !== b[i]) first = i;
  expect(first, `${label}: first differing byte (of ${b.length})`).toBe(-1);
}

/** (b) Every configuration of one backend gives the same bits. */
function expectConfigsAgree(label: string, runs: readonly Run<Bits>[]): void {
  for (const kind of new Set(runs.map((r) => r.config.kind))) {
    const group = runs.filter((r) => r.config.kind === kind);
    for (const r of group.slice(1)) expectSameBits(`${label}: ${r.config.label} vs ${group[0].config.label}`, r.out, group[0].out);
  }
}

/** Largest |got - want| / tol(i) (<= 1 passes; an infinite tol skips the element), and where. */
function worstRatio(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number): { ratio: number; at: number } {
  let ratio = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    // equal infinities are equal; a NaN on either side is as far off as can be
    const e = got[i] === want[i] ? 0 : Number.isNaN(got[i]) || Number.isNaN(want[i]) ? Infinity : Math.abs(got[i] - want[i]);
    const q = e === 0 ? 0 : e / tol(i);
    if (q > ratio) { ratio = q; at = i; }
  }
  return { ratio, at };
}

function expectWithin(label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  const { ratio, at } = worstRatio(got, want, tol);
  expect(ratio, `${label}: element ${at} got ${got[at]} want ${want[at]} (tol ${tol(at)})`).toBeLessThanOrEqual(1);
}

const isSubnormal = (v: number): boolean => v !== 0 && Math.abs(v) < 2 ** -126;

/** `want` as a backend that flushes subnormals may give it: each expected subnormal that came back as a zero taken as that zero. */
function flushedWant<T extends Float32Array | Float64Array>(config: Config, got: ArrayLike<number>, want: T): T {
  if (!config.flushesSubnormals) return want;
  const out = want.slice() as T;
  for (let i = 0; i < out.length; i++) if (isSubnormal(out[i]) && got[i] === 0) out[i] = got[i];
  return out;
}

/** (a) Every backend against independent math. */
function expectMath(label: string, runs: readonly Run<Float32Array>[], want: ArrayLike<number>, tol: (i: number) => number): void {
  for (const r of runs) expectWithin(`${label} ${r.config.label} vs f64 math`, r.out, flushedWant(r.config, r.out, Float64Array.from(want)), tol);
}

function referenceOf<T>(runs: readonly Run<T>[]): T {
  const ref = runs.find((r) => r.config === REFERENCE);
  if (!ref) throw new Error('the reference backend did not run this case');
  return ref.out;
}

/** (c) Every other backend against the reference backend: bit for bit, or within tol(i) of it. */
function expectNearReference(label: string, runs: readonly Run<Bits>[], tol: 'exact' | ((i: number) => number)): void {
  const ref = referenceOf(runs);
  for (const r of runs.filter((r) => r.config !== REFERENCE)) {
    const want = ref instanceof Float32Array ? flushedWant(r.config, r.out as Float32Array, ref) : ref;
    if (tol === 'exact') expectSameBits(`${label} ${r.config.label} vs reference`, r.out, want);
    else expectWithin(`${label} ${r.config.label} vs reference`, r.out as Float32Array, want as Float32Array, tol);
  }
}

function nmse(got: Float32Array, want: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : num / den;
}

const fr = Math.fround;
const f16Round = (x: number): number => f16BitsToF32(f32ToF16Bits(x));

const bf16Scratch = new Float32Array(1), bf16Bits = new Uint32Array(bf16Scratch.buffer);
/** x as an f32 rounded to bf16 (ties to even) on its bits, as ggml does; written apart from the reference backend's. */
function bf16Round(x: number): number {
  bf16Scratch[0] = x;
  const u = bf16Bits[0];
  if ((u & 0x7f800000) !== 0x7f800000) bf16Bits[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  return bf16Scratch[0];
}

/** Round half to even, as the kernels (and llama.cpp's x86 quantizer) do. */
function roundEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------------------------------------
// matmul

type ActFormat = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q8_k';

/** ggml's vec_dot_type of a weight type: what its activations become before the dot product. */
function activationFormat(type: GGMLType): ActFormat {
  if (type === GGMLType.F32) return 'f32';
  if (type === GGMLType.F16) return 'f16';
  if (type === GGMLType.BF16) return 'bf16';
  return typeTraits(type)!.blockSize === 256 ? 'q8_k' : 'q8_0';
}

/**
 * Activations as the kernels see them: F16/BF16 weights get x rounded to f16/bf16; block types get
 * it quantized, dequantized here: Q8_0 per llama.cpp's x86 path (d = amax/127 stored as f16,
 * q = nearest(x * 127/amax)), Q8_K by the reference quantizer. Also each element's rounding bound,
 * and per 32-block Q8_1's s = f16(d * sum q) with the unrounded d (what Q4_1/Q5_1 dot their min with).
 */
function kernelActivations(x: Float32Array, cols: number, fmt: Exclude<ActFormat, 'f32'>): { deq: Float64Array; err: Float64Array; s81: Float64Array } {
  const deq = new Float64Array(x.length), err = new Float64Array(x.length), s81 = new Float64Array(x.length / 32);
  if (fmt === 'f16' || fmt === 'bf16') {
    x.forEach((v, i) => {
      deq[i] = fmt === 'f16' ? f16Round(v) : bf16Round(v);
      err[i] = Math.abs(v) * (fmt === 'f16' ? 2 ** -11 : 2 ** -8) + (fmt === 'f16' ? 2 ** -25 : 0); // + half an f16 subnormal step
    });
    return { deq, err, s81 };
  }
  if (fmt === 'q8_k') {
    const q = quantize(GGMLType.Q8_K, x, cols);
    deq.set(dequantize(GGMLType.Q8_K, q, x.length));
    const dv = new DataView(q.buffer, q.byteOffset);
    // |x - q*d| <= d/2 (d = 1/iscale, f32), plus slack
    for (let b = 0; b < x.length / 256; b++) err.fill(Math.abs(dv.getFloat32(b * 292, true)) * 0.57, b * 256, b * 256 + 256);
    return { deq, err, s81 };
  }
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
    const d = f16Round(fr(amax / 127)), id = amax ? fr(127 / amax) : 0;
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      const qi = roundEven(fr(x[b * 32 + i] * id));
      deq[b * 32 + i] = qi * d;
      sum += qi;
    }
    s81[b] = f16Round(fr(fr(amax / 127) * sum));
    // |x - q*d_f16| <= d/2 + 127 * |d_f16 - d| <= d * (0.5 + 127 * 2^-11), plus slack
    err.fill(d * 0.57, b * 32, b * 32 + 32);
  }
  return { deq, err, s81 };
}

/** The min (f16 at byte 2 of each block) of each Q4_1/Q5_1 row's 32-blocks, [row][block]. */
function blockMins(type: GGMLType, q: Uint8Array, rows: number, cols: number): Float64Array {
  const nb = cols / 32, rb = rowBytes(type, cols), bb = typeTraits(type)!.blockBytes;
  return Float64Array.from({ length: rows * nb }, (_, i) => {
    const at = Math.floor(i / nb) * rb + (i % nb) * bb + 2;
    return f16BitsToF32(q[at] | (q[at + 1] << 8));
  });
}

interface MatmulCase {
  readonly rows: number;
  readonly cols: number;
  readonly nTokens: number;
  readonly weights: Uint8Array;
  readonly x: Float32Array;
  /** Tokens whose row must be the same bits computed alone (default: the last of a batch). */
  readonly alone?: readonly number[];
}

/** (a) for matmul: the exact integer path with the activations the kernels see, and the f32-activation result within their quantization bound. */
function expectMatmulMath(label: string, type: GGMLType, c: MatmulCase, runs: readonly Run<Float32Array>[]): void {
  const { rows, cols, nTokens, weights, x } = c;
  const fmt = activationFormat(type);
  const wd = dequantize(type, weights, rows * cols);
  const act = fmt === 'f32' ? undefined : kernelActivations(x, cols, fmt);
  const nb = cols / 32;
  const mins = type === GGMLType.Q4_1 || type === GGMLType.Q5_1 ? blockMins(type, weights, rows, cols) : undefined;
  const exact = new Float64Array(nTokens * rows); // with the activations the kernel sees
  const ideal = new Float64Array(nTokens * rows); // with the f32 activations
  const mag = new Float64Array(nTokens * rows); // sum |w x|, scales the f32 rounding
  const qerr = new Float64Array(nTokens * rows); // bound of the activation-rounding error
  for (let t = 0; t < nTokens; t++) {
    for (let r = 0; r < rows; r++) {
      let e = 0, s = 0, m = 0, b = 0;
      for (let col = 0; col < cols; col++) {
        const w = wd[r * cols + col], xi = x[t * cols + col];
        s += w * xi;
        m += Math.abs(w * xi);
        if (act) {
          // Q4_1/Q5_1: the min term is min * s (below), not min * the dequantized activations
          e += (mins ? w - mins[r * nb + (col >> 5)] : w) * act.deq[t * cols + col];
          b += Math.abs(w) * act.err[t * cols + col];
        }
      }
      if (act && mins) {
        for (let blk = 0; blk < nb; blk++) {
          const mn = mins[r * nb + blk], sb = act.s81[t * nb + blk];
          e += mn * sb;
          b += Math.abs(mn * sb) * 2 ** -11; // s rounded to f16
        }
      }
      exact[t * rows + r] = act ? e : s;
      ideal[t * rows + r] = s;
      mag[t * rows + r] = m;
      qerr[t * rows + r] = b;
    }
  }
  const floatType = fmt === 'f32' || fmt === 'f16' || fmt === 'bf16';
  // f32 accumulation and scale rounding only
  expectMath(`${label} exact path`, runs.filter((r) => floatType || r.config.ggmlSteps), exact, (i) => 2e-6 * mag[i] + 1e-6 * Math.abs(exact[i]) + 1e-30);
  // against the unquantized activations: the quantization error bound on top
  expectMath(`${label} f32 activations`, runs, ideal, (i) => qerr[i] + 2e-6 * mag[i] + 1e-30);
}

/** (c) bound per output element (see the header): activation rounding plus f32 accumulation. */
function matmulTolerance(type: GGMLType, c: MatmulCase): Float64Array {
  const { rows, cols, nTokens, weights, x } = c;
  const w = dequantize(type, weights, rows * cols);
  const bs = typeTraits(type)!.blockSize;
  const qBlock = bs === 256 ? 256 : 32;
  // per activation element: max rounding error and its variance under the type's activation format
  const maxErr = new Float64Array(x.length), variance = new Float64Array(x.length);
  for (let t = 0; t < nTokens; t++) {
    for (let b = 0; b < cols; b += qBlock) {
      let amax = 0;
      for (let col = b; col < Math.min(b + qBlock, cols); col++) amax = Math.max(amax, Math.abs(x[t * cols + col]));
      for (let col = b; col < Math.min(b + qBlock, cols); col++) {
        const half = bs === 1 ? 0 : amax / 254; // float types: the reference rounds like the kernel
        maxErr[t * cols + col] = half;
        variance[t * cols + col] = (half * half) / 3; // uniform on [-half, half]
      }
    }
  }
  // Q4_1/Q5_1: |m| * |s| * 2^-11 per block, |s| <= |block sum of x| + 16 amax/127 (quantization)
  const mins = type === GGMLType.Q4_1 || type === GGMLType.Q5_1 ? blockMins(type, weights, rows, cols) : undefined;
  const sTerm = (t: number, r: number): number => {
    let e = 0;
    for (let b = 0; b < cols / 32; b++) {
      let sum = 0, amax = 0;
      for (let col = b * 32; col < b * 32 + 32; col++) {
        sum += x[t * cols + col];
        amax = Math.max(amax, Math.abs(x[t * cols + col]));
      }
      e += Math.abs(mins![r * (cols / 32) + b]) * (Math.abs(sum) + (16 * amax) / 127) * 2 ** -11;
    }
    return e;
  };
  const tol = new Float64Array(nTokens * rows);
  for (let t = 0; t < nTokens; t++) {
    for (let r = 0; r < rows; r++) {
      let worst = 0, v = 0, mag = 0;
      for (let col = 0; col < cols; col++) {
        const wi = w[r * cols + col], i = t * cols + col;
        worst += Math.abs(wi) * maxErr[i];
        v += wi * wi * variance[i];
        mag += Math.abs(wi * x[i]);
      }
      tol[t * rows + r] = Math.min(worst, 6 * Math.sqrt(v)) + (mins ? sTerm(t, r) : 0) + (cols + 4) * 2 ** -24 * mag + 1e-30;
    }
  }
  return tol;
}

const nmseBound = (type: GGMLType): number => (FLOAT_TYPES.includes(type) ? 1e-9 : 5e-4);

/** (c) for matmul: per element, and in aggregate for outputs of 64 elements or more. */
function expectMatmulNearReference(label: string, type: GGMLType, c: MatmulCase, runs: readonly Run<Float32Array>[]): void {
  const tol = matmulTolerance(type, c);
  expectNearReference(label, runs, (i) => tol[i]);
  if (c.rows * c.nTokens < 64) return;
  const ref = referenceOf(runs);
  for (const r of runs.filter((r) => r.config !== REFERENCE)) expect(nmse(r.out, ref), `${label} ${r.config.label}: NMSE`).toBeLessThanOrEqual(nmseBound(type));
}

async function checkMatmul(label: string, type: GGMLType, c: MatmulCase): Promise<void> {
  const { rows, cols, nTokens } = c;
  const alone = c.alone ?? (nTokens > 1 ? [nTokens - 1] : []);
  const runs = await onEveryBackend(async (be, config) => {
    const w = putWeight(be, type, rows, cols, c.weights), x = put(be, c.x), out = f32Out(be, nTokens * rows);
    be.matmul(out, w, x, nTokens);
    const all = await readF32(be, out, nTokens * rows);
    for (const t of alone) {
      const one = f32Out(be, rows);
      be.matmul(one, w, subTensor(x, 4 * t * cols, GGMLType.F32, [cols]), 1);
      expectSameBits(`${label} ${config.label}: token ${t} alone vs in the batch`, await readF32(be, one, rows), all.subarray(t * rows, (t + 1) * rows));
    }
    return all;
  }, type);
  expectConfigsAgree(label, runs);
  expectMatmulMath(label, type, c, runs);
  expectMatmulNearReference(label, type, c, runs);
}

const MATMUL_SHAPES: { rows: number; blocks: number; nTokens: number }[] = [
  { rows: 1, blocks: 1, nTokens: 1 }, // one row, one block
  { rows: 7, blocks: 1, nTokens: 3 },
  { rows: 13, blocks: 3, nTokens: 17 },
  { rows: 67, blocks: 2, nTokens: 1 },
  { rows: 67, blocks: 5, nTokens: 64 },
  { rows: 130, blocks: 16, nTokens: 3 },
  // whole groups of 4 rows: the WASM backend reads these weights interleaved
  { rows: 12, blocks: 3, nTokens: 5 },
  { rows: 64, blocks: 2, nTokens: 64 },
];

/** Row lengths of the small grid: any length for the float types, one and three blocks for the rest. */
const gridCols = (type: GGMLType): number[] => (FLOAT_TYPES.includes(type) ? [1, 13, 64] : [1, 3].map((n) => n * typeTraits(type)!.blockSize));

describe('matmul', () => {
  for (const type of WEIGHT_TYPES) {
    const name = typeName(type);
    const bs = typeTraits(type)!.blockSize;
    const unit = bs === 1 ? 32 : bs; // "one block" for the float types: 32 columns
    const shapes = MATMUL_SHAPES.map((s) => ({ rows: s.rows, cols: s.blocks * unit, nTokens: s.nTokens }));
    // float types take any row length: stories260K's ffn_down is F32 with 172 columns
    if (bs === 1) shapes.push({ rows: 64, cols: 172, nTokens: 3 }, { rows: 9, cols: 45, nTokens: 17 });
    for (const [si, { rows, cols, nTokens }] of shapes.entries()) {
      it(`${name} ${rows}x${cols}, ${nTokens} tokens (model-like weights)`, async () => {
        const weights = modelLikeWeights(type, rows, cols, rng(1000 + type * 31 + si));
        await checkMatmul(`matmul ${name} ${rows}x${cols} nTokens=${nTokens}`, type, { rows, cols, nTokens, weights, x: uniform(nTokens * cols, rng(7 + si)) });
      });
    }
    it(`${name} 13x${3 * unit}, 17 tokens (random valid blocks)`, async () => {
      const weights = randomBlocks(type, 13, 3 * unit, rng(2000 + type));
      await checkMatmul(`matmul ${name} random blocks`, type, { rows: 13, cols: 3 * unit, nTokens: 17, weights, x: uniform(17 * 3 * unit, rng(99)) });
    });
    // quantized activations of 70 tokens x 16384 cols (~1.2 MB as Q8) outgrow the fixed scratch: chunked
    it(`${name} 5x16384, 70 tokens (large activation buffer)`, async () => {
      const weights = modelLikeWeights(type, 5, 16384, rng(2500 + type));
      await checkMatmul(`matmul ${name} large`, type, { rows: 5, cols: 16384, nTokens: 70, weights, x: uniform(70 * 16384, rng(123)) });
    });
    for (const cols of gridCols(type)) {
      for (const rows of [1, 3, 17]) {
        it(`${name} ${rows}x${cols}, 1, 5 and 64 tokens (uniform weights)`, async () => {
          const r = rng(3000 + type * 1000 + cols + rows);
          const weights = quantize(type, uniform(rows * cols, r), cols);
          for (const nTokens of [1, 5, 64]) {
            await checkMatmul(`matmul ${name} ${rows}x${cols} nTokens=${nTokens}`, type, { rows, cols, nTokens, weights, x: uniform(nTokens * cols, r, -2, 2) });
          }
        });
      }
    }
  }

  it('Q4_0, Q8_0 and Q4_K at a real layer shape (37x2048, 64 tokens)', async () => {
    for (const type of [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K]) {
      const r = rng(4000 + type);
      const weights = quantize(type, uniform(37 * 2048, r, -0.05, 0.05), 2048);
      await checkMatmul(`matmul ${typeName(type)} layer shape`, type, { rows: 37, cols: 2048, nTokens: 64, weights, x: uniform(64 * 2048, r) });
    }
  });

  it('more tokens than the activation scratch holds: chunked, each token the same bits alone', async () => {
    const r = rng(4100);
    const type = GGMLType.Q8_0, rows = 8, cols = 8192, nTokens = 130; // the WASM backend's 1 MiB scratch holds ~99 such tokens
    const weights = quantize(type, uniform(rows * cols, r), cols);
    await checkMatmul('matmul Q8_0 past the scratch', type, { rows, cols, nTokens, weights, x: uniform(nTokens * cols, r), alone: [0, 98, 99, 129] });
  });

  it('F16/BF16 weights round their activations to f16/bf16 exactly, edge values included', async () => {
    // A 1x1 weight of 1.0: out[t] is the rounded activation itself. Ties, the f16 subnormal range,
    // the overflow threshold (65520), f32 subnormals, infinities and NaN.
    const u = 2 ** -11, b = 2 ** -8;
    const edges = [
      0, -0, 1, 1 + u, 1 + 3 * u, -(1 + u), 1 + 2 ** -24, 65504, 65519.99, 65520, -65520, 1e38, 3.4e38, Infinity, -Infinity, NaN,
      2 ** -14, 2 ** -14 - 2 ** -25, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 5 * 2 ** -25, -(3 * 2 ** -25), 1e-10, 1e-40, -1e-40,
      1 + b, 1 + 3 * b, 255.5, 257, 2 ** -126, 3 * 2 ** -149,
    ];
    const r = rng(4200);
    const x = Float32Array.from([...edges, ...uniform(61, r, -1e3, 1e3), ...uniform(40, r, -1e-6, 1e-6)]);
    for (const [type, one, round] of [[GGMLType.F16, Uint8Array.of(0x00, 0x3c), f16Round], [GGMLType.BF16, Uint8Array.of(0x80, 0x3f), bf16Round]] as const) {
      const runs = await onEveryBackend(async (be) => {
        const out = f32Out(be, x.length);
        be.matmul(out, putWeight(be, type, 1, 1, one), put(be, x), x.length);
        return readF32(be, out, x.length);
      }, type);
      expectConfigsAgree(`matmul ${typeName(type)} rounding`, runs);
      // (a) pins every output, NaN included, so (c) follows; a sum that starts at +0 turns -0 into +0, hence === rather than Object.is
      for (const { config, out } of runs) {
        x.forEach((v, i) => {
          const ok = out[i] === fr(round(v)) || (Number.isNaN(v) && Number.isNaN(out[i])) || (!!config.flushesSubnormals && out[i] === 0 && (isSubnormal(v) || isSubnormal(fr(round(v)))));
          expect(ok, `${typeName(type)} ${config.label}: round(${v}) = ${out[i]}, want ${round(v)}`).toBe(true);
        });
      }
    }
  });

  it('matmulShared: several weights over one input give the bits of one matmul each', async () => {
    // Six Q4_0 parts (more than one op carries), a Q8_0 and a Q6_K part between them, odd row counts
    // (partial 4-row groups at every part boundary), decode and a small batch.
    const cols = 256;
    const r = rng(4300);
    const shapes = [
      [GGMLType.Q4_0, 37], [GGMLType.Q8_0, 9], [GGMLType.Q4_0, 6], [GGMLType.Q6_K, 5], [GGMLType.Q4_0, 5], [GGMLType.Q4_0, 3], [GGMLType.Q4_0, 1], [GGMLType.Q4_0, 13],
    ] as const;
    const parts = shapes.map(([type, rows]) => ({ type, rows, weights: quantize(type, uniform(rows * cols, r, -0.05, 0.05), cols) }));
    for (const nTokens of [1, 6]) {
      const x = uniform(nTokens * cols, r);
      const label = `matmulShared nTokens=${nTokens}`;
      const runs = await onEveryBackend(async (be, config) => {
        const xt = put(be, x);
        const shared = parts.map((p) => ({ w: putWeight(be, p.type, p.rows, cols, p.weights), out: f32Out(be, nTokens * p.rows) }));
        be.matmulShared(shared, xt, nTokens);
        const outs = await Promise.all(shared.map((p) => readF32(be, p.out, nTokens * p.w.rows)));
        for (const [i, p] of shared.entries()) {
          const single = f32Out(be, nTokens * p.w.rows);
          be.matmul(single, p.w, xt, nTokens);
          expectSameBits(`${label} ${config.label}: part ${i} vs its own matmul`, outs[i], await readF32(be, single, nTokens * p.w.rows));
        }
        return outs;
      });
      for (const [i, p] of parts.entries()) {
        const partRuns = runs.map((run) => ({ config: run.config, out: run.out[i] }));
        const c: MatmulCase = { rows: p.rows, cols, nTokens, weights: p.weights, x };
        const partLabel = `${label} part ${i} (${typeName(p.type)} x ${p.rows})`;
        expectConfigsAgree(partLabel, partRuns);
        expectMatmulMath(partLabel, p.type, c, partRuns);
        expectMatmulNearReference(partLabel, p.type, c, partRuns);
      }
    }
  });

  it('rejects unsupported types and inconsistent shapes', async () => {
    await onEveryBackend(async (be, config) => {
      const mem = be.allocate(GGMLType.I8, [1024]);
      const weight = (type: GGMLType, cols: number, rowBytes: number): WeightTensor =>
        ({ ...mem, type, shape: [cols, 1], rows: 1, cols, rowBytes, bytes: rowBytes });
      const typed = config.kind === 'wasm'; // the reference backend throws plain RangeErrors for shapes
      const unsupported = () => be.matmul(mem, weight(GGMLType.IQ2_XS, 256, 74), mem, 1);
      expect(unsupported, config.label).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_TYPE' }));
      const notBlocks = () => be.matmul(mem, weight(GGMLType.Q4_0, 40, 18), mem, 1);
      const wrongRowBytes = () => be.matmul(mem, weight(GGMLType.Q4_0, 32, 20), mem, 1);
      expect(notBlocks, config.label).toThrow(typed ? /divisible by 32/ : undefined);
      expect(wrongRowBytes, config.label).toThrow(/rowBytes/);
      if (typed) for (const f of [unsupported, notBlocks, wrongRowBytes]) expect(f, config.label).toThrow(BackendError);
      return 0;
    });
  });
});

// ---------------------------------------------------------------------------------------------
// getRows

async function checkGetRows(label: string, type: GGMLType, table: Uint8Array, rows: number, cols: number, ids: Int32Array): Promise<void> {
  const runs = await onEveryBackend(async (be) => {
    const out = f32Out(be, ids.length * cols);
    be.getRows(out, putWeight(be, type, rows, cols, table), put(be, ids), ids.length);
    return readF32(be, out, ids.length * cols);
  }, type);
  const all = dequantize(type, table, rows * cols);
  const want = new Float32Array(ids.length * cols);
  ids.forEach((id, t) => want.set(all.subarray(id * cols, (id + 1) * cols), t * cols));
  for (const r of runs) expectSameBits(`${label} ${r.config.label} vs the reference dequantizer`, r.out, want);
  expectConfigsAgree(label, runs);
  expectNearReference(label, runs, 'exact');
}

describe('getRows', () => {
  for (const type of WEIGHT_TYPES) {
    const name = typeName(type);
    const bs = typeTraits(type)!.blockSize;
    const unit = bs === 1 ? 32 : bs;
    for (const [blocks, nTokens] of [[1, 1], [3, 3], [2, 17]] as const) {
      const cols = blocks * unit, rows = 37;
      it(`${name} cols=${cols}, ${nTokens} ids`, async () => {
        const r = rng(5000 + type * 7 + nTokens);
        const table = nTokens === 3 ? modelLikeWeights(type, rows, cols, r) : randomBlocks(type, rows, cols, r);
        const ids = Int32Array.from({ length: nTokens }, (_, t) => (t === 0 ? rows - 1 : t === 1 ? 0 : Math.floor(r() * rows)));
        if (nTokens > 3) ids[5] = ids[2]; // a repeated id
        await checkGetRows(`getRows ${name} cols=${cols} nTokens=${nTokens}`, type, table, rows, cols, ids);
      });
    }
    const cols = FLOAT_TYPES.includes(type) ? 13 : 2 * bs;
    it(`${name} cols=${cols}, 9 rows, ids 8 0 3 3 5 (weights of scale 3)`, async () => {
      const table = quantize(type, uniform(9 * cols, rng(5500 + type), -3, 3), cols);
      await checkGetRows(`getRows ${name} cols=${cols}`, type, table, 9, cols, Int32Array.of(8, 0, 3, 3, 5));
    });
  }

  it('rejects ids outside the table', async () => {
    await onEveryBackend(async (be, config) => {
      const w = putWeight(be, GGMLType.F32, 2, 2, new Uint8Array(16));
      const outside = () => be.getRows(f32Out(be, 2), w, put(be, Int32Array.of(2)), 1);
      expect(outside, config.label).toThrow(/outside/);
      if (config.kind === 'wasm') expect(outside, config.label).toThrow(BackendError);
      return 0;
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Mixture of experts: routing, the routed matmul, combining

const putRouting = (be: Backend, ids: Int32Array, weights: Float32Array, nTokens: number, used: number): ExpertRouting =>
  ({ ids: put(be, ids), weights: put(be, weights), nTokens, used });

/** Router logits without near-ties: each row a shuffle of values at least 3 / nExperts apart in [offset - 3, offset + 3]. */
function routerLogits(nTokens: number, nExperts: number, offset: number, r: () => number): Float32Array {
  const step = 6 / nExperts, out = new Float32Array(nTokens * nExperts);
  for (let t = 0; t < nTokens; t++) {
    shuffle(Array.from({ length: nExperts }, (_, i) => i), r).forEach((rank, e) => { out[t * nExperts + e] = offset - 3 + step * (rank + 0.25 + 0.5 * r()); });
  }
  return out;
}

/** (a), (b) and (c) for routeExperts: llama.cpp's softmax gating in f64 over the f32 logits. */
async function checkRoute(label: string, logits: Float32Array, nTokens: number, nExperts: number, used: number, normalize: boolean): Promise<{ ids: number[]; weights: Float64Array }> {
  const runs = await onEveryBackend(async (be) => {
    const routing = putRouting(be, new Int32Array(nTokens * used), new Float32Array(nTokens * used), nTokens, used);
    be.routeExperts(routing, put(be, logits), nExperts, normalize);
    return { ids: await be.read(routing.ids), weights: await readF32(be, routing.weights, nTokens * used) };
  });
  const ids: number[] = [], weights = new Float64Array(nTokens * used), tol = new Float64Array(nTokens * used);
  for (let t = 0; t < nTokens; t++) {
    const l = Array.from(logits.subarray(t * nExperts, (t + 1) * nExperts));
    const max = Math.max(...l), e = l.map((v) => Math.exp(v - max)), sum = e.reduce((a, b) => a + b, 0);
    const p = e.map((v) => v / sum);
    const top = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b).slice(0, used);
    const total = Math.max(top.reduce((a, i) => a + p[i], 0), 2 ** -14);
    // (a)'s relative error, |z| = max - logit: the chosen ones' largest, and the mean under p
    const zTop = max - l[top[used - 1]], zMean = l.reduce((a, v, i) => a + p[i] * (max - v), 0);
    top.forEach((id, j) => {
      ids.push(id);
      weights[t * used + j] = normalize ? p[id] / total : p[id];
      tol[t * used + j] = ((normalize ? zTop + used : zMean) + max - l[id] + 4) * 2 ** -24 * weights[t * used + j];
    });
  }
  const idRuns = runs.map((r) => ({ config: r.config, out: r.out.ids }));
  const weightRuns = runs.map((r) => ({ config: r.config, out: r.out.weights }));
  for (const r of idRuns) expect(Array.from(new Int32Array(r.out.buffer, r.out.byteOffset, nTokens * used)), `${label} ${r.config.label}: ids`).toEqual(ids);
  expectConfigsAgree(`${label} ids`, idRuns);
  expectNearReference(`${label} ids`, idRuns, 'exact');
  expectMath(`${label} weights`, weightRuns, weights, (i) => tol[i]);
  expectConfigsAgree(`${label} weights`, weightRuns);
  const ref = referenceOf(weightRuns);
  expectNearReference(`${label} weights`, weightRuns, (i) => tol[i] + 2 ** -23 * Math.abs(ref[i]));
  return { ids, weights };
}

describe('routeExperts', () => {
  // [nTokens, nExperts, used, normalize, logit offset]: offsets of +-100 overflow or underflow exp without the max subtracted
  const cases = [[1, 8, 2, true, 0], [5, 8, 2, false, 0], [37, 64, 6, true, 0], [3, 60, 4, false, 100], [2, 4, 4, true, 0], [3, 1, 1, true, 0], [17, 128, 8, true, -100]] as const;
  for (const [ci, [nTokens, nExperts, used, normalize, offset]] of cases.entries()) {
    it(`${nTokens} tokens, top ${used} of ${nExperts}${normalize ? ', renormalized' : ''}${offset ? `, logits around ${offset}` : ''}`, async () => {
      const logits = routerLogits(nTokens, nExperts, offset, rng(7600 + ci));
      await checkRoute(`routeExperts nTokens=${nTokens} ${used}/${nExperts}`, logits, nTokens, nExperts, used, normalize);
    });
  }

  it('ties: the lower id first, across the cut too', async () => {
    const logits = Float32Array.from([[1, 3, 3, 0, 3], [3, 1, 3, 3, 2], [0, 0, 0, 0, 0], [4, 2, 2, 2, 1]].flat());
    for (const normalize of [false, true]) {
      const { ids } = await checkRoute(`routeExperts ties normalize=${normalize}`, logits, 4, 5, 3, normalize);
      expect(ids).toEqual([1, 2, 4, 0, 2, 3, 0, 1, 2, 0, 1, 2]);
    }
  });

  it('a renormalizing sum under 2^-14 is taken as 2^-14 (top 1 of 20000 equal experts)', async () => {
    const { ids, weights } = await checkRoute('routeExperts clamp', new Float32Array(20000).fill(0.5), 1, 20000, 1, true);
    expect([ids[0], weights[0]]).toEqual([0, 2 ** 14 / 20000]);
  });
});

const ROUTED_TYPES: readonly GGMLType[] = [GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_K];
/** Eight experts of 13 rows; the last is never chosen. */
const ROUTED = { nExperts: 8, rows: 13, cols: 256 };
const ROUTED_CASES = [
  { name: 'decode, 4 of 8 experts', nTokens: 1, used: 4, hot: undefined },
  { name: '37 tokens, 3 of 8 experts (~16 slots each)', nTokens: 37, used: 3, hot: undefined },
  { name: '70 tokens, 2 of 8, expert 3 in every token (70 slots: two staging chunks of 64)', nTokens: 70, used: 2, hot: 3 },
];

/** Each token's `used` distinct experts of 0..nExperts-2, `hot` (if any) among them at slot t % used. */
function routedIds(nTokens: number, used: number, nExperts: number, hot: number | undefined, r: () => number): Int32Array {
  const ids = new Int32Array(nTokens * used);
  for (let t = 0; t < nTokens; t++) {
    const chosen = shuffle(Array.from({ length: nExperts - 1 }, (_, e) => e).filter((e) => e !== hot), r).slice(0, used);
    if (hot !== undefined) chosen[t % used] = hot;
    ids.set(chosen, t * used);
  }
  return ids;
}

describe('matmulRouted', () => {
  const { nExperts, rows, cols } = ROUTED;
  for (const type of ROUTED_TYPES) {
    const name = typeName(type);
    for (const [ci, c] of ROUTED_CASES.entries()) {
      for (const inputPerSlot of [false, true]) {
        it(`${name} ${c.name}, ${inputPerSlot ? 'an input row per slot' : 'an input row per token'}`, async () => {
          const r = rng(7800 + type * 10 + ci);
          const { nTokens, used } = c, slots = nTokens * used;
          const weights = modelLikeWeights(type, nExperts * rows, cols, r);
          const ids = routedIds(nTokens, used, nExperts, c.hot, r);
          const x = uniform((inputPerSlot ? slots : nTokens) * cols, r);
          const source = (s: number) => (inputPerSlot ? s : Math.floor(s / used));
          const label = `matmulRouted ${name} nTokens=${nTokens} used=${used} inputPerSlot=${inputPerSlot}`;
          const runs = await onEveryBackend(async (be, config) => {
            const w = putWeight(be, type, nExperts * rows, cols, weights, nExperts), xt = put(be, x), out = f32Out(be, slots * rows);
            be.matmulRouted(out, w, nExperts, xt, putRouting(be, ids, new Float32Array(slots), nTokens, used), inputPerSlot);
            const got = await readF32(be, out, slots * rows);
            // each slot: a plain matmul of its expert's rows over its one input row, the same bits
            const plain = f32Out(be, slots * rows);
            for (let s = 0; s < slots; s++) {
              const expert = asWeight(subTensor(w, ids[s] * rows * w.rowBytes, type, [cols, rows]), cols, rows);
              be.matmul(subTensor(plain, 4 * s * rows, GGMLType.F32, [rows]), expert, subTensor(xt, 4 * source(s) * cols, GGMLType.F32, [cols]), 1);
            }
            expectSameBits(`${label} ${config.label}: vs a plain matmul per slot`, got, await readF32(be, plain, slots * rows));
            return got;
          }, type);
          expectConfigsAgree(label, runs);
          // per expert, matmul's (a) and (c) over its slots
          const rb = rowBytes(type, cols);
          for (let e = 0; e < nExperts; e++) {
            const mine = Array.from({ length: slots }, (_, s) => s).filter((s) => ids[s] === e);
            if (mine.length === 0) continue;
            const gather = (a: Float32Array, width: number, at: (s: number) => number) => Float32Array.from(mine.flatMap((s) => Array.from(a.subarray(at(s) * width, (at(s) + 1) * width))));
            const mc: MatmulCase = { rows, cols, nTokens: mine.length, weights: weights.slice(e * rows * rb, (e + 1) * rows * rb), x: gather(x, cols, source) };
            const expertRuns = runs.map((run) => ({ config: run.config, out: gather(run.out, rows, (s) => s) }));
            expectMatmulMath(`${label} expert ${e}`, type, mc, expertRuns);
            expectMatmulNearReference(`${label} expert ${e}`, type, mc, expertRuns);
          }
        });
      }
    }
  }

  it('rejects expert ids outside 0..nExperts-1', async () => {
    await onEveryBackend(async (be, config) => {
      const w = putWeight(be, GGMLType.F32, 4, 32, new Uint8Array(4 * 4 * 32)), x = put(be, new Float32Array(32)), out = f32Out(be, 4);
      for (const bad of [2, -1]) {
        const outside = () => be.matmulRouted(out, w, 2, x, putRouting(be, Int32Array.of(0, bad), new Float32Array(2), 1, 2), false);
        expect(outside, `${config.label} expert ${bad}`).toThrow(/names expert/);
        if (config.kind === 'wasm') expect(outside, `${config.label} expert ${bad}`).toThrow(BackendError);
      }
      return 0;
    });
  });
});

describe('weights in the backend\'s own layout (usage \'weight\')', () => {
  // The WASM backend interleaves quantized weights' rows in fours (src/backend/wasm/interleave.ts);
  // the same bytes allocated as plain data keep the file's layout. Every op must give the same bits
  // either way (the plain layout is what the cases above check against f64 math and the reference).
  const QUANTIZED = WEIGHT_TYPES.filter((t) => !FLOAT_TYPES.includes(t));
  const plainWeight = (be: Backend, type: GGMLType, rows: number, cols: number, bytes: Uint8Array): WeightTensor => {
    const w = asWeight(be.allocate(type, [cols, rows]), cols, rows);
    be.upload(w, bytes);
    return w;
  };
  for (const type of QUANTIZED) {
    const name = typeName(type);
    const cols = 2 * typeTraits(type)!.blockSize, rows = 24;
    it(`${name}: matmul (1-9 and 64 tokens), matmulShared, getRows and read() as in the file's layout`, async () => {
      const r = rng(9100 + type);
      const bytes = modelLikeWeights(type, rows, cols, r), other = modelLikeWeights(type, 8, cols, r);
      const x = uniform(64 * cols, r);
      await onEveryBackend(async (be, config) => {
        const w = putWeight(be, type, rows, cols, bytes), p = plainWeight(be, type, rows, cols, bytes);
        const w2 = putWeight(be, type, 8, cols, other), p2 = plainWeight(be, type, 8, cols, other);
        const xt = put(be, x);
        expectSameBits(`${name} ${config.label}: read() of the weight`, await be.read(w), bytes);
        expectSameBits(`${name} ${config.label}: read() of rows 5..9`, await be.read(w, 5 * w.rowBytes, 4 * w.rowBytes), bytes.subarray(5 * w.rowBytes, 9 * w.rowBytes));
        for (const n of [1, 2, 3, 4, 5, 9, 64]) {
          const a = f32Out(be, n * rows), b = f32Out(be, n * rows);
          be.matmul(a, w, xt, n);
          be.matmul(b, p, xt, n);
          expectSameBits(`${name} ${config.label}: matmul ${n} tokens`, await readF32(be, a, n * rows), await readF32(be, b, n * rows));
        }
        // a view of whole groups (rows 8..15), and two weights sharing one input
        const view = (t: WeightTensor) => asWeight(subTensor(t, 8 * t.rowBytes, type, [cols, 8]), cols, 8);
        const [a1, a2, b1, b2] = [f32Out(be, 3 * 8), f32Out(be, 3 * 8), f32Out(be, 3 * 8), f32Out(be, 3 * 8)];
        be.matmulShared([{ out: a1, w: view(w) }, { out: a2, w: w2 }], xt, 3);
        be.matmulShared([{ out: b1, w: view(p) }, { out: b2, w: p2 }], xt, 3);
        expectSameBits(`${name} ${config.label}: matmulShared, a view`, await readF32(be, a1, 24), await readF32(be, b1, 24));
        expectSameBits(`${name} ${config.label}: matmulShared, a second weight`, await readF32(be, a2, 24), await readF32(be, b2, 24));
        const ids = put(be, Int32Array.of(0, 23, 5, 5, 14, 3, 22));
        const [ga, gb] = [f32Out(be, 7 * cols), f32Out(be, 7 * cols)];
        be.getRows(ga, w, ids, 7);
        be.getRows(gb, p, ids, 7);
        expectSameBits(`${name} ${config.label}: getRows`, await readF32(be, ga, 7 * cols), await readF32(be, gb, 7 * cols));
        return 0;
      }, type);
    });
  }

  it('matmulRouted over a stack of interleaved experts equals the file layout', async () => {
    for (const type of ROUTED_TYPES) {
      const nExperts = 6, rows = 8, cols = 256, nTokens = 5, used = 2, slots = nTokens * used;
      const r = rng(9300 + type);
      const bytes = modelLikeWeights(type, nExperts * rows, cols, r);
      const ids = routedIds(nTokens, used, nExperts, undefined, r);
      const x = uniform(nTokens * cols, r);
      await onEveryBackend(async (be, config) => {
        const w = putWeight(be, type, nExperts * rows, cols, bytes, nExperts), p = plainWeight(be, type, nExperts * rows, cols, bytes);
        const xt = put(be, x), routing = putRouting(be, ids, new Float32Array(slots), nTokens, used);
        const [a, b] = [f32Out(be, slots * rows), f32Out(be, slots * rows)];
        be.matmulRouted(a, w, nExperts, xt, routing, false);
        be.matmulRouted(b, p, nExperts, xt, routing, false);
        expectSameBits(`${typeName(type)} ${config.label}: matmulRouted`, await readF32(be, a, slots * rows), await readF32(be, b, slots * rows));
        return 0;
      }, type);
    }
  });

  it('uploads go in whole groups of 4 rows; copy() and views that split a group are typed errors', async () => {
    const type = GGMLType.Q4_0, cols = 64, rows = 16;
    const bytes = modelLikeWeights(type, rows, cols, rng(9400)), fresh = modelLikeWeights(type, rows, cols, rng(9401));
    await onEveryBackend(async (be, config) => {
      const w = putWeight(be, type, rows, cols, bytes), rb = w.rowBytes;
      // rows 4..7 replaced by an upload of one whole group: read() and matmul see the new rows
      be.upload(w, fresh.subarray(4 * rb, 8 * rb), 4 * rb);
      const want = bytes.slice();
      want.set(fresh.subarray(4 * rb, 8 * rb), 4 * rb);
      expectSameBits(`${config.label}: read() after a group upload`, await be.read(w), want);
      if (config.kind !== 'wasm') return 0; // the others keep every tensor as uploaded
      const interleaved = (be as WasmBackend).u8().slice(w.offset, w.offset + w.bytes);
      expect(interleaved, `${config.label}: the WASM backend keeps its own layout`).not.toEqual(want);
      expect(() => be.upload(w, fresh.subarray(0, 2 * rb), 4 * rb), `${config.label}: half a group`).toThrow(/whole groups of 4 rows/);
      expect(() => be.upload(w, fresh.subarray(0, 4 * rb), 2 * rb), `${config.label}: a group off its boundary`).toThrow(/whole groups of 4 rows/);
      expect(() => be.copy(f32Out(be, w.bytes / 4), 0, w, 0, 64), `${config.label}: copy out of a weight`).toThrow(BackendError);
      const split = asWeight(subTensor(w, 2 * rb, type, [cols, 4]), cols, 4);
      expect(() => be.matmul(f32Out(be, 4), split, put(be, new Float32Array(cols)), 1), `${config.label}: a view from row 2`).toThrow(/whole groups of 4 rows/);
      return 0;
    }, type);
  });
});

describe('combineExperts', () => {
  for (const [ci, [nTokens, used, n]] of ([[1, 1, 7], [1, 8, 4099], [5, 4, 64], [37, 6, 13]] as const).entries()) {
    it(`${nTokens} tokens, ${used} experts each, n=${n}`, async () => {
      const r = rng(7700 + ci);
      const y = uniform(nTokens * used * n, r, -4, 4), w = uniform(nTokens * used, r, 0, 1);
      const runs = await onEveryBackend(async (be) => {
        const out = f32Out(be, nTokens * n);
        be.combineExperts(out, put(be, y), putRouting(be, new Int32Array(nTokens * used), w, nTokens, used), n);
        return readF32(be, out, nTokens * n);
      });
      const label = `combineExperts nTokens=${nTokens} used=${used} n=${n}`;
      // ggml's f32 steps (each product rounded, then added in slot order), the f64 sum, and sum |y w|
      const f32Steps = new Float32Array(nTokens * n), want = new Float64Array(nTokens * n), mag = new Float64Array(nTokens * n);
      for (let t = 0; t < nTokens; t++) {
        for (let i = 0; i < n; i++) {
          let acc = 0, sum = 0, m = 0;
          for (let j = 0; j < used; j++) {
            const p = y[(t * used + j) * n + i] * w[t * used + j];
            acc = j === 0 ? fr(p) : fr(acc + fr(p));
            sum += p;
            m += Math.abs(p);
          }
          f32Steps[t * n + i] = acc;
          want[t * n + i] = sum;
          mag[t * n + i] = m;
        }
      }
      for (const r of runs.filter((r) => r.config.ggmlSteps)) expectSameBits(`${label} ${r.config.label} vs ggml's f32 steps`, r.out, f32Steps);
      expectMath(label, runs, want, (i) => 2 * used * 2 ** -24 * mag[i]);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, (i) => 2 * used * 2 ** -24 * mag[i]);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Element-wise and normalization ops

describe('rmsNorm', () => {
  // rows of nonzero mean at scales 1e-3..1e3 (with an all-zero row where there are several: 0 / sqrt(eps)), and rows in [-4, 4]
  const cases = [
    ...([[1, 1, 1, 1e-5, false], [7, 3, 1e-3, 1e-6, true], [64, 17, 1, 1e-5, false], [173, 3, 1e3, 1e-6, true], [4096, 2, 1, 1e-5, false], [4099, 1, 0.1, 1e-5, true]] as const)
      .map(([n, nTokens, scale, eps, inPlace]) => ({ n, nTokens, lo: -0.7 * scale, hi: 1.3 * scale, eps, inPlace, zeroRow: nTokens > 1 })),
    ...([[7, 3], [64, 5], [2051, 2]] as const).map(([n, nTokens]) => ({ n, nTokens, lo: -4, hi: 4, eps: 1e-5, inPlace: true, zeroRow: false })),
  ];
  for (const [ci, { n, nTokens, lo, hi, eps, inPlace, zeroRow }] of cases.entries()) {
    it(`n=${n} nTokens=${nTokens} values in [${lo}, ${hi}] eps=${eps}${inPlace ? ' in place' : ''}${zeroRow ? ', an all-zero row' : ''}`, async () => {
      const r = rng(6000 + ci);
      const x = uniform(n * nTokens, r, lo, hi), w = uniform(n, r, -2, 2);
      if (zeroRow) x.fill(0, 0, n);
      const runs = await onEveryBackend(async (be) => {
        const xt = put(be, x), out = inPlace ? xt : f32Out(be, n * nTokens);
        be.rmsNorm(out, xt, put(be, w), n, nTokens, eps);
        return readF32(be, out, n * nTokens);
      });
      const want = new Float64Array(n * nTokens);
      for (let t = 0; t < nTokens; t++) {
        let ss = 0;
        for (let i = 0; i < n; i++) ss += x[t * n + i] ** 2;
        const inv = 1 / Math.sqrt(ss / n + eps);
        for (let i = 0; i < n; i++) want[t * n + i] = x[t * n + i] * inv * w[i];
      }
      const label = `rmsNorm n=${n} nTokens=${nTokens}`;
      expectMath(label, runs, want, (i) => 4e-7 * Math.abs(want[i]) + 1e-7);
      expectConfigsAgree(label, runs);
      const ref = referenceOf(runs);
      expectNearReference(label, runs, (i) => 3e-6 * Math.abs(ref[i]) + 1e-30);
    });
  }
});

describe('layerNorm', () => {
  // BERT's LayerNorm: rows with a large common offset (the mean must come off before squaring), small rows, tails
  const cases = [
    { n: 1, nTokens: 2, lo: -1, hi: 1, eps: 1e-12, inPlace: false },
    { n: 7, nTokens: 3, lo: 100, hi: 101, eps: 1e-12, inPlace: true },
    { n: 384, nTokens: 9, lo: -4, hi: 4, eps: 1e-12, inPlace: false },
    { n: 768, nTokens: 2, lo: 0.5, hi: 3, eps: 1e-5, inPlace: true },
    { n: 1003, nTokens: 5, lo: -1e3, hi: 1e3, eps: 1e-5, inPlace: false },
  ];
  for (const [ci, { n, nTokens, lo, hi, eps, inPlace }] of cases.entries()) {
    it(`n=${n} nTokens=${nTokens} values in [${lo}, ${hi}] eps=${eps}${inPlace ? ' in place' : ''}`, async () => {
      const r = rng(6500 + ci);
      const x = uniform(n * nTokens, r, lo, hi), w = uniform(n, r, -2, 2), b = uniform(n, r, -1, 1);
      const runs = await onEveryBackend(async (be) => {
        const xt = put(be, x), out = inPlace ? xt : f32Out(be, n * nTokens);
        be.layerNorm(out, xt, put(be, w), put(be, b), n, nTokens, eps);
        return readF32(be, out, n * nTokens);
      });
      // (a) in f64; bound: the normalized value's f32 steps (mean, difference, variance, scale: a few
      // ulps of |normalized| relative to the spread) times |w|, plus the bias add's rounding.
      const want = new Float64Array(n * nTokens), tol = new Float64Array(n * nTokens);
      for (let t = 0; t < nTokens; t++) {
        const row = Array.from(x.subarray(t * n, (t + 1) * n));
        const mean = row.reduce((a, v) => a + v, 0) / n;
        const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
        const inv = 1 / Math.sqrt(variance + eps);
        const big = Math.max(...row.map((v) => Math.abs(v))) * inv; // the mean's rounding, relative to the spread
        for (let i = 0; i < n; i++) {
          const norm = (row[i] - mean) * inv;
          want[t * n + i] = norm * w[i] + b[i];
          tol[t * n + i] = (4 * 2 ** -24 * (Math.abs(norm) + big)) * Math.abs(w[i]) + 2 ** -24 * (Math.abs(want[t * n + i]) + Math.abs(b[i])) + 1e-30;
        }
      }
      const label = `layerNorm n=${n} nTokens=${nTokens}`;
      expectMath(label, runs, want, (i) => tol[i]);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, (i) => 2 * tol[i]);
    });
  }
});

const silu = (v: number): number => v / (1 + Math.exp(-v));
// 0.5x(1 + tanh(y)) written as x / (1 + exp(-2y)): the same function, without tanh's cancellation to 0
const geluArg = (v: number): number => 2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);
const gelu = (v: number): number => v / (1 + Math.exp(-geluArg(v)));
const LN_F32_MAX = Math.log(3.4028234663852886e38);
/** (a)'s bound for x / (1 + exp(-z)) (see the header). */
const expTol = (want: number, z: number): number => 1e-6 * Math.abs(want) * (1 + Math.abs(z)) + (z < -LN_F32_MAX ? Math.abs(want) : 0) + 1e-37;

/** Gates over the full range: exp overflows past +-88.7, the product past f32's largest value. */
const EXTREME_GATES = [0, -0, 100, -100, 88.5, -88.5, 1e-30, -1e-30, 90, -87.5, 3e38, -3e38, -1000, 1000, 88.8, -88.8];

describe('swiglu', () => {
  const cases = [
    ...([[1, false], [7, true], [173, false], [4099, true], [64 * 1024 + 5, false]] as const).map(([count, inPlace]) => ({ count, inPlace, gate: 20, up: 3 })),
    { count: 1003, inPlace: true, gate: 12, up: 3 }, // not a multiple of 4 or 16: tails
  ];
  for (const [ci, { count, inPlace, gate: gateScale, up: upScale }] of cases.entries()) {
    it(`count=${count}${inPlace ? ' in place' : ''}, gates up to ${gateScale} and extremes`, async () => {
      const r = rng(7000 + ci);
      const gate = uniform(count, r, -gateScale, gateScale), up = uniform(count, r, -upScale, upScale);
      EXTREME_GATES.slice(0, count).forEach((g, i) => { gate[(i * 7919) % count] = g; });
      const runs = await onEveryBackend(async (be) => {
        const g = put(be, gate), out = inPlace ? g : f32Out(be, count);
        be.swiglu(out, g, put(be, up), count);
        return readF32(be, out, count);
      });
      const label = `swiglu count=${count}`;
      const want = Float32Array.from(gate, (g, i) => silu(g) * up[i]); // the f32 result: +-Infinity past f32's largest value
      expectMath(label, runs, want, (i) => expTol(want[i], gate[i]));
      expectConfigsAgree(label, runs);
      const ref = referenceOf(runs);
      expectNearReference(label, runs, (i) => 3e-6 * Math.abs(ref[i]) + 1e-7 * Math.abs(up[i]) + 1e-30);
    });
  }
});

/** Gates at and around geglu's cut-offs (+-10 before any rounding; 9.999 rounds to f16 10), beyond them, and tiny ones. */
const GEGLU_EDGES = [-3.5, 10, -10, 9.999, -9.999, fr(10 + 2 ** -20), fr(-10 - 2 ** -20), fr(10 - 2 ** -20), fr(-10 + 2 ** -20), 9.996, -9.996,
  100, -100, 3e38, -3e38, Infinity, -Infinity, 0, -0, 1e-30, -1e-30, 2 ** -24, -(2 ** -25), 65519];

describe('geglu', () => {
  const cases = [
    ...([[1, false], [7, true], [173, false], [4099, true], [64 * 1024 + 5, false]] as const).map(([count, inPlace]) => ({ count, inPlace })),
    { count: 1003, inPlace: true }, // not a multiple of 4 or 16: tails
  ];
  for (const [ci, { count, inPlace }] of cases.entries()) {
    it(`count=${count}${inPlace ? ' in place' : ''}, gates in [-12, 12], the +-10 cut-offs and extremes`, async () => {
      const r = rng(7050 + ci);
      const gate = uniform(count, r, -12, 12), up = uniform(count, r, -3, 3);
      GEGLU_EDGES.slice(0, count).forEach((g, i) => { gate[(i * 7919) % count] = g; });
      const runs = await onEveryBackend(async (be) => {
        const g = put(be, gate), out = inPlace ? g : f32Out(be, count);
        be.geglu(out, g, put(be, up), count);
        return readF32(be, out, count);
      });
      const label = `geglu count=${count}`;
      // (a) ggml's f16 GELU in f64 (gelu's exp form of the tanh form); tol: the step to the other f16
      // neighbour (times up) where the f32 kernel's error reaches across a rounding boundary, else 0.
      // That error: exp(-z)'s (swiglu's 1e-6 (1 + |z|)) weighted by e / (1 + e) in x / (1 + e), and two roundings.
      const want = new Float32Array(count), tol = new Float64Array(count);
      gate.forEach((x, i) => {
        if (x <= -10 || x >= 10) {
          want[i] = (x <= -10 ? 0 : x) * up[i];
          return;
        }
        const xh = f16Round(x), g = gelu(xh), z = geluArg(xh), e = Math.exp(-z);
        const err = Math.abs(g) * (1e-6 * (1 + Math.abs(z)) * (e / (1 + e)) + 1.2e-7);
        want[i] = f16Round(g) * up[i];
        tol[i] = Math.abs(fr(f16Round(g + err) * up[i]) - fr(f16Round(g - err) * up[i]));
      });
      expectMath(label, runs, want, (i) => tol[i]);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, (i) => tol[i]);
      // the window is what lets an element off its f16 value: it must stay rare
      expect(tol.filter((t) => t > 0).length, `${label}: elements near an f16 rounding boundary`).toBeLessThanOrEqual(Math.max(2, count / 50));
    });
  }
});

// scale: gemma's embedding scale sqrt(n_embd) and 1/3 are not f32 values (factor is rounded to f32
// first, as ggml's float parameter); subnormal and overflowing products.
const SCALE_EDGES = [-1.75, 0, -0, 1e-40, -3e-42, 3e38, -3e38, 1e-30, Infinity, -Infinity, 1];

describe('scale and softcap', () => {
  for (const [ci, [count, factor, inPlace]] of ([[1, 0.125, false], [7, -3, true], [1003, Math.sqrt(2048), false], [4099, 1 / 3, true], [64 * 1024 + 5, 1e-3, false]] as const).entries()) {
    it(`scale count=${count} by ${factor}${inPlace ? ' in place' : ''}: bit for bit`, async () => {
      const r = rng(7200 + ci);
      const x = uniform(count, r, -100, 100);
      SCALE_EDGES.slice(0, count).forEach((v, i) => { x[(i * 7919) % count] = v; });
      const runs = await onEveryBackend(async (be) => {
        const xt = put(be, x), out = inPlace ? xt : f32Out(be, count);
        be.scale(out, xt, count, factor);
        return readF32(be, out, count);
      });
      const label = `scale count=${count} factor=${factor}`;
      const want = Float32Array.from(x, (v) => v * fr(factor));
      for (const r of runs) expectSameBits(`${label} ${r.config.label} vs f32(x * f32(factor))`, r.out, flushedWant(r.config, r.out, want));
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, 'exact');
    });
  }

  // gemma 2's final (30) and attention (50) caps, a small one, and one that is not an f32 value
  for (const [ci, [count, cap, inPlace]] of ([[1, 30, false], [7, 50, true], [1003, 1.5, false], [4099, 0.7, true], [64 * 1024 + 5, 30, false]] as const).entries()) {
    it(`softcap count=${count} cap=${cap}${inPlace ? ' in place' : ''}`, async () => {
      const r = rng(7300 + ci);
      const x = uniform(count, r, -6 * cap, 6 * cap);
      [...SCALE_EDGES, cap, -cap, 0.01 * cap, 20 * cap].slice(0, count).forEach((v, i) => { x[(i * 7919) % count] = v; });
      const runs = await onEveryBackend(async (be) => {
        const xt = put(be, x), out = inPlace ? xt : f32Out(be, count);
        be.softcap(out, xt, count, cap);
        return readF32(be, out, count);
      });
      const label = `softcap count=${count} cap=${cap}`;
      const c = fr(cap); // the kernel's cap is an f32
      const want = Float64Array.from(x, (v) => c * Math.tanh(v / c));
      const subnormal = c * 2 ** -148;
      expectMath(label, runs, want, (i) => 5.5 * 2 ** -23 * Math.abs(want[i]) + subnormal);
      expectConfigsAgree(label, runs);
      const ref = referenceOf(runs);
      expectNearReference(label, runs, (i) => 6.5 * 2 ** -23 * Math.abs(ref[i]) + subnormal);
    });
  }

  it('the WASM backend rejects a non-finite factor and a cap that is not finite and > 0', async () => {
    for (const config of CONFIGS.filter((c) => c.kind === 'wasm')) {
      const be = kept.get(config)!;
      const x = put(be, Float32Array.of(1, 2, 3)), out = f32Out(be, 3);
      for (const factor of [NaN, Infinity, -Infinity]) expect(() => be.scale(out, x, 3, factor), `${config.label} scale by ${factor}`).toThrow(BackendError);
      for (const cap of [0, -0, -1, NaN, Infinity]) expect(() => be.softcap(out, x, 3, cap), `${config.label} softcap ${cap}`).toThrow(BackendError);
    }
  });
});

describe('argmax', () => {
  // [n, nRows]: rows of one, odd lengths, many rows (split across threads), a vocabulary-sized row
  for (const [ci, [n, nRows]] of ([[1, 1], [1, 9], [7, 3], [13, 1000], [64, 17], [32003, 3]] as const).entries()) {
    it(`n=${n}, ${nRows} rows${n >= 3 && nRows >= 3 ? ': ties, NaN, -Infinity rows' : ''}`, async () => {
      const r = rng(7400 + ci);
      const x = uniform(n * nRows, r, -10, 10);
      const row = (k: number) => x.subarray(k * n, (k + 1) * n);
      if (n >= 3 && nRows >= 3) {
        row(0).fill(-Infinity); // every value -Infinity: index 0
        // the max up to three times (the first, at 2, wins); NaN after the first place never wins, even past the max
        const m = Math.max(...row(1)) + 1;
        [n - 1, 2, 4].filter((i) => i < n).forEach((i) => { row(1)[i] = m; });
        row(1)[1] = NaN;
        if (n > 4) row(1)[3] = NaN;
        row(2)[0] = -0;
        row(2).fill(0, 1); // -0 and 0 are equal: index 0
        if (nRows > 3) {
          row(3)[n - 1] = 1e30; // the max in the last place (the tail)
          row(3)[1] = NaN;
        }
        if (nRows > 4) row(4).fill(Infinity, Math.floor(n / 2));
      }
      const runs = await onEveryBackend(async (be) => {
        const out = be.allocate(GGMLType.I32, [nRows]);
        be.argmax(out, put(be, x), n, nRows);
        return be.read(out, 0, 4 * nRows);
      });
      const label = `argmax n=${n} nRows=${nRows}`;
      // the first index holding the largest non-NaN value
      const want = Array.from({ length: nRows }, (_, k) => {
        const v = Array.from(row(k)), m = Math.max(...v.filter((e) => !Number.isNaN(e)));
        return v.findIndex((e) => e === m);
      });
      if (n >= 3 && nRows >= 3) expect(want.slice(0, 3), `${label}: the special rows`).toEqual([0, 2, 0]);
      for (const r of runs) expect(Array.from(new Int32Array(r.out.buffer, r.out.byteOffset, nRows)), `${label} ${r.config.label}`).toEqual(want);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, 'exact');
    });
  }
});

describe('topK', () => {
  // [n, nRows, k]: k = 1, k = n, many rows (split across threads), k at MAX_TOP_K, a vocabulary-sized row
  for (const [ci, [n, nRows, k]] of ([[1, 1, 1], [7, 4, 1], [7, 4, 7], [13, 1000, 5], [64, 17, 40], [300, 5, 256], [32003, 3, 40]] as const).entries()) {
    it(`n=${n}, ${nRows} rows, k=${k}${nRows >= 4 ? ': ties, negative rows, -0 and 0, infinities, NaN' : ''}`, async () => {
      const r = rng(7500 + ci);
      const x = uniform(n * nRows, r, -10, 10);
      const row = (q: number) => x.subarray(q * n, (q + 1) * n);
      if (nRows >= 4) {
        row(0).forEach((v, i) => { row(0)[i] = Math.round(v / 4); }); // five levels: ties everywhere, across the k-th place
        row(1).forEach((v, i) => { row(1)[i] = -Math.abs(Math.round(v)); }); // all <= 0, ties; -0 and 0 equal
        row(1)[0] = -0;
        if (n > 3) row(1)[3] = -Infinity;
        if (n > 5) row(1)[5] = 0;
        row(2).fill(-Infinity); // every value -Infinity: the first k indices
        if (n > 2) row(2)[2] = Infinity;
        row(3)[n - 1] = NaN; // NaN ranks first (then the numbers)
        if (n > 3) row(3)[1] = Infinity;
        if (n > 4) row(3)[4] = NaN;
      }
      const runs = await onEveryBackend(async (be) => {
        const ids = be.allocate(GGMLType.I32, [k * nRows]), values = be.allocate(GGMLType.F32, [k * nRows]);
        be.topK(ids, values, put(be, x), n, nRows, k);
        const out = new Uint8Array(8 * k * nRows);
        out.set(await be.read(ids, 0, 4 * k * nRows));
        out.set(await be.read(values, 0, 4 * k * nRows), 4 * k * nRows);
        return out;
      });
      const label = `topK n=${n} nRows=${nRows} k=${k}`;
      // independently: k times, the first untaken index of a NaN, else of the largest untaken value
      const xBits = new Uint32Array(x.buffer);
      const wantIds = new Int32Array(k * nRows), wantBits = new Uint32Array(k * nRows);
      for (let q = 0; q < nRows; q++) {
        const v = row(q), taken = new Uint8Array(n);
        for (let j = 0; j < k; j++) {
          let best = -1;
          for (let i = 0; i < n && !(best >= 0 && Number.isNaN(v[best])); i++) {
            if (!taken[i] && (best < 0 || Number.isNaN(v[i]) || v[i] > v[best])) best = i;
          }
          taken[best] = 1;
          wantIds[q * k + j] = best;
          wantBits[q * k + j] = xBits[q * n + best];
        }
      }
      if (nRows >= 4 && n === 7) {
        expect(Array.from(wantIds.subarray(2 * k, 2 * k + Math.min(k, 3))), `${label}: the -Infinity row`).toEqual([2, 0, 1].slice(0, Math.min(k, 3)));
        expect(Array.from(wantIds.subarray(3 * k, 3 * k + Math.min(k, 3))), `${label}: the NaN row`).toEqual([4, 6, 1].slice(0, Math.min(k, 3)));
      }
      for (const run of runs) {
        const ids = new Int32Array(run.out.buffer, run.out.byteOffset, k * nRows), bits = new Uint32Array(run.out.buffer, run.out.byteOffset + 4 * k * nRows, k * nRows);
        expect(Array.from(ids), `${label} ${run.config.label}: ids`).toEqual(Array.from(wantIds));
        expect(Array.from(bits), `${label} ${run.config.label}: values (x's bits)`).toEqual(Array.from(wantBits));
      }
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, 'exact');
    });
  }

  it('every backend rejects a k outside 1..min(n, MAX_TOP_K) and sizes that are not counts', async () => {
    await onEveryBackend(async (be, config) => {
      const x = put(be, new Float32Array(300)), ids = be.allocate(GGMLType.I32, [600]), values = be.allocate(GGMLType.F32, [600]);
      for (const [n, nRows, k] of [[8, 1, 0], [8, 1, 9], [300, 1, MAX_TOP_K + 1], [8, 1, 1.5], [0, 1, 1], [8, -1, 1], [8, 0.5, 1]]) {
        expect(() => be.topK(ids, values, x, n, nRows, k), `${config.label} n=${n} nRows=${nRows} k=${k}`).toThrow(BackendError);
      }
      return 0;
    });
  });
});

describe('silu (WASM backend extra, outside the contract) and gelu', () => {
  it('silu over the full range, including overflow of exp (out of place)', async () => {
    const count = 1003;
    const x = uniform(count, rng(7100), -12, 12);
    x.set(EXTREME_GATES, 0);
    const runs: Run<Float32Array>[] = [];
    for (const config of CONFIGS.filter((c) => c.kind === 'wasm')) {
      const be = kept.get(config) as WasmBackend;
      const xt = put(be, x), out = f32Out(be, count);
      be.silu(out, xt, count);
      runs.push({ config, out: await readF32(be, out, count) });
    }
    expectConfigsAgree('silu', runs);
    expectMath('silu', runs, Float32Array.from(x, silu), (i) => expTol(silu(x[i]), x[i]));
  });

  it('gelu (in place), as ggml\'s CPU backend: equal to geglu with up = 1 and to its f16 math', async () => {
    const count = 1003;
    const x = uniform(count, rng(7101), -12, 12);
    GEGLU_EDGES.forEach((g, i) => { x[(i * 7919) % count] = g; });
    const ones = new Float32Array(count).fill(1);
    const runs = await onEveryBackend(async (be) => {
      const xt = put(be, x);
      be.gelu(xt, xt, count);
      return readF32(be, xt, count);
    });
    const viaGeglu = await onEveryBackend(async (be) => {
      const out = f32Out(be, count);
      be.geglu(out, put(be, x), put(be, ones), count);
      return readF32(be, out, count);
    });
    runs.forEach((r, i) => expectSameBits(`gelu vs geglu(x, 1) ${r.config.label}`, r.out, viaGeglu[i]!.out));
    const want = Float32Array.from(x, (v) => (v <= -10 ? 0 : v >= 10 ? v : f16Round(gelu(f16Round(v)))));
    // one f16 step where the kernel's f32 value lands at an f16 rounding boundary (see geglu)
    expectMath('gelu', runs, want, (i) => (x[i] <= -10 || x[i] >= 10 ? 0 : Math.abs(want[i]) * 2 ** -10 + 2 ** -24));
    expectConfigsAgree('gelu', runs);
  });
});

describe('sigmoid', () => {
  it('over the full range, overflow of exp included (in place and not), on every backend', async () => {
    for (const [count, inPlace] of [[1, false], [1003, true], [4099, false]] as const) {
      const x = uniform(count, rng(7300 + count), -20, 20);
      x.set(EXTREME_GATES.slice(0, count), 0);
      const runs = await onEveryBackend(async (be) => {
        const xt = put(be, x), out = inPlace ? xt : f32Out(be, count);
        be.sigmoid(out, xt, count);
        return readF32(be, out, count);
      });
      const label = `sigmoid count=${count}`;
      // 1 / (1 + e): exp(-x)'s error (as silu's, expTol) carried through a division, where the sum does not overflow
      const want = Float32Array.from(x, (v) => 1 / (1 + Math.exp(-v)));
      expectMath(label, runs, want, (i) => expTol(want[i]!, x[i]!));
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, (i) => 2 * expTol(want[i]!, x[i]!));
    }
  });
});

describe('add and addBias', () => {
  for (const [count, inPlace] of [[1, false], [7, true], [77, true], [4099, false], [64 * 1024 + 3, true]] as const) {
    it(`add count=${count}${inPlace ? ' in place' : ''}: bit for bit`, async () => {
      const r = rng(8000 + count);
      const a = uniform(count, r, -1e3, 1e3), b = uniform(count, r);
      const runs = await onEveryBackend(async (be) => {
        const at = put(be, a), out = inPlace ? at : f32Out(be, count);
        be.add(out, at, put(be, b), count);
        return readF32(be, out, count);
      });
      const label = `add count=${count}`;
      const want = Float32Array.from(a, (v, i) => v + b[i]);
      for (const r of runs) expectSameBits(`${label} ${r.config.label} vs f32(a + b)`, r.out, want);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, 'exact');
    });
  }

  for (const [n, nTokens] of [[1, 1], [7, 3], [11, 7], [896, 17], [131, 64]] as const) {
    it(`addBias n=${n} nTokens=${nTokens}: bit for bit`, async () => {
      const r = rng(8500 + n);
      const x = uniform(n * nTokens, r, -50, 50), bias = uniform(n, r);
      const runs = await onEveryBackend(async (be) => {
        const out = f32Out(be, n * nTokens);
        be.addBias(out, put(be, x), put(be, bias), n, nTokens);
        return readF32(be, out, n * nTokens);
      });
      const label = `addBias n=${n} nTokens=${nTokens}`;
      const want = Float32Array.from(x, (v, i) => v + bias[i % n]);
      for (const r of runs) expectSameBits(`${label} ${r.config.label} vs f32(x + bias)`, r.out, want);
      expectConfigsAgree(label, runs);
      expectNearReference(label, runs, 'exact');
    });
  }
});

// ---------------------------------------------------------------------------------------------
// RoPE

const ROPE_DEFAULT: RopeParams = {
  ropeDims: 64, freqBase: 10000, freqScale: 1, neox: false, extFactor: 0, attnFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 4096,
};

interface RopeCase {
  name: string; headDim: number; nHeads: number; p: Partial<RopeParams>; nTokens: number[]; positions: 'long context' | 'short';
  /** Frequency factors (llama 3's rope_freqs, LongRoPE): f32[ropeDims / 2] in [1, 8], both ends included. */
  factors?: boolean;
}

const ROPE_CASES: RopeCase[] = [
  ...([
    { name: 'normal, full', headDim: 64, nHeads: 8, p: {} },
    { name: 'neox, full, base 1e6 (qwen2)', headDim: 128, nHeads: 4, p: { ropeDims: 128, neox: true, freqBase: 1e6 } },
    { name: 'normal, base 5e5 (llama 3)', headDim: 128, nHeads: 2, p: { ropeDims: 128, freqBase: 5e5 } },
    { name: 'normal, partial 32 of 64', headDim: 64, nHeads: 3, p: { ropeDims: 32 } },
    { name: 'neox, partial 32 of 80 (phi-2)', headDim: 80, nHeads: 5, p: { ropeDims: 32, neox: true } },
    { name: 'normal, tiny head 8 (stories260K)', headDim: 8, nHeads: 8, p: { ropeDims: 8 } },
    { name: 'linear scaling 1/4', headDim: 64, nHeads: 4, p: { freqScale: 0.25 } },
    { name: 'YaRN neox, scale 1/4', headDim: 128, nHeads: 4, p: { ropeDims: 128, neox: true, freqScale: 0.25, extFactor: 1 } },
    { name: 'YaRN normal, scale 1/8, ext 0.5, attnFactor 0.9', headDim: 64, nHeads: 4, p: { freqScale: 0.125, extFactor: 0.5, attnFactor: 0.9, betaFast: 16, betaSlow: 2, nCtxOrig: 2048 } },
    { name: 'attnFactor 0.5 without YaRN (ggml scales anyway)', headDim: 64, nHeads: 2, p: { attnFactor: 0.5 } },
    { name: 'normal, base 5e5, frequency factors (llama 3.1)', headDim: 128, nHeads: 2, p: { ropeDims: 128, freqBase: 5e5 }, factors: true },
    { name: 'neox, partial 32 of 80, frequency factors', headDim: 80, nHeads: 3, p: { ropeDims: 32, neox: true }, factors: true },
    { name: 'YaRN neox, scale 1/4, frequency factors', headDim: 128, nHeads: 4, p: { ropeDims: 128, neox: true, freqScale: 0.25, extFactor: 1 }, factors: true },
  ] as const).map((c) => ({ ...c, nTokens: [1, 3, 17], positions: 'long context' as const })),
  ...([
    { name: 'normal', headDim: 64, p: {} },
    { name: 'neox', headDim: 64, p: { neox: true } },
    { name: 'partial dims + linear scale', headDim: 80, p: { ropeDims: 32, freqScale: 0.25, freqBase: 500000 } },
    { name: 'YaRN (neox)', headDim: 48, p: { neox: true, ropeDims: 48, freqScale: 1 / 8, extFactor: 1, nCtxOrig: 2048 } },
    { name: 'YaRN mixed ext factor', headDim: 64, p: { freqScale: 0.5, extFactor: 0.5, attnFactor: 0.9, nCtxOrig: 512 } },
    { name: 'YaRN normal, mixed ext factor, frequency factors', headDim: 64, p: { freqScale: 0.5, extFactor: 0.5, attnFactor: 0.9, nCtxOrig: 512 }, factors: true },
    { name: 'neox, frequency factors', headDim: 64, p: { neox: true }, factors: true },
  ] as const).map((c) => ({ ...c, nHeads: 3, nTokens: [5], positions: 'short' as const })),
];

describe('rope', () => {
  for (const [ci, c] of ROPE_CASES.entries()) {
    for (const nTokens of c.nTokens) {
      it(`${c.name}, heads=${c.nHeads} headDim=${c.headDim}, ${nTokens} tokens${c.positions === 'short' ? ' at positions 0 1 7 100 1234' : ''}`, async () => {
        const p: RopeParams = { ...ROPE_DEFAULT, ...c.p };
        const r = rng(9000 + ci * 10 + nTokens);
        const half = p.ropeDims / 2;
        const ff = c.factors ? uniform(half, rng(9500 + ci), 1, 8).fill(1, 0, 1).fill(8, half - 1) : undefined;
        const factor = (i: number) => ff?.[i] ?? 1;
        const dim = c.nHeads * c.headDim;
        const x = uniform(nTokens * dim, r, c.positions === 'short' ? -2 : -3, c.positions === 'short' ? 2 : 3);
        // long context: positions of tokens from different sequences: 0, large ones, random ones
        const pos = c.positions === 'short'
          ? Int32Array.of(0, 1, 7, 100, 1234)
          : Int32Array.from({ length: nTokens }, (_, t) => (t === 0 ? 0 : t === 1 ? 4000 : t === 2 ? 100000 : Math.floor(r() * 3000)));
        const runs = await onEveryBackend(async (be) => {
          const xt = put(be, x);
          be.rope(xt, nTokens, c.nHeads, c.headDim, put(be, pos), p, ff && put(be, ff));
          return readF32(be, xt, nTokens * dim);
        });
        const label = `rope ${c.name} nTokens=${nTokens}`;
        // (a) f64 math: the pairs rotated by ggml's angle, the rest passed through
        const want = Float64Array.from(x), tolA = new Float64Array(x.length);
        for (let t = 0; t < nTokens; t++) {
          for (let h = 0; h < c.nHeads; h++) {
            const o = (t * c.nHeads + h) * c.headDim;
            for (let i = 0; i < half; i++) {
              const { cos, sin } = ropeAngle(pos[t], i, p, factor(i));
              const a = o + (p.neox ? i : 2 * i), b = o + (p.neox ? i + half : 2 * i + 1);
              want[a] = x[a] * cos - x[b] * sin;
              want[b] = x[a] * sin + x[b] * cos;
              // theta is built by i f32 multiplications (as ggml does): relative error ~ (i + 2) ulp, of theta / ff
              const angleErr = (Math.abs(pos[t]) / factor(i)) * (i + 2) * 1.2e-7 + 1e-6;
              tolA[a] = tolA[b] = (Math.abs(x[a]) + Math.abs(x[b])) * (angleErr + 1e-6) * Math.max(1, Math.abs(cos) + Math.abs(sin)) + 1e-7;
            }
          }
        }
        expectMath(label, runs, want, (i) => (i % c.headDim >= p.ropeDims ? 1e-300 : tolA[i])); // pass-through: exact
        expectConfigsAgree(label, runs);
        // (c) against the reference
        const mscale = p.attnFactor * (p.extFactor !== 0 ? 1 + 0.1 * Math.log(1 / p.freqScale) : 1);
        expectNearReference(label, runs, (i) => {
          const t = Math.floor(i / dim), d = i % c.headDim, head = i - d;
          if (d >= p.ropeDims) return 1e-300; // pass-through: exact
          const pair = p.neox ? d % half : d >> 1;
          const [a, b] = p.neox ? [pair, pair + half] : [2 * pair, 2 * pair + 1];
          return mscale * Math.hypot(x[head + a], x[head + b]) * (2e-6 + (pos[t] / factor(pair)) * half * 2 ** -26) + 1e-30;
        });
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------
// storeKV and attention over a paged cache

/** Every KV cache type; the block types (ggml's Q8_0 / Q4_0) need rows and heads of whole 32-value blocks. */
const KV_TYPES: readonly KVCacheType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
const isBlockKV = (type: KVCacheType): boolean => type === 'q8_0' || type === 'q4_0';

describe('storeKV', () => {
  const cases = [
    ...([[8, 1], [256, 3], [128, 17]] as const).map(([kvDim, nTokens]) => ({ kvDim, nTokens, blockSize: 16, nSlots: 96, slots: undefined, edges: true })),
    { kvDim: 12, nTokens: 4, blockSize: 4, nSlots: 16, slots: [5, 0, 9, 2], edges: false },
  ];
  for (const type of KV_TYPES) {
    for (const [ci, { kvDim, nTokens, blockSize, nSlots, slots: fixedSlots, edges }] of cases.entries()) {
      if (isBlockKV(type) && kvDim % 32 !== 0) continue; // rows of whole 32-value blocks (the typed error below)
      it(`${type} cache, kvDim=${kvDim}, ${nTokens} tokens to scattered slots of ${nSlots}`, async () => {
        const r = rng(10000 + 10 * ci + KV_TYPES.indexOf(type));
        const k = uniform(nTokens * kvDim, r, -4, 4), v = uniform(nTokens * kvDim, r, -4, 4);
        // f16 edge cases: ties to even, largest finite, overflow to inf, subnormals, underflow
        if (edges) [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519, 65520, -1e6, 2 ** -24 * 1.5, 2 ** -25, 2 ** -26, 6e-5, -0].forEach((e, i) => {
          if (i < k.length) { k[i] = e; v[k.length - 1 - i] = -e; }
        });
        const slots = Int32Array.from(fixedSlots ?? shuffle(Array.from({ length: nSlots }, (_, i) => i), r).slice(0, nTokens));
        const rb = rowBytes(kvElementType(type), kvDim), bytes = nSlots * rb;
        const runs = await onEveryBackend(async (be) => {
          const layer = { k: put(be, new Uint8Array(bytes)), v: put(be, new Uint8Array(bytes)), type: type as KVCacheType, blockSize, kvDim };
          be.storeKV(layer, put(be, k), put(be, v), put(be, slots), nTokens);
          const out = new Uint8Array(2 * bytes);
          out.set(await be.read(layer.k));
          out.set(await be.read(layer.v), bytes);
          return out;
        }, undefined, type);
        // (a) every byte: the written slots hold the values (f16: rounded to nearest even; q8_0 / q4_0:
        // ggml's reference quantizers, src/tensor/quantize.ts), the rest stay zero
        const want = new Uint8Array(2 * bytes), dv = new DataView(want.buffer);
        for (const [src, base] of [[k, 0], [v, bytes]] as const) {
          slots.forEach((slot, t) => {
            if (isBlockKV(type)) {
              want.set(quantize(kvElementType(type), src.subarray(t * kvDim, (t + 1) * kvDim), kvDim), base + slot * rb);
              return;
            }
            for (let i = 0; i < kvDim; i++) {
              const at = base + slot * rb + i * (type === 'f16' ? 2 : 4);
              if (type === 'f16') dv.setUint16(at, f32ToF16Bits(src[t * kvDim + i]), true);
              else dv.setFloat32(at, src[t * kvDim + i], true);
            }
          });
        }
        const label = `storeKV ${type} kvDim=${kvDim} nTokens=${nTokens}`;
        for (const r of runs) expectSameBits(`${label} ${r.config.label} vs the expected cache bytes`, r.out, want);
        expectConfigsAgree(label, runs);
        expectNearReference(label, runs, 'exact');
      });
    }
  }

  it('a q8_0 / q4_0 cache whose rows (storeKV) or heads (attention) are not whole 32-value blocks is a typed error on every backend', async () => {
    for (const type of ['q8_0', 'q4_0'] as const) {
      await onEveryBackend(async (be, config) => {
        // kvDim 48 holds whole blocks' bytes (1.5 blocks would not): a layer a caller built by hand
        const layer = { k: put(be, new Uint8Array(4 * 36)), v: put(be, new Uint8Array(4 * 36)), type, blockSize: 4, kvDim: 48 };
        const x = put(be, new Float32Array(48)), slot = put(be, Int32Array.of(0));
        expect(() => be.storeKV(layer, x, x, slot, 1), `${config.label} ${type} storeKV kvDim 48`).toThrow(BackendError);
        const c = sequenceCase(SEQUENCE_SHAPES[0], 'f32', undefined, 3); // headDim 16
        await expect(runAttention(be, { ...c, type }), `${config.label} ${type} attention headDim 16`).rejects.toThrow(BackendError);
        return 0;
      }, undefined, type);
    }
  });
});

/** One attention call, as plain data: what every backend gets, and what the math reads. */
interface AttentionCase {
  readonly type: KVCacheType;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly blockSize: number;
  /** [slot][kvDim] K and V values before the cache's rounding. */
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly q: Float32Array;
  readonly nTokens: number;
  readonly blockTables: Int32Array;
  /** Per token [table start, first key, end key], as AttentionArgs.tokenInfo. */
  readonly tokenInfo: Int32Array;
  /** AttentionArgs.softcap (absent: off). */
  readonly softcap?: number;
  /** AttentionArgs.alibi, its positions as data (absent: off). */
  readonly alibi?: { readonly maxBias: number; readonly positions: Int32Array };
}

const encodeCache = (type: KVCacheType, vals: Float32Array, kvDim: number): Uint8Array => {
  if (type === 'f32') return new Uint8Array(vals.buffer.slice(vals.byteOffset, vals.byteOffset + vals.byteLength));
  if (isBlockKV(type)) return quantize(kvElementType(type), vals, kvDim);
  const out = new Uint8Array(vals.length * 2), dv = new DataView(out.buffer);
  vals.forEach((x, i) => dv.setUint16(2 * i, f32ToF16Bits(x), true));
  return out;
};

async function runAttention(be: Backend, c: AttentionCase): Promise<Float32Array> {
  const kvDim = c.nKvHeads * c.headDim, dim = c.nHeads * c.headDim;
  const layer = { k: put(be, encodeCache(c.type, c.k, kvDim)), v: put(be, encodeCache(c.type, c.v, kvDim)), type: c.type, blockSize: c.blockSize, kvDim };
  const args: AttentionArgs = {
    q: put(be, c.q), out: f32Out(be, c.nTokens * dim), nTokens: c.nTokens, nHeads: c.nHeads, nKvHeads: c.nKvHeads,
    headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim), softcap: c.softcap, layer, blockTables: put(be, c.blockTables), tokenInfo: put(be, c.tokenInfo),
    alibi: c.alibi && { maxBias: c.alibi.maxBias, positions: put(be, c.alibi.positions) },
  };
  be.attention(args);
  return readF32(be, args.out, c.nTokens * dim);
}

/** The cache slots token t attends to, in key order. */
function keySlots(c: AttentionCase, t: number): number[] {
  const [start, first, end] = c.tokenInfo.subarray(3 * t, 3 * t + 3);
  return Array.from({ length: end - first }, (_, j) => {
    const p = first + j;
    return c.blockTables[start + Math.floor(p / c.blockSize)] * c.blockSize + (p % c.blockSize);
  });
}

/**
 * ggml's one-row flash attention (ops.cpp flash_attn_ext_f16_one_chunk, AVX-512 build) for one
 * query over f16 keys/values, emulated in scalar f32 steps: Q rounded to f16; q.k by
 * ggml_vec_dot_f16 (64 f32 lanes per 64 elements, reduced pairwise, the rest added in f64);
 * libm expf; the V accumulator rounded to f16 after every rescale and every fused v * vs + acc.
 * A softcap folds into the scale (f32 scale / softcap) and caps each score as softcap * tanhf(s);
 * ALiBi's f32 bias of each key (biases[p]) is added after that, in f32.
 */
function oneRowAttention(q: ArrayLike<number>, keys: number[][], values: number[][], scale: number, softcap = 0, biases?: readonly number[]): number[] {
  const n = q.length, qh = Array.from(q, f16Round), n64 = n & ~63;
  const sc = softcap > 0 ? fr(fr(scale) / fr(softcap)) : fr(scale); // the kernel's scale is an f32
  const cap = (s: number): number => (softcap > 0 ? fr(fr(softcap) * fr(Math.tanh(s))) : s);
  const dot = (k: number[]): number => {
    let sum = 0;
    if (n64 > 0) {
      const lane = new Array<number>(64).fill(0);
      for (let i = 0; i < n64; i++) lane[i % 64] = fr(lane[i % 64] + qh[i] * k[i]);
      const y = Array.from({ length: 16 }, (_, l) => fr(fr(lane[l] + lane[32 + l]) + fr(lane[16 + l] + lane[48 + l])));
      const z = Array.from({ length: 8 }, (_, i) => fr(y[i] + y[i + 8]));
      const w = Array.from({ length: 4 }, (_, i) => fr(z[i] + z[i + 4]));
      sum = fr(fr(w[0] + w[2]) + fr(w[1] + w[3]));
    }
    for (let i = n64; i < n; i++) sum += qh[i] * k[i];
    return fr(sum);
  };
  let m = -Infinity, s = 0;
  let acc = new Array<number>(values[0].length).fill(0);
  keys.forEach((k, p) => {
    const score = biases ? fr(cap(fr(dot(k) * sc)) + biases[p]) : cap(fr(dot(k) * sc));
    let ms = 1, vs = 1;
    if (score > m) {
      ms = fr(Math.exp(fr(m - score)));
      m = score;
      acc = acc.map((a) => f16Round(fr(a * ms)));
    } else vs = fr(Math.exp(fr(score - m)));
    acc = acc.map((a, i) => f16Round(fr(values[p][i] * vs + a)));
    s = fr(fr(s * ms) + vs);
  });
  const inv = fr(1 / s);
  return acc.map((a) => fr(a * inv));
}

/** (a), (b) and (c) for one attention case. */
async function checkAttention(label: string, c: AttentionCase): Promise<void> {
  const runs = await onEveryBackend((be) => runAttention(be, c), undefined, c.type);
  const { nHeads, nKvHeads, headDim, nTokens } = c;
  const kvDim = nKvHeads * headDim, dim = nHeads * headDim, scale = 1 / Math.sqrt(headDim);
  const oneRow = c.type === 'f16' && headDim % 16 !== 0;
  const softcap = c.softcap ?? 0;
  const alibi = c.alibi;
  // ALiBi's slopes, closed form (f64), and as ggml's f32 steps take them (for the one-row emulation)
  const pow2 = 2 ** Math.floor(Math.log2(nHeads));
  const slope = (h: number) => (alibi ? 2 ** (-alibi.maxBias * (h < pow2 ? h + 1 : (2 * (h - pow2) + 1) / 2) / pow2) : 0);
  const slopeF32 = (h: number) => {
    const b = fr(alibi!.maxBias), m = h < pow2 ? fr(2 ** fr(-b / pow2)) : fr(2 ** fr(-fr(b / 2) / pow2));
    return fr(m ** (h < pow2 ? h + 1 : 2 * (h - pow2) + 1));
  };
  // what the cache holds, and the queries K's dot product sees (over a block-type cache each head row
  // quantized to Q8_0 by the reference quantizer, as ggml's flash attention does with K's vec_dot_type)
  const held = (vals: Float32Array) => (c.type === 'f16' ? vals.map(f16Round) : isBlockKV(c.type) ? dequantize(kvElementType(c.type), quantize(kvElementType(c.type), vals, kvDim), vals.length) : vals);
  const kc = held(c.k), vc = held(c.v);
  const qk = isBlockKV(c.type) ? dequantize(GGMLType.Q8_0, quantize(GGMLType.Q8_0, c.q, headDim), c.q.length) : c.q;
  const want = new Float64Array(nTokens * dim), mag = new Float64Array(nTokens * dim);
  let maxScore = 0, maxCapped = 0, maxV = 0, maxBias = 0;
  for (let t = 0; t < nTokens; t++) {
    const slots = keySlots(c, t);
    const keyPos = (p: number) => c.tokenInfo[3 * t + 1] + p;
    for (let h = 0; h < nHeads; h++) {
      const at = (t * nHeads + h) * headDim, kvAt = Math.floor(h / (nHeads / nKvHeads)) * headDim;
      const raw = slots.map((slot) => {
        let d = 0;
        for (let i = 0; i < headDim; i++) d += qk[at + i] * kc[slot * kvDim + kvAt + i];
        return d * scale;
      });
      const capped = softcap > 0 ? raw.map((s) => softcap * Math.tanh(s / softcap)) : raw;
      const bias = alibi ? slots.map((_, p) => -slope(h) * Math.abs(alibi.positions[t] - keyPos(p))) : undefined;
      const scores = bias ? capped.map((s, p) => s + bias[p]) : capped;
      for (const b of bias ?? []) maxBias = Math.max(maxBias, Math.abs(b));
      for (const s of raw) maxScore = Math.max(maxScore, Math.abs(s));
      for (const s of capped) maxCapped = Math.max(maxCapped, Math.abs(s));
      for (const slot of slots) for (let i = 0; i < headDim; i++) maxV = Math.max(maxV, Math.abs(vc[slot * kvDim + kvAt + i]));
      if (oneRow) {
        const row = (vals: Float32Array, slot: number) => Array.from(vals.subarray(slot * kvDim + kvAt, slot * kvDim + kvAt + headDim));
        const biasF32 = alibi ? slots.map((_, p) => fr(slopeF32(h) * -Math.abs(alibi.positions[t] - keyPos(p)))) : undefined;
        want.set(oneRowAttention(c.q.subarray(at, at + headDim), slots.map((s) => row(kc, s)), slots.map((s) => row(vc, s)), scale, softcap, biasF32), at);
        continue;
      }
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < headDim; i++) {
        let acc = 0, ab = 0;
        slots.forEach((slot, p) => {
          const vv = vc[slot * kvDim + kvAt + i];
          acc += e[p] * vv;
          ab += e[p] * Math.abs(vv);
        });
        want[at + i] = acc / z;
        mag[at + i] = ab / z;
      }
    }
  }
  const scoreRounding = headDim * 2 ** -26 * maxScore; // f32 error of a score, relative to max|V|
  const capTerm = softcap > 0 ? 1.5 * 2 ** -20 * maxCapped : 0; // tanhf and the capping's roundings, relative to max|V|
  const biasTerm = (nHeads + 4) * 2 ** -23 * maxBias; // the f32 slopes' and biased scores' roundings, relative to max|V|
  const refTol = (oneRow ? 2 ** -9 : 4e-6 + scoreRounding + capTerm + biasTerm) * maxV;
  // (a)'s accumulation bound covers scores of order one; large ones add the f32 rounding of the score itself, capped ones the capping's, ALiBi's its bias's
  const scoreTerm = ((maxScore > 10 ? scoreRounding : 0) + capTerm + biasTerm) * maxV;
  if (oneRow) {
    // the emulation takes ggml's own f32 steps: equal but for an f64 exp's last bit (and tanhf's: see the header)
    for (const r of runs) {
      if (r.config.ggmlSteps && softcap === 0) {
        expectWithin(`${label} ${r.config.label} vs one-row emulation`, r.out, want, () => 1e-7);
        expect(r.out.filter((v, i) => v === fr(want[i])).length, `${label} ${r.config.label}: outputs bit-equal to the one-row emulation`).toBe(r.out.length);
      } else expectWithin(`${label} ${r.config.label} vs one-row emulation`, r.out, want, () => refTol);
    }
  } else {
    expectMath(label, runs, want, (i) => 2e-6 * mag[i] * (1 + headDim / 16) + 1e-7 + scoreTerm);
  }
  expectConfigsAgree(label, runs);
  expectNearReference(label, runs, () => refTol);
}

interface AttnScenario {
  name: string;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  blockSize: number;
  /** Per sequence: cached length, and how many of its last positions are queries in this call. */
  seqs: { len: number; nNew: number }[];
  qScale?: number;
  /**
   * Sliding window: a query at position p attends to keys max(0, p + 1 - window)..p. Blocks that
   * no query of a sequence reads are released: their block-table entries are -1, and keys before
   * the window in a held block are garbage, so reading either shows.
   */
  window?: number;
  softcap?: number;
  /** ALiBi's maxBias (AttentionArgs.alibi; the query positions are the tokens' own). */
  alibi?: number;
  /** Every query attends to its whole sequence (an encoder), not just the keys up to its own position. */
  bidirectional?: boolean;
}

const ATTN_SCENARIOS: AttnScenario[] = [
  { name: 'GQA 8/4, three sequences (decode, 3, 17 tokens)', nHeads: 8, nKvHeads: 4, headDim: 64, blockSize: 16, seqs: [{ len: 1, nNew: 1 }, { len: 37, nNew: 3 }, { len: 70, nNew: 17 }] },
  { name: 'MQA 8/1, 64-token prefill plus a decode', nHeads: 8, nKvHeads: 1, headDim: 128, blockSize: 16, seqs: [{ len: 64, nNew: 64 }, { len: 5, nNew: 1 }] },
  { name: 'MHA 4/4, odd block size 5', nHeads: 4, nKvHeads: 4, headDim: 128, blockSize: 5, seqs: [{ len: 23, nNew: 3 }, { len: 9, nNew: 9 }] },
  { name: 'GQA 32/8 (llama 3 shape), long decode', nHeads: 32, nKvHeads: 8, headDim: 128, blockSize: 32, seqs: [{ len: 200, nNew: 1 }, { len: 50, nNew: 3 }] },
  { name: 'GQA 8/2, lengths at block boundaries (16, 17, 32)', nHeads: 8, nKvHeads: 2, headDim: 64, blockSize: 16, seqs: [{ len: 16, nNew: 1 }, { len: 17, nNew: 2 }, { len: 32, nNew: 16 }] },
  // decode batches (every query tile one token) with few units for the threads split each token's keys into 256-key
  // segments computed apart and folded in order: the multi-thread configs split, one thread does not (configs agree bit for bit)
  { name: 'GQA 8/2, decode of three sequences over 700, 257 and 30 keys (split into key segments)', nHeads: 8, nKvHeads: 2, headDim: 64, blockSize: 16, seqs: [{ len: 700, nNew: 1 }, { len: 257, nNew: 1 }, { len: 30, nNew: 1 }] },
  { name: 'GQA 9/3 (m135 shape), window 300, decode over 1000 and 520 keys (split), large scores', nHeads: 9, nKvHeads: 3, headDim: 64, blockSize: 32, window: 300, seqs: [{ len: 1000, nNew: 1 }, { len: 520, nNew: 1 }], qScale: 30 },
  // a query tile of 8 tokens x 64 heads of 256 values fills the attention scratch once: one chunk, whatever the threads
  { name: 'MQA 64/1 headDim 256 (a tile as wide as the scratch)', nHeads: 64, nKvHeads: 1, headDim: 256, blockSize: 16, seqs: [{ len: 20, nNew: 9 }] },
  { name: 'GQA 8/2, 3000-key decode (long context)', nHeads: 8, nKvHeads: 2, headDim: 128, blockSize: 64, seqs: [{ len: 3000, nNew: 1 }, { len: 1025, nNew: 2 }] },
  { name: 'GQA 8/4 headDim 64, large scores (stable softmax)', nHeads: 8, nKvHeads: 4, headDim: 64, blockSize: 16, seqs: [{ len: 40, nNew: 3 }], qScale: 300 },
  // head dims that are not a multiple of 16: ggml's one-row rounding over an f16 cache
  { name: 'GQA 8/4 (stories260K shape), prefill plus a long decode', nHeads: 8, nKvHeads: 4, headDim: 8, blockSize: 16, seqs: [{ len: 64, nNew: 64 }, { len: 500, nNew: 1 }] },
  { name: 'MQA 4/1 headDim 72, large scores', nHeads: 4, nKvHeads: 1, headDim: 72, blockSize: 16, seqs: [{ len: 90, nNew: 5 }], qScale: 30 },
  // sliding windows: smaller and larger than a block, odd sizes, windows that start mid-block
  { name: 'GQA 8/4, window 5 < block 16', nHeads: 8, nKvHeads: 4, headDim: 64, blockSize: 16, window: 5, seqs: [{ len: 70, nNew: 17 }, { len: 3, nNew: 1 }, { len: 40, nNew: 1 }] },
  { name: 'MHA 4/4, window 37 > odd block 5', nHeads: 4, nKvHeads: 4, headDim: 128, blockSize: 5, window: 37, seqs: [{ len: 123, nNew: 9 }, { len: 37, nNew: 2 }, { len: 38, nNew: 1 }] },
  { name: 'GQA 4/2, window 1 (each token sees itself)', nHeads: 4, nKvHeads: 2, headDim: 64, blockSize: 4, window: 1, seqs: [{ len: 13, nNew: 5 }] },
  { name: 'GQA 8/2, window 300 over a 1025-key decode, large scores', nHeads: 8, nKvHeads: 2, headDim: 128, blockSize: 64, window: 300, seqs: [{ len: 1025, nNew: 2 }, { len: 299, nNew: 3 }], qScale: 30 },
  { name: 'GQA 8/4 (stories260K shape), window 12, block 4', nHeads: 8, nKvHeads: 4, headDim: 8, blockSize: 4, window: 12, seqs: [{ len: 60, nNew: 30 }, { len: 61, nNew: 1 }] },
  { name: 'MQA 4/1 headDim 72, window 23, odd block 7', nHeads: 4, nKvHeads: 1, headDim: 72, blockSize: 7, window: 23, seqs: [{ len: 500, nNew: 1 }, { len: 90, nNew: 5 }], qScale: 30 },
  // soft-capped scores (gemma 2: 50); caps well inside the scores' range, so tanh bends most of them
  { name: 'GQA 8/4, softcap 1.5', nHeads: 8, nKvHeads: 4, headDim: 64, blockSize: 16, seqs: [{ len: 40, nNew: 3 }, { len: 1, nNew: 1 }], qScale: 4, softcap: 1.5 },
  { name: 'GQA 8/4 (gemma 2 cap), softcap 50, large scores', nHeads: 8, nKvHeads: 4, headDim: 128, blockSize: 16, seqs: [{ len: 70, nNew: 17 }, { len: 300, nNew: 1 }], qScale: 30, softcap: 50 },
  { name: 'GQA 8/2, window 37, softcap 30, large scores', nHeads: 8, nKvHeads: 2, headDim: 128, blockSize: 16, window: 37, seqs: [{ len: 100, nNew: 5 }, { len: 20, nNew: 1 }], qScale: 30, softcap: 30 },
  { name: 'GQA 8/4 (stories260K shape), softcap 1.5', nHeads: 8, nKvHeads: 4, headDim: 8, blockSize: 16, seqs: [{ len: 64, nNew: 64 }, { len: 100, nNew: 1 }], qScale: 3, softcap: 1.5 },
  { name: 'MQA 4/1 headDim 72, window 23, odd block 7, softcap 30, large scores', nHeads: 4, nKvHeads: 1, headDim: 72, blockSize: 7, window: 23, seqs: [{ len: 90, nNew: 5 }], qScale: 30, softcap: 30 },
  // ALiBi (jina-bert-v2: encoders, maxBias 8); head counts that are not a power of two take the second slope series
  { name: 'MHA 6/6 encoder, ALiBi 8 (both slope series)', nHeads: 6, nKvHeads: 6, headDim: 32, blockSize: 16, bidirectional: true, alibi: 8, seqs: [{ len: 45, nNew: 45 }, { len: 9, nNew: 9 }], qScale: 2 },
  { name: 'MHA 12/12 (jina-v2-base shape) encoder, ALiBi 8, 100 tokens', nHeads: 12, nKvHeads: 12, headDim: 64, blockSize: 32, bidirectional: true, alibi: 8, seqs: [{ len: 100, nNew: 100 }], qScale: 2 },
  { name: 'GQA 8/4 causal, ALiBi 8, prefill plus a long decode', nHeads: 8, nKvHeads: 4, headDim: 64, blockSize: 16, alibi: 8, seqs: [{ len: 40, nNew: 17 }, { len: 300, nNew: 1 }] },
  { name: 'GQA 8/2, window 37, ALiBi 2.5', nHeads: 8, nKvHeads: 2, headDim: 128, blockSize: 16, window: 37, alibi: 2.5, seqs: [{ len: 100, nNew: 5 }, { len: 20, nNew: 1 }] },
  { name: 'GQA 8/4 (stories260K shape) encoder, ALiBi 8', nHeads: 8, nKvHeads: 4, headDim: 8, blockSize: 16, bidirectional: true, alibi: 8, seqs: [{ len: 64, nNew: 64 }, { len: 5, nNew: 5 }], qScale: 3 },
  { name: 'MQA 3/1 headDim 72 encoder, odd block 7, ALiBi 3.5, softcap 30, large scores', nHeads: 3, nKvHeads: 1, headDim: 72, blockSize: 7, bidirectional: true, alibi: 3.5, seqs: [{ len: 50, nNew: 50 }], qScale: 30, softcap: 30 },
];

/** A batch of sequences over a shuffled pool of blocks; slots no query reads hold large garbage. */
function scenarioCase(s: AttnScenario, type: KVCacheType, seed: number): AttentionCase {
  const r = rng(seed);
  const kvDim = s.nKvHeads * s.headDim, dim = s.nHeads * s.headDim;
  const blocksPerSeq = s.seqs.map((q) => Math.ceil(q.len / s.blockSize));
  const nBlocks = blocksPerSeq.reduce((a, b) => a + b, 0) + 3; // some blocks stay unused
  const pool = shuffle(Array.from({ length: nBlocks }, (_, i) => i), r);
  const tables = blocksPerSeq.map((n) => Int32Array.from(pool.splice(0, n)));
  const nSlots = nBlocks * s.blockSize;
  const k = new Float32Array(nSlots * kvDim).fill(3e4), v = new Float32Array(nSlots * kvDim).fill(-3e4);
  // Keys before the first one a sequence's earliest query attends to stay garbage; blocks holding
  // only such keys are released (-1 in the block table).
  const firstKey = (pos: number) => (s.window === undefined ? 0 : Math.max(0, pos + 1 - s.window));
  const liveFrom = s.seqs.map((q) => firstKey(q.len - q.nNew));
  s.seqs.forEach((q, si) => {
    for (let p = liveFrom[si]; p < q.len; p++) {
      const slot = tables[si][Math.floor(p / s.blockSize)] * s.blockSize + (p % s.blockSize);
      for (let i = 0; i < kvDim; i++) {
        k[slot * kvDim + i] = 2 * r() - 1;
        v[slot * kvDim + i] = 2 * r() - 1;
      }
    }
  });
  // The sequences' tables one after another, released entries (-1) included.
  const starts: number[] = [], packed: number[] = [];
  tables.forEach((t, si) => {
    starts.push(packed.length);
    t.forEach((b, i) => packed.push(i < Math.floor(liveFrom[si] / s.blockSize) ? -1 : b));
  });
  const info: number[] = [], positions: number[] = [];
  s.seqs.forEach((q, si) => {
    for (let p = q.len - q.nNew; p < q.len; p++) {
      info.push(starts[si], ...(s.bidirectional ? [0, q.len] : [firstKey(p), p + 1]));
      positions.push(p);
    }
  });
  const nTokens = info.length / 3;
  return {
    type, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, blockSize: s.blockSize, k, v,
    q: uniform(nTokens * dim, r, -(s.qScale ?? 1), s.qScale ?? 1), nTokens, blockTables: Int32Array.from(packed), tokenInfo: Int32Array.from(info), softcap: s.softcap,
    alibi: s.alibi === undefined ? undefined : { maxBias: s.alibi, positions: Int32Array.from(positions) },
  };
}

describe('attention over a paged cache: batches of sequences', () => {
  for (const [si, s] of ATTN_SCENARIOS.entries()) {
    for (const type of KV_TYPES) {
      if (isBlockKV(type) && s.headDim % 32 !== 0) continue; // whole 32-value blocks per head (typed error above)
      it(`${s.name}, headDim ${s.headDim}, ${type} cache`, async () => {
        await checkAttention(`attention ${s.name} ${type} cache`, scenarioCase(s, type, 11000 + si));
      });
    }
  }
});

// Head dims that are multiples of 16 take the f32 path on an f16 cache; 13 and 72 the one-row rounding.
const SEQUENCE_SHAPES = [
  { name: 'GQA', nHeads: 4, nKvHeads: 2, headDim: 16 },
  { name: 'MQA, odd head dim', nHeads: 3, nKvHeads: 1, headDim: 13 },
  { name: 'MHA', nHeads: 2, nKvHeads: 2, headDim: 64 },
  { name: 'GQA, head dim 72', nHeads: 4, nKvHeads: 2, headDim: 72 },
];
const SEQUENCE_TABLE = [6, 1, 7, 3, 0, 5]; // the sequence's blocks, deliberately out of order
const SEQUENCE_POSITIONS = [0, 3, 4, 12, 22];

/**
 * Five tokens of one sequence (positions 0, 3, 4, 12, 22) over a cache of 8 blocks of 4 slots,
 * every slot random: each token has a table of its own, with its released blocks -1 under a window.
 */
function sequenceCase(shape: (typeof SEQUENCE_SHAPES)[number], type: KVCacheType, window: number | undefined, seed: number): AttentionCase {
  const r = rng(seed);
  const { nHeads, nKvHeads, headDim } = shape, nSlots = 32;
  const ranges = SEQUENCE_POSITIONS.map((p) => [window === undefined ? 0 : Math.max(0, p + 1 - window), p + 1]);
  const tables = ranges.map(([first]) => SEQUENCE_TABLE.map((b, i) => (i < Math.floor(first / 4) ? -1 : b)));
  return {
    type, nHeads, nKvHeads, headDim, blockSize: 4, k: uniform(nSlots * nKvHeads * headDim, r, -2, 2), v: uniform(nSlots * nKvHeads * headDim, r, -2, 2),
    q: uniform(5 * nHeads * headDim, r, -1.5, 1.5), nTokens: 5, blockTables: Int32Array.from(tables.flat()),
    tokenInfo: Int32Array.from(ranges.flatMap(([first, end], t) => [t * SEQUENCE_TABLE.length, first, end])),
  };
}

describe('attention over a paged cache: one sequence, out-of-order blocks', () => {
  for (const type of KV_TYPES) {
    for (const [shi, shape] of SEQUENCE_SHAPES.entries()) {
      if (isBlockKV(type) && shape.headDim % 32 !== 0) continue;
      for (const window of [undefined, 6, 3]) {
        it(`${shape.name} headDim ${shape.headDim}, ${type} cache${window === undefined ? '' : `, sliding window ${window}`}`, async () => {
          await checkAttention(`attention ${shape.name} ${type} window=${window}`, sequenceCase(shape, type, window, 12000 + 10 * shi + (window ?? 0)));
        });
      }

      it(`${shape.name} headDim ${shape.headDim}, ${type} cache: a window gives, bit for bit, full attention over just its keys`, async () => {
        const c = sequenceCase(shape, type, 7, 12500 + shi);
        const kvDim = shape.nKvHeads * shape.headDim, dim = shape.nHeads * shape.headDim;
        // each token alone, its keys copied to positions 0.. of a sequence of their own (identity table)
        const compact = Array.from({ length: c.nTokens }, (_, t): AttentionCase => {
          const k = new Float32Array(c.k.length), v = new Float32Array(c.v.length);
          keySlots(c, t).forEach((slot, p) => {
            k.set(c.k.subarray(slot * kvDim, (slot + 1) * kvDim), p * kvDim);
            v.set(c.v.subarray(slot * kvDim, (slot + 1) * kvDim), p * kvDim);
          });
          const [, first, end] = c.tokenInfo.subarray(3 * t, 3 * t + 3);
          const identity = Int32Array.of(0, 1, 2, 3, 4, 5, 6, 7);
          return { ...c, k, v, q: c.q.subarray(t * dim, (t + 1) * dim), nTokens: 1, blockTables: identity, tokenInfo: Int32Array.of(0, 0, end - first) };
        });
        expect(Array.from({ length: c.nTokens }, (_, t) => c.tokenInfo[3 * t + 1]).some((first) => first > 0)).toBe(true);
        const runs = await onEveryBackend(async (be, config) => {
          const windowed = await runAttention(be, c);
          for (const [t, one] of compact.entries()) {
            expectSameBits(`${config.label} token ${t}: windowed vs compact`, windowed.subarray(t * dim, (t + 1) * dim), await runAttention(be, one));
          }
          return windowed;
        }, undefined, type);
        expectConfigsAgree(`attention ${shape.name} ${type} window 7`, runs);
      });
    }
  }

  it('an f16 cache\'s subnormal, signed-zero, largest and infinite values reach the output exactly (the WASM f32 path converts each K and V row once per tile)', async () => {
    // One token over 21 keys; q . k is +-125 (1000 * +-1 / 8), so key 7 takes all the weight (the
    // others' exps underflow to 0 in f32) and the output is V's row 7 exactly. K's other values are
    // subnormal or zero and add at most ~1e-5 to a score.
    const headDim = 64, nSlots = 32, tiny = 2 ** -24;
    const special = [tiny, -tiny, 3 * tiny, 1023 * tiny, 2 ** -14, 0, -0, 65504, -65504, Infinity, -Infinity, 1, -2.5, 6e-5];
    const k = new Float32Array(nSlots * headDim), v = new Float32Array(nSlots * headDim);
    for (let slot = 0; slot < nSlots; slot++) {
      for (let i = 0; i < headDim; i++) {
        k[slot * headDim + i] = i === 0 ? (slot === 7 ? 1 : -1) : special[(slot + i) % 7] * (i % 2 ? 1 : -1); // subnormal, smallest normal or zero
        v[slot * headDim + i] = slot === 7 ? special[i % special.length] : (i % 3) - 1;
      }
    }
    // rows without an infinity too: the same values with the infinities replaced
    for (const withInf of [true, false]) {
      const vv = withInf ? v : v.map((x) => (Number.isFinite(x) ? x : 7));
      const q = new Float32Array(headDim).fill(1);
      q[0] = 1000;
      const c: AttentionCase = { type: 'f16', nHeads: 1, nKvHeads: 1, headDim, blockSize: 16, k, v: vv, q, nTokens: 1, blockTables: Int32Array.of(1, 0), tokenInfo: Int32Array.of(0, 0, 21) };
      // key 7 sits in table entry 0 (block 1), slot 7: cache slot 16 + 7
      const kk = new Float32Array(k.length), vk = new Float32Array(k.length);
      for (let p = 0; p < 21; p++) {
        const slot = p < 16 ? 16 + p : p - 16;
        kk.set(k.subarray(p * headDim, (p + 1) * headDim), slot * headDim);
        vk.set(vv.subarray(p * headDim, (p + 1) * headDim), slot * headDim);
      }
      const want = Array.from(vv.subarray(7 * headDim, 8 * headDim), (x) => f16Round(x) + 0); // + 0: the accumulator starts at +0
      for (const config of CONFIGS.filter((cf) => cf.kind === 'wasm')) {
        const out = await runAttention(kept.get(config)!, { ...c, k: kk, v: vk });
        expect(Array.from(out), `${config.label}${withInf ? ', with infinities' : ''}`).toEqual(want);
      }
    }
  });

  it('the WASM backend rejects a softcap that is not finite and >= 0', async () => {
    const c = sequenceCase(SEQUENCE_SHAPES[0], 'f32', undefined, 1);
    for (const config of CONFIGS.filter((c) => c.kind === 'wasm')) {
      for (const softcap of [-1, NaN, Infinity]) await expect(runAttention(kept.get(config)!, { ...c, softcap }), `${config.label} softcap ${softcap}`).rejects.toThrow(BackendError);
    }
  });

  it('ALiBi: the slopes are the paper\'s (2^-8/n per head, n a power of two; other counts interleave the next one\'s); a bad maxBias or too few positions are typed errors', async () => {
    expect(Array.from(alibiSlopes(8, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 ** -k));
    expect(Array.from(alibiSlopes(8, 4))).toEqual([2, 4, 6, 8].map((k) => 2 ** -k));
    // 12 heads (jina-v2-base): the 8-head series, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (each within its f32 steps' rounding)
    const twelve = alibiSlopes(8, 12), want = [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5].map((k) => 2 ** -k);
    twelve.forEach((v, h) => expect(Math.abs(v - want[h]) / want[h], `head ${h}`).toBeLessThan(8 * 2 ** -24));
    expect(Array.from(alibiSlopes(8, 1))).toEqual([2 ** -8]);
    const c = { ...sequenceCase(SEQUENCE_SHAPES[0], 'f32', undefined, 2), alibi: { maxBias: 8, positions: Int32Array.from(SEQUENCE_POSITIONS) } };
    await onEveryBackend(async (be, config) => {
      for (const maxBias of [0, -1, NaN, Infinity]) await expect(runAttention(be, { ...c, alibi: { ...c.alibi, maxBias } }), `${config.label} maxBias ${maxBias}`).rejects.toThrow(BackendError);
      await expect(runAttention(be, { ...c, alibi: { ...c.alibi, positions: Int32Array.of(0) } }), `${config.label} one position for 5 tokens`).rejects.toThrow(BackendError);
      return 0;
    });
  });

  it('rejects inconsistent head counts', async () => {
    await onEveryBackend(async (be, config) => {
      const c = sequenceCase(SEQUENCE_SHAPES[0], 'f32', undefined, 1);
      const bad = () => runAttention(be, { ...c, nHeads: 3, nKvHeads: 2, q: c.q.subarray(0, 5 * 3 * 16) });
      await expect(bad(), config.label).rejects.toThrow(/multiple/);
      if (config.kind === 'wasm') await expect(bad(), config.label).rejects.toThrow(BackendError);
      return 0;
    });
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: stories260K on every backend (batched graph in test/reference/backend-graph.ts)
// against the plain f32 forward pass that reproduces llama2.c, and against the reference backend.

// Worst per-position logit NMSE. F32 weights and cache: f32 rounding only (measured 1e-13) → 1e-10.
// F16 weights, f16 cache: K/V and (ggml's vec_dot_type) the matmul activations rounded to f16,
// and stories260K's head dim 8 takes ggml's one-row attention rounding: f16 Q and V accumulator
// (measured 1.7e-6) → 5e-6. Q8_0/Q4_0: each of the 36 matmuls adds Q8-activation noise (NMSE
// ~2e-5 each), compounding through 5 layers (measured 1e-4..4e-4) → 5e-3. Greedy argmax must
// match where activations are not quantized.
const E2E_CASES = [
  { file: 'stories260K.gguf', kv: 'f32', bound: 1e-10, sameArgmax: true },
  { file: 'stories260K-f16.gguf', kv: 'f16', bound: 5e-6, sameArgmax: true },
  { file: 'stories260K-q8_0.gguf', kv: 'f32', bound: 5e-3, sameArgmax: false },
  { file: 'stories260K-q4_0.gguf', kv: 'f16', bound: 5e-3, sameArgmax: false },
] as const;
const MODELS = new URL('../../shared/models/', import.meta.url).pathname;
const haveModels = existsSync(MODELS + 'stories260K.gguf');
if (!haveModels) console.warn(`shared models not found at ${MODELS}: skipping the end-to-end checks`);

describe('stories260K end to end', () => {
  for (const c of E2E_CASES) {
    it.skipIf(!haveModels)(`${c.file}, ${c.kv} cache: 13-token prefill, then 6 decode steps`, async () => {
      const forward = await loadLlamaReference(MODELS + c.file);
      const tokens = [1, 403, 407, 261, 378, 1, 65, 280, 300, 500, 2, 17, 333, 45, 99, 123, 456, 7, 88];
      const want = tokens.map((t, p) => forward.forward(t, p));
      const argmax = (v: Float32Array) => v.indexOf(Math.max(...v));
      const runs = await onEveryBackend(async (be, config) => {
        const model = await loadIntoBackend(be, MODELS + c.file, c.kv, 32);
        const got = [...(await model.forwardBatch(tokens.slice(0, 13), 0))];
        for (let p = 13; p < tokens.length; p++) got.push(...(await model.forwardBatch([tokens[p]], p)));
        const worst = Math.max(...got.map((g, p) => nmse(g, want[p])));
        expect(worst, `${c.file} ${c.kv} cache ${config.label}: worst per-position logit NMSE vs the llama2.c forward`).toBeLessThanOrEqual(c.bound);
        if (c.sameArgmax) got.forEach((g, p) => expect(argmax(g), `${c.file} ${config.label}: argmax at position ${p}`).toBe(argmax(want[p])));
        return got;
      });
      const flat = runs.map((r) => ({ config: r.config, out: Float32Array.from(r.out.flatMap((g) => [...g])) }));
      expectConfigsAgree(`stories260K ${c.file}`, flat);
      const ref = referenceOf(runs);
      for (const r of runs.filter((r) => r.config !== REFERENCE)) {
        const worst = Math.max(...r.out.map((g, p) => nmse(g, ref[p])));
        expect(worst, `${c.file} ${c.kv} cache ${r.config.label}: worst per-position logit NMSE vs the reference backend`).toBeLessThanOrEqual(c.bound);
      }
    });
  }
});
