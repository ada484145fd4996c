// Matrix x vector / matrix x matrix over weights kept in their GGUF type.
//
// Every kernel computes four weight rows against one token (or, for prefill, one row against four
// tokens, or a tile of four rows x four tokens: Q4_0/Q4_1/Q8_0/Q5_0 and the K-quants Q4_K/Q5_K/Q6_K,
// whose weights are unpacked once per tile) and returns the four results as the lanes of an f32x4. Lanes never mix and every lane
// runs the same per-(row, token) arithmetic, so a result does not depend on which rows or tokens
// share its tile, how rows are split over threads, or the batch size: the driver may pass a row
// more than once (duplicates fill the last group) and simply drops the extra lanes.
//
// Quantized types follow llama.cpp: the activations are quantized once per matmul (Q8_0 blocks for
// the 32-element types, Q8_K for the K-quants, see quantize.ts), each block's dot product is an
// exact i32 computed with SIMD integer dots, and only the scale step is floating point, in a fixed
// order per block:  acc += f32(isum) * (d_w * d_a)  (+ the type's min/offset terms).
// Unsigned-nibble types dot the raw 0..N codes and subtract offset * sum(activations), which keeps
// the weight operand 7-bit for the relaxed instruction; signed types (Q8_0, IQ4_NL) always widen.
//
// F32/F16/BF16 weights use f32 activations (for F16/BF16 already rounded to f16/bf16 by roundAct,
// as ggml converts them to the weight's vec_dot_type, so every product is exact): per row two f32x4
// accumulators over 8-element chunks (multiply then add, never fused), reduced as hsum4f, then the
// tail elements added in order.
import {
  RELAXED, WIDE_ACT, arg, wideAct, wideActType, f16ToF32, f16x4At, f16x4ToF32, gatherF16, packedHead, hsum4f, hsum4i, hsumi, rdot, splitAt, storeLanes,
} from './common';
import {
  ACT_Q8_K, MATMUL_ACT, MATMUL_COLS, MATMUL_D, MATMUL_MAX_PARTS, MATMUL_N_PARTS, MATMUL_N_TOKENS, MATMUL_PARTS, MATMUL_PART_OUT, MATMUL_PART_ROWS,
  MATMUL_PART_SLOTS, MATMUL_PART_WEIGHT, MATMUL_PART_INTERLEAVED, INTERLEAVE_PTR, INTERLEAVE_GROUPS, INTERLEAVE_ROW_BYTES, INTERLEAVE_TYPE, INTERLEAVE_TEMP, MATMUL_QS, MATMUL_ROW_BYTES, MATMUL_S, MATMUL_TYPE, MATMUL_X, T_BF16, T_F16, T_F32, T_IQ4_NL, T_Q2_K, T_Q3_K, T_Q4_0, T_Q4_1, T_Q4_K, T_Q5_0, T_Q5_1, T_Q5_K, T_Q6_K, T_Q8_0,
} from './abi';

const ZERO: v128 = i32x4.splat(0);

// Rows per interleaved group of the weight being read: 1 (the file's layout, row after row) or 4
// (OP_INTERLEAVE_ROWS: block b of rows 4g..4g+3 side by side, so a row's next block is 4 blocks on;
// for Q4_0/Q4_1/Q8_0 the four blocks' codes, then their scales side by side: packedHead in common.ts,
// read by the kernels named ...i below). Set per weight by matmul; each thread has its own
// instance, so its own copy.
let ROWS_INTERLEAVED: usize = 1;

@inline function vec4i(a: i32, b: i32, c: i32, d: i32): v128 {
  return i32x4.replace_lane(i32x4.replace_lane(i32x4.replace_lane(i32x4.splat(a), 1, b), 2, c), 3, d);
}

@inline function vec4f(a: f32, b: f32, c: f32, d: f32): v128 {
  return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(a), 1, b), 2, c), 3, d);
}

// i8 activations widened to i16 for the baseline dot (the relaxed paths dot i8 directly).
@inline function i16Lo(x: v128): v128 {
  return RELAXED ? ZERO : i16x8.extend_low_i8x16_s(x);
}
@inline function i16Hi(x: v128): v128 {
  return RELAXED ? ZERO : i16x8.extend_high_i8x16_s(x);
}

/** acc + dot(w, x): w 16 unsigned codes 0..127, x 16 i8 activations, lo/hi = x widened (baseline). */
@inline function udot(w: v128, x: v128, lo: v128, hi: v128, acc: v128): v128 {
  if (RELAXED) return rdot(x, w, acc);
  return i32x4.add(acc, udot0(w, x, lo, hi));
}

/** udot with no accumulator (adding a zero vector is not folded away by the compilers: an op per call). */
@inline function udot0(w: v128, x: v128, lo: v128, hi: v128): v128 {
  if (RELAXED) return rdot(x, w, ZERO);
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(w), lo), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(w), hi));
}

/** acc + dot(w, x) for signed weights (any i8); lo/hi = x widened. */
@inline function sdot(w: v128, lo: v128, hi: v128, acc: v128): v128 {
  return i32x4.add(acc, sdot0(w, lo, hi));
}
@inline function sdot0(w: v128, lo: v128, hi: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), lo), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), hi));
}

@inline function lowNib(v: v128): v128 {
  return v128.and(v, i8x16.splat(0x0f));
}
// Byte shifts are emulated on x86 (no 8-bit vector shifts); a 16-bit shift followed by the mask
// we need anyway gives the same bytes in fewer instructions.
@inline function highNib(v: v128): v128 {
  return v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f));
}

/** (byte >> shift) & mask in every byte, for masks that drop the bits a 16-bit shift drags in. */
@inline function bits(v: v128, shift: i32, mask: i8): v128 {
  return v128.and(i16x8.shr_u(v, shift), i8x16.splat(mask));
}

/** acc + f32(isum) * (d * da): the one scale step of the single-scale block types. */
@inline function scaleAcc(acc: v128, isum: v128, d: v128, da: f32): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, f32x4.splat(da))));
}

/** acc + (f32(isum) * (d * da) + f32(msum) * (m * da)): blocks with a min/offset term. */
@inline function scaleAccMin(acc: v128, isum: v128, d: v128, msum: v128, m: v128, da: f32): v128 {
  const sa = f32x4.splat(da);
  const t1 = f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, sa));
  const t2 = f32x4.mul(f32x4.convert_i32x4_s(msum), f32x4.mul(m, sa));
  return f32x4.add(acc, f32x4.add(t1, t2));
}

/** v with lane r (0..3, a loop counter: replace_lane needs a constant) set to x. */
@inline function withLane(v: v128, r: i32, x: i32): v128 {
  if (r == 0) return i32x4.replace_lane(v, 0, x);
  if (r == 1) return i32x4.replace_lane(v, 1, x);
  if (r == 2) return i32x4.replace_lane(v, 2, x);
  return i32x4.replace_lane(v, 3, x);
}

/** A tile's four tokens' results (f32x4 over its four rows each) to out, one token per outRow. */
@inline function storeTile(out: usize, outRow: usize, c0: v128, c1: v128, c2: v128, c3: v128): void {
  v128.store(out, c0);
  v128.store(out + outRow, c1);
  v128.store(out + 2 * outRow, c2);
  v128.store(out + 3 * outRow, c3);
}

// ---------------------------------------------------------------- 32-element block types

// Q8_0: d f16, qs[32] i8 (q: the codes)
@inline function q8Row(q: usize, l0: v128, h0: v128, l1: v128, h1: v128): v128 {
  return sdot(v128.load(q, 16), l1, h1, sdot0(v128.load(q), l0, h0));
}

// Wide activations (baseline, see WIDE_ACT in common.ts): a block is 4 i16x8 vectors, values
// [0..15 even, 0..15 odd, 16..31 even, 16..31 odd]; the weights are split the same way with
// 16-bit lane operations.
@inline function dot4w(e0: v128, o0: v128, e1: v128, o1: v128, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(e0, a0), i32x4.dot_i16x8_s(o0, a1)),
    i32x4.add(i32x4.dot_i16x8_s(e1, a2), i32x4.dot_i16x8_s(o1, a3)),
  );
}

/** dot4w with the activations loaded from a. */
@inline function dot4wAt(e0: v128, o0: v128, e1: v128, o1: v128, a: usize): v128 {
  return dot4w(e0, o0, e1, o1, v128.load(a), v128.load(a, 16), v128.load(a, 32), v128.load(a, 48));
}

/** Q8_0 codes (32 i8 at q) against one token's wide activations. */
@inline function q8RowWide(q: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const v0 = v128.load(q);
  const v1 = v128.load(q, 16);
  return dot4w(i16x8.shr_s(i16x8.shl(v0, 8), 8), i16x8.shr_s(v0, 8), i16x8.shr_s(i16x8.shl(v1, 8), 8), i16x8.shr_s(v1, 8), a0, a1, a2, a3);
}

/** Q4_0/Q4_1 nibbles (16 bytes at q) against one token's wide activations. */
@inline function nibRowWide(q: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const v = v128.load(q);
  const m = i16x8.splat(0x0f);
  return dot4w(v128.and(v, m), v128.and(i16x8.shr_u(v, 8), m), v128.and(i16x8.shr_u(v, 4), m), i16x8.shr_u(v, 12), a0, a1, a2, a3);
}

/** Integer block sums of four rows of Q8_0 codes (at q0..q3) against one token's activations. */
@inline function q8Sums(q0: usize, q1: usize, q2: usize, q3: usize, a: usize): v128 {
  if (wideActType(T_Q8_0)) {
    const a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
    return hsum4i(q8RowWide(q0, a0, a1, a2, a3), q8RowWide(q1, a0, a1, a2, a3), q8RowWide(q2, a0, a1, a2, a3), q8RowWide(q3, a0, a1, a2, a3));
  }
  const x0 = v128.load(a);
  const x1 = v128.load(a, 16);
  const l0 = i16x8.extend_low_i8x16_s(x0), h0 = i16x8.extend_high_i8x16_s(x0);
  const l1 = i16x8.extend_low_i8x16_s(x1), h1 = i16x8.extend_high_i8x16_s(x1);
  return hsum4i(q8Row(q0, l0, h0, l1, h1), q8Row(q1, l0, h0, l1, h1), q8Row(q2, l0, h0, l1, h1), q8Row(q3, l0, h0, l1, h1));
}

const Q8_ACT: usize = wideActType(T_Q8_0) ? 64 : 32; // bytes of one Q8_0 activation block

function dotQ8_0(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    acc = scaleAcc(acc, q8Sums(w0 + 2, w1 + 2, w2 + 2, w3 + 2, a), gatherF16(w0, w1, w2, w3), load<f32>(ad));
    w0 += 34; w1 += 34; w2 += 34; w3 += 34;
    a += Q8_ACT; ad += 4;
  }
  return acc;
}

// Q4_0 / Q4_1: element j in the low nibble of qs[j], element j+16 in its high nibble.
@inline function nibRow(v: v128, x0: v128, x1: v128, l0: v128, h0: v128, l1: v128, h1: v128): v128 {
  return udot(highNib(v), x1, l1, h1, udot0(lowNib(v), x0, l0, h0));
}

/** Integer block sums of 4 rows of Q4_0/Q4_1 nibbles (16 bytes at wk + qoff) against one token (wide: its activations are, see wideAct). */
@inline function nibSums(wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, qoff: usize, a: usize): v128 {
  if (wide) {
    const a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
    return hsum4i(nibRowWide(w0 + qoff, a0, a1, a2, a3), nibRowWide(w1 + qoff, a0, a1, a2, a3), nibRowWide(w2 + qoff, a0, a1, a2, a3), nibRowWide(w3 + qoff, a0, a1, a2, a3));
  }
  const x0 = v128.load(a);
  const x1 = v128.load(a, 16);
  const l0 = i16Lo(x0), h0 = i16Hi(x0), l1 = i16Lo(x1), h1 = i16Hi(x1);
  return hsum4i(
    nibRow(v128.load(w0 + qoff), x0, x1, l0, h0, l1, h1),
    nibRow(v128.load(w1 + qoff), x0, x1, l0, h0, l1, h1),
    nibRow(v128.load(w2 + qoff), x0, x1, l0, h0, l1, h1),
    nibRow(v128.load(w3 + qoff), x0, x1, l0, h0, l1, h1),
  );
}

/** Bytes of one 32-value activation block (Q4_0/Q4_1): i16 values when wide, else i8. */
@inline function q32Act(wide: bool): usize {
  return wide ? 64 : 32;
}

@inline function dotQ4_0At(wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const isum = i32x4.sub(nibSums(wide, w0, w1, w2, w3, 2, a), i32x4.splat(load<i32>(as) << 3)); // codes are q + 8
    acc = scaleAcc(acc, isum, gatherF16(w0, w1, w2, w3), load<f32>(ad));
    w0 += 18; w1 += 18; w2 += 18; w3 += 18;
    a += q32Act(wide); ad += 4; as += 4;
  }
  return acc;
}

// Q4_1 / Q5_1 against Q8_1 activations, as ggml's vec_dot_q4_1_q8_1: the scale terms accumulate
// in acc, the min terms m * s (s = the activation block's f16 d * sum) separately, added at the end.

@inline function dotQ4_1At(wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0), macc = acc;
  for (let b = 0; b < nb; b++) {
    const isum = nibSums(wide, w0, w1, w2, w3, 4, a);
    acc = scaleAcc(acc, isum, gatherF16(w0, w1, w2, w3), load<f32>(ad));
    macc = f32x4.add(macc, f32x4.mul(gatherF16(w0 + 2, w1 + 2, w2 + 2, w3 + 2), f32x4.splat(load<f32>(as))));
    w0 += 20; w1 += 20; w2 += 20; w3 += 20;
    a += q32Act(wide); ad += 4; as += 4;
  }
  return f32x4.add(acc, macc);
}

// The 4-row kernels over interleaved rows (packedHead): one weight pointer, the four rows' scales
// in one load; the same integer sums and float steps, so the same bits as the file layout's.

function dotQ8_0i(w: usize, a: usize, ad: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    acc = scaleAcc(acc, q8Sums(w, w + 32, w + 64, w + 96, a), f16x4At(w + 128), load<f32>(ad));
    w += 136; a += Q8_ACT; ad += 4;
  }
  return acc;
}

@inline function dotQ4_0iAt(wide: bool, w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const isum = i32x4.sub(nibSums(wide, w, w + 16, w + 32, w + 48, 0, a), i32x4.splat(load<i32>(as) << 3)); // codes are q + 8
    acc = scaleAcc(acc, isum, f16x4At(w + 64), load<f32>(ad));
    w += 72; a += q32Act(wide); ad += 4; as += 4;
  }
  return acc;
}

@inline function dotQ4_1iAt(wide: bool, w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0), macc = acc;
  for (let b = 0; b < nb; b++) {
    acc = scaleAcc(acc, nibSums(wide, w, w + 16, w + 32, w + 48, 0, a), f16x4At(w + 64), load<f32>(ad));
    macc = f32x4.add(macc, f32x4.mul(f16x4At(w + 72), f32x4.splat(load<f32>(as))));
    w += 80; a += q32Act(wide); ad += 4; as += 4;
  }
  return f32x4.add(acc, macc);
}

// Each Q4_0 / Q4_1 kernel in two forms, the activations as the build reads one token's (WIDE_ACT)
// and wide (the relaxed build's leftover tokens of a batch: see wideAct); in the baseline build
// the two are the same and the second is never called.
function dotQ4_0(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_0At(WIDE_ACT, w0, w1, w2, w3, a, ad, as, nb);
}
function dotQ4_0Wide(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_0At(true, w0, w1, w2, w3, a, ad, as, nb);
}
function dotQ4_1(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_1At(WIDE_ACT, w0, w1, w2, w3, a, ad, as, nb);
}
function dotQ4_1Wide(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_1At(true, w0, w1, w2, w3, a, ad, as, nb);
}
function dotQ4_0i(w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_0iAt(WIDE_ACT, w, a, ad, as, nb);
}
function dotQ4_0iWide(w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_0iAt(true, w, a, ad, as, nb);
}
function dotQ4_1i(w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_1iAt(WIDE_ACT, w, a, ad, as, nb);
}
function dotQ4_1iWide(w: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  return dotQ4_1iAt(true, w, a, ad, as, nb);
}

// One row x four tokens (lanes = tokens), wide activations only: the weight block is unpacked once
// and used for four tokens. Per lane the float steps are those of the 4-row kernels above
// (f32(isum) * (d * da), d*da == da*d), so a result does not depend on which kernel computed it.

@inline function gather4i(p: usize, stride: usize): v128 {
  let v = i32x4.splat(load<i32>(p));
  v = i32x4.replace_lane(v, 1, load<i32>(p + stride));
  v = i32x4.replace_lane(v, 2, load<i32>(p + 2 * stride));
  return i32x4.replace_lane(v, 3, load<i32>(p + 3 * stride));
}

@inline function gather4f(p: usize, stride: usize): v128 {
  let v = f32x4.splat(load<f32>(p));
  v = f32x4.replace_lane(v, 1, load<f32>(p + stride));
  v = f32x4.replace_lane(v, 2, load<f32>(p + 2 * stride));
  return f32x4.replace_lane(v, 3, load<f32>(p + 3 * stride));
}

/**
 * kind: T_Q4_0, T_Q4_1 or T_Q8_0. aS/dS/sS: byte strides between consecutive tokens. The file's
 * layout only (for a last group of fewer than 4 rows: interleaved weights are whole groups).
 */
function dotTokens4(kind: i32, w: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32): v128 {
  const bb: usize = kind == T_Q8_0 ? 34 : kind == T_Q4_1 ? 20 : 18;
  let acc = f32x4.splat(0), macc = acc;
  for (let b = 0; b < nb; b++) {
    let isum: v128;
    if (kind == T_Q8_0) {
      const v0 = v128.load(w, 2);
      const v1 = v128.load(w, 18);
      const e0 = i16x8.shr_s(i16x8.shl(v0, 8), 8), o0 = i16x8.shr_s(v0, 8);
      const e1 = i16x8.shr_s(i16x8.shl(v1, 8), 8), o1 = i16x8.shr_s(v1, 8);
      isum = hsum4i(dot4wAt(e0, o0, e1, o1, a), dot4wAt(e0, o0, e1, o1, a + aS), dot4wAt(e0, o0, e1, o1, a + 2 * aS), dot4wAt(e0, o0, e1, o1, a + 3 * aS));
    } else {
      const v = v128.load(w + (kind == T_Q4_1 ? 4 : 2));
      const m = i16x8.splat(0x0f);
      const e0 = v128.and(v, m), o0 = v128.and(i16x8.shr_u(v, 8), m);
      const e1 = v128.and(i16x8.shr_u(v, 4), m), o1 = i16x8.shr_u(v, 12);
      isum = hsum4i(dot4wAt(e0, o0, e1, o1, a), dot4wAt(e0, o0, e1, o1, a + aS), dot4wAt(e0, o0, e1, o1, a + 2 * aS), dot4wAt(e0, o0, e1, o1, a + 3 * aS));
    }
    const da = gather4f(ad, dS);
    const d = f32x4.splat(f16ToF32(load<u16>(w)));
    if (kind == T_Q4_1) macc = f32x4.add(macc, f32x4.mul(f32x4.splat(f16ToF32(load<u16>(w, 2))), gather4f(as, sS)));
    if (kind == T_Q4_0) isum = i32x4.sub(isum, i32x4.shl(gather4i(as, sS), 3));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, da)));
    w += bb; a += 64; ad += 4; as += 4;
  }
  return kind == T_Q4_1 ? f32x4.add(acc, macc) : acc;
}

// Four rows x four tokens (wide activations only): per block the four rows' weights are unpacked
// once and each token's activations loaded once, then per token the four rows' integer sums go
// through exactly the float steps of the 4-row kernels (lanes = rows), so the results are bit-
// identical to dotQ4_0 / dotQ4_1 / dotQ8_0 for every token. Writes four f32x4 (one per token) at
// out, out + outRow, ...

@inline function tokStep(kind: i32, e0: v128, o0: v128, e1: v128, o1: v128, e2: v128, o2: v128, e3: v128, o3: v128,
  f0: v128, p0: v128, f1: v128, p1: v128, f2: v128, p2: v128, f3: v128, p3: v128,
  a: usize, ad: usize, as: usize, d: v128, acc: v128): v128 {
  const a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
  let isum = hsum4i(
    dot4w(e0, o0, f0, p0, a0, a1, a2, a3),
    dot4w(e1, o1, f1, p1, a0, a1, a2, a3),
    dot4w(e2, o2, f2, p2, a0, a1, a2, a3),
    dot4w(e3, o3, f3, p3, a0, a1, a2, a3),
  );
  if (kind == T_Q4_0) isum = i32x4.sub(isum, i32x4.splat(load<i32>(as) << 3));
  if (kind == T_Q5_0) isum = i32x4.sub(isum, i32x4.splat(load<i32>(as) << 4));
  acc = scaleAcc(acc, isum, d, load<f32>(ad));
  return acc;
}

/**
 * Four rows x four tokens. il (a constant at each call): the rows are interleaved (w1..w3 unused:
 * w0 is the group, packedHead's layout), so the loop carries one weight pointer with a constant
 * step, which leaves x86's few general registers to the rest of the loop.
 */
@inline function dotRows4Tokens4(kind: i32, il: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize,
  aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  const bb: usize = kind == T_Q8_0 ? 34 : kind == T_Q4_1 ? 20 : 18;
  const hb: usize = kind == T_Q4_1 ? 4 : 2; // f16 head: d (and m)
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  let m0 = c0, m1 = c0, m2 = c0, m3 = c0;
  for (let b = 0; b < nb; b++) {
    // the four rows' codes
    const q0 = il ? w0 : w0 + hb;
    const q1 = il ? w0 + (bb - hb) : w1 + hb;
    const q2 = il ? w0 + 2 * (bb - hb) : w2 + hb;
    const q3 = il ? w0 + 3 * (bb - hb) : w3 + hb;
    const heads = w0 + 4 * (bb - hb); // (il)
    let e0: v128, o0: v128, f0: v128, p0: v128, e1: v128, o1: v128, f1: v128, p1: v128;
    let e2: v128, o2: v128, f2: v128, p2: v128, e3: v128, o3: v128, f3: v128, p3: v128;
    if (kind == T_Q8_0) {
      let v = v128.load(q0); e0 = i16x8.shr_s(i16x8.shl(v, 8), 8); o0 = i16x8.shr_s(v, 8);
      v = v128.load(q0, 16); f0 = i16x8.shr_s(i16x8.shl(v, 8), 8); p0 = i16x8.shr_s(v, 8);
      v = v128.load(q1); e1 = i16x8.shr_s(i16x8.shl(v, 8), 8); o1 = i16x8.shr_s(v, 8);
      v = v128.load(q1, 16); f1 = i16x8.shr_s(i16x8.shl(v, 8), 8); p1 = i16x8.shr_s(v, 8);
      v = v128.load(q2); e2 = i16x8.shr_s(i16x8.shl(v, 8), 8); o2 = i16x8.shr_s(v, 8);
      v = v128.load(q2, 16); f2 = i16x8.shr_s(i16x8.shl(v, 8), 8); p2 = i16x8.shr_s(v, 8);
      v = v128.load(q3); e3 = i16x8.shr_s(i16x8.shl(v, 8), 8); o3 = i16x8.shr_s(v, 8);
      v = v128.load(q3, 16); f3 = i16x8.shr_s(i16x8.shl(v, 8), 8); p3 = i16x8.shr_s(v, 8);
    } else {
      const m = i16x8.splat(0x0f);
      let v = v128.load(q0); e0 = v128.and(v, m); o0 = v128.and(i16x8.shr_u(v, 8), m); f0 = v128.and(i16x8.shr_u(v, 4), m); p0 = i16x8.shr_u(v, 12);
      v = v128.load(q1); e1 = v128.and(v, m); o1 = v128.and(i16x8.shr_u(v, 8), m); f1 = v128.and(i16x8.shr_u(v, 4), m); p1 = i16x8.shr_u(v, 12);
      v = v128.load(q2); e2 = v128.and(v, m); o2 = v128.and(i16x8.shr_u(v, 8), m); f2 = v128.and(i16x8.shr_u(v, 4), m); p2 = i16x8.shr_u(v, 12);
      v = v128.load(q3); e3 = v128.and(v, m); o3 = v128.and(i16x8.shr_u(v, 8), m); f3 = v128.and(i16x8.shr_u(v, 4), m); p3 = i16x8.shr_u(v, 12);
    }
    const d = il ? f16x4At(heads) : gatherF16(w0, w1, w2, w3);
    c0 = tokStep(kind, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a, ad, as, d, c0);
    c1 = tokStep(kind, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + aS, ad + dS, as + sS, d, c1);
    c2 = tokStep(kind, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + 2 * aS, ad + 2 * dS, as + 2 * sS, d, c2);
    c3 = tokStep(kind, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + 3 * aS, ad + 3 * dS, as + 3 * sS, d, c3);
    if (kind == T_Q4_1) {
      const mm = il ? f16x4At(heads + 8) : gatherF16(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
      m0 = f32x4.add(m0, f32x4.mul(mm, f32x4.splat(load<f32>(as))));
      m1 = f32x4.add(m1, f32x4.mul(mm, f32x4.splat(load<f32>(as + sS))));
      m2 = f32x4.add(m2, f32x4.mul(mm, f32x4.splat(load<f32>(as + 2 * sS))));
      m3 = f32x4.add(m3, f32x4.mul(mm, f32x4.splat(load<f32>(as + 3 * sS))));
    }
    if (il) w0 += 4 * bb;
    else {
      w0 += bb; w1 += bb; w2 += bb; w3 += bb;
    }
    a += 64; ad += 4; as += 4;
  }
  if (kind == T_Q4_1) {
    c0 = f32x4.add(c0, m0); c1 = f32x4.add(c1, m1); c2 = f32x4.add(c2, m2); c3 = f32x4.add(c3, m3);
  }
  storeTile(out, outRow, c0, c1, c2, c3);
}

/**
 * Q5_0, four rows x four tokens (baseline build: wide activations): each row's codes with their fifth
 * bits unpacked once per block for four tokens, then dotQ5_0's integer sums and float steps per token.
 * il: rows interleaved (plain blocks: row k's block is k blocks after w0's).
 */
@inline function tileQ5_0(il: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize,
  aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  for (let b = 0; b < nb; b++) {
    if (il) {
      w1 = w0 + 22; w2 = w0 + 44; w3 = w0 + 66;
    }
    const e0 = q5Part(w0, 0), o0 = q5Part(w0, 1), f0 = q5Part(w0, 2), p0 = q5Part(w0, 3);
    const e1 = q5Part(w1, 0), o1 = q5Part(w1, 1), f1 = q5Part(w1, 2), p1 = q5Part(w1, 3);
    const e2 = q5Part(w2, 0), o2 = q5Part(w2, 1), f2 = q5Part(w2, 2), p2 = q5Part(w2, 3);
    const e3 = q5Part(w3, 0), o3 = q5Part(w3, 1), f3 = q5Part(w3, 2), p3 = q5Part(w3, 3);
    const d = gatherF16(w0, w1, w2, w3);
    c0 = tokStep(T_Q5_0, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a, ad, as, d, c0);
    c1 = tokStep(T_Q5_0, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + aS, ad + dS, as + sS, d, c1);
    c2 = tokStep(T_Q5_0, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + 2 * aS, ad + 2 * dS, as + 2 * sS, d, c2);
    c3 = tokStep(T_Q5_0, e0, o0, e1, o1, e2, o2, e3, o3, f0, p0, f1, p1, f2, p2, f3, p3, a + 3 * aS, ad + 3 * dS, as + 3 * sS, d, c3);
    if (il) w0 += 88;
    else {
      w0 += 22; w1 += 22; w2 += 22; w3 += 22;
    }
    a += 64; ad += 4; as += 4;
  }
  storeTile(out, outRow, c0, c1, c2, c3);
}

function tile44Q5_0(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileQ5_0(false, w0, w1, w2, w3, a, ad, as, aS, dS, sS, nb, out, outRow);
}
function tile44Q5_0i(w0: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileQ5_0(true, w0, 0, 0, 0, a, ad, as, aS, dS, sS, nb, out, outRow);
}

// Q4_0 / Q4_1 / Q8_0 tiles: wide activations in both builds (wideAct).
function tile44Q4_0(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q4_0, false, w0, w1, w2, w3, a, ad, as, aS, dS, sS, nb, out, outRow);
}
function tile44Q4_1(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q4_1, false, w0, w1, w2, w3, a, ad, as, aS, dS, sS, nb, out, outRow);
}
function tile44Q8_0(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q8_0, false, w0, w1, w2, w3, a, ad, as, aS, dS, sS, nb, out, outRow);
}

// The same tiles over interleaved rows (rows 1-3 follow w0's blocks).
function tile44Q4_0i(w0: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q4_0, true, w0, 0, 0, 0, a, ad, as, aS, dS, sS, nb, out, outRow);
}
function tile44Q4_1i(w0: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q4_1, true, w0, 0, 0, 0, a, ad, as, aS, dS, sS, nb, out, outRow);
}
function tile44Q8_0i(w0: usize, a: usize, ad: usize, as: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  dotRows4Tokens4(T_Q8_0, true, w0, 0, 0, 0, a, ad, as, aS, dS, sS, nb, out, outRow);
}

// Q5_0 / Q5_1: qh (u32) bit j is the fifth bit of element j.
const QH_SEL_LO: v128 = i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
const QH_SEL_HI: v128 = i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
const QH_BIT: v128 = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);

/** 16 bytes, 0x10 where the selected qh bit is set. */
@inline function qhBits(qh: v128, sel: v128): v128 {
  const bits = v128.and(i8x16.swizzle(qh, sel), QH_BIT);
  return v128.and(i8x16.eq(bits, QH_BIT), i8x16.splat(0x10));
}

@inline function q5Row(w: usize, qhOff: usize, x0: v128, x1: v128, l0: v128, h0: v128, l1: v128, h1: v128): v128 {
  const qh = i32x4.splat(load<i32>(w + qhOff));
  const v = v128.load(w + qhOff + 4);
  const lo = v128.or(lowNib(v), qhBits(qh, QH_SEL_LO));
  const hi = v128.or(highNib(v), qhBits(qh, QH_SEL_HI));
  return udot(hi, x1, l1, h1, udot0(lo, x0, l0, h0));
}

// Q5_0 against wide activations (baseline build): i16 lane k of the codes holds elements 2k and
// 2k + 1 (low nibbles of bytes 2k, 2k + 1) and 2k + 16, 2k + 17 (their high nibbles), as nibRowWide
// splits them; their fifth bits are qh bits 2k, 2k + 1, 16 + 2k, 17 + 2k.
const QH_EVEN: v128 = i16x8(1, 4, 16, 64, 256, 1024, 4096, 16384);
const QH_ODD: v128 = i16x8(2, 8, 32, 128, 512, 2048, 8192, -32768);

/** 0x10 in each i16 lane whose bit of `mask` is set in h. */
@inline function qhBits16(h: v128, mask: v128): v128 {
  return v128.and(i16x8.eq(v128.and(h, mask), mask), i16x8.splat(0x10));
}

/**
 * Part p (a literal) of a Q5_0 block's codes in i16 lanes as nibRowWide splits them: 0 the low
 * nibbles of the even bytes, 1 of the odd bytes, 2 the high nibbles of the even bytes, 3 of the
 * odd ones, each with its fifth bit from qh.
 */
@inline function q5Part(w: usize, p: i32): v128 {
  const qh = load<u32>(w, 2), v = v128.load(w, 6);
  const h = i16x8.splat(<i16>(p < 2 ? qh & 0xffff : qh >>> 16));
  const nib = p == 3 ? i16x8.shr_u(v, 12) : v128.and(p == 0 ? v : i16x8.shr_u(v, p == 1 ? 8 : 4), i16x8.splat(0x0f));
  return v128.or(nib, qhBits16(h, (p & 1) != 0 ? QH_ODD : QH_EVEN));
}

@inline function q5RowWide(w: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  return dot4w(q5Part(w, 0), q5Part(w, 1), q5Part(w, 2), q5Part(w, 3), a0, a1, a2, a3);
}

/** wide: the activations are (batches of 4+ tokens: see wideAct). */
function dotQ5_0(wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  const step: usize = <usize>22 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    if (wide) {
      const a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
      const wsum = hsum4i(q5RowWide(w0, a0, a1, a2, a3), q5RowWide(w1, a0, a1, a2, a3), q5RowWide(w2, a0, a1, a2, a3), q5RowWide(w3, a0, a1, a2, a3));
      acc = scaleAcc(acc, i32x4.sub(wsum, i32x4.splat(load<i32>(as) << 4)), gatherF16(w0, w1, w2, w3), load<f32>(ad));
      w0 += step; w1 += step; w2 += step; w3 += step;
      a += 64; ad += 4; as += 4;
      continue;
    }
    const x0 = v128.load(a);
    const x1 = v128.load(a, 16);
    const l0 = i16Lo(x0), h0 = i16Hi(x0), l1 = i16Lo(x1), h1 = i16Hi(x1);
    let isum = hsum4i(
      q5Row(w0, 2, x0, x1, l0, h0, l1, h1),
      q5Row(w1, 2, x0, x1, l0, h0, l1, h1),
      q5Row(w2, 2, x0, x1, l0, h0, l1, h1),
      q5Row(w3, 2, x0, x1, l0, h0, l1, h1),
    );
    isum = i32x4.sub(isum, i32x4.splat(load<i32>(as) << 4)); // codes are q + 16
    acc = scaleAcc(acc, isum, gatherF16(w0, w1, w2, w3), load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 32; ad += 4; as += 4;
  }
  return acc;
}

function dotQ5_1(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, as: usize, nb: i32): v128 {
  let acc = f32x4.splat(0), macc = acc;
  const step: usize = <usize>24 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    const x0 = v128.load(a);
    const x1 = v128.load(a, 16);
    const l0 = i16Lo(x0), h0 = i16Hi(x0), l1 = i16Lo(x1), h1 = i16Hi(x1);
    const isum = hsum4i(
      q5Row(w0, 4, x0, x1, l0, h0, l1, h1),
      q5Row(w1, 4, x0, x1, l0, h0, l1, h1),
      q5Row(w2, 4, x0, x1, l0, h0, l1, h1),
      q5Row(w3, 4, x0, x1, l0, h0, l1, h1),
    );
    acc = scaleAcc(acc, isum, gatherF16(w0, w1, w2, w3), load<f32>(ad));
    macc = f32x4.add(macc, f32x4.mul(gatherF16(w0 + 2, w1 + 2, w2 + 2, w3 + 2), f32x4.splat(load<f32>(as))));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 32; ad += 4; as += 4;
  }
  return f32x4.add(acc, macc);
}

// IQ4_NL: nibbles index a signed 16-entry code book (kvalues_iq4nl).
const IQ4NL_VALUES: v128 = i8x16(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

@inline function iq4Row(w: usize, l0: v128, h0: v128, l1: v128, h1: v128): v128 {
  const v = v128.load(w, 2);
  const lo = i8x16.swizzle(IQ4NL_VALUES, lowNib(v));
  const hi = i8x16.swizzle(IQ4NL_VALUES, highNib(v));
  return sdot(hi, l1, h1, sdot0(lo, l0, h0));
}

function dotIQ4_NL(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  const step: usize = <usize>18 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    const x0 = v128.load(a);
    const x1 = v128.load(a, 16);
    const l0 = i16x8.extend_low_i8x16_s(x0), h0 = i16x8.extend_high_i8x16_s(x0);
    const l1 = i16x8.extend_low_i8x16_s(x1), h1 = i16x8.extend_high_i8x16_s(x1);
    const isum = hsum4i(iq4Row(w0, l0, h0, l1, h1), iq4Row(w1, l0, h0, l1, h1), iq4Row(w2, l0, h0, l1, h1), iq4Row(w3, l0, h0, l1, h1));
    acc = scaleAcc(acc, isum, gatherF16(w0, w1, w2, w3), load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 32; ad += 4;
  }
  return acc;
}

// ---------------------------------------------------------------- K-quants (256-element super-blocks)
// Activations are Q8_K: qs i8[256], d f32, bsums i16[16] (sum of each 16 values).
// Element e of a super-block belongs to 16-group e/16; a group's integer dot is multiplied by its
// integer sub-scale before summing, so the whole super-block stays one exact i32 per row.

@inline function bsum(bs: usize, g: i32): i32 {
  return <i32>load<i16>(bs + (<usize>g << 1));
}

/** acc + p * scale (i32 lanes). */
@inline function mulAcc(acc: v128, p: v128, scale: i32): v128 {
  return i32x4.add(acc, i32x4.mul(p, i32x4.splat(scale)));
}

// Q2_K: scales[16] (low nibble scale, high nibble min) @0, qs[64] @16, d @80, dmin @82.
// Element 128n + 32j + 16c + l is bits 2j..2j+1 of qs[32n + 16c + l].
@inline function q2Group(w: usize, qoff: usize, shift: i32, g: i32, x: v128, lo: v128, hi: v128, acc: v128): v128 {
  const q = bits(v128.load(w + qoff), shift, 3);
  return mulAcc(acc, udot0(q, x, lo, hi), <i32>(load<u8>(w + g) & 15));
}

function dotQ2_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  const step: usize = <usize>84 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
    let m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (let c = 0; c < 2; c++) {
          const g = (n << 3) | (j << 1) | c;
          const x = v128.load(a + (<usize>n << 7) + (<usize>j << 5) + (<usize>c << 4));
          const lo = i16Lo(x), hi = i16Hi(x);
          const qoff: usize = 16 + (<usize>n << 5) + (<usize>c << 4);
          const shift = j << 1;
          i0 = q2Group(w0, qoff, shift, g, x, lo, hi, i0);
          i1 = q2Group(w1, qoff, shift, g, x, lo, hi, i1);
          i2 = q2Group(w2, qoff, shift, g, x, lo, hi, i2);
          i3 = q2Group(w3, qoff, shift, g, x, lo, hi, i3);
          const s = bsum(bs, g);
          m0 += <i32>(load<u8>(w0 + g) >> 4) * s;
          m1 += <i32>(load<u8>(w1 + g) >> 4) * s;
          m2 += <i32>(load<u8>(w2 + g) >> 4) * s;
          m3 += <i32>(load<u8>(w3 + g) >> 4) * s;
        }
      }
    }
    const d = gatherF16(w0 + 80, w1 + 80, w2 + 80, w3 + 80);
    const dmin = gatherF16(w0 + 82, w1 + 82, w2 + 82, w3 + 82);
    // value = d*sc*q - dmin*m: the min term enters with a minus sign
    acc = scaleAccMin(acc, hsum4i(i0, i1, i2, i3), d, i32x4.neg(vec4i(m0, m1, m2, m3)), dmin, load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 256; ad += 4; bs += 32;
  }
  return acc;
}

// Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96 (16 packed 6-bit values, offset 32), d @108.
// Element 128n + 32j + 16c + l: low bits 2j..2j+1 of qs[32n + 16c + l], high bit (4n + j) of
// hmask[16c + l]; code = low + 4*high, value = code - 4.
@inline function q3Scale(w: usize, g: i32): i32 {
  const q = w + 96;
  const low: i32 = g < 8 ? <i32>load<u8>(q + g) & 0xf : <i32>load<u8>(q + g - 8) >> 4;
  const high: i32 = (<i32>load<u8>(q + 8 + (g & 3)) >> ((g >> 2) << 1)) & 3;
  return (low | (high << 4)) - 32;
}

@inline function q3Group(w: usize, qoff: usize, hoff: usize, shift: i32, hshift: i32, sc: i32, x: v128, lo: v128, hi: v128, acc: v128): v128 {
  const low = bits(v128.load(w + qoff), shift, 3);
  const high = i16x8.shl(bits(v128.load(w + hoff), hshift, 1), 2);
  return mulAcc(acc, udot0(v128.or(low, high), x, lo, hi), sc);
}

function dotQ3_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  const step: usize = <usize>110 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (let c = 0; c < 2; c++) {
          const g = (n << 3) | (j << 1) | c;
          const x = v128.load(a + (<usize>n << 7) + (<usize>j << 5) + (<usize>c << 4));
          const lo = i16Lo(x), hi = i16Hi(x);
          const qoff: usize = 32 + (<usize>n << 5) + (<usize>c << 4);
          const hoff: usize = <usize>c << 4;
          const shift = j << 1, hshift = (n << 2) + j;
          const s = bsum(bs, g);
          const s0 = q3Scale(w0, g), s1 = q3Scale(w1, g), s2 = q3Scale(w2, g), s3 = q3Scale(w3, g);
          i0 = q3Group(w0, qoff, hoff, shift, hshift, s0, x, lo, hi, i0);
          i1 = q3Group(w1, qoff, hoff, shift, hshift, s1, x, lo, hi, i1);
          i2 = q3Group(w2, qoff, hoff, shift, hshift, s2, x, lo, hi, i2);
          i3 = q3Group(w3, qoff, hoff, shift, hshift, s3, x, lo, hi, i3);
          c0 += s0 * s; c1 += s1 * s; c2 += s2 * s; c3 += s3 * s;
        }
      }
    }
    const isum = i32x4.sub(hsum4i(i0, i1, i2, i3), i32x4.shl(vec4i(c0, c1, c2, c3), 2)); // codes are q + 4
    acc = scaleAcc(acc, isum, gatherF16(w0 + 108, w1 + 108, w2 + 108, w3 + 108), load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 256; ad += 4; bs += 32;
  }
  return acc;
}

// Q4_K / Q5_K: d @0, dmin @2, scales[12] @4: eight 6-bit (scale, min) pairs, one per 32 values
// (ggml's get_scale_min_k4). Chunk j (64 values): low nibbles = sub-block 2j, high = 2j+1.
@inline function k4Scale(w: usize, j: i32): i32 {
  const q = w + 4;
  if (j < 4) return <i32>(load<u8>(q + j) & 63);
  return <i32>((load<u8>(q + j + 4) & 0xf) | ((load<u8>(q + j - 4) >> 6) << 4));
}
@inline function k4Min(w: usize, j: i32): i32 {
  const q = w + 4;
  if (j < 4) return <i32>(load<u8>(q + j + 4) & 63);
  return <i32>((load<u8>(q + j + 4) >> 4) | ((load<u8>(q + j) >> 6) << 4));
}

/**
 * A Q4_K/Q5_K block's eight 6-bit sub-block scales (bytes 0-7) and mins (bytes 8-15), unpacked from
 * its 12 bytes at w + 4 with vector ops (k4Scale/k4Min one value at a time give the same bytes):
 * j < 4: scale q[j] & 63, min q[j+4] & 63; j >= 4: scale (q[j+4] & 15) | (q[j-4] >> 6) << 4,
 * min (q[j+4] >> 4) | (q[j] >> 6) << 4.
 */
@inline function k4ScalesMins(w: usize): v128 {
  const v = v128.load(w, 4); // q[0..11] and 4 bytes of codes, masked away below
  const a = i8x16.shuffle(v, v, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
  const b = i8x16.shuffle(v, v, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
  const low = v128.and(a, i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
  const high = v128.and(i16x8.shr_u(a, 4), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
  // bits 6-7 of q[0..7] to bits 4-5 (a 16-bit shift: the masked bits never cross a byte)
  const top = i16x8.shr_u(v128.and(b, i8x16(0, 0, 0, 0, -64, -64, -64, -64, 0, 0, 0, 0, -64, -64, -64, -64)), 2);
  return v128.or(v128.or(low, high), top);
}

/** Byte j (0..15) of v in every i32 lane (indices >= 16 select zero). */
@inline function byteSplat(v: v128, j: i32): v128 {
  return i8x16.swizzle(v, i32x4.splat(0x80808000 | j));
}

/** acc + p * sc, sc an i32 in every lane. */
@inline function mulAccV(acc: v128, p: v128, sc: v128): v128 {
  return i32x4.add(acc, i32x4.mul(p, sc));
}

@inline function q4kChunk(
  w: usize, sm: v128, j: i32, x0: v128, x1: v128, x2: v128, x3: v128,
  l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, acc: v128,
): v128 {
  const q = w + 16 + (<usize>j << 5);
  const v0 = v128.load(q);
  const v1 = v128.load(q, 16);
  const pl = udot(lowNib(v1), x1, l1, h1, udot0(lowNib(v0), x0, l0, h0));
  const ph = udot(highNib(v1), x3, l3, h3, udot0(highNib(v0), x2, l2, h2));
  return mulAccV(mulAccV(acc, pl, byteSplat(sm, j << 1)), ph, byteSplat(sm, (j << 1) | 1));
}

/** 0x10 where bit `bit` of each qh byte is set. */
@inline function k5High(h: v128, bit: i32): v128 {
  return i16x8.shl(bits(h, bit, 1), 4);
}

/** q4kChunk over wide activations (xp: the chunk's 64 values as 4 groups of [8 even, 8 odd] i16). */
@inline function q4kChunkWide(w: usize, sm: v128, j: i32, xp: usize, acc: v128): v128 {
  const q = w + 16 + (<usize>j << 5);
  const m = i16x8.splat(0x0f);
  const v0 = v128.load(q), v1 = v128.load(q, 16);
  // i16 lane k holds bytes 2k and 2k + 1: low nibbles are sub-block 2j, high nibbles 2j + 1
  const pl = dot4wAt(v128.and(v0, m), v128.and(i16x8.shr_u(v0, 8), m), v128.and(v1, m), v128.and(i16x8.shr_u(v1, 8), m), xp);
  const ph = dot4wAt(v128.and(i16x8.shr_u(v0, 4), m), i16x8.shr_u(v0, 12), v128.and(i16x8.shr_u(v1, 4), m), i16x8.shr_u(v1, 12), xp + 64);
  return mulAccV(mulAccV(acc, pl, byteSplat(sm, j << 1)), ph, byteSplat(sm, (j << 1) | 1));
}

@inline function q5kChunk(
  w: usize, sm: v128, j: i32, x0: v128, x1: v128, x2: v128, x3: v128,
  l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, acc: v128,
): v128 {
  const q = w + 48 + (<usize>j << 5);
  const v0 = v128.load(q);
  const v1 = v128.load(q, 16);
  const qh0 = v128.load(w, 16);
  const qh1 = v128.load(w, 32);
  const bl = j << 1, bh = bl | 1;
  const pl = udot(v128.or(lowNib(v1), k5High(qh1, bl)), x1, l1, h1, udot0(v128.or(lowNib(v0), k5High(qh0, bl)), x0, l0, h0));
  const ph = udot(v128.or(highNib(v1), k5High(qh1, bh)), x3, l3, h3, udot0(v128.or(highNib(v0), k5High(qh0, bh)), x2, l2, h2));
  return mulAccV(mulAccV(acc, pl, byteSplat(sm, bl)), ph, byteSplat(sm, bh));
}

/** Sum over sub-blocks of min * (the activations' sum over it): a row's min term, lanes to add. */
@inline function k4MinDot(sm: v128, subSums: v128): v128 {
  return i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(sm), subSums);
}

/** Q4_K (five = false, 144-byte blocks) and Q5_K (five = true, 176-byte blocks); wide: the activations are (Q4_K only, see wideAct). */
@inline function dotQ45K(five: bool, wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, nb: i32): v128 {
  const bb: usize = five ? 176 : 144;
  let acc = f32x4.splat(0);
  const step: usize = <usize>bb * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
    const s0 = k4ScalesMins(w0), s1 = k4ScalesMins(w1), s2 = k4ScalesMins(w2), s3 = k4ScalesMins(w3);
    for (let j = 0; j < 4; j++) {
      if (wide) {
        const xw = a + (<usize>j << 7);
        i0 = q4kChunkWide(w0, s0, j, xw, i0);
        i1 = q4kChunkWide(w1, s1, j, xw, i1);
        i2 = q4kChunkWide(w2, s2, j, xw, i2);
        i3 = q4kChunkWide(w3, s3, j, xw, i3);
        continue;
      }
      const xp = a + (<usize>j << 6);
      const x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = v128.load(xp, 32), x3 = v128.load(xp, 48);
      const l0 = i16Lo(x0), h0 = i16Hi(x0), l1 = i16Lo(x1), h1 = i16Hi(x1);
      const l2 = i16Lo(x2), h2 = i16Hi(x2), l3 = i16Lo(x3), h3 = i16Hi(x3);
      if (five) {
        i0 = q5kChunk(w0, s0, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i0);
        i1 = q5kChunk(w1, s1, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i1);
        i2 = q5kChunk(w2, s2, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i2);
        i3 = q5kChunk(w3, s3, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i3);
      } else {
        i0 = q4kChunk(w0, s0, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i0);
        i1 = q4kChunk(w1, s1, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i1);
        i2 = q4kChunk(w2, s2, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i2);
        i3 = q4kChunk(w3, s3, j, x0, x1, x2, x3, l0, h0, l1, h1, l2, h2, l3, h3, i3);
      }
    }
    // the activations' sums over the eight 32-value sub-blocks (pairs of Q8_K's 16-value sums; at
    // most 4064, so i16), then each row's sum of min * that: the exact integers k4Min gives
    const subSums = i16x8.narrow_i32x4_s(i32x4.extadd_pairwise_i16x8_s(v128.load(bs)), i32x4.extadd_pairwise_i16x8_s(v128.load(bs, 16)));
    const msum = hsum4i(k4MinDot(s0, subSums), k4MinDot(s1, subSums), k4MinDot(s2, subSums), k4MinDot(s3, subSums));
    const d = gatherF16(w0, w1, w2, w3);
    const dmin = gatherF16(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
    acc = scaleAccMin(acc, hsum4i(i0, i1, i2, i3), d, i32x4.neg(msum), dmin, load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += wide ? 512 : 256; ad += 4; bs += 32;
  }
  return acc;
}

/**
 * One token's chunk j (64 values) against a row's unpacked chunk: lo0..lo3 the 32 low-nibble
 * weights (sub-block 2j) as i16, hi0..hi3 the high ones (2j + 1); returns acc + their integer dots
 * times the sub-blocks' 6-bit scales: what q4kChunk / q5kChunk add, the same exact integers.
 */
@inline function kTokenChunk(lo0: v128, lo1: v128, lo2: v128, lo3: v128, hi0: v128, hi1: v128, hi2: v128, hi3: v128,
  xp: usize, scl: i32, sch: i32, acc: v128): v128 {
  const x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = v128.load(xp, 32), x3 = v128.load(xp, 48);
  const pl = i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(lo0, i16x8.extend_low_i8x16_s(x0)), i32x4.dot_i16x8_s(lo1, i16x8.extend_high_i8x16_s(x0))),
    i32x4.add(i32x4.dot_i16x8_s(lo2, i16x8.extend_low_i8x16_s(x1)), i32x4.dot_i16x8_s(lo3, i16x8.extend_high_i8x16_s(x1))),
  );
  const ph = i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(hi0, i16x8.extend_low_i8x16_s(x2)), i32x4.dot_i16x8_s(hi1, i16x8.extend_high_i8x16_s(x2))),
    i32x4.add(i32x4.dot_i16x8_s(hi2, i16x8.extend_low_i8x16_s(x3)), i32x4.dot_i16x8_s(hi3, i16x8.extend_high_i8x16_s(x3))),
  );
  return mulAcc(mulAcc(acc, pl, scl), ph, sch);
}

/** Token t's min-correction term of chunk j of a row (its mins times its Q8_K block sums at bs). */
@inline function kTokenMins(mnl: i32, mnh: i32, bs: usize, j: i32): i32 {
  return mnl * (bsum(bs, j << 2) + bsum(bs, (j << 2) | 1)) + mnh * (bsum(bs, (j << 2) | 2) + bsum(bs, (j << 2) | 3));
}

/**
 * Q4_K / Q5_K, four rows x four tokens (both builds: i16 dot products): each row's chunk of 64 weights is
 * unpacked to i16 once and dotted with the four tokens' activations, where the one-token kernel
 * (dotQ45K) unpacks it again for every token. The integer sums are dotQ45K's exact totals and each
 * token then takes its float steps (scaleAccMin), so a token's outputs have the same bits in a
 * tile as alone. il: rows interleaved (rows 1-3 are the blocks after w0's).
 */
@inline function tileK(five: bool, il: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize,
  aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  const bb: usize = five ? 176 : 144;
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  for (let b = 0; b < nb; b++) {
    if (il) {
      w1 = w0 + bb; w2 = w0 + 2 * bb; w3 = w0 + 3 * bb;
    }
    // lane r of s_t / n_t: row r's integer sum / min term for token t
    let s0 = ZERO, s1 = ZERO, s2 = ZERO, s3 = ZERO, n0 = ZERO, n1 = ZERO, n2 = ZERO, n3 = ZERO;
    for (let r = 0; r < 4; r++) {
      const w = r == 0 ? w0 : r == 1 ? w1 : r == 2 ? w2 : w3;
      let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
      let m0 = 0, m1 = 0, m2 = 0, m3 = 0;
      for (let j = 0; j < 4; j++) {
        let l0: v128, l1: v128, h0: v128, h1: v128; // u8 codes of sub-blocks 2j (l) and 2j + 1 (h)
        if (five) {
          const q = w + 48 + (<usize>j << 5);
          const v0 = v128.load(q), v1 = v128.load(q, 16), qh0 = v128.load(w, 16), qh1 = v128.load(w, 32);
          l0 = v128.or(lowNib(v0), k5High(qh0, j << 1)); l1 = v128.or(lowNib(v1), k5High(qh1, j << 1));
          h0 = v128.or(highNib(v0), k5High(qh0, (j << 1) | 1)); h1 = v128.or(highNib(v1), k5High(qh1, (j << 1) | 1));
        } else {
          const q = w + 16 + (<usize>j << 5);
          const v0 = v128.load(q), v1 = v128.load(q, 16);
          l0 = lowNib(v0); l1 = lowNib(v1); h0 = highNib(v0); h1 = highNib(v1);
        }
        const lo0 = i16x8.extend_low_i8x16_u(l0), lo1 = i16x8.extend_high_i8x16_u(l0), lo2 = i16x8.extend_low_i8x16_u(l1), lo3 = i16x8.extend_high_i8x16_u(l1);
        const hi0 = i16x8.extend_low_i8x16_u(h0), hi1 = i16x8.extend_high_i8x16_u(h0), hi2 = i16x8.extend_low_i8x16_u(h1), hi3 = i16x8.extend_high_i8x16_u(h1);
        const scl = k4Scale(w, j << 1), sch = k4Scale(w, (j << 1) | 1), mnl = k4Min(w, j << 1), mnh = k4Min(w, (j << 1) | 1);
        const xp = a + (<usize>j << 6);
        i0 = kTokenChunk(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, xp, scl, sch, i0);
        i1 = kTokenChunk(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, xp + aS, scl, sch, i1);
        i2 = kTokenChunk(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, xp + 2 * aS, scl, sch, i2);
        i3 = kTokenChunk(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, xp + 3 * aS, scl, sch, i3);
        m0 += kTokenMins(mnl, mnh, bs, j);
        m1 += kTokenMins(mnl, mnh, bs + sS, j);
        m2 += kTokenMins(mnl, mnh, bs + 2 * sS, j);
        m3 += kTokenMins(mnl, mnh, bs + 3 * sS, j);
      }
      s0 = withLane(s0, r, hsumi(i0)); s1 = withLane(s1, r, hsumi(i1)); s2 = withLane(s2, r, hsumi(i2)); s3 = withLane(s3, r, hsumi(i3));
      n0 = withLane(n0, r, m0); n1 = withLane(n1, r, m1); n2 = withLane(n2, r, m2); n3 = withLane(n3, r, m3);
    }
    const d = gatherF16(w0, w1, w2, w3);
    const dmin = gatherF16(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
    c0 = scaleAccMin(c0, s0, d, i32x4.neg(n0), dmin, load<f32>(ad));
    c1 = scaleAccMin(c1, s1, d, i32x4.neg(n1), dmin, load<f32>(ad + dS));
    c2 = scaleAccMin(c2, s2, d, i32x4.neg(n2), dmin, load<f32>(ad + 2 * dS));
    c3 = scaleAccMin(c3, s3, d, i32x4.neg(n3), dmin, load<f32>(ad + 3 * dS));
    if (il) w0 += 4 * bb;
    else {
      w0 += bb; w1 += bb; w2 += bb; w3 += bb;
    }
    a += 256; ad += 4; bs += 32;
  }
  storeTile(out, outRow, c0, c1, c2, c3);
}

function tile44Q4_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileK(false, false, w0, w1, w2, w3, a, ad, bs, aS, dS, sS, nb, out, outRow);
}
function tile44Q5_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileK(true, false, w0, w1, w2, w3, a, ad, bs, aS, dS, sS, nb, out, outRow);
}
function tile44Q4_Ki(w0: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileK(false, true, w0, 0, 0, 0, a, ad, bs, aS, dS, sS, nb, out, outRow);
}
function tile44Q5_Ki(w0: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileK(true, true, w0, 0, 0, 0, a, ad, bs, aS, dS, sS, nb, out, outRow);
}

// Q6_K: ql[128] @0, qh[64] @128, scales i8[16] @192, d @208. In half n (128 values), for
// l in 0..32: ql[64n+l] low/high nibble = values l / l+64, ql[64n+32+l] = values l+32 / l+96,
// their top two bits in qh[32n+l] bits 0-1, 2-3, 4-5, 6-7 (values l, l+32, l+64, l+96).
// code = 6-bit value, q = code - 32.
@inline function q6Row(
  w: usize, n: i32, c: i32, xa: v128, xb: v128, xc: v128, xd: v128,
  la: v128, ha: v128, lb: v128, hb: v128, lc: v128, hc: v128, ld: v128, hd: v128, acc: v128,
): v128 {
  const ql = w + (<usize>n << 6) + (<usize>c << 4);
  const l0 = v128.load(ql);
  const l1 = v128.load(ql, 32);
  const h = v128.load(w + 128 + (<usize>n << 5) + (<usize>c << 4));
  const m30 = i8x16.splat(0x30);
  const q1 = v128.or(lowNib(l0), v128.and(i16x8.shl(h, 4), m30));
  const q2 = v128.or(lowNib(l1), v128.and(i16x8.shl(h, 2), m30));
  const q3 = v128.or(highNib(l0), v128.and(h, m30));
  const q4 = v128.or(highNib(l1), v128.and(i16x8.shr_u(h, 2), m30));
  const sc = w + 192 + (<usize>n << 3) + <usize>c;
  acc = mulAcc(acc, udot0(q1, xa, la, ha), <i32>load<i8>(sc));
  acc = mulAcc(acc, udot0(q2, xb, lb, hb), <i32>load<i8>(sc, 2));
  acc = mulAcc(acc, udot0(q3, xc, lc, hc), <i32>load<i8>(sc, 4));
  return mulAcc(acc, udot0(q4, xd, ld, hd), <i32>load<i8>(sc, 6));
}

/** sum over the 4 groups q6Row covers of scale * bsum. */
@inline function q6Corr(w: usize, bs: usize, n: i32, c: i32): i32 {
  const sc = w + 192 + (<usize>n << 3) + <usize>c;
  const g = (n << 3) + c;
  return <i32>load<i8>(sc) * bsum(bs, g) + <i32>load<i8>(sc, 2) * bsum(bs, g + 2) +
    <i32>load<i8>(sc, 4) * bsum(bs, g + 4) + <i32>load<i8>(sc, 6) * bsum(bs, g + 6);
}

function dotQ6_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, nb: i32): v128 {
  let acc = f32x4.splat(0);
  const step: usize = <usize>210 * ROWS_INTERLEAVED; // the next block of this row
  for (let b = 0; b < nb; b++) {
    let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let n = 0; n < 2; n++) {
      for (let c = 0; c < 2; c++) {
        const xp = a + (<usize>n << 7) + (<usize>c << 4);
        const xa = v128.load(xp), xb = v128.load(xp, 32), xc = v128.load(xp, 64), xd = v128.load(xp, 96);
        const la = i16Lo(xa), ha = i16Hi(xa), lb = i16Lo(xb), hb = i16Hi(xb);
        const lc = i16Lo(xc), hc = i16Hi(xc), ld = i16Lo(xd), hd = i16Hi(xd);
        i0 = q6Row(w0, n, c, xa, xb, xc, xd, la, ha, lb, hb, lc, hc, ld, hd, i0);
        i1 = q6Row(w1, n, c, xa, xb, xc, xd, la, ha, lb, hb, lc, hc, ld, hd, i1);
        i2 = q6Row(w2, n, c, xa, xb, xc, xd, la, ha, lb, hb, lc, hc, ld, hd, i2);
        i3 = q6Row(w3, n, c, xa, xb, xc, xd, la, ha, lb, hb, lc, hc, ld, hd, i3);
        c0 += q6Corr(w0, bs, n, c);
        c1 += q6Corr(w1, bs, n, c);
        c2 += q6Corr(w2, bs, n, c);
        c3 += q6Corr(w3, bs, n, c);
      }
    }
    const isum = i32x4.sub(hsum4i(i0, i1, i2, i3), i32x4.shl(vec4i(c0, c1, c2, c3), 5)); // codes are q + 32
    acc = scaleAcc(acc, isum, gatherF16(w0 + 208, w1 + 208, w2 + 208, w3 + 208), load<f32>(ad));
    w0 += step; w1 += step; w2 += step; w3 += step;
    a += 256; ad += 4; bs += 32;
  }
  return acc;
}

/** One token's part (n, c) against a row's unpacked Q6_K codes: what q6Row adds, the same exact integers. */
@inline function q6TokenPart(a0: v128, a1: v128, b0: v128, b1: v128, c0: v128, c1: v128, d0: v128, d1: v128,
  xp: usize, s1: i32, s2: i32, s3: i32, s4: i32, acc: v128): v128 {
  const xa = v128.load(xp), xb = v128.load(xp, 32), xc = v128.load(xp, 64), xd = v128.load(xp, 96);
  acc = mulAcc(acc, dot16(a0, a1, xa), s1);
  acc = mulAcc(acc, dot16(b0, b1, xb), s2);
  acc = mulAcc(acc, dot16(c0, c1, xc), s3);
  return mulAcc(acc, dot16(d0, d1, xd), s4);
}

/** lo . x[0..8] + hi . x[8..16] (i16 weights, i8 activations widened). */
@inline function dot16(lo: v128, hi: v128, x: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(lo, i16x8.extend_low_i8x16_s(x)), i32x4.dot_i16x8_s(hi, i16x8.extend_high_i8x16_s(x)));
}

/**
 * Q6_K, four rows x four tokens (both builds), as tileK: each row's codes unpacked to i16 once
 * for four tokens, dotQ6_K's exact integer sums, then each token's own float step.
 */
@inline function tileQ6K(il: bool, w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize,
  aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  const bb: usize = 210;
  let o0 = f32x4.splat(0), o1 = o0, o2 = o0, o3 = o0;
  for (let b = 0; b < nb; b++) {
    if (il) {
      w1 = w0 + bb; w2 = w0 + 2 * bb; w3 = w0 + 3 * bb;
    }
    let s0 = ZERO, s1 = ZERO, s2 = ZERO, s3 = ZERO;
    for (let r = 0; r < 4; r++) {
      const w = r == 0 ? w0 : r == 1 ? w1 : r == 2 ? w2 : w3;
      let i0 = ZERO, i1 = ZERO, i2 = ZERO, i3 = ZERO;
      let k0 = 0, k1 = 0, k2 = 0, k3 = 0;
      for (let n = 0; n < 2; n++) {
        for (let c = 0; c < 2; c++) {
          const ql = w + (<usize>n << 6) + (<usize>c << 4);
          const l0 = v128.load(ql), l1 = v128.load(ql, 32);
          const h = v128.load(w + 128 + (<usize>n << 5) + (<usize>c << 4));
          const m30 = i8x16.splat(0x30);
          const q1 = v128.or(lowNib(l0), v128.and(i16x8.shl(h, 4), m30));
          const q2 = v128.or(lowNib(l1), v128.and(i16x8.shl(h, 2), m30));
          const q3 = v128.or(highNib(l0), v128.and(h, m30));
          const q4 = v128.or(highNib(l1), v128.and(i16x8.shr_u(h, 2), m30));
          const a0 = i16x8.extend_low_i8x16_u(q1), a1 = i16x8.extend_high_i8x16_u(q1), b0 = i16x8.extend_low_i8x16_u(q2), b1 = i16x8.extend_high_i8x16_u(q2);
          const c0 = i16x8.extend_low_i8x16_u(q3), c1 = i16x8.extend_high_i8x16_u(q3), d0 = i16x8.extend_low_i8x16_u(q4), d1 = i16x8.extend_high_i8x16_u(q4);
          const sc = w + 192 + (<usize>n << 3) + <usize>c;
          const t1 = <i32>load<i8>(sc), t2 = <i32>load<i8>(sc, 2), t3 = <i32>load<i8>(sc, 4), t4 = <i32>load<i8>(sc, 6);
          const xp = a + (<usize>n << 7) + (<usize>c << 4);
          i0 = q6TokenPart(a0, a1, b0, b1, c0, c1, d0, d1, xp, t1, t2, t3, t4, i0);
          i1 = q6TokenPart(a0, a1, b0, b1, c0, c1, d0, d1, xp + aS, t1, t2, t3, t4, i1);
          i2 = q6TokenPart(a0, a1, b0, b1, c0, c1, d0, d1, xp + 2 * aS, t1, t2, t3, t4, i2);
          i3 = q6TokenPart(a0, a1, b0, b1, c0, c1, d0, d1, xp + 3 * aS, t1, t2, t3, t4, i3);
          k0 += q6Corr(w, bs, n, c);
          k1 += q6Corr(w, bs + sS, n, c);
          k2 += q6Corr(w, bs + 2 * sS, n, c);
          k3 += q6Corr(w, bs + 3 * sS, n, c);
        }
      }
      // codes are q + 32: take 32 x the scaled block sums off, as dotQ6_K
      const v0 = hsumi(i0) - (k0 << 5), v1 = hsumi(i1) - (k1 << 5), v2 = hsumi(i2) - (k2 << 5), v3 = hsumi(i3) - (k3 << 5);
      s0 = withLane(s0, r, v0); s1 = withLane(s1, r, v1); s2 = withLane(s2, r, v2); s3 = withLane(s3, r, v3);
    }
    const d = gatherF16(w0 + 208, w1 + 208, w2 + 208, w3 + 208);
    o0 = scaleAcc(o0, s0, d, load<f32>(ad));
    o1 = scaleAcc(o1, s1, d, load<f32>(ad + dS));
    o2 = scaleAcc(o2, s2, d, load<f32>(ad + 2 * dS));
    o3 = scaleAcc(o3, s3, d, load<f32>(ad + 3 * dS));
    if (il) w0 += 4 * bb;
    else {
      w0 += bb; w1 += bb; w2 += bb; w3 += bb;
    }
    a += 256; ad += 4; bs += 32;
  }
  storeTile(out, outRow, o0, o1, o2, o3);
}

function tile44Q6_K(w0: usize, w1: usize, w2: usize, w3: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileQ6K(false, w0, w1, w2, w3, a, ad, bs, aS, dS, sS, nb, out, outRow);
}
function tile44Q6_Ki(w0: usize, a: usize, ad: usize, bs: usize, aS: usize, dS: usize, sS: usize, nb: i32, out: usize, outRow: usize): void {
  tileQ6K(true, w0, 0, 0, 0, a, ad, bs, aS, dS, sS, nb, out, outRow);
}

// ---------------------------------------------------------------- float weights
// ELT is a marker type chosen at compile time: f32 = F32, u16 = F16, i16 = BF16.

/** Weight elements 0..3 (hi = false) or 4..7 (hi = true) of the 8 starting at p, as f32x4. */
@inline function wload<ELT>(p: usize, hi: bool): v128 {
  if (isFloat<ELT>()) return hi ? v128.load(p, 16) : v128.load(p);
  const h = hi ? v128.load16x4_u(p, 8) : v128.load16x4_u(p);
  if (isSigned<ELT>()) return i32x4.shl(h, 16); // bf16: the top half of an f32
  return f16x4ToF32(h);
}

@inline function wscalar<ELT>(p: usize): f32 {
  if (isFloat<ELT>()) return load<f32>(p);
  const h = i32x4.splat(<i32>load<u16>(p));
  if (isSigned<ELT>()) return f32x4.extract_lane(i32x4.shl(h, 16), 0);
  return f32x4.extract_lane(f16x4ToF32(h), 0);
}

@inline function tailDot<ELT>(w: usize, x: usize, from: i32, n: i32): f32 {
  let t: f32 = 0;
  for (let i = from; i < n; i++) t += wscalar<ELT>(w + <usize>i * sizeof<ELT>()) * load<f32>(x + (<usize>i << 2));
  return t;
}

function dotFloat<ELT>(w0: usize, w1: usize, w2: usize, w3: usize, x: usize, n: i32): v128 {
  let a0 = f32x4.splat(0), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
  const n8 = n & ~7;
  const es = sizeof<ELT>();
  for (let i = 0; i < n8; i += 8) {
    const xp = x + (<usize>i << 2);
    const x0 = v128.load(xp);
    const x1 = v128.load(xp, 16);
    const o = <usize>i * es;
    a0 = f32x4.add(a0, f32x4.mul(wload<ELT>(w0 + o, false), x0));
    b0 = f32x4.add(b0, f32x4.mul(wload<ELT>(w0 + o, true), x1));
    a1 = f32x4.add(a1, f32x4.mul(wload<ELT>(w1 + o, false), x0));
    b1 = f32x4.add(b1, f32x4.mul(wload<ELT>(w1 + o, true), x1));
    a2 = f32x4.add(a2, f32x4.mul(wload<ELT>(w2 + o, false), x0));
    b2 = f32x4.add(b2, f32x4.mul(wload<ELT>(w2 + o, true), x1));
    a3 = f32x4.add(a3, f32x4.mul(wload<ELT>(w3 + o, false), x0));
    b3 = f32x4.add(b3, f32x4.mul(wload<ELT>(w3 + o, true), x1));
  }
  let r = hsum4f(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3));
  if (n8 < n) {
    r = f32x4.add(r, vec4f(tailDot<ELT>(w0, x, n8, n), tailDot<ELT>(w1, x, n8, n), tailDot<ELT>(w2, x, n8, n), tailDot<ELT>(w3, x, n8, n)));
  }
  return r;
}

// ---------------------------------------------------------------- driver

@inline function rowGroup(type: i32, wide: bool, w0: usize, w1: usize, w2: usize, w3: usize, x: usize, qs: usize, d: usize, s: usize, cols: i32): v128 {
  switch (type) {
    case T_F32: return dotFloat<f32>(w0, w1, w2, w3, x, cols);
    case T_F16: return dotFloat<u16>(w0, w1, w2, w3, x, cols);
    case T_BF16: return dotFloat<i16>(w0, w1, w2, w3, x, cols);
    case T_Q8_0: return ROWS_INTERLEAVED == 4 ? dotQ8_0i(w0, qs, d, cols >> 5) : dotQ8_0(w0, w1, w2, w3, qs, d, cols >> 5);
    case T_Q4_0:
      if (wide && !WIDE_ACT) return ROWS_INTERLEAVED == 4 ? dotQ4_0iWide(w0, qs, d, s, cols >> 5) : dotQ4_0Wide(w0, w1, w2, w3, qs, d, s, cols >> 5);
      return ROWS_INTERLEAVED == 4 ? dotQ4_0i(w0, qs, d, s, cols >> 5) : dotQ4_0(w0, w1, w2, w3, qs, d, s, cols >> 5);
    case T_Q4_1:
      if (wide && !WIDE_ACT) return ROWS_INTERLEAVED == 4 ? dotQ4_1iWide(w0, qs, d, s, cols >> 5) : dotQ4_1Wide(w0, w1, w2, w3, qs, d, s, cols >> 5);
      return ROWS_INTERLEAVED == 4 ? dotQ4_1i(w0, qs, d, s, cols >> 5) : dotQ4_1(w0, w1, w2, w3, qs, d, s, cols >> 5);
    case T_Q5_0: return dotQ5_0(wide, w0, w1, w2, w3, qs, d, s, cols >> 5);
    case T_Q5_1: return dotQ5_1(w0, w1, w2, w3, qs, d, s, cols >> 5);
    case T_IQ4_NL: return dotIQ4_NL(w0, w1, w2, w3, qs, d, cols >> 5);
    case T_Q2_K: return dotQ2_K(w0, w1, w2, w3, qs, d, s, cols >> 8);
    case T_Q3_K: return dotQ3_K(w0, w1, w2, w3, qs, d, s, cols >> 8);
    case T_Q4_K: return dotQ45K(false, wide, w0, w1, w2, w3, qs, d, s, cols >> 8);
    case T_Q5_K: return dotQ45K(true, false, w0, w1, w2, w3, qs, d, s, cols >> 8);
    case T_Q6_K: return dotQ6_K(w0, w1, w2, w3, qs, d, s, cols >> 8);
    default: return f32x4.splat(NaN);
  }
}

/**
 * out_p[t][r] = W_p[r] . x[t] for every part p (the MATMUL_* slots in abi.ts): several weight matrices of one type and width against
 * the same activations (q/k/v, gate/up), quantized once by the host (x for float weights; qs/d/s:
 * the quantized activations for the others). The parts' 4-row groups are numbered one after the
 * other and threads split that list, so one dispatch covers them all.
 */
export function matmul(args: usize, ith: i32, nth: i32): void {
  const nParts = min(arg(args, MATMUL_N_PARTS), MATMUL_MAX_PARTS);
  let total = 0;
  for (let p = 0; p < nParts; p++) total += (arg(args, part(p, MATMUL_PART_ROWS)) + 3) >> 2;
  const g0 = splitAt(total, ith, nth), g1 = splitAt(total, ith + 1, nth);
  let base = 0;
  for (let p = 0; p < nParts; p++) {
    const rows = arg(args, part(p, MATMUL_PART_ROWS));
    const groups = (rows + 3) >> 2;
    const from = max(g0 - base, 0), to = min(g1 - base, groups);
    if (from < to) {
      ROWS_INTERLEAVED = arg(args, part(p, MATMUL_PART_INTERLEAVED)) != 0 ? 4 : 1;
      matmulGroups(args, <usize>arg(args, part(p, MATMUL_PART_WEIGHT)), rows, <usize>arg(args, part(p, MATMUL_PART_OUT)), from, to);
    }
    base += groups;
  }
}

/** Bytes of one block of a quantized type (the unit OP_INTERLEAVE_ROWS moves). */
@inline function blockBytes(type: i32): usize {
  switch (type) {
    case T_Q4_0: case T_IQ4_NL: return 18;
    case T_Q4_1: return 20;
    case T_Q5_0: return 22;
    case T_Q5_1: return 24;
    case T_Q8_0: return 34;
    case T_Q2_K: return 84;
    case T_Q3_K: return 110;
    case T_Q4_K: return 144;
    case T_Q5_K: return 176;
    case T_Q6_K: return 210;
    default: return 0;
  }
}

/**
 * OP_INTERLEAVE_ROWS (see abi.ts): each group of four rows, copied to the temp, written back block
 * by block in the order 4-row kernels read it: per block, the four rows' codes, then their head
 * fields side by side (packedHead). Done once per weight at load.
 */
export function interleaveRows(args: usize): void {
  const ptr = <usize>arg(args, INTERLEAVE_PTR);
  const groups = arg(args, INTERLEAVE_GROUPS);
  const rowBytes = <usize>arg(args, INTERLEAVE_ROW_BYTES);
  const type = arg(args, INTERLEAVE_TYPE);
  const temp = <usize>arg(args, INTERLEAVE_TEMP);
  const bb = blockBytes(type), hb = packedHead(type), cb = bb - hb;
  const nb = rowBytes / bb;
  for (let g = 0; g < groups; g++) {
    const base = ptr + <usize>g * 4 * rowBytes;
    memory.copy(temp, base, 4 * rowBytes);
    for (let b: usize = 0; b < nb; b++) {
      const to = base + 4 * b * bb;
      for (let k: usize = 0; k < 4; k++) {
        const from = temp + k * rowBytes + b * bb;
        memory.copy(to + k * cb, from + hb, cb);
        for (let f: usize = 0; f < hb; f += 2) store<u16>(to + 4 * cb + 4 * f + 2 * k, load<u16>(from + f));
      }
    }
  }
}

/** The slot of field `field` of part p. */
@inline function part(p: i32, field: i32): i32 {
  return MATMUL_PARTS + p * MATMUL_PART_SLOTS + field;
}

/**
 * Row groups [g0, g1) of one weight matrix w (rows x cols) against every token. Each group's rows
 * are read from memory once and reused from cache for the whole batch (and, for the token-tiled
 * types, from registers for four tokens at a time).
 */
function matmulGroups(args: usize, w: usize, rows: i32, out: usize, g0: i32, g1: i32): void {
  const type = arg(args, MATMUL_TYPE);
  const cols = arg(args, MATMUL_COLS);
  const rowBytes = <usize>arg(args, MATMUL_ROW_BYTES);
  const nTokens = arg(args, MATMUL_N_TOKENS);
  const x = <usize>arg(args, MATMUL_X);
  const qs = <usize>arg(args, MATMUL_QS);
  const d = <usize>arg(args, MATMUL_D);
  const s = <usize>arg(args, MATMUL_S);
  const act = arg(args, MATMUL_ACT);
  const il = ROWS_INTERLEAVED == 4;
  const bb = blockBytes(type);
  // per-token strides of the activation arrays
  const xStride = <usize>cols << 2;
  const wide = wideAct(type, nTokens);
  const qsStride: usize = wide ? <usize>cols << 1 : <usize>cols;
  const dStride: usize = act == ACT_Q8_K ? <usize>(cols >> 8) << 2 : <usize>(cols >> 5) << 2;
  const sStride: usize = act == ACT_Q8_K ? <usize>(cols >> 4) << 1 : <usize>(cols >> 5) << 2;
  // Token tiles (4 rows x 4 tokens, or 1 row x 4 tokens for a last group of fewer rows) where a
  // kernel exists; leftover tokens use the 4-row kernels. A batch of 4+ tokens reads wide
  // activations for these types in both builds (wideAct).
  const tiled = type == T_Q4_0 || type == T_Q4_1 || type == T_Q8_0;
  // K-quant tiles (Q4_K, Q5_K, Q6_K; both builds: i16 dot products) and Q5_0's (baseline): whole groups of 4 rows only
  const kTiled = type == T_Q4_K || type == T_Q5_K || type == T_Q6_K || (WIDE_ACT && type == T_Q5_0);
  const t4all = nTokens >= 4 && (tiled || kTiled) ? nTokens & ~3 : 0;
  const outRow = <usize>rows << 2;
  for (let g = g0; g < g1; g++) {
    const r = g << 2;
    const valid = min(4, rows - r);
    const last = rows - 1;
    // Interleaved weights have whole groups only (the host checks rows % 4 == 0): row r + k's
    // first block is k blocks into the group.
    const w0 = w + <usize>r * rowBytes;
    const w1 = il ? w0 + bb : w + <usize>min(r + 1, last) * rowBytes;
    const w2 = il ? w0 + 2 * bb : w + <usize>min(r + 2, last) * rowBytes;
    const w3 = il ? w0 + 3 * bb : w + <usize>min(r + 3, last) * rowBytes;
    const t4 = !kTiled || valid == 4 ? t4all : 0;
    for (let t = 0; t < t4; t += 4) {
      // four tokens' activations stay in L1 while the group's rows pass over them
      const ut = <usize>t;
      if (type == T_Q5_0) {
        const o = out + ut * outRow + (<usize>r << 2);
        const aa = qs + ut * qsStride, dd = d + ut * dStride, ss = s + ut * sStride, nb = cols >> 5;
        if (il) tile44Q5_0i(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else tile44Q5_0(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        continue;
      }
      if (kTiled) {
        const o = out + ut * outRow + (<usize>r << 2);
        const aa = qs + ut * qsStride, dd = d + ut * dStride, ss = s + ut * sStride, nb = cols >> 8;
        if (type == T_Q6_K) {
          if (il) tile44Q6_Ki(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
          else tile44Q6_K(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        } else if (il && type == T_Q4_K) tile44Q4_Ki(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else if (il) tile44Q5_Ki(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else if (type == T_Q4_K) tile44Q4_K(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else tile44Q5_K(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        continue;
      }
      if (valid == 4) {
        const o = out + ut * outRow + (<usize>r << 2);
        const aa = qs + ut * qsStride, dd = d + ut * dStride, ss = s + ut * sStride, nb = cols >> 5;
        if (il) {
          if (type == T_Q4_0) tile44Q4_0i(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
          else if (type == T_Q8_0) tile44Q8_0i(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
          else tile44Q4_1i(w0, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        } else if (type == T_Q4_0) tile44Q4_0(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else if (type == T_Q8_0) tile44Q8_0(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        else tile44Q4_1(w0, w1, w2, w3, aa, dd, ss, qsStride, dStride, sStride, nb, o, outRow);
        continue;
      }
      for (let k = 0; k < valid; k++) {
        // (a group of fewer than four rows, so the file's layout: interleaved weights are whole groups)
        const res = dotTokens4(type, w + <usize>(r + k) * rowBytes, qs + ut * qsStride, d + ut * dStride, s + ut * sStride, qsStride, dStride, sStride, cols >> 5);
        const o = out + ut * outRow + (<usize>(r + k) << 2);
        store<f32>(o, f32x4.extract_lane(res, 0));
        store<f32>(o + outRow, f32x4.extract_lane(res, 1));
        store<f32>(o + 2 * outRow, f32x4.extract_lane(res, 2));
        store<f32>(o + 3 * outRow, f32x4.extract_lane(res, 3));
      }
    }
    for (let t = t4; t < nTokens; t++) {
      const ut = <usize>t;
      const res = rowGroup(type, wide, w0, w1, w2, w3, x + ut * xStride, qs + ut * qsStride, d + ut * dStride, s + ut * sStride, cols);
      storeLanes(out + ut * outRow + (<usize>r << 2), res, valid);
    }
  }
}
