// Helpers every kernel family shares: argument access, deterministic work splits, half-float
// conversion, horizontal sums with a fixed lane order, and a SIMD exp.
//
// Determinism rule for the whole module: an output element is always computed by one thread with
// the same sequence of f32 operations, whatever the thread count or batch size. Splits below only
// decide *which* thread computes an element, never *how*.

/** i32 argument `i` of a command block. */
@inline export function arg(args: usize, i: i32): i32 {
  return load<i32>(args + (<usize>i << 2));
}

/** f32 argument `i` of a command block (stored as its bit pattern). */
@inline export function argf(args: usize, i: i32): f32 {
  return load<f32>(args + (<usize>i << 2));
}

/** Start of thread ith's share of n units (ith = nth gives n): contiguous, fixed by (n, nth). */
@inline export function splitAt(n: i32, ith: i32, nth: i32): i32 {
  return <i32>((<i64>n * <i64>ith) / <i64>nth);
}

// 2^112: rebias an f16 exponent (bias 15) placed in f32 position (bias 127).
export const F16_REBIAS: f32 = reinterpret<f32>(0x77800000);

/** Exact f16 -> f32, including subnormals, infinities and NaN payloads. */
@inline export function f16ToF32(h: u32): f32 {
  const a = h & 0x7fff;
  let r = reinterpret<u32>(reinterpret<f32>(a << 13) * F16_REBIAS);
  if (a >= 0x7c00) r |= 0x7f800000;
  return reinterpret<f32>(r | ((h & 0x8000) << 16));
}

/** f16ToF32 on four i32 lanes each holding an f16 bit pattern: same bits as the scalar version. */
@inline export function f16x4ToF32(h: v128): v128 {
  const a = v128.and(h, i32x4.splat(0x7fff));
  let r = f32x4.mul(i32x4.shl(a, 13), f32x4.splat(F16_REBIAS));
  r = v128.or(r, v128.and(i32x4.gt_s(a, i32x4.splat(0x7bff)), i32x4.splat(0x7f800000)));
  return v128.or(r, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** Four consecutive f16 bit patterns at p, as f32x4 (one load: scales stored side by side). */
@inline export function f16x4At(p: usize): v128 {
  return f16x4ToF32(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
}

/**
 * Bytes of f16 fields (scale, min) at the head of a block that the interleaved weight layout
 * (OP_INTERLEAVE_ROWS) stores side by side for a group of four rows: the four rows' codes one
 * after another (c bytes each), then field f of row k at 4c + 8 * (f / 2) + 2 * k. (Heads ahead of
 * the codes measured half as fast for Q8_0 on an AMD EPYC.) 0: blocks stay whole.
 */
@inline export function packedHead(type: i32): usize {
  return type == 8 || type == 2 ? 2 : type == 3 ? 4 : 0; // T_Q8_0, T_Q4_0: d; T_Q4_1: d, m
}

/** f16 bit patterns at four addresses, as f32x4. */
@inline export function gatherF16(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let v = i32x4.splat(<i32>load<u16>(p0));
  v = i32x4.replace_lane(v, 1, <i32>load<u16>(p1));
  v = i32x4.replace_lane(v, 2, <i32>load<u16>(p2));
  v = i32x4.replace_lane(v, 3, <i32>load<u16>(p3));
  return f16x4ToF32(v);
}

/** f32 -> f16 bits, round to nearest even, overflow to inf, NaN to quiet 0x7e00 (as ggml). */
export function f32ToF16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >>> 16) & 0x8000;
  const ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return sign | (ax > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (ax >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: infinity
  if (ax < 0x38800000) {
    // f16 subnormal range: the value times 2^24 is exact in f32; round that to an integer.
    return sign | <u32>(<i32>nearest<f32>(reinterpret<f32>(ax) * <f32>16777216.0));
  }
  const r = ax - 0x38000000; // rebias exponent 127 -> 15
  return sign | ((r + 0x0fff + ((r >>> 13) & 1)) >>> 13);
}

/** f32 rounded through f16 and back: the value an f16 scale field stores. */
@inline export function roundF16(f: f32): f32 {
  return f16ToF32(f32ToF16(f));
}

/**
 * roundF16 on four f32 lanes (same values, NaN stays NaN): round to nearest even at f16's
 * precision by integer arithmetic on the bits where f16 is normal, by nearest(x * 2^24) * 2^-24
 * where it is subnormal (fixed spacing 2^-24), infinity from 65520 up.
 */
@inline export function roundF16x4(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const normal = v128.and(i32x4.add(a, i32x4.add(i32x4.splat(0x0fff), v128.and(i32x4.shr_u(a, 13), i32x4.splat(1)))), i32x4.splat(0xffffe000));
  const sub = f32x4.mul(f32x4.nearest(f32x4.mul(a, f32x4.splat(16777216.0))), f32x4.splat(5.9604644775390625e-8));
  let r = v128.bitselect(sub, normal, i32x4.lt_s(a, i32x4.splat(0x38800000)));
  r = v128.bitselect(i32x4.splat(0x7f800000), r, i32x4.ge_s(a, i32x4.splat(0x477ff000)));
  r = v128.or(r, v128.and(x, i32x4.splat(0x80000000)));
  return v128.bitselect(x, r, i32x4.gt_s(a, i32x4.splat(0x7f800000))); // NaN: unchanged
}

/** f32 rounded to bf16 (nearest even) and back, four lanes, as ggml's GGML_FP32_TO_BF16; NaN stays NaN. */
@inline export function roundBF16x4(x: v128): v128 {
  const r = v128.and(i32x4.add(x, i32x4.add(i32x4.splat(0x7fff), v128.and(i32x4.shr_u(x, 16), i32x4.splat(1)))), i32x4.splat(0xffff0000));
  return v128.bitselect(x, r, i32x4.gt_s(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000)));
}

/**
 * Lane sums of four i32x4 vectors: result lane k = sum of the lanes of vector k. Integer sums are
 * exact, so lane order is irrelevant here; the f32 version below fixes an order: (l0+l2)+(l1+l3).
 */
@inline export function hsum4i(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i64x2.shuffle(ab, cd, 0, 2), i64x2.shuffle(ab, cd, 1, 3));
}

@inline export function hsum4f(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(i64x2.shuffle(ab, cd, 0, 2), i64x2.shuffle(ab, cd, 1, 3));
}

/** Sum of the four i32 lanes. */
@inline export function hsumi(v: v128): i32 {
  const s = i32x4.add(v, i64x2.shuffle(v, v, 1, 0));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** Sum of the four f32 lanes in the same order as hsum4f: (l0+l2)+(l1+l3). */
@inline export function hsumf(v: v128): f32 {
  const s = f32x4.add(v, i64x2.shuffle(v, v, 1, 0));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/** Store the first `n` (1..4) lanes of v at p. */
@inline export function storeLanes(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

// exp on f32x4: ggml's ggml_v_expf (Cody-Waite reduction, degree-5 polynomial), written with
// separate mul and add (no FMA). Every lane's result depends only on that lane's input: the slow
// path (|n| > 126) is chosen per lane by bitselect. It is skipped when no lane needs it, which
// changes no result but matters for speed: its factors underflow for ordinary inputs, and x86
// handles each underflowing multiply in a microcode assist (wasm keeps IEEE subnormals, no FTZ);
// computing it always made exp ~5x slower (softmax and SwiGLU dominated by it).
const EXP_SHIFT: f32 = reinterpret<f32>(0x4b400000); // 1.5 * 2^23
const EXP_LOG2E: f32 = reinterpret<f32>(0x3fb8aa3b);
const EXP_LN2_HI: f32 = reinterpret<f32>(0x3f317200);
const EXP_LN2_LO: f32 = reinterpret<f32>(0x35bfbe8e);
const EXP_C1: f32 = reinterpret<f32>(0x3c072010);
const EXP_C2: f32 = reinterpret<f32>(0x3d2b9f17);
const EXP_C3: f32 = reinterpret<f32>(0x3e2aaf33);
const EXP_C4: f32 = reinterpret<f32>(0x3efffedb);
const EXP_C5: f32 = reinterpret<f32>(0x3f7ffff6);

@inline export function expv(x: v128): v128 {
  const r = f32x4.splat(EXP_SHIFT);
  const z = f32x4.add(f32x4.mul(x, f32x4.splat(EXP_LOG2E)), r);
  const n = f32x4.sub(z, r);
  const b = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(EXP_LN2_HI))), f32x4.mul(n, f32x4.splat(EXP_LN2_LO)));
  const e = i32x4.shl(z, 23);
  const k = i32x4.add(e, i32x4.splat(0x3f800000));
  const absn = f32x4.abs(n);
  const u = f32x4.mul(b, b);
  const p1 = f32x4.add(f32x4.mul(f32x4.splat(EXP_C1), b), f32x4.splat(EXP_C2));
  const p2 = f32x4.add(f32x4.mul(f32x4.splat(EXP_C3), b), f32x4.splat(EXP_C4));
  const j = f32x4.add(f32x4.mul(f32x4.add(f32x4.mul(p1, u), p2), u), f32x4.mul(f32x4.splat(EXP_C5), b));
  const fast = f32x4.add(f32x4.mul(j, k), k);
  const big = f32x4.gt(absn, f32x4.splat(126));
  if (!v128.any_true(big)) return fast;
  // |n| > 126: build 2^n from two factors so neither over- nor underflows early.
  const g = v128.and(f32x4.le(n, f32x4.splat(0)), i32x4.splat(0x82000000));
  const s1 = i32x4.add(g, i32x4.splat(0x7f000000));
  const s2 = i32x4.sub(e, g);
  const huge = f32x4.gt(absn, f32x4.splat(192));
  const slow = v128.bitselect(f32x4.mul(s1, s1), f32x4.mul(f32x4.add(f32x4.mul(s2, j), s2), s1), huge);
  return v128.bitselect(slow, fast, big);
}

/** Scalar exp with exactly the lane math of expv. */
@inline export function expf(x: f32): f32 {
  return f32x4.extract_lane(expv(f32x4.splat(x)), 0);
}

// Kernels take the relaxed-SIMD code paths in the relaxed build, and in a test-only build that
// emulates the one relaxed instruction exactly (WF_EMULATE_RELAXED, set by asconfig.json), so
// those paths are checked even on runtimes whose relaxed dot is missing or wrong.
// @ts-ignore: WF_EMULATE_RELAXED is a compile-time constant from `asc --use`
export const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD || WF_EMULATE_RELAXED != 0;

/**
 * Baseline build only: Q4_0/Q4_1/Q8_0 read activations pre-widened to i16, each 16 values stored
 * as [8 even-indexed, 8 odd-indexed]. That is the order in which 16-bit lane operations take the
 * weights apart (low byte / high byte of each i16), so neither side needs byte-to-i16 widening.
 */
export const WIDE_ACT: bool = !RELAXED;

/**
 * Whether a weight type's kernels read wide activations: Q4_0/Q4_1 in the baseline build, Q8_0 in
 * both (its signed weights cannot take the relaxed i7 dot, so the relaxed build would widen the
 * activations per row anyway).
 */
@inline export function wideActType(type: i32): bool {
  return type == 8 || (WIDE_ACT && (type == 2 || type == 3)); // T_Q8_0; T_Q4_0, T_Q4_1
}

/**
 * wideActType for a matmul of nTokens tokens (the quantizer and the kernels see the same count).
 * Baseline build: Q4_K's one-token kernel reads wide activations (its 4x4 prompt tile measured
 * slower on them, so batches of 4+ keep bytes), and Q5_0's 4x4 tile does (its one-token kernel
 * measured slower on them). Relaxed build: Q4_0 / Q4_1 batches of 4+ tokens do, for the baseline's
 * i16 tiles (22-25 GMAC/s against 16-17 for a tile on the relaxed dot, Node 22 on an AVX2 EPYC:
 * V8 lowers that dot to three instructions per 16 products, an i16 dot is one per 8 and the tile
 * widens each weight once for four tokens); one token keeps bytes for the relaxed dot. Same exact
 * integer sums either way.
 */
@inline export function wideAct(type: i32, nTokens: i32): bool {
  if (wideActType(type)) return true;
  if (!WIDE_ACT) return (type == 2 || type == 3) && nTokens >= 4; // T_Q4_0, T_Q4_1
  return (type == 12 && nTokens < 4) || (type == 6 && nTokens >= 4); // T_Q4_K, T_Q5_0
}

/**
 * acc + dot(a, w) in i32 lanes, w holding 7-bit unsigned values (0..127), a any i8. The relaxed
 * instruction is exact on that domain; the emulation widens to i16. Lane grouping differs between
 * the two (4 vs 2 products per lane) but kernels only use the exact total of all lanes.
 */
@inline export function rdot(a: v128, w: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.relaxed_dot_i8x16_i7x16_add_s(a, w, acc);
  return i32x4.add(
    acc,
    i32x4.add(
      i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), i16x8.extend_low_i8x16_s(a)),
      i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), i16x8.extend_high_i8x16_s(a)),
    ),
  );
}
