// Causal GQA/MQA attention over the paged KV cache with an online softmax (one pass over the
// keys, as ggml's flash-attention CPU path): per (token, head) a running max M, running sum S and
// the weighted V sum accumulated directly in the output row, then scaled by 1/S.
//
// Each token attends to the key range [first, end) of its sequence: first = 0 for full causal
// attention, the oldest position inside the window for sliding-window attention. Keys before
// `first` are never read, so their blocks may be released (their block-table entries are then -1).
//
// Two roundings of that recurrence (arg `half`):
// - f32 (half = 0): Q, scores and the V accumulator in f32, as ggml's tiled flash attention.
// - half (half = 1, f16 cache only): ggml's one-row flash attention (ops.cpp
//   flash_attn_ext_f16_one_chunk): Q rounded to f16, q.k of f16 values (exact products, ggml's
//   vec_dot_f16 summation order), libm expf, and the V accumulator kept in f16: every rescale and
//   every v * vs + acc is rounded to f16 (from an f32 fused multiply-add).
import { arg, argf, expf, f16x4ToF32, f16ToF32, hsumf, roundF16x4, splitAt } from './common';

@inline function kv4(p: usize, f16: bool): v128 {
  return f16 ? f16x4ToF32(v128.load16x4_u(p)) : v128.load(p);
}
@inline function kv1(p: usize, f16: bool): f32 {
  return f16 ? f16ToF32(load<u16>(p)) : load<f32>(p);
}

/** q . k over n values: two accumulators over 8-value chunks, then the tail in order. */
@inline function dotQK(q: usize, k: usize, n: i32, f16: bool): f32 {
  const eb: usize = f16 ? 2 : 4;
  let a = f32x4.splat(0), b = a;
  const n8 = n & ~7;
  for (let i = 0; i < n8; i += 8) {
    const qp = q + (<usize>i << 2);
    const kp = k + <usize>i * eb;
    a = f32x4.add(a, f32x4.mul(v128.load(qp), kv4(kp, f16)));
    b = f32x4.add(b, f32x4.mul(v128.load(qp, 16), kv4(kp + 4 * eb, f16)));
  }
  let s = hsumf(f32x4.add(a, b));
  for (let i = n8; i < n; i++) s += load<f32>(q + (<usize>i << 2)) * kv1(k + <usize>i * eb, f16);
  return s;
}

// ---------------------------------------------------------------- half: ggml's one-row path

/** f32 fused multiply-add a * b + c: the product is exact in f64 and the f64 sum rounds to the
 *  fused result except in double-rounding ties (about 2^-29 of cases). */
@inline function fmaf(a: f32, b: f32, c: f32): f32 {
  return <f32>(<f64>a * <f64>b + <f64>c);
}

/** fmaf on four lanes: a * b + c with b a scalar. */
@inline function fma4(a: v128, b: f64, c: v128): v128 {
  const bv = f64x2.splat(b);
  const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(a), bv), f64x2.promote_low_f32x4(c));
  const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(i64x2.shuffle(a, a, 1, 0)), bv), f64x2.promote_low_f32x4(i64x2.shuffle(c, c, 1, 0)));
  return i64x2.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 2);
}

/** libm expf, from the f64 exp (correctly rounded to f32 but for rare near-ties). */
@inline function expfLibm(x: f32): f32 {
  return <f32>Math.exp(<f64>x);
}

/**
 * ggml_vec_dot_f16 (AVX-512 build) of f16-valued q (as f32) and an f16 K row: products of f16
 * values are exact in f32. The first n & ~63 elements go to 64 lanes (16 f32x4: lane group g =
 * elements 4g..4g+3 of each 64) reduced as ggml's REDUCE (groups g, g+8 / g+4 / ... and the final
 * 512-bit add); the rest are added in f64; the sum is rounded to f32 once.
 */
function dotHalf(q: usize, k: usize, n: i32): f32 {
  const n64 = n & ~63;
  let sum: f64 = 0;
  if (n64 > 0) {
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    let a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
    for (let i = 0; i < n64; i += 64) {
      const qp = q + (<usize>i << 2), kp = k + (<usize>i << 1);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(qp), kv4(kp, true)));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(qp, 16), kv4(kp + 8, true)));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(qp, 32), kv4(kp + 16, true)));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(qp, 48), kv4(kp + 24, true)));
      a4 = f32x4.add(a4, f32x4.mul(v128.load(qp, 64), kv4(kp + 32, true)));
      a5 = f32x4.add(a5, f32x4.mul(v128.load(qp, 80), kv4(kp + 40, true)));
      a6 = f32x4.add(a6, f32x4.mul(v128.load(qp, 96), kv4(kp + 48, true)));
      a7 = f32x4.add(a7, f32x4.mul(v128.load(qp, 112), kv4(kp + 56, true)));
      a8 = f32x4.add(a8, f32x4.mul(v128.load(qp, 128), kv4(kp + 64, true)));
      a9 = f32x4.add(a9, f32x4.mul(v128.load(qp, 144), kv4(kp + 72, true)));
      a10 = f32x4.add(a10, f32x4.mul(v128.load(qp, 160), kv4(kp + 80, true)));
      a11 = f32x4.add(a11, f32x4.mul(v128.load(qp, 176), kv4(kp + 88, true)));
      a12 = f32x4.add(a12, f32x4.mul(v128.load(qp, 192), kv4(kp + 96, true)));
      a13 = f32x4.add(a13, f32x4.mul(v128.load(qp, 208), kv4(kp + 104, true)));
      a14 = f32x4.add(a14, f32x4.mul(v128.load(qp, 224), kv4(kp + 112, true)));
      a15 = f32x4.add(a15, f32x4.mul(v128.load(qp, 240), kv4(kp + 120, true)));
    }
    // four 16-lane accumulators (a0-a3, a4-a7, a8-a11, a12-a15): x0 + x2, x1 + x3, then x0 + x1
    const b0 = f32x4.add(f32x4.add(a0, a8), f32x4.add(a4, a12));
    const b1 = f32x4.add(f32x4.add(a1, a9), f32x4.add(a5, a13));
    const b2 = f32x4.add(f32x4.add(a2, a10), f32x4.add(a6, a14));
    const b3 = f32x4.add(f32x4.add(a3, a11), f32x4.add(a7, a15));
    // _mm512_reduce_add_ps: lanes i + (i+8), then + (i+4), then the 4-lane sum as hsumf
    sum = <f64>hsumf(f32x4.add(f32x4.add(b0, b2), f32x4.add(b1, b3)));
  }
  for (let i = n64; i < n; i++) sum += <f64>(load<f32>(q + (<usize>i << 2)) * f16ToF32(load<u16>(k + (<usize>i << 1))));
  return <f32>sum;
}

/** One (token, head) of the half path; qs: headDim f32 of scratch for the f16-rounded query. */
@inline function unitHalf(
  qr: usize, o: usize, qs: usize, kc: usize, vc: usize, table: usize, first: i32, end: i32, headOff: usize,
  headDim: i32, scale: f32, blockSize: i32, kvDim: i32,
): void {
  const n4 = headDim & ~3;
  for (let i = 0; i < n4; i += 4) v128.store(qs + (<usize>i << 2), roundF16x4(v128.load(qr + (<usize>i << 2))));
  for (let i = n4; i < headDim; i++) {
    store<f32>(qs + (<usize>i << 2), f32x4.extract_lane(roundF16x4(f32x4.splat(load<f32>(qr + (<usize>i << 2)))), 0));
  }
  memory.fill(o, 0, <usize>headDim << 2);
  let m: f32 = -Infinity;
  let sum: f32 = 0;
  for (let p = first; p < end; p++) {
    const blk = load<i32>(table + (<usize>(p / blockSize) << 2));
    const rowOff = <usize>(blk * blockSize + p % blockSize) * <usize>kvDim * 2 + headOff;
    const s = dotHalf(qs, kc + rowOff, headDim) * scale;
    let ms: f32 = 1;
    let vs: f32 = 1;
    if (s > m) {
      ms = expfLibm(m - s); // 0 for the first key (m = -inf): the zero accumulator stays zero
      m = s;
      const msv = f32x4.splat(ms);
      for (let i = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), roundF16x4(f32x4.mul(v128.load(o + (<usize>i << 2)), msv)));
      for (let i = n4; i < headDim; i++) {
        store<f32>(o + (<usize>i << 2), f32x4.extract_lane(roundF16x4(f32x4.splat(load<f32>(o + (<usize>i << 2)) * ms)), 0));
      }
    } else {
      vs = expfLibm(s - m);
    }
    const vr = vc + rowOff;
    for (let i = 0; i < n4; i += 4) {
      const op = o + (<usize>i << 2);
      v128.store(op, roundF16x4(fma4(kv4(vr + (<usize>i << 1), true), <f64>vs, v128.load(op))));
    }
    for (let i = n4; i < headDim; i++) {
      const op = o + (<usize>i << 2);
      store<f32>(op, f32x4.extract_lane(roundF16x4(f32x4.splat(fmaf(kv1(vr + (<usize>i << 1), true), vs, load<f32>(op)))), 0));
    }
    sum = sum * ms + vs;
  }
  if (end > first) {
    const inv: f32 = <f32>1.0 / sum;
    const iv = f32x4.splat(inv);
    for (let i = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.mul(v128.load(o + (<usize>i << 2)), iv));
    for (let i = n4; i < headDim; i++) store<f32>(o + (<usize>i << 2), load<f32>(o + (<usize>i << 2)) * inv);
  }
}

// ---------------------------------------------------------------- driver

/**
 * args: [op, q, out, nTokens, nHeads, nKvHeads, headDim, scale(f32), kPtr, vPtr, isF16,
 *        blockSize, kvDim, tokenInfo, half, scratch, hpu]. tokenInfo: per token t, three i32 at
 * tokenInfo + 12t: [block table pointer, first key, end key]; the token attends to its sequence's
 * positions first..end-1, and block-table entries before first / blockSize are never read.
 * out must not overlap q. half (f16 cache only) selects ggml's one-row rounding, split by
 * (token, head) pairs; it needs headDim f32 of scratch per share at scratch + ith * headDim * 4.
 * The f32 path is split by (token, KV head, hpu heads) and needs attnScratchStride bytes per share
 * at scratch + ith * stride. (ith indexes the share, not the thread: the pool runs shares as
 * chunks claimed by any thread.)
 */
export function attention(args: usize, ith: i32, nth: i32): void {
  const q = <usize>arg(args, 1);
  const out = <usize>arg(args, 2);
  const nTokens = arg(args, 3);
  const nHeads = arg(args, 4);
  const nKvHeads = arg(args, 5);
  const headDim = arg(args, 6);
  const scale = argf(args, 7);
  const kc = <usize>arg(args, 8);
  const vc = <usize>arg(args, 9);
  const f16 = arg(args, 10) != 0;
  const blockSize = arg(args, 11);
  const kvDim = arg(args, 12);
  const info = <usize>arg(args, 13);
  const half = f16 && arg(args, 14) != 0;
  const qs = <usize>arg(args, 15) + <usize>ith * (<usize>headDim << 2);
  const eb: usize = f16 ? 2 : 4;
  const group = nHeads / nKvHeads;
  const n4 = headDim & ~3;
  if (half) {
    const units = nTokens * nHeads;
    const u1 = splitAt(units, ith + 1, nth);
    for (let u = splitAt(units, ith, nth); u < u1; u++) {
      const t = u / nHeads;
      const hd = u - t * nHeads;
      const qr = q + <usize>u * (<usize>headDim << 2);
      const o = out + <usize>u * (<usize>headDim << 2);
      const ti = info + <usize>t * 12;
      const table = <usize>load<i32>(ti);
      const headOff = <usize>((hd / group) * headDim) * eb;
      unitHalf(qr, o, qs, kc, vc, table, load<i32>(ti, 4), load<i32>(ti, 8), headOff, headDim, scale, blockSize, kvDim);
    }
    return;
  }
  // f32 rounding: one unit = (token, KV head, subset of hpu of the `group` query heads that share
  // it; hpu = arg 16 divides group). Each key's K and V rows are converted to f32 once (into this
  // share's scratch) and used by every head of the unit; per head the arithmetic is the same
  // sequence as one head alone, so hpu (the host picks it for parallelism) never changes a result.
  const hpu = arg(args, 16);
  const subs = group / hpu;
  const hb = <usize>headDim << 2;
  const ks = <usize>arg(args, 15) + <usize>ith * attnScratchStride(headDim, hpu);
  const vs32 = ks + hb;
  const mS = vs32 + hb; // hpu f32 running maxima, then hpu f32 running sums
  const sS = mS + (<usize>hpu << 2);
  const units = nTokens * nKvHeads * subs;
  const u1 = splitAt(units, ith + 1, nth);
  for (let u = splitAt(units, ith, nth); u < u1; u++) {
    const t = u / (nKvHeads * subs);
    const r = u - t * nKvHeads * subs;
    const kh = r / subs;
    const h0 = t * nHeads + kh * group + (r - kh * subs) * hpu; // first query head's row index
    const qr = q + <usize>h0 * hb;
    const o = out + <usize>h0 * hb;
    const ti = info + <usize>t * 12;
    const table = <usize>load<i32>(ti);
    const first = load<i32>(ti, 4);
    const keyEnd = load<i32>(ti, 8);
    const headOff = <usize>(kh * headDim) * eb;
    memory.fill(o, 0, <usize>hpu * hb);
    let p = first;
    // Block by block from the block holding `first` (earlier entries may be released).
    for (let bi = first / blockSize; p < keyEnd; bi++) {
      const base = <usize>(load<i32>(table + (<usize>bi << 2)) * blockSize);
      const blockEnd = min(keyEnd, (bi + 1) * blockSize);
      for (let slot = base + <usize>(p - bi * blockSize); p < blockEnd; p++, slot++) {
        const rowOff = slot * <usize>kvDim * eb + headOff;
        let kr = kc + rowOff, vr = vc + rowOff;
        if (f16) {
          toF32(ks, kr, headDim);
          toF32(vs32, vr, headDim);
          kr = ks;
          vr = vs32;
        }
        for (let g = 0; g < hpu; g++) {
          const go = <usize>g * hb;
          const og = o + go;
          const s = dotQK(qr + go, kr, headDim, false) * scale;
          let ms: f32 = 1;
          let vs: f32 = 1;
          const mp = mS + (<usize>g << 2);
          const sp = sS + (<usize>g << 2);
          if (p == first) {
            store<f32>(mp, s);
            store<f32>(sp, 0);
          } else {
            const m = load<f32>(mp);
            if (s > m) {
              ms = expf(m - s);
              store<f32>(mp, s);
              const msv = f32x4.splat(ms);
              for (let i = 0; i < n4; i += 4) v128.store(og + (<usize>i << 2), f32x4.mul(v128.load(og + (<usize>i << 2)), msv));
              for (let i = n4; i < headDim; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * ms);
            } else {
              vs = expf(s - m);
            }
          }
          const vsv = f32x4.splat(vs);
          for (let i = 0; i < n4; i += 4) {
            const op = og + (<usize>i << 2);
            v128.store(op, f32x4.add(v128.load(op), f32x4.mul(v128.load(vr + (<usize>i << 2)), vsv)));
          }
          for (let i = n4; i < headDim; i++) {
            const op = og + (<usize>i << 2);
            store<f32>(op, load<f32>(op) + load<f32>(vr + (<usize>i << 2)) * vs);
          }
          store<f32>(sp, load<f32>(sp) * ms + vs);
        }
      }
    }
    if (keyEnd > first) {
      for (let g = 0; g < hpu; g++) {
        const og = o + <usize>g * hb;
        const inv: f32 = <f32>1.0 / load<f32>(sS + (<usize>g << 2));
        const iv = f32x4.splat(inv);
        for (let i = 0; i < n4; i += 4) v128.store(og + (<usize>i << 2), f32x4.mul(v128.load(og + (<usize>i << 2)), iv));
        for (let i = n4; i < headDim; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * inv);
      }
    }
  }
}

/** Bytes of scratch per thread the f32 path needs (two f32 rows, per-head max and sum), 64-aligned. */
@inline function attnScratchStride(headDim: i32, group: i32): usize {
  return ((<usize>(2 * headDim + 2 * group) << 2) + 63) & ~<usize>63;
}

/** n f16 values at src to f32 at dst (exact, as f16ToF32). */
@inline function toF32(dst: usize, src: usize, n: i32): void {
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) v128.store(dst + (<usize>i << 2), f16x4ToF32(v128.load16x4_u(src + (<usize>i << 1))));
  for (let i = n4; i < n; i++) store<f32>(dst + (<usize>i << 2), f16ToF32(load<u16>(src + (<usize>i << 1))));
}
