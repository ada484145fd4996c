// Activation quantization, once per matmul, into the 8-bit blocks the integer dot products read.
// Layouts are ours (split arrays, not ggml's interleaved blocks) so kernels load aligned vectors:
//   qs: i8  [nTokens][cols]                     quantized values (i16 in the wide layout, see
//                                               WIDE_ACT in common.ts, for some baseline kernels)
//   d:  f32 [nTokens][cols / blockSize]         block scale
//   s:  Q8_0: i32 per 32-block (sum of its qs);  Q8_1 (for Q4_1/Q5_1): f32 per 32-block, ggml's
//       s = f16(d * sum of its qs);  Q8_K: i16 per 16 values (ggml's bsums)
// F16/BF16 weights take f32 activations rounded to f16/bf16 (roundAct), as ggml converts them to
// the weight's vec_dot_type before the dot.
import { arg, f32ToF16, hsumi, roundBF16x4, roundF16, roundF16x4, splitAt, wideAct } from './common';
import {
  QUANT_COLS, QUANT_D, QUANT_N_TOKENS, QUANT_QS, QUANT_S, QUANT_WEIGHT_TYPE, QUANT_X, ROUND_BF16, ROUND_COUNT, ROUND_OUT, ROUND_X, T_Q4_1, T_Q5_1,
} from './abi';

@inline function absMax8(p: usize): f32 {
  let m = f32x4.abs(v128.load(p));
  for (let i = 16; i < 128; i += 16) m = f32x4.max(m, f32x4.abs(v128.load(p + i)));
  m = f32x4.max(m, i64x2.shuffle(m, m, 1, 0));
  return max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
}

/** Round four f32 lanes of x*scale to nearest-even i32. */
@inline function q4(p: usize, scale: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), scale)));
}

/** 16 values at p, times scale, rounded and narrowed (saturating) to i8x16. */
@inline function q16(p: usize, scale: v128): v128 {
  const a = i16x8.narrow_i32x4_s(q4(p, scale), q4(p + 16, scale));
  const b = i16x8.narrow_i32x4_s(q4(p + 32, scale), q4(p + 48, scale));
  return i8x16.narrow_i16x8_s(a, b);
}

/** The 16 values at p, times scale, as i16: [8 even-indexed, 8 odd-indexed] (see WIDE_ACT). */
@inline function storeWide16(o: usize, p: usize, scale: v128): void {
  const a = i16x8.narrow_i32x4_s(q4(p, scale), q4(p + 16, scale)); // values 0..7
  const b = i16x8.narrow_i32x4_s(q4(p + 32, scale), q4(p + 48, scale)); // values 8..15
  v128.store(o, i16x8.shuffle(a, b, 0, 2, 4, 6, 8, 10, 12, 14));
  v128.store(o, i16x8.shuffle(a, b, 1, 3, 5, 7, 9, 11, 13, 15), 16);
}

@inline function sum16(v: v128): i32 {
  return hsumi(i32x4.extadd_pairwise_i16x8_s(i16x8.extadd_pairwise_i8x16_s(v)));
}

/**
 * Q8_0 as llama.cpp's x86 path: d = amax/127 (stored through f16), q = nearest(x * 127/amax).
 * For Q4_1/Q5_1 weights it is Q8_1 (ggml's vec_dot_type for them): the same d and qs, and s holds
 * f16(d * sum(q)) with the unrounded d, as x86 quantize_row_q8_1 stores it.
 * QUANT_* args (abi.ts); split by blocks. qs holds i8, or i16 in the
 * wide layout when the weight type's kernel reads that (wideAct): the host reserves 2 bytes.
 */
export function quantQ8_0(args: usize, ith: i32, nth: i32): void {
  const x = <usize>arg(args, QUANT_X);
  const nTokens = arg(args, QUANT_N_TOKENS);
  const cols = arg(args, QUANT_COLS);
  const qs = <usize>arg(args, QUANT_QS);
  const dp = <usize>arg(args, QUANT_D);
  const sp = <usize>arg(args, QUANT_S);
  const wtype = arg(args, QUANT_WEIGHT_TYPE);
  const wide = wideAct(wtype, nTokens);
  const q81 = wtype == T_Q4_1 || wtype == T_Q5_1;
  const n = nTokens * (cols >> 5);
  const u1 = splitAt(n, ith + 1, nth);
  for (let u = splitAt(n, ith, nth); u < u1; u++) {
    // block u covers x[u*32 .. u*32+32): rows are whole blocks, so token boundaries coincide
    const p = x + (<usize>u << 7);
    const amax = absMax8(p);
    const id: f32 = amax != 0 ? <f32>127.0 / amax : 0;
    const sc = f32x4.splat(id);
    const v0 = q16(p, sc);
    const v1 = q16(p + 64, sc);
    if (wide) {
      const o = qs + (<usize>u << 6);
      storeWide16(o, p, sc);
      storeWide16(o + 32, p + 64, sc);
    } else {
      const o = qs + (<usize>u << 5);
      v128.store(o, v0);
      v128.store(o, v1, 16);
    }
    const d = amax / <f32>127.0;
    store<f32>(dp + (<usize>u << 2), roundF16(d));
    const sum = sum16(v0) + sum16(v1);
    if (q81) store<f32>(sp + (<usize>u << 2), roundF16(d * <f32>sum));
    else store<i32>(sp + (<usize>u << 2), sum);
  }
}

/**
 * out[i] = x[i] rounded to f16 (bf16 = 0) or bf16 (bf16 = 1) precision, kept as f32 so the float
 * kernels read it unchanged. ROUND_* args; split by 16-value chunks.
 */
export function roundAct(args: usize, ith: i32, nth: i32): void {
  const x = <usize>arg(args, ROUND_X);
  const count = arg(args, ROUND_COUNT);
  const out = <usize>arg(args, ROUND_OUT);
  const bf16 = arg(args, ROUND_BF16) != 0;
  const chunks = (count + 15) >> 4;
  const e0 = min(count, splitAt(chunks, ith, nth) << 4);
  const e1 = min(count, splitAt(chunks, ith + 1, nth) << 4);
  let i = e0;
  for (; i + 4 <= e1; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    v128.store(out + (<usize>i << 2), bf16 ? roundBF16x4(v) : roundF16x4(v));
  }
  for (; i < e1; i++) {
    const v = f32x4.splat(load<f32>(x + (<usize>i << 2)));
    store<f32>(out + (<usize>i << 2), f32x4.extract_lane(bf16 ? roundBF16x4(v) : roundF16x4(v), 0));
  }
}

/**
 * Q8_K as ggml's quantize_row_q8_K_ref: scale from the signed value of largest magnitude
 * (first one on ties), q = min(127, nearest(-127/max * x)), d = 1/iscale, bsums per 16.
 * QUANT_* args (s: the bsums); split by 256-blocks.
 */
export function quantQ8_K(args: usize, ith: i32, nth: i32): void {
  const x = <usize>arg(args, QUANT_X);
  const nTokens = arg(args, QUANT_N_TOKENS);
  const cols = arg(args, QUANT_COLS);
  const qs = <usize>arg(args, QUANT_QS);
  const dp = <usize>arg(args, QUANT_D);
  const sp = <usize>arg(args, QUANT_S);
  const wide = wideAct(arg(args, QUANT_WEIGHT_TYPE), nTokens);
  const n = nTokens * (cols >> 8);
  const u1 = splitAt(n, ith + 1, nth);
  for (let u = splitAt(n, ith, nth); u < u1; u++) {
    const p = x + (<usize>u << 10);
    const qBytes: usize = wide ? 512 : 256; // i16 or i8 values
    const o = qs + <usize>u * qBytes;
    const bs = sp + (<usize>u << 5);
    let amax: f32 = 0;
    for (let i = 0; i < 1024; i += 128) amax = max(amax, absMax8(p + i));
    if (amax == 0) {
      for (let i: usize = 0; i < qBytes; i += 16) v128.store(o + i, i32x4.splat(0));
      for (let i = 0; i < 32; i += 16) v128.store(bs + i, i32x4.splat(0));
      store<f32>(dp + (<usize>u << 2), 0);
      continue;
    }
    let mx: f32 = 0;
    for (let i = 0; i < 256; i++) {
      const v = load<f32>(p + (<usize>i << 2));
      if (abs(v) == amax) {
        mx = v;
        break;
      }
    }
    const iscale: f32 = <f32>-127.0 / mx;
    const sc = f32x4.splat(iscale);
    for (let g = 0; g < 16; g++) {
      const v = q16(p + (<usize>g << 6), sc);
      // (|q| <= 127 here, so the wide i16 values equal v's saturated bytes)
      if (wide) storeWide16(o + (<usize>g << 5), p + (<usize>g << 6), sc);
      else v128.store(o + (<usize>g << 4), v);
      store<i16>(bs + (<usize>g << 1), <i16>sum16(v));
    }
    store<f32>(dp + (<usize>u << 2), <f32>1.0 / iscale);
  }
}

// ---------------------------------------------------------------- ggml's reference block quantizers
// Q8_0 / Q4_0 KV cache rows and the queries that dot them (kv.ts, attention.ts): ggml's
// quantize_row_q8_0_ref / quantize_row_q4_0_ref step for step in f32, as src/tensor/quantize.ts
// (the cache's bytes are the same on every backend). Scalar: a row is written once per token.

/** C roundf (half away from zero); v - trunc(v) is exact in f32. */
@inline function roundAway(v: f32): f32 {
  const t = Mathf.trunc(v);
  return Mathf.abs(v - t) >= <f32>0.5 ? t + (v < 0 ? <f32>-1.0 : <f32>1.0) : t;
}

/** 32 f32 at src to one Q8_0 block at dst (f16 d, then 32 i8): d = amax/127, q = roundf(x * (1/d)). */
export function quantBlockQ8_0Ref(src: usize, dst: usize): void {
  let amax: f32 = 0;
  for (let j = 0; j < 32; j++) amax = max(amax, Mathf.abs(load<f32>(src + (<usize>j << 2))));
  const d = amax / <f32>127.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : 0;
  store<u16>(dst, <u16>f32ToF16(d));
  for (let j = 0; j < 32; j++) store<i8>(dst + 2 + <usize>j, <i8><i32>roundAway(load<f32>(src + (<usize>j << 2)) * id));
}

/**
 * 32 f32 at src to one Q4_0 block at dst (f16 d, then 16 bytes: value j in the low nibble of byte
 * j, value j + 16 in its high nibble): the signed value of largest magnitude (first on ties) maps
 * to -8, d = max / -8, q = min(15, trunc(x * (1/d) + 8.5)).
 */
export function quantBlockQ4_0Ref(src: usize, dst: usize): void {
  let amax: f32 = 0, mx: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const v = load<f32>(src + (<usize>j << 2));
    if (amax < Mathf.abs(v)) {
      amax = Mathf.abs(v);
      mx = v;
    }
  }
  const d = mx / <f32>-8.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : 0;
  store<u16>(dst, <u16>f32ToF16(d));
  for (let j = 0; j < 16; j++) {
    const q0 = min(15, <i32>(load<f32>(src + (<usize>j << 2)) * id + <f32>8.5));
    const q1 = min(15, <i32>(load<f32>(src + (<usize>(j + 16) << 2)) * id + <f32>8.5));
    store<u8>(dst + 2 + <usize>j, <u8>(q0 | (q1 << 4)));
  }
}
