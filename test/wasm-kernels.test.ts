// WASM kernels against independent math: the reference dequantizer and plain f64 arithmetic.
// Every op is also run on 1, 2 and 3 threads and on the relaxed-emulated build (the relaxed code
// paths with the one relaxed instruction emulated exactly), and all of those must agree bit for
// bit; matmul must also be batch invariant (a token's row is the same alone or in a batch).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttentionArgs, KVLayer as TensorKVLayer, RopeParams, Tensor, WeightTensor as TensorWeight } from '../src/backend/backend.js';
import { BackendError } from '../src/backend/errors.js';
import { dequantize } from '../src/tensor/dequant.js';
import { GGMLType, rowBytes, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/backend/reference/half.js';
import { bf16Round, ropeAngle } from '../src/backend/reference/reference-backend.js';
import type { WasmBackend } from '../src/backend/wasm/create-wasm-backend.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const generated = join(root, 'src/backend/wasm/kernels.generated.ts');
const emulatedPath = join(root, 'build/wasm/kernels-relaxed-emulated.wasm');

type Factory = typeof import('../src/backend/wasm/create-wasm-backend.js');
type Features = typeof import('../src/backend/wasm/features.js');
let factory: Factory;
let features: Features;

// These kernel tests speak byte offsets into the one wasm memory (they check the kernels, below
// the Backend contract). PtrBackend wraps a WasmBackend to take them: a pointer becomes the tensor
// from it to the end of what is allocated, so the backend still checks every range it touches.
interface WeightTensor { ptr: number; type: GGMLType; rows: number; cols: number; rowBytes: number }
interface KVLayer { kPtr: number; vPtr: number; type: 'f32' | 'f16'; blockSize: number; kvDim: number }
interface PtrAttention extends Omit<AttentionArgs, 'q' | 'out' | 'layer' | 'tokenInfo' | 'blockTables'> {
  q: number; out: number; layer: KVLayer;
  /** Per token: [block table pointer, first key, end key]. */
  tokenInfo: number;
}
interface PtrBackend {
  readonly raw: WasmBackend;
  readonly nThreads: number;
  readonly sharedMemory: boolean;
  alloc(bytes: number, align?: number): number;
  u8(): Uint8Array;
  f32(ptr: number, count: number): Float32Array;
  i32(ptr: number, count: number): Int32Array;
  matmul(out: number, w: WeightTensor, x: number, nTokens: number): void;
  matmulShared(parts: { out: number; w: WeightTensor }[], x: number, nTokens: number): void;
  getRows(out: number, table: WeightTensor, ids: number, nTokens: number): void;
  rmsNorm(out: number, x: number, weight: number, n: number, nTokens: number, eps: number): void;
  rope(x: number, nTokens: number, nHeads: number, headDim: number, positions: number, p: RopeParams): void;
  swiglu(out: number, gate: number, up: number, count: number): void;
  add(out: number, a: number, b: number, count: number): void;
  addBias(out: number, x: number, bias: number, n: number, nTokens: number): void;
  silu(out: number, x: number, count: number): void;
  gelu(out: number, x: number, count: number): void;
  storeKV(layer: KVLayer, k: number, v: number, slots: number, nTokens: number): void;
  attention(a: PtrAttention): void;
  dispose(): Promise<void>;
}
function byPointer(be: PtrBackend): PtrBackend {
  const T = (ptr: number): Tensor => be.tensorAt(ptr, GGMLType.I8, [Math.max(0, be.alloc(0, 1) - ptr)]);
  const W = (w: WeightTensor): TensorWeight => ({ ...T(w.ptr), type: w.type, rows: w.rows, cols: w.cols, rowBytes: w.rowBytes });
  const L = (l: KVLayer): TensorKVLayer => ({ k: T(l.kPtr), v: T(l.vPtr), type: l.type, blockSize: l.blockSize, kvDim: l.kvDim });
  return {
    raw: be, nThreads: be.nThreads, sharedMemory: be.sharedMemory,
    alloc: (bytes, align) => be.alloc(bytes, align), u8: () => be.u8(), f32: (p, n) => be.f32(p, n), i32: (p, n) => be.i32(p, n),
    matmul: (out, w, x, n) => be.matmul(T(out), W(w), T(x), n),
    matmulShared: (parts, x, n) => be.matmulShared(parts.map((p) => ({ out: T(p.out), w: W(p.w) })), T(x), n),
    getRows: (out, table, ids, n) => be.getRows(T(out), W(table), T(ids), n),
    rmsNorm: (out, x, w, n, nTokens, eps) => be.rmsNorm(T(out), T(x), T(w), n, nTokens, eps),
    rope: (x, nTokens, nHeads, headDim, pos, p) => be.rope(T(x), nTokens, nHeads, headDim, T(pos), p),
    swiglu: (out, g, u, n) => be.swiglu(T(out), T(g), T(u), n),
    add: (out, a, b, n) => be.add(T(out), T(a), T(b), n),
    addBias: (out, x, b, n, nTokens) => be.addBias(T(out), T(x), T(b), n, nTokens),
    silu: (out, x, n) => be.silu(T(out), T(x), n),
    gelu: (out, x, n) => be.gelu(T(out), T(x), n),
    storeKV: (l, k, v, slots, n) => be.storeKV(L(l), T(k), T(v), T(slots), n),
    attention(a) {
      // The contract names a token's block table by its entry in one blockTables tensor: rebase
      // the pointers onto the lowest of them.
      const info = Int32Array.from(be.i32(a.tokenInfo, 3 * a.nTokens));
      let base = Infinity;
      for (let t = 0; t < a.nTokens; t++) base = Math.min(base, info[3 * t]!);
      for (let t = 0; t < a.nTokens; t++) info[3 * t] = (info[3 * t]! - base) / 4;
      const rebased = be.alloc(info.length * 4);
      be.i32(rebased, info.length).set(info);
      be.attention({ ...a, q: T(a.q), out: T(a.out), layer: L(a.layer), tokenInfo: T(rebased), blockTables: T(base) });
    },
    dispose: () => be.dispose(),
  };
}

/** Backends that must agree bit for bit: 1, 2, 3 threads and the relaxed-emulated build. */
let backends: { label: string; be: PtrBackend }[] = [];

beforeAll(async () => {
  // The kernels are a build product (gitignored); build them when a fresh clone has none.
  if (!existsSync(generated) || !existsSync(emulatedPath)) {
    execFileSync(process.execPath, [join(root, 'scripts/build-wasm.js')], { cwd: root, stdio: 'inherit' });
  }
  factory = await import('../src/backend/wasm/create-wasm-backend.js');
  features = await import('../src/backend/wasm/features.js');
  const emulated = new Uint8Array(readFileSync(emulatedPath));
  backends = [
    { label: '1 thread', be: byPointer(await factory.createWasmBackend({ threads: 1 })) },
    { label: '2 threads', be: byPointer(await factory.createWasmBackend({ threads: 2 })) },
    { label: '3 threads', be: byPointer(await factory.createWasmBackend({ threads: 3 })) },
    {
      label: 'relaxed-emulated',
      be: byPointer(await factory.createWasmBackend({ threads: 1, relaxedSimd: false, kernels: { baseline: emulated, relaxed: emulated } })),
    },
  ];
}, 120_000);

afterAll(async () => {
  for (const { be } of backends) await be.dispose();
});

// ------------------------------------------------------------------ helpers

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function putBytes(be: PtrBackend, bytes: Uint8Array): number {
  const p = be.alloc(bytes.length);
  be.u8().set(bytes, p);
  return p;
}
function putF32(be: PtrBackend, v: Float32Array): number {
  const p = be.alloc(v.length * 4);
  be.f32(p, v.length).set(v);
  return p;
}
function putI32(be: PtrBackend, v: ArrayLike<number>): number {
  const p = be.alloc(v.length * 4);
  be.i32(p, v.length).set(Int32Array.from(v));
  return p;
}

/** Run `op` on every backend and check the outputs are bit-identical; returns the first. */
function onAll(op: (be: PtrBackend) => Float32Array): Float32Array {
  const outs = backends.map(({ label, be }) => ({ label, out: op(be).slice() }));
  const first = new Uint32Array(outs[0]!.out.buffer);
  for (const { label, out } of outs.slice(1)) {
    expect(new Uint32Array(out.buffer), `${label} vs ${outs[0]!.label}`).toEqual(first);
  }
  return outs[0]!.out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol(i))) throw new Error(`${what}[${i}]: got ${got[i]}, want ${want[i]} (err ${err} > tol ${tol(i)})`);
  }
}

const f16Round = (x: number) => f16BitsToF32(f32ToF16Bits(x));
const fr = Math.fround;

/** Round half to even, as the kernels (and llama.cpp's x86 quantizer) do. */
function roundEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * Activations as the kernels see them: F16/BF16 weights get x rounded to f16/bf16 (ggml's
 * vec_dot_type for them); block types get it quantized, dequantized here: Q8_0 per llama.cpp's x86
 * path (d = amax/127 stored as f16, q = nearest(x * 127/amax)), Q8_K by the reference quantizer.
 * Also returns each element's rounding bound, and per 32-block Q8_1's s = f16(d * sum q) with the
 * unrounded d (what Q4_1/Q5_1 dot their min with).
 */
function kernelActivations(x: Float32Array, cols: number, fmt: 'f16' | 'bf16' | 'q8_0' | 'q8_k'): { deq: Float64Array; err: Float64Array; s81: Float64Array } {
  const deq = new Float64Array(x.length);
  const err = new Float64Array(x.length);
  const s81 = new Float64Array(x.length / 32);
  if (fmt === 'f16' || fmt === 'bf16') {
    x.forEach((v, i) => {
      deq[i] = fmt === 'f16' ? f16Round(v) : bf16Round(v);
      err[i] = Math.abs(v) * (fmt === 'f16' ? 2 ** -11 : 2 ** -8) + (fmt === 'f16' ? 2 ** -25 : 0); // + half an f16 subnormal step
    });
    return { deq, err, s81 };
  }
  if (fmt === 'q8_k') {
    const q = quantize(GGMLType.Q8_K, x, cols);
    const d = dequantize(GGMLType.Q8_K, q, x.length);
    deq.set(d);
    const dv = new DataView(q.buffer, q.byteOffset);
    // |x - q*d| <= d/2 (d = 1/iscale, f32), plus slack
    for (let b = 0; b < x.length / 256; b++) err.fill(Math.abs(dv.getFloat32(b * 292, true)) * 0.57, b * 256, b * 256 + 256);
    return { deq, err, s81 };
  }
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
    const d = f16Round(fr(amax / 127));
    const id = amax ? fr(127 / amax) : 0;
    let sum = 0;
    for (let i = 0; i < 32; i++) {
      const qi = roundEven(fr(x[b * 32 + i]! * id));
      deq[b * 32 + i] = qi * d;
      sum += qi;
    }
    s81[b] = f16Round(fr(fr(amax / 127) * sum));
    // |x - q*d_f16| <= d/2 + 127 * |d_f16 - d|  <= d * (0.5 + 127 * 2^-11), plus slack
    err.fill(d * 0.57, b * 32, b * 32 + 32);
  }
  return { deq, err, s81 };
}

/** The min (f16 at byte 2 of each block) of Q4_1/Q5_1 row r, block b. */
function blockMin(type: GGMLType, q: Uint8Array, cols: number, r: number, b: number): number {
  const at = r * rowBytes(type, cols) + b * typeTraits(type)!.blockBytes + 2;
  return f16BitsToF32(q[at]! | (q[at + 1]! << 8));
}

const FLOAT_TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16];
const Q32_TYPES = [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.IQ4_NL];
const K_TYPES = [GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K];
const ALL_TYPES = [...FLOAT_TYPES, ...Q32_TYPES, ...K_TYPES];

function colsFor(type: GGMLType): number[] {
  if (FLOAT_TYPES.includes(type)) return [1, 13, 64];
  const bs = typeTraits(type)!.blockSize;
  return [bs, 3 * bs];
}

function weightOn(be: PtrBackend, type: GGMLType, q: Uint8Array, rows: number, cols: number): WeightTensor {
  return { ptr: putBytes(be, q), type, rows, cols, rowBytes: rowBytes(type, cols) };
}

// ------------------------------------------------------------------ matmul

describe('matmul', () => {
  for (const type of ALL_TYPES) {
    it(`${typeName(type)}: reference math, exact integer path, threads, batch invariance`, () => {
      const fmt = type === GGMLType.F32 ? 'f32' : type === GGMLType.F16 ? 'f16' : type === GGMLType.BF16 ? 'bf16' : K_TYPES.includes(type) ? 'q8_k' : 'q8_0';
      const q81 = type === GGMLType.Q4_1 || type === GGMLType.Q5_1;
      let seed = 1000 + type;
      for (const cols of colsFor(type)) {
        for (const rows of [1, 3, 17]) {
          const wf = randomF32(rows * cols, seed++);
          const q = quantize(type, wf, cols);
          const wd = dequantize(type, q, rows * cols);
          for (const nTokens of [1, 5, 64]) {
            const x = randomF32(nTokens * cols, seed++, 2);
            const act = fmt === 'f32' ? undefined : kernelActivations(x, cols, fmt);
            const out = onAll((be) => {
              const w = weightOn(be, type, q, rows, cols);
              const xp = putF32(be, x);
              const op = be.alloc(nTokens * rows * 4);
              be.matmul(op, w, xp, nTokens);
              return be.f32(op, nTokens * rows).slice();
            });
            const exact = new Float64Array(nTokens * rows); // with the activations the kernel sees
            const ideal = new Float64Array(nTokens * rows); // with the f32 activations
            const mag = new Float64Array(nTokens * rows); // sum |w x|, scales the f32 rounding
            const qerr = new Float64Array(nTokens * rows); // bound of the activation-rounding error
            for (let t = 0; t < nTokens; t++) {
              for (let r = 0; r < rows; r++) {
                let e = 0, s = 0, m = 0, b = 0;
                for (let c = 0; c < cols; c++) {
                  const w = wd[r * cols + c]!;
                  const xi = x[t * cols + c]!;
                  s += w * xi;
                  m += Math.abs(w * xi);
                  if (act) {
                    // Q4_1/Q5_1: the min term is m * s (below), not m * the dequantized activations
                    e += (q81 ? w - blockMin(type, q, cols, r, c >> 5) : w) * act.deq[t * cols + c]!;
                    b += Math.abs(w) * act.err[t * cols + c]!;
                  }
                }
                if (act && q81) {
                  for (let blk = 0; blk < cols / 32; blk++) {
                    const mn = blockMin(type, q, cols, r, blk), sb = act.s81[t * (cols / 32) + blk]!;
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
            const what = `${typeName(type)} rows=${rows} cols=${cols} nTokens=${nTokens}`;
            // f32 accumulation and scale rounding only
            expectClose(out, exact, (i) => 2e-6 * mag[i]! + 1e-6 * Math.abs(exact[i]!) + 1e-30, `${what} exact`);
            // against the unquantized activations: the quantization error bound on top
            expectClose(out, ideal, (i) => qerr[i]! + 2e-6 * mag[i]! + 1e-30, `${what} ideal`);

            // batch invariance: the last token alone gives the same bits as inside the batch
            if (nTokens > 1) {
              const be = backends[0]!.be;
              const w = weightOn(be, type, q, rows, cols);
              const xp = putF32(be, x.subarray((nTokens - 1) * cols));
              const op = be.alloc(rows * 4);
              be.matmul(op, w, xp, 1);
              expect(new Uint32Array(be.f32(op, rows).slice().buffer)).toEqual(new Uint32Array(out.slice((nTokens - 1) * rows).buffer));
            }
          }
        }
      }
    });
  }

  it('F16/BF16 weights round their activations to f16/bf16 exactly, edge values included', () => {
    // A 1x1 weight of 1.0: out[t] is the rounded activation itself. Ties, the f16 subnormal range,
    // the overflow threshold (65520), f32 subnormals, infinities and NaN.
    const u = 2 ** -11, b = 2 ** -8;
    const edges = [
      0, -0, 1, 1 + u, 1 + 3 * u, -(1 + u), 1 + 2 ** -24, 65504, 65519.99, 65520, -65520, 1e38, 3.4e38, Infinity, -Infinity, NaN,
      2 ** -14, 2 ** -14 - 2 ** -25, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 5 * 2 ** -25, -(3 * 2 ** -25), 1e-10, 1e-40, -1e-40,
      1 + b, 1 + 3 * b, 255.5, 257, 2 ** -126, 3 * 2 ** -149,
    ];
    const x = Float32Array.from([...edges, ...randomF32(61, 77, 1e3), ...randomF32(40, 78, 1e-6)]);
    for (const [type, bytes, round] of [
      [GGMLType.F16, Uint8Array.of(0x00, 0x3c), f16Round],
      [GGMLType.BF16, Uint8Array.of(0x80, 0x3f), bf16Round],
    ] as const) {
      const out = onAll((be) => {
        const op = be.alloc(x.length * 4);
        be.matmul(op, weightOn(be, type, bytes, 1, 1), putF32(be, x), x.length);
        return be.f32(op, x.length).slice();
      });
      // (a sum that starts at +0 turns -0 into +0, hence === rather than Object.is)
      x.forEach((v, i) => expect(out[i] === fr(round(v)) || (Number.isNaN(v) && Number.isNaN(out[i])), `${typeName(type)} round(${v}) = ${out[i]}, want ${round(v)}`).toBe(true));
    }
  });

  it('Q4_0 and Q8_0 at a real layer shape (cols 2048, 64 tokens) across threads', () => {
    for (const type of [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K]) {
      const rows = 37, cols = 2048, nTokens = 64;
      const q = quantize(type, randomF32(rows * cols, 7, 0.05), cols);
      const x = randomF32(nTokens * cols, 8);
      onAll((be) => {
        const w = weightOn(be, type, q, rows, cols);
        const xp = putF32(be, x);
        const op = be.alloc(nTokens * rows * 4);
        be.matmul(op, w, xp, nTokens);
        return be.f32(op, nTokens * rows).slice();
      });
    }
  });

  it('more tokens than the activation scratch holds: chunked, same bits as token by token', () => {
    const be = backends[1]!.be;
    const type = GGMLType.Q8_0, rows = 8, cols = 8192, nTokens = 130; // 1 MiB scratch holds ~99 tokens
    const q = quantize(type, randomF32(rows * cols, 11), cols);
    const x = randomF32(nTokens * cols, 12);
    const w = weightOn(be, type, q, rows, cols);
    const xp = putF32(be, x);
    const op = be.alloc(nTokens * rows * 4);
    be.matmul(op, w, xp, nTokens);
    const all = be.f32(op, nTokens * rows).slice();
    const one = be.alloc(rows * 4);
    for (const t of [0, 98, 99, 129]) {
      be.matmul(one, w, xp + t * cols * 4, 1);
      expect(new Uint32Array(be.f32(one, rows).slice().buffer)).toEqual(new Uint32Array(all.slice(t * rows, t * rows + rows).buffer));
    }
  });

  it('matmulShared: several weights over one input give the bits of one matmul each', () => {
    // Six Q4_0 parts (more than one op carries), a Q8_0 and a Q6_K part between them, odd row counts
    // (partial 4-row groups at every part boundary), decode and a small batch.
    const cols = 256;
    const shapes: [GGMLType, number][] = [
      [GGMLType.Q4_0, 37], [GGMLType.Q8_0, 9], [GGMLType.Q4_0, 6], [GGMLType.Q6_K, 5], [GGMLType.Q4_0, 5],
      [GGMLType.Q4_0, 3], [GGMLType.Q4_0, 1], [GGMLType.Q4_0, 13],
    ];
    const weights = shapes.map(([type, rows], i) => ({ type, rows, q: quantize(type, randomF32(rows * cols, 40 + i, 0.05), cols) }));
    for (const nTokens of [1, 6]) {
      const x = randomF32(nTokens * cols, 60 + nTokens);
      const shared = onAll((be) => {
        const xp = putF32(be, x);
        const parts = weights.map(({ type, rows, q }) => ({ w: weightOn(be, type, q, rows, cols), out: be.alloc(nTokens * rows * 4) }));
        be.matmulShared(parts, xp, nTokens);
        return Float32Array.from(parts.flatMap((p) => [...be.f32(p.out, nTokens * p.w.rows)]));
      });
      const be = backends[0]!.be;
      const xp = putF32(be, x);
      const single = weights.flatMap(({ type, rows, q }) => {
        const out = be.alloc(nTokens * rows * 4);
        be.matmul(out, weightOn(be, type, q, rows, cols), xp, nTokens);
        return [...be.f32(out, nTokens * rows)];
      });
      expect(new Uint32Array(shared.buffer), `${nTokens} token(s)`).toEqual(new Uint32Array(Float32Array.from(single).buffer));
    }
  });

  it('rejects unsupported types and inconsistent shapes', () => {
    const be = backends[0]!.be;
    const p = be.alloc(1024);
    expect(() => be.matmul(p, { ptr: p, type: GGMLType.IQ2_XS, rows: 1, cols: 256, rowBytes: 74 }, p, 1)).toThrow(BackendError);
    expect(() => be.matmul(p, { ptr: p, type: GGMLType.Q4_0, rows: 1, cols: 40, rowBytes: 18 }, p, 1)).toThrow(/divisible by 32/);
    expect(() => be.matmul(p, { ptr: p, type: GGMLType.Q4_0, rows: 1, cols: 32, rowBytes: 20 }, p, 1)).toThrow(/rowBytes/);
  });
});

// ------------------------------------------------------------------ getRows

describe('getRows', () => {
  it('every type matches the reference dequantizer bit for bit', () => {
    for (const type of ALL_TYPES) {
      const cols = FLOAT_TYPES.includes(type) ? 13 : typeTraits(type)!.blockSize * 2;
      const rows = 9;
      const q = quantize(type, randomF32(rows * cols, 300 + type, 3), cols);
      const want = dequantize(type, q, rows * cols);
      const ids = [8, 0, 3, 3, 5];
      const out = onAll((be) => {
        const w = weightOn(be, type, q, rows, cols);
        const idp = putI32(be, ids);
        const op = be.alloc(ids.length * cols * 4);
        be.getRows(op, w, idp, ids.length);
        return be.f32(op, ids.length * cols).slice();
      });
      const expected = new Float32Array(ids.length * cols);
      ids.forEach((id, t) => expected.set(want.subarray(id * cols, id * cols + cols), t * cols));
      expect(new Uint32Array(out.buffer), typeName(type)).toEqual(new Uint32Array(expected.buffer));
    }
  });

  it('rejects ids outside the table', () => {
    const be = backends[0]!.be;
    const w = weightOn(be, GGMLType.F32, new Uint8Array(16), 2, 2);
    const idp = putI32(be, [2]);
    expect(() => be.getRows(be.alloc(8), w, idp, 1)).toThrow(/outside/);
  });
});

// ------------------------------------------------------------------ norm, activations

describe('element-wise ops', () => {
  it('rmsNorm (odd n, in place too)', () => {
    for (const [n, nTokens] of [[7, 3], [64, 5], [2051, 2]] as const) {
      const x = randomF32(n * nTokens, n, 4);
      const w = randomF32(n, n + 1, 2);
      const eps = 1e-5;
      const out = onAll((be) => {
        const xp = putF32(be, x);
        const wp = putF32(be, w);
        be.rmsNorm(xp, xp, wp, n, nTokens, eps);
        return be.f32(xp, n * nTokens).slice();
      });
      const want = new Float64Array(n * nTokens);
      for (let t = 0; t < nTokens; t++) {
        let ss = 0;
        for (let i = 0; i < n; i++) ss += x[t * n + i]! ** 2;
        const inv = 1 / Math.sqrt(ss / n + eps);
        for (let i = 0; i < n; i++) want[t * n + i] = x[t * n + i]! * inv * w[i]!;
      }
      expectClose(out, want, (i) => 4e-7 * Math.abs(want[i]!) + 1e-7, `rmsNorm n=${n}`);
    }
  });

  const silu = (v: number) => v / (1 + Math.exp(-v));
  // 0.5x(1 + tanh(y)) written as x / (1 + exp(-2y)): the same function, without tanh's cancellation to 0
  const gelu = (v: number) => v / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  // exp's polynomial (no FMA) is good to ~2 ulp, but exp(z) inherits the f32 rounding of its
  // argument z, which costs |z| ulp: tolerance relative to the result, scaled by 1 + |z|
  const relTol = (want: number, z: number) => 1e-6 * Math.abs(want) * (1 + Math.abs(z)) + 1e-37;
  const geluArg = (v: number) => 2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);

  it('swiglu, silu, gelu over the full range, including overflow of exp', () => {
    const count = 1003; // not a multiple of 4 or 16: tails
    const g = randomF32(count, 5, 12);
    g.set([0, -0, 100, -100, 88.5, -88.5, 1e-30, -1e-30, 90, -87.5, 3e38, -3e38], 0);
    const u = randomF32(count, 6, 3);
    const swi = onAll((be) => {
      const gp = putF32(be, g);
      const up = putF32(be, u);
      be.swiglu(gp, gp, up, count);
      return be.f32(gp, count).slice();
    });
    expectClose(swi, Array.from(g, (v, i) => silu(v) * u[i]!), (i) => relTol(silu(g[i]!) * u[i]!, g[i]!), 'swiglu');
    const si = onAll((be) => {
      const xp = putF32(be, g);
      const op = be.alloc(count * 4);
      be.silu(op, xp, count);
      return be.f32(op, count).slice();
    });
    expectClose(si, Array.from(g, silu), (i) => relTol(silu(g[i]!), g[i]!), 'silu');
    const ge = onAll((be) => {
      const xp = putF32(be, g);
      be.gelu(xp, xp, count);
      return be.f32(xp, count).slice();
    });
    // gelu: the cubic inside can overflow f32 for |x| > ~1e12; compare where the f64 formula is finite in f32
    expectClose(ge, Array.from(g, gelu), (i) => (Math.abs(g[i]!) > 1e12 ? Infinity : relTol(gelu(g[i]!), geluArg(g[i]!)) + 1e-30), 'gelu');
  });

  it('add and addBias', () => {
    const count = 77;
    const a = randomF32(count, 1), b = randomF32(count, 2);
    const sum = onAll((be) => {
      const ap = putF32(be, a);
      const bp = putF32(be, b);
      be.add(ap, ap, bp, count);
      return be.f32(ap, count).slice();
    });
    expect(Array.from(sum)).toEqual(Array.from(a, (v, i) => fr(v + b[i]!)));
    const n = 11, nTokens = 7;
    const x = randomF32(n * nTokens, 3), bias = randomF32(n, 4);
    const biased = onAll((be) => {
      const xp = putF32(be, x);
      const bp = putF32(be, bias);
      const op = be.alloc(n * nTokens * 4);
      be.addBias(op, xp, bp, n, nTokens);
      return be.f32(op, n * nTokens).slice();
    });
    expect(Array.from(biased)).toEqual(Array.from(x, (v, i) => fr(v + bias[i % n]!)));
  });
});

// ------------------------------------------------------------------ rope

describe('rope', () => {
  const base: RopeParams = {
    ropeDims: 64, freqBase: 10000, freqScale: 1, neox: false,
    extFactor: 0, attnFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 4096,
  };
  const cases: [string, RopeParams, number][] = [
    ['normal', base, 64],
    ['neox', { ...base, neox: true }, 64],
    ['partial dims + linear scale', { ...base, ropeDims: 32, freqScale: 0.25, freqBase: 500000 }, 80],
    ['YaRN (neox)', { ...base, neox: true, ropeDims: 48, freqScale: 1 / 8, extFactor: 1, attnFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 2048 }, 48],
    ['YaRN mixed ext factor', { ...base, freqScale: 0.5, extFactor: 0.5, attnFactor: 0.9, nCtxOrig: 512 }, 64],
  ];
  for (const [name, p, headDim] of cases) {
    it(name, () => {
      const nTokens = 5, nHeads = 3;
      const positions = [0, 1, 7, 100, 1234];
      const x = randomF32(nTokens * nHeads * headDim, headDim + p.ropeDims, 2);
      const out = onAll((be) => {
        const xp = putF32(be, x);
        const pp = putI32(be, positions);
        be.rope(xp, nTokens, nHeads, headDim, pp, p);
        return be.f32(xp, x.length).slice();
      });
      const want = Float64Array.from(x);
      const tol = new Float64Array(x.length).fill(0);
      const half = p.ropeDims / 2;
      for (let t = 0; t < nTokens; t++) {
        for (let h = 0; h < nHeads; h++) {
          const o = (t * nHeads + h) * headDim;
          for (let i = 0; i < half; i++) {
            const { cos, sin } = ropeAngle(positions[t]!, i, p);
            const a = o + (p.neox ? i : 2 * i), b = o + (p.neox ? i + half : 2 * i + 1);
            want[a] = x[a]! * cos - x[b]! * sin;
            want[b] = x[a]! * sin + x[b]! * cos;
            // theta is built by i f32 multiplications (as ggml does): relative error ~ (i + 2) ulp
            const angleErr = Math.abs(positions[t]!) * (i + 2) * 1.2e-7 + 1e-6;
            tol[a] = tol[b] = (Math.abs(x[a]!) + Math.abs(x[b]!)) * (angleErr + 1e-6) * Math.max(1, Math.abs(cos) + Math.abs(sin));
          }
        }
      }
      expectClose(out, want, (i) => tol[i]! + 1e-7, name);
    });
  }
});

// ------------------------------------------------------------------ KV cache + attention

describe('storeKV and attention', () => {
  for (const type of ['f32', 'f16'] as const) {
    it(`storeKV ${type}`, () => {
      const kvDim = 12, nTokens = 4, slots = [5, 0, 9, 2];
      const k = randomF32(nTokens * kvDim, 1, 3), v = randomF32(nTokens * kvDim, 2, 3);
      const eb = type === 'f16' ? 2 : 4;
      const cache = onAll((be) => {
        const layer: KVLayer = { kPtr: be.alloc(16 * kvDim * eb), vPtr: be.alloc(16 * kvDim * eb), type, blockSize: 4, kvDim };
        be.u8().fill(0, layer.kPtr, layer.kPtr + 16 * kvDim * eb);
        be.u8().fill(0, layer.vPtr, layer.vPtr + 16 * kvDim * eb);
        be.storeKV(layer, putF32(be, k), putF32(be, v), putI32(be, slots), nTokens);
        const u8 = be.u8();
        const bytes = new Uint8Array(2 * 16 * kvDim * eb);
        bytes.set(u8.subarray(layer.kPtr, layer.kPtr + 16 * kvDim * eb), 0);
        bytes.set(u8.subarray(layer.vPtr, layer.vPtr + 16 * kvDim * eb), 16 * kvDim * eb);
        return new Float32Array(bytes.buffer);
      });
      const dv = new DataView(cache.buffer);
      for (let t = 0; t < nTokens; t++) {
        for (let i = 0; i < kvDim; i++) {
          for (const [src, off] of [[k, 0], [v, 16 * kvDim * eb]] as const) {
            const at = off + (slots[t]! * kvDim + i) * eb;
            if (type === 'f16') expect(dv.getUint16(at, true)).toBe(f32ToF16Bits(src[t * kvDim + i]!));
            else expect(dv.getFloat32(at, true)).toBe(src[t * kvDim + i]);
          }
        }
      }
    });
  }

  /**
   * ggml's one-row flash attention (ops.cpp flash_attn_ext_f16_one_chunk, AVX-512 build) for one
   * query over f16 keys/values, emulated in scalar f32 steps: Q rounded to f16; q.k by
   * ggml_vec_dot_f16 (64 f32 lanes per 64 elements, reduced pairwise, the rest added in f64);
   * libm expf; the V accumulator rounded to f16 after every rescale and every fused v * vs + acc.
   */
  function oneRowAttention(q: number[], keys: number[][], values: number[][], scale: number): number[] {
    const n = q.length, qh = q.map(f16Round), n64 = n & ~63, sc = fr(scale); // the kernel's scale is an f32
    const dot = (k: number[]): number => {
      let sum = 0;
      if (n64 > 0) {
        const lane = new Array<number>(64).fill(0);
        for (let i = 0; i < n64; i++) lane[i % 64] = fr(lane[i % 64]! + qh[i]! * k[i]!);
        const y = Array.from({ length: 16 }, (_, l) => fr(fr(lane[l]! + lane[32 + l]!) + fr(lane[16 + l]! + lane[48 + l]!)));
        const z = Array.from({ length: 8 }, (_, i) => fr(y[i]! + y[i + 8]!));
        const w = Array.from({ length: 4 }, (_, i) => fr(z[i]! + z[i + 4]!));
        sum = fr(fr(w[0]! + w[2]!) + fr(w[1]! + w[3]!));
      }
      for (let i = n64; i < n; i++) sum += qh[i]! * k[i]!;
      return fr(sum);
    };
    let m = -Infinity, s = 0;
    let acc = new Array<number>(values[0]!.length).fill(0);
    keys.forEach((k, p) => {
      const score = fr(dot(k) * sc);
      let ms = 1, vs = 1;
      if (score > m) {
        ms = fr(Math.exp(fr(m - score)));
        m = score;
        acc = acc.map((a) => f16Round(fr(a * ms)));
      } else vs = fr(Math.exp(fr(score - m)));
      acc = acc.map((a, i) => f16Round(fr(values[p]![i]! * vs + a)));
      s = fr(fr(s * ms) + vs);
    });
    const inv = fr(1 / s);
    return acc.map((a) => fr(a * inv));
  }

  // head dims that are multiples of 16 take the f32 path on an f16 cache; 13 and 72 the one-row rounding
  const shapes = [
    { name: 'GQA', nHeads: 4, nKvHeads: 2, headDim: 16 },
    { name: 'MQA, odd head dim', nHeads: 3, nKvHeads: 1, headDim: 13 },
    { name: 'MHA', nHeads: 2, nKvHeads: 2, headDim: 64 },
    { name: 'GQA, head dim 72', nHeads: 4, nKvHeads: 2, headDim: 72 },
  ];
  /**
   * Attention of 5 tokens of one sequence (positions 0, 3, 4, 12, 22) over a paged cache whose
   * blocks are out of order; with a window, each token's table has its released blocks as -1.
   */
  function runAttention(be: PtrBackend, type: 'f32' | 'f16', shape: { nHeads: number; nKvHeads: number; headDim: number }, k: Float32Array, v: Float32Array,
    q: Float32Array, tables: number[][], ranges: [number, number][]): Float32Array {
    const { nHeads, nKvHeads, headDim } = shape;
    const blockSize = 4, nSlots = blockSize * 8, kvDim = nKvHeads * headDim, eb = type === 'f16' ? 2 : 4;
    const layer: KVLayer = { kPtr: be.alloc(nSlots * kvDim * eb), vPtr: be.alloc(nSlots * kvDim * eb), type, blockSize, kvDim };
    be.storeKV(layer, putF32(be, k), putF32(be, v), putI32(be, Array.from({ length: nSlots }, (_, i) => i)), nSlots);
    const tps = tables.map((t) => putI32(be, t));
    const info = putI32(be, ranges.flatMap(([first, end], t) => [tps[t]!, first, end]));
    const qp = putF32(be, q);
    const op = be.alloc(q.length * 4);
    be.attention({ q: qp, out: op, nTokens: ranges.length, nHeads, nKvHeads, headDim, scale: 1 / Math.sqrt(headDim), layer, tokenInfo: info });
    return be.f32(op, q.length).slice();
  }

  const TABLE = [6, 1, 7, 3, 0, 5]; // the sequence's blocks, deliberately out of order
  const POSITIONS = [0, 3, 4, 12, 22];
  /** Keys max(0, p + 1 - window)..p of each token, and its table with the blocks before them released. */
  function windowed(window: number | undefined): { ranges: [number, number][]; tables: number[][] } {
    const ranges = POSITIONS.map((p): [number, number] => [window === undefined ? 0 : Math.max(0, p + 1 - window), p + 1]);
    return { ranges, tables: ranges.map(([first]) => TABLE.map((b, i) => (i < Math.floor(first / 4) ? -1 : b))) };
  }

  for (const type of ['f32', 'f16'] as const) {
    for (const shape of shapes) {
      const { name, nHeads, nKvHeads, headDim } = shape;
      for (const window of [undefined, 6, 3]) {
        it(`attention ${name} over a paged ${type} cache${window === undefined ? '' : `, sliding window ${window}`}`, () => {
          const blockSize = 4, nBlocks = 8, kvDim = nKvHeads * headDim;
          const nSlots = blockSize * nBlocks;
          const kAll = randomF32(nSlots * kvDim, 10 + headDim, 2), vAll = randomF32(nSlots * kvDim, 20 + headDim, 2);
          const table = TABLE;
          const nTokens = 5;
          const { ranges, tables } = windowed(window);
          const q = randomF32(nTokens * nHeads * headDim, 30 + headDim, 1.5);
          const scale = 1 / Math.sqrt(headDim);
          const out = onAll((be) => runAttention(be, type, shape, kAll, vAll, q, tables, ranges));
          const cached = (arr: Float32Array, i: number) => (type === 'f16' ? f16Round(arr[i]!) : arr[i]!);
          const want = new Float64Array(q.length);
          const mag = new Float64Array(q.length);
          const oneRow = type === 'f16' && headDim % 16 !== 0;
          for (let t = 0; t < nTokens; t++) {
            for (let h = 0; h < nHeads; h++) {
              const kvh = Math.floor(h / (nHeads / nKvHeads));
              const [first, end] = ranges[t]!;
              const slots = Array.from({ length: end - first }, (_, j) => table[Math.floor((first + j) / blockSize)]! * blockSize + ((first + j) % blockSize));
              if (oneRow) {
                const row = (arr: Float32Array, slot: number) => Array.from({ length: headDim }, (_, i) => cached(arr, slot * kvDim + kvh * headDim + i));
                const qRow = Array.from(q.subarray((t * nHeads + h) * headDim, (t * nHeads + h + 1) * headDim));
                want.set(oneRowAttention(qRow, slots.map((sl) => row(kAll, sl)), slots.map((sl) => row(vAll, sl)), scale), (t * nHeads + h) * headDim);
                continue;
              }
              const s = slots.map((slot) => {
                let d = 0;
                for (let i = 0; i < headDim; i++) d += q[(t * nHeads + h) * headDim + i]! * cached(kAll, slot * kvDim + kvh * headDim + i);
                return d * scale;
              });
              const m = Math.max(...s);
              const e = s.map((v) => Math.exp(v - m));
              const z = e.reduce((a, b) => a + b, 0);
              for (let i = 0; i < headDim; i++) {
                let acc = 0, ab = 0;
                slots.forEach((slot, p) => {
                  const vv = cached(vAll, slot * kvDim + kvh * headDim + i);
                  acc += e[p]! * vv;
                  ab += e[p]! * Math.abs(vv);
                });
                want[(t * nHeads + h) * headDim + i] = acc / z;
                mag[(t * nHeads + h) * headDim + i] = ab / z;
              }
            }
          }
          // the one-row emulation takes the kernel's own steps: equal but for an f64 exp's last bit
          const tol = oneRow ? () => 1e-7 : (i: number) => 2e-6 * mag[i]! * (1 + headDim / 16) + 1e-7;
          expectClose(out, want, tol, `attention ${name} ${type}`);
          if (oneRow) expect(out.filter((v, i) => v === Math.fround(want[i]!)).length, 'one-row attention: bit-equal outputs').toBe(out.length);
        });
      }

      it(`attention ${name}, ${type} cache: a window gives, bit for bit, full attention over just its keys`, () => {
        const kvDim = nKvHeads * headDim, nSlots = 32;
        const kAll = randomF32(nSlots * kvDim, 40 + headDim, 2), vAll = randomF32(nSlots * kvDim, 50 + headDim, 2);
        const q = randomF32(5 * nHeads * headDim, 60 + headDim, 1.5);
        const { ranges, tables } = windowed(7);
        const got = onAll((be) => runAttention(be, type, shape, kAll, vAll, q, tables, ranges));
        // The same keys copied to positions 0.. of a sequence of their own (identity block table).
        const compact = ranges.map(([first, end], t) => {
          const k = new Float32Array(nSlots * kvDim), v = new Float32Array(nSlots * kvDim);
          for (let p = first; p < end; p++) {
            const slot = TABLE[Math.floor(p / 4)]! * 4 + (p % 4);
            k.set(kAll.subarray(slot * kvDim, (slot + 1) * kvDim), (p - first) * kvDim);
            v.set(vAll.subarray(slot * kvDim, (slot + 1) * kvDim), (p - first) * kvDim);
          }
          const row = q.subarray(t * nHeads * headDim, (t + 1) * nHeads * headDim);
          return onAll((be) => runAttention(be, type, shape, k, v, row, [[0, 1, 2, 3, 4, 5, 6, 7]], [[0, end - first]]));
        });
        expect(ranges.some(([first]) => first > 0)).toBe(true);
        compact.forEach((c, t) => expect(new Uint32Array(got.slice(t * c.length, (t + 1) * c.length).buffer), `token ${t}`).toEqual(new Uint32Array(c.buffer)));
      });
    }
  }

  it('rejects inconsistent head counts', () => {
    const be = backends[0]!.be;
    const layer: KVLayer = { kPtr: 64, vPtr: 64, type: 'f32', blockSize: 4, kvDim: 32 };
    expect(() => be.attention({ q: 64, out: 64, nTokens: 1, nHeads: 3, nKvHeads: 2, headDim: 16, scale: 1, layer, tokenInfo: 64 })).toThrow(/multiple/);
  });
});

// ------------------------------------------------------------------ threads, memory, features

describe('backend infrastructure', () => {
  it('threads share memory; 1 thread runs on a non-shared memory', () => {
    expect(backends[0]!.be.sharedMemory).toBe(false);
    expect(backends[0]!.be.nThreads).toBe(1);
    expect(backends[2]!.be.sharedMemory).toBe(true);
    expect(backends[2]!.be.nThreads).toBe(3);
  });

  it('many back-to-back dispatches on 3 threads stay consistent', () => {
    const be = backends[2]!.be;
    const n = 1 << 16;
    const a = putF32(be, new Float32Array(n).fill(1));
    const one = putF32(be, new Float32Array(n).fill(1));
    for (let i = 0; i < 300; i++) be.add(a, a, one, n);
    const v = be.f32(a, n);
    expect(v[0]).toBe(301);
    expect(v[n - 1]).toBe(301);
    expect(v.every((x) => x === 301)).toBe(true);
  });

  it('alloc grows memory and reports OUT_OF_MEMORY with sizes before passing 4 GiB', async () => {
    const be = await factory.createWasmBackend({ threads: 1 });
    try {
      const before = be.u8().length;
      const p = be.alloc(8 << 20);
      expect(be.u8().length).toBeGreaterThanOrEqual(p + (8 << 20));
      expect(be.u8().length).toBeGreaterThan(before);
      const sizeBefore = be.u8().length;
      let err: unknown;
      try {
        be.alloc(2 ** 32 - 1024);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BackendError);
      expect((err as BackendError).code).toBe('OUT_OF_MEMORY');
      expect((err as BackendError).message).toContain(String(2 ** 32 - 1024));
      expect(be.u8().length).toBe(sizeBefore); // nothing was allocated
    } finally {
      await be.dispose();
    }
  });

  it('dispose ends the workers; later ops throw DISPOSED', async () => {
    const be = byPointer(await factory.createWasmBackend({ threads: 2 }));
    const p = putF32(be, new Float32Array(4));
    await be.dispose();
    expect(() => be.add(p, p, p, 4)).toThrow(BackendError);
  });

  it('the known-answer probe passes on both shipped builds where they validate', async () => {
    const k = features.builtInKernels();
    expect((await features.probeKernels(k.baseline)).ok).toBe(true);
    const emulated = new Uint8Array(readFileSync(emulatedPath));
    expect((await features.probeKernels(emulated)).ok).toBe(true);
  });

  it('feature detection picks the baseline build where relaxed SIMD is missing or wrong', async () => {
    const k = features.builtInKernels();
    const relaxedValid = WebAssembly.validate(k.relaxed);
    const choice = await features.chooseKernels('auto');
    if (!relaxedValid) {
      expect(choice.build).toBe('baseline');
      await expect(features.chooseKernels(true)).rejects.toMatchObject({ code: 'RELAXED_SIMD_UNAVAILABLE' });
    }
    expect((await features.chooseKernels(false)).build).toBe('baseline');
  });

  it.runIf(process.versions.node.startsWith('20.'))(
    'Node 20 with --experimental-wasm-relaxed-simd validates the relaxed build but fails the probe',
    () => {
      const script = `
        import { builtInKernels, chooseKernels, probeKernels } from './src/backend/wasm/features.ts';
        const k = builtInKernels();
        const probe = await probeKernels(k.relaxed);
        const choice = await chooseKernels('auto');
        console.log(JSON.stringify({ valid: WebAssembly.validate(k.relaxed), probe, build: choice.build }));`;
      const out = execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
      });
      const r = JSON.parse(out.trim().split('\n').pop()!);
      expect(r.valid).toBe(true);
      expect(r.probe.ok).toBe(false);
      expect(r.probe.reason).toMatch(/known-answer/);
      expect(r.build).toBe('baseline');
    },
  );

  it('relaxed and baseline builds agree bit for bit where the relaxed build runs', async (ctx) => {
    const choice = await features.chooseKernels('auto');
    if (choice.build !== 'relaxed') {
      ctx.skip(); // this runtime cannot run relaxed SIMD correctly; the emulated build covers its code paths
      return;
    }
    const relaxed = byPointer(await factory.createWasmBackend({ threads: 1, relaxedSimd: true }));
    const baseline = backends[0]!.be;
    try {
      for (const type of ALL_TYPES) {
        const cols = FLOAT_TYPES.includes(type) ? 64 : typeTraits(type)!.blockSize * 2;
        const rows = 5, nTokens = 3;
        const q = quantize(type, randomF32(rows * cols, 77, 1), cols);
        const x = randomF32(nTokens * cols, 78, 2);
        const outs = [relaxed, baseline].map((be) => {
          const w = weightOn(be, type, q, rows, cols);
          const op = be.alloc(rows * nTokens * 4);
          be.matmul(op, w, putF32(be, x), nTokens);
          return new Uint32Array(be.f32(op, rows * nTokens).slice().buffer);
        });
        expect(outs[0], typeName(type)).toEqual(outs[1]);
      }
    } finally {
      await relaxed.dispose();
    }
  });
});
