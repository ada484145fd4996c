// Causal GQA/MQA attention over the paged KV cache with an online softmax (one pass over the
// keys, as ggml's flash-attention CPU path): per (token, head) a running max M, running sum S and
// the weighted V sum accumulated directly in the output row, then scaled by 1/S.
//
// Each token attends to the key range [first, end) of its sequence: first = 0 for full causal
// attention, the oldest position inside the window for sliding-window attention. Keys before
// `first` are never read, so their blocks may be released (their block-table entries are then -1).
//
// ALiBi (jina-bert-v2; ATTN_ALIBI_SLOPES): after the scale and soft-capping each score gets
// slope[head] * -|query position - key position|, as ggml adds slope * mask with llama.cpp's
// -|i - j| mask.
//
// Two roundings of that recurrence (arg `half`):
// - f32 (half = 0): Q, scores and the V accumulator in f32, as ggml's tiled flash attention.
// - half (half = 1, f16 cache only): ggml's one-row flash attention (ops.cpp
//   flash_attn_ext_f16_one_chunk): Q rounded to f16, q.k of f16 values (exact products, ggml's
//   vec_dot_f16 summation order), libm expf, and the V accumulator kept in f16: every rescale and
//   every v * vs + acc is rounded to f16 (from an f32 fused multiply-add).
// A Q8_0 / Q4_0 cache takes the f32 path as ggml's flash attention reads those types: each query
// row quantized to Q8_0 (K's vec_dot_type; ggml's reference quantizer, as the cache's rows) and
// q.k = sum over blocks of f32(isum) * (d_k * d_q) in block order (integer dots, exact); V rows
// dequantized exactly to f32 and accumulated as an f32 cache's.
import {
  ATTN_ALIBI_SLOPES, ATTN_BLOCK_SIZE, ATTN_KV_TYPE, ATTN_HALF, ATTN_HEADS_PER_UNIT, ATTN_HEAD_DIM, ATTN_KEY_TILE, ATTN_KV_DIM, ATTN_K_CACHE, ATTN_N_HEADS, ATTN_N_KV_HEADS, ATTN_N_TOKENS, ATTN_OUT, ATTN_POSITIONS, ATTN_Q, ATTN_PARTIALS, ATTN_QUERY_TILE, ATTN_SCALE, ATTN_SCRATCH, ATTN_SEGMENT_KEYS, ATTN_SEGMENT_SLOTS, ATTN_SOFTCAP, ATTN_SPLIT_PHASE, ATTN_TABLES, ATTN_TOKEN_INFO, ATTN_V_CACHE, T_F16, T_F32, T_Q8_0,
} from './abi';
import { arg, argf, expf, expv, f16x4ToF32, f16ToF32, F16_REBIAS, hsumf, hsumi, roundF16x4, splitAt } from './common';
import { kvBytes } from './kv';
import { quantBlockQ8_0Ref } from './quantize';

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

/** Attention-logit soft-capping of this call (ATTN_SOFTCAP; 0: off). Each worker instance has its own. */
let softcap: f32 = 0;

/** A score after soft-capping, as ggml's flash attention: softcap * tanh(s), s already scaled by scale / softcap. */
@inline function capped(s: f32): f32 {
  return softcap != 0 ? softcap * Mathf.tanh(s) : s;
}

/** ALiBi of this call: f32 slopes per head (ATTN_ALIBI_SLOPES; 0: off) and i32 query positions. Per worker instance. */
let alibiSlopes: usize = 0;
let alibiPositions: usize = 0;

/** Score s of token t's head h against key position j, with ALiBi's bias when it is on (f32 steps as ggml: s + slope * -|i - j|). */
@inline function biased(s: f32, t: i32, h: i32, j: i32): f32 {
  if (alibiSlopes == 0) return s;
  const d = load<i32>(alibiPositions + (<usize>t << 2)) - j;
  return s + load<f32>(alibiSlopes + (<usize>h << 2)) * <f32>(-abs<i32>(d));
}

/** One (token t, head hd) of the half path; qs: headDim f32 of scratch for the f16-rounded query. */
@inline function unitHalf(
  qr: usize, o: usize, qs: usize, kc: usize, vc: usize, table: usize, first: i32, end: i32, headOff: usize,
  headDim: i32, scale: f32, blockSize: i32, kvDim: i32, t: i32, hd: i32,
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
    const s = biased(capped(dotHalf(qs, kc + rowOff, headDim) * scale), t, hd, p);
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
 * ATTN_* args (abi.ts). tokenInfo: per token t, three i32 at
 * tokenInfo + 12t: [block table start (an entry index into the i32 array at tables), first key,
 * end key]; the token attends to its sequence's positions first..end-1, and block-table entries
 * before first / blockSize are never read.
 * out must not overlap q. half (f16 cache only) selects ggml's one-row rounding, split by
 * (token, head) pairs; it needs headDim f32 of scratch per share at scratch + ith * headDim * 4.
 * The f32 path is split by (query tile, KV head, hpu heads) (see below) and needs attnScratchStride
 * bytes per share at scratch + ith * stride; a split decode (ATTN_SPLIT_PHASE) runs twice, by those
 * units times segment slots into ATTN_PARTIALS, then by (token, head) folding them. (ith indexes the
 * share, not the thread: the pool runs shares as chunks claimed by any thread.)
 */
export function attention(args: usize, ith: i32, nth: i32): void {
  const q = <usize>arg(args, ATTN_Q);
  const out = <usize>arg(args, ATTN_OUT);
  const nTokens = arg(args, ATTN_N_TOKENS);
  const nHeads = arg(args, ATTN_N_HEADS);
  const nKvHeads = arg(args, ATTN_N_KV_HEADS);
  const headDim = arg(args, ATTN_HEAD_DIM);
  const scale = argf(args, ATTN_SCALE);
  softcap = argf(args, ATTN_SOFTCAP);
  alibiSlopes = <usize>arg(args, ATTN_ALIBI_SLOPES);
  alibiPositions = <usize>arg(args, ATTN_POSITIONS);
  const kc = <usize>arg(args, ATTN_K_CACHE);
  const vc = <usize>arg(args, ATTN_V_CACHE);
  const kt = arg(args, ATTN_KV_TYPE);
  const f16 = kt == T_F16;
  const blockSize = arg(args, ATTN_BLOCK_SIZE);
  const kvDim = arg(args, ATTN_KV_DIM);
  const info = <usize>arg(args, ATTN_TOKEN_INFO);
  const tables = <usize>arg(args, ATTN_TABLES);
  const half = f16 && arg(args, ATTN_HALF) != 0;
  const qs = <usize>arg(args, ATTN_SCRATCH) + <usize>ith * (<usize>headDim << 2);
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
      const table = tables + (<usize>load<i32>(ti) << 2);
      const headOff = <usize>((hd / group) * headDim) * eb;
      unitHalf(qr, o, qs, kc, vc, table, load<i32>(ti, 4), load<i32>(ti, 8), headOff, headDim, scale, blockSize, kvDim, t, hd);
    }
    return;
  }
  // f32 rounding. One unit = (query tile, KV head, hpu of the `group` query heads sharing it; hpu =
  // arg 16 divides group). A query tile is up to ATTN_QUERY_TILE consecutive batch tokens with one
  // block table (one sequence), so every K and V row is converted to f32 once for all of the tile's
  // rows (token x head) instead of once per token. Keys go in tiles of ATTN_KEY_TILE on a grid
  // fixed by key position (multiples of ATTN_KEY_TILE), as ggml's tiled flash attention: per row,
  // the scores of the tile's keys inside the row's [first, end), one max, one rescale of the
  // accumulator when the max grew, the exps, the running sum and the V rows in key order. Key
  // tiles group into segments of ATTN_SEGMENT_KEYS (a grid fixed by key position too): each
  // segment's state starts empty, and a row's segments are folded in order (mergeSegment), so a
  // decode step may compute its segments on different threads (split, below) with the bits of one
  // thread walking them. A row's arithmetic depends only on its own query, keys and range: not on
  // the tile's other rows, the batch, hpu, the split or the thread count.
  const hpu = arg(args, ATTN_HEADS_PER_UNIT);
  const subs = group / hpu;
  const hb = <usize>headDim << 2;
  const rowsMax = ATTN_QUERY_TILE * hpu;
  const quantK = kt != T_F32 && kt != T_F16;
  const phase = arg(args, ATTN_SPLIT_PHASE);
  const partials = <usize>arg(args, ATTN_PARTIALS);
  const slots = arg(args, ATTN_SEGMENT_SLOTS);
  const ks = <usize>arg(args, ATTN_SCRATCH) + <usize>ith * attnScratchStride(headDim, hpu, quantK);
  if (phase == 2) {
    foldSegments(partials, out, nTokens * nHeads, headDim, slots, ks, ith, nth);
    return;
  }
  const vs32 = ks + hb;
  const mS = vs32 + hb; // per row: the segment's running max
  const sS = mS + (<usize>rowsMax << 2); // per row: the segment's running sum
  const mM = sS + (<usize>rowsMax << 2); // per row: the folded segments' max
  const sM = mM + (<usize>rowsMax << 2); // per row: the folded segments' sum
  const pS = sM + (<usize>rowsMax << 2); // per row: ATTN_KEY_TILE scores, then their exps
  const accS = pS + (<usize>(rowsMax * ATTN_KEY_TILE) << 2); // per row: the segment's output
  const qq = accS + <usize>rowsMax * hb; // block caches: per row the query as Q8_0 blocks
  const rowBytes = kvBytes(kt, kvDim);
  const unitsPerTile = nKvHeads * subs;
  if (phase == 1) {
    // split: every tile is one token; unit = (token, KV head and heads, segment slot)
    const units = nTokens * unitsPerTile * slots;
    const u1 = splitAt(units, ith + 1, nth);
    for (let u = splitAt(units, ith, nth); u < u1; u++) {
      const slot = u % slots, r = (u / slots) % unitsPerTile, t = u / (slots * unitsPerTile);
      const kh = r / subs;
      const hd0 = kh * group + (r - kh * subs) * hpu;
      attendTile(q, out, info, tables, t, t + 1, nHeads, hd0, hpu, headDim, scale, kc, vc, kt, blockSize, rowBytes, kvBytes(kt, kh * headDim), ks, vs32, mS, sS, mM, sM, pS, accS, qq, partials, slot, slots);
    }
    return;
  }
  const units = queryTiles(info, nTokens) * unitsPerTile;
  const u0 = splitAt(units, ith, nth), u1 = splitAt(units, ith + 1, nth);
  // walk the query tiles in order; run this share's units of each
  let t0 = 0;
  for (let tile = 0; t0 < nTokens && tile * unitsPerTile < u1; tile++) {
    const t1 = queryTileEnd(info, nTokens, t0);
    for (let r = max(u0 - tile * unitsPerTile, 0); r < unitsPerTile && tile * unitsPerTile + r < u1; r++) {
      const kh = r / subs;
      const hd0 = kh * group + (r - kh * subs) * hpu; // first query head of the unit
      attendTile(q, out, info, tables, t0, t1, nHeads, hd0, hpu, headDim, scale, kc, vc, kt, blockSize, rowBytes, kvBytes(kt, kh * headDim), ks, vs32, mS, sS, mM, sM, pS, accS, qq, 0, 0, 0);
    }
    t0 = t1;
  }
}

/**
 * Fold a segment's state (max m2, sum s2, unnormalized output acc2) into a row's folded state
 * (output og, max at mp, sum at sp): nothing for a segment without keys, a copy into an empty
 * state, else both rescaled to the larger max and added.
 */
@inline function mergeSegment(og: usize, mp: usize, sp: usize, m2: f32, s2: f32, acc2: usize, headDim: i32): void {
  if (m2 == -Infinity && s2 == 0) return;
  const m1 = load<f32>(mp), s1 = load<f32>(sp);
  if (m1 == -Infinity && s1 == 0) {
    memory.copy(og, acc2, <usize>headDim << 2);
    store<f32>(mp, m2);
    store<f32>(sp, s2);
    return;
  }
  const m = max(m1, m2);
  const f1 = expf(m1 - m), f2 = expf(m2 - m);
  const n4 = headDim & ~3;
  const v1 = f32x4.splat(f1), v2 = f32x4.splat(f2);
  for (let x = 0; x < n4; x += 4) {
    const o = og + (<usize>x << 2);
    v128.store(o, f32x4.add(f32x4.mul(v128.load(o), v1), f32x4.mul(v128.load(acc2 + (<usize>x << 2)), v2)));
  }
  for (let x = n4; x < headDim; x++) {
    const o = og + (<usize>x << 2);
    store<f32>(o, load<f32>(o) * f1 + load<f32>(acc2 + (<usize>x << 2)) * f2);
  }
  store<f32>(mp, m);
  store<f32>(sp, s1 * f1 + s2 * f2);
}

/** The output row og divided by its sum (a row that saw no key stays zero). */
@inline function normalizeRow(og: usize, m: f32, sum: f32, headDim: i32): void {
  if (m == -Infinity && sum == 0) return;
  const inv: f32 = <f32>1.0 / sum;
  const iv = f32x4.splat(inv);
  const n4 = headDim & ~3;
  for (let x = 0; x < n4; x += 4) v128.store(og + (<usize>x << 2), f32x4.mul(v128.load(og + (<usize>x << 2)), iv));
  for (let x = n4; x < headDim; x++) store<f32>(og + (<usize>x << 2), load<f32>(og + (<usize>x << 2)) * inv);
}

/** Split phase 2: each (token, head) row's segment partials folded in order into out, normalized (ms: 8 bytes of scratch). */
function foldSegments(partials: usize, out: usize, rows: i32, headDim: i32, slots: i32, ms: usize, ith: i32, nth: i32): void {
  const hb = <usize>headDim << 2, pb = <usize>(headDim + 2) << 2;
  const r1 = splitAt(rows, ith + 1, nth);
  for (let r = splitAt(rows, ith, nth); r < r1; r++) {
    const og = out + <usize>r * hb;
    memory.fill(og, 0, hb);
    store<f32>(ms, -Infinity);
    store<f32>(ms, 0, 4);
    for (let k = 0; k < slots; k++) {
      const p = partials + (<usize>r * <usize>slots + <usize>k) * pb;
      mergeSegment(og, ms, ms + 4, load<f32>(p), load<f32>(p, 4), p + 8, headDim);
    }
    normalizeRow(og, load<f32>(ms), load<f32>(ms, 4), headDim);
  }
}

/** End (exclusive) of the query tile starting at token t0: same block table, at most ATTN_QUERY_TILE tokens. */
@inline function queryTileEnd(info: usize, nTokens: i32, t0: i32): i32 {
  const table = load<i32>(info + <usize>t0 * 12);
  let t = t0 + 1;
  while (t < nTokens && t - t0 < ATTN_QUERY_TILE && load<i32>(info + <usize>t * 12) == table) t++;
  return t;
}

function queryTiles(info: usize, nTokens: i32): i32 {
  let n = 0;
  for (let t = 0; t < nTokens; t = queryTileEnd(info, nTokens, t)) n++;
  return n;
}

/**
 * Tokens [t0, t1) (one sequence) x query heads hd0 .. hd0 + hpu - 1 (one KV head at headOff) of
 * the f32 path. Rows are (token, head) pairs, row i = (t0 + i / hpu, hd0 + i % hpu). partials == 0:
 * every segment of the tile's keys, folded into out and normalized. Else (split, one token): only
 * segment slot `slot` of the token's range, its state written to its place in partials.
 */
function attendTile(
  q: usize, out: usize, info: usize, tables: usize, t0: i32, t1: i32, nHeads: i32, hd0: i32, hpu: i32, headDim: i32, scale: f32,
  kc: usize, vc: usize, kt: i32, blockSize: i32, rowBytes: usize, headOff: usize,
  ks: usize, vs32: usize, mS: usize, sS: usize, mM: usize, sM: usize, pS: usize, accS: usize, qq: usize,
  partials: usize, slot: i32, slots: i32,
): void {
  const quantK = kt != T_F32 && kt != T_F16;
  const nb = headDim >> 5, qrb = <usize>nb * 34;
  const hb = <usize>headDim << 2;
  const n4 = headDim & ~3;
  const nRows = (t1 - t0) * hpu;
  const table = tables + (<usize>load<i32>(info + <usize>t0 * 12) << 2);
  // the tile's key range: the union of its tokens' ranges
  let lo = i32.MAX_VALUE, hi = 0;
  for (let t = t0; t < t1; t++) {
    const f = load<i32>(info + <usize>t * 12, 4), e = load<i32>(info + <usize>t * 12, 8);
    if (e > f) {
      lo = min(lo, f);
      hi = max(hi, e);
    }
  }
  // segments [g0, g1) of the grid: all of the range's, or the slot's one
  let g0 = lo / ATTN_SEGMENT_KEYS, g1 = (hi + ATTN_SEGMENT_KEYS - 1) / ATTN_SEGMENT_KEYS;
  if (partials != 0) {
    g0 += slot;
    g1 = min(g1, g0 + 1);
  }
  for (let i = 0; i < nRows; i++) {
    if (partials == 0) memory.fill(rowOut(out, t0, i, hpu, nHeads, hd0, hb), 0, hb);
    store<f32>(mM + (<usize>i << 2), -Infinity);
    store<f32>(sM + (<usize>i << 2), 0);
  }
  if (lo < hi && g0 < g1 && quantK) {
    for (let i = 0; i < nRows; i++) {
      const qr = q + <usize>((t0 + i / hpu) * nHeads + hd0 + i % hpu) * hb;
      for (let b = 0; b < nb; b++) quantBlockQ8_0Ref(qr + (<usize>b << 7), qq + <usize>i * qrb + <usize>b * 34);
    }
  }
  for (let g = g0; lo < hi && g < g1; g++) {
    const sLo = max(lo, g * ATTN_SEGMENT_KEYS), sHi = min(hi, (g + 1) * ATTN_SEGMENT_KEYS);
    for (let i = 0; i < nRows; i++) {
      memory.fill(accS + <usize>i * hb, 0, hb);
      store<f32>(mS + (<usize>i << 2), -Infinity);
      store<f32>(sS + (<usize>i << 2), 0);
    }
    for (let k0 = sLo - sLo % ATTN_KEY_TILE; k0 < sHi; k0 += ATTN_KEY_TILE) {
      const k1 = min(k0 + ATTN_KEY_TILE, sHi);
      // scores s[row][j - k0] for the keys j inside the row's range
      const j0 = max(k0, sLo);
      const b0 = j0 / blockSize; // the keys' block-table entry and slot in it, stepped without dividing per key
      let bi = b0, off = j0 - b0 * blockSize;
      for (let j = j0; j < k1; j++) {
        const kp = kc + kvRowOffset(table, bi, off, blockSize, rowBytes, headOff);
        if (++off == blockSize) { off = 0; bi++; }
        const kr = quantK ? kp : f32Row(kp, ks, kt, headDim);
        for (let i = 0; i < nRows; i++) {
          if (!rowSeesKey(info, t0, i, hpu, j)) continue;
          const qr = q + <usize>((t0 + i / hpu) * nHeads + hd0 + i % hpu) * hb;
          const dot = quantK ? dotBlocks(qq + <usize>i * qrb, kr, nb, kt) : dotQK(qr, kr, headDim, false);
          store<f32>(pS + (<usize>(i * ATTN_KEY_TILE + j - k0) << 2), biased(capped(dot * scale), t0 + i / hpu, hd0 + i % hpu, j));
        }
      }
      // per row: max, rescale, exps, running sum
      for (let i = 0; i < nRows; i++) {
        const ti = info + <usize>(t0 + i / hpu) * 12;
        const a = max(j0, load<i32>(ti, 4)), b = min(k1, load<i32>(ti, 8));
        if (a >= b) continue;
        const row = pS + (<usize>(i * ATTN_KEY_TILE - k0) << 2); // row + 4j: key j's score
        const mp = mS + (<usize>i << 2), sp = sS + (<usize>i << 2);
        const m = load<f32>(mp);
        let mt = m;
        for (let j = a; j < b; j++) mt = max(mt, load<f32>(row + (<usize>j << 2)));
        let sum = load<f32>(sp);
        if (mt > m && m != -Infinity) {
          const ms = expf(m - mt);
          sum *= ms;
          const og = accS + <usize>i * hb;
          const msv = f32x4.splat(ms);
          for (let x = 0; x < n4; x += 4) v128.store(og + (<usize>x << 2), f32x4.mul(v128.load(og + (<usize>x << 2)), msv));
          for (let x = n4; x < headDim; x++) store<f32>(og + (<usize>x << 2), load<f32>(og + (<usize>x << 2)) * ms);
        }
        store<f32>(mp, mt);
        const mv = f32x4.splat(mt);
        let j = a;
        for (; j + 4 <= b; j += 4) {
          const pj = row + (<usize>j << 2);
          v128.store(pj, expv(f32x4.sub(v128.load(pj), mv)));
        }
        for (; j < b; j++) {
          const pj = row + (<usize>j << 2);
          store<f32>(pj, expf(load<f32>(pj) - mt));
        }
        for (j = a; j < b; j++) sum += load<f32>(row + (<usize>j << 2));
        store<f32>(sp, sum);
      }
      // acc[row] += p[row][j] * v_j, keys in order
      bi = b0; off = j0 - b0 * blockSize;
      for (let j = j0; j < k1; j++) {
        const vr = f32Row(vc + kvRowOffset(table, bi, off, blockSize, rowBytes, headOff), vs32, kt, headDim);
        if (++off == blockSize) { off = 0; bi++; }
        for (let i = 0; i < nRows; i++) {
          if (!rowSeesKey(info, t0, i, hpu, j)) continue;
          const og = accS + <usize>i * hb;
          const p = load<f32>(pS + (<usize>(i * ATTN_KEY_TILE + j - k0) << 2));
          const pv = f32x4.splat(p);
          for (let x = 0; x < n4; x += 4) {
            const op = og + (<usize>x << 2);
            v128.store(op, f32x4.add(v128.load(op), f32x4.mul(v128.load(vr + (<usize>x << 2)), pv)));
          }
          for (let x = n4; x < headDim; x++) {
            const op = og + (<usize>x << 2);
            store<f32>(op, load<f32>(op) + load<f32>(vr + (<usize>x << 2)) * p);
          }
        }
      }
    }
    // the segment's state: folded into the rows (or, split, folded by foldSegments later)
    for (let i = 0; i < nRows; i++) {
      const m = load<f32>(mS + (<usize>i << 2)), sum = load<f32>(sS + (<usize>i << 2));
      if (partials != 0) {
        store<f32>(mM + (<usize>i << 2), m);
        store<f32>(sM + (<usize>i << 2), sum);
      } else {
        mergeSegment(rowOut(out, t0, i, hpu, nHeads, hd0, hb), mM + (<usize>i << 2), sM + (<usize>i << 2), m, sum, accS + <usize>i * hb, headDim);
      }
    }
  }
  if (partials != 0) {
    // (a slot past the range, or no keys: max -inf and sum 0, which folding skips)
    const pb = <usize>(headDim + 2) << 2;
    for (let i = 0; i < nRows; i++) {
      const p = partials + (<usize>((t0 * nHeads + hd0 + i) * slots + slot)) * pb;
      store<f32>(p, load<f32>(mM + (<usize>i << 2)));
      store<f32>(p, load<f32>(sM + (<usize>i << 2)), 4);
      memory.copy(p + 8, accS + <usize>i * hb, hb);
    }
    return;
  }
  for (let i = 0; i < nRows; i++) {
    normalizeRow(rowOut(out, t0, i, hpu, nHeads, hd0, hb), load<f32>(mM + (<usize>i << 2)), load<f32>(sM + (<usize>i << 2)), headDim);
  }
}

/** A K or V row (this KV head's n values) of a cache of type kt as f32: in place, or converted into scratch (exactly). */
@inline function f32Row(row: usize, scratch: usize, kt: i32, n: i32): usize {
  if (kt == T_F32) return row;
  if (kt == T_F16) toF32(scratch, row, n);
  else dequantBlocks(scratch, row, n >> 5, kt);
  return scratch;
}

/** Sixteen i8 lanes times the scale d (an f32x4 splat) to f32 at dst: exact (an 8-bit integer times an f16 value). */
@inline function storeScaled16(dst: usize, q: v128, d: v128): void {
  const lo = i16x8.extend_low_i8x16_s(q), hi = i16x8.extend_high_i8x16_s(q);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), d));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), d), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), d), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), d), 48);
}

/** A Q4_0 block's 16 code bytes as two i8x16 of values q - 8: elements 0..15 (low nibbles) and 16..31 (high). */
@inline function q4Low(b: v128): v128 {
  return i8x16.sub(v128.and(b, i8x16.splat(15)), i8x16.splat(8));
}
@inline function q4High(b: v128): v128 {
  return i8x16.sub(i8x16.shr_u(b, 4), i8x16.splat(8));
}

/** nb Q8_0 (34-byte) or Q4_0 (18-byte) blocks at src to 32 nb f32 at dst, as ggml's dequantize_row_*: q d (Q4_0: (q - 8) d). */
function dequantBlocks(dst: usize, src: usize, nb: i32, kt: i32): void {
  const bb: usize = kt == T_Q8_0 ? 34 : 18;
  for (let b = 0; b < nb; b++) {
    const p = src + <usize>b * bb, o = dst + (<usize>b << 7);
    const d = f32x4.splat(f16ToF32(load<u16>(p)));
    if (kt == T_Q8_0) {
      storeScaled16(o, v128.load(p, 2), d);
      storeScaled16(o + 64, v128.load(p, 18), d);
    } else {
      const codes = v128.load(p, 2);
      storeScaled16(o, q4Low(codes), d);
      storeScaled16(o + 64, q4High(codes), d);
    }
  }
}

/** Sum of the products of sixteen i8 lanes (as four i32 partial sums; |sum| < 2^16). */
@inline function dot16(a: v128, b: v128): v128 {
  return i32x4.add(i32x4.extadd_pairwise_i16x8_s(i16x8.extmul_low_i8x16_s(a, b)), i32x4.extadd_pairwise_i16x8_s(i16x8.extmul_high_i8x16_s(a, b)));
}

/**
 * q.k of a query row quantized to nb Q8_0 blocks (qb) and a K row of nb Q8_0 or Q4_0 blocks (kb),
 * as ggml's vec_dot_q8_0_q8_0 / q4_0_q8_0: per block the exact integer dot isum, then
 * sum += f32(isum) * (d_k * d_q) in block order.
 */
function dotBlocks(qb: usize, kb: usize, nb: i32, kt: i32): f32 {
  const bb: usize = kt == T_Q8_0 ? 34 : 18;
  let s: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const qp = qb + <usize>b * 34, kp = kb + <usize>b * bb;
    let acc: v128;
    if (kt == T_Q8_0) {
      acc = i32x4.add(dot16(v128.load(kp, 2), v128.load(qp, 2)), dot16(v128.load(kp, 18), v128.load(qp, 18)));
    } else {
      const codes = v128.load(kp, 2);
      acc = i32x4.add(dot16(q4Low(codes), v128.load(qp, 2)), dot16(q4High(codes), v128.load(qp, 18)));
    }
    s += <f32>hsumi(acc) * (f16ToF32(load<u16>(kp)) * f16ToF32(load<u16>(qp)));
  }
  return s;
}

/** Whether tile row i's token attends to key j (first <= j < end). */
@inline function rowSeesKey(info: usize, t0: i32, i: i32, hpu: i32, j: i32): bool {
  const ti = info + <usize>(t0 + i / hpu) * 12;
  return j >= load<i32>(ti, 4) && j < load<i32>(ti, 8);
}

/** Output row of tile row i: token t0 + i / hpu, head hd0 + i % hpu. */
@inline function rowOut(out: usize, t0: i32, i: i32, hpu: i32, nHeads: i32, hd0: i32, hb: usize): usize {
  return out + <usize>((t0 + i / hpu) * nHeads + hd0 + i % hpu) * hb;
}

/** Byte offset of the row (this KV head's part, headOff bytes in) of the key at slot `off` of block-table entry bi, in the K or V cache of rowBytes per slot. */
@inline function kvRowOffset(table: usize, bi: i32, off: i32, blockSize: i32, rowBytes: usize, headOff: usize): usize {
  const slot = <usize>(load<i32>(table + (<usize>bi << 2)) * blockSize + off);
  return slot * rowBytes + headOff;
}

/**
 * Bytes of scratch per share the f32 path needs, 64-aligned: a K and a V row in f32, and per tile
 * row (ATTN_QUERY_TILE tokens x hpu heads) the segment's and the folded max and sum, a key tile of
 * scores and the segment's output row; over a block-type
 * cache (quantK) also the tile rows' queries as Q8_0 blocks (34 bytes per 32 values).
 */
@inline function attnScratchStride(headDim: i32, hpu: i32, quantK: bool): usize {
  const rows = ATTN_QUERY_TILE * hpu;
  const qBytes: usize = quantK ? <usize>rows * <usize>(headDim >> 5) * 34 : 0;
  return ((<usize>(2 * headDim + rows * (4 + ATTN_KEY_TILE + headDim)) << 2) + qBytes + 63) & ~<usize>63;
}

/**
 * n f16 values at src to f32 at dst (exact, as f16ToF32), eight at a time: each value widened into
 * the top half of an i32 lane, an arithmetic shift by 3 (exponent and mantissa land in f32 position,
 * the sign stays in bit 31 and is copied into bits 30..28), the copies masked off, then times 2^112,
 * which rebiases the exponent and normalizes subnormals exactly: 5 ops per 4 values against
 * f16x4ToF32's 10. That is wrong only for infinities and NaNs (exponent 31): a row holding one is
 * converted again by f16x4ToF32. Not inlined: inside attendTile its constants cost the hot loops
 * registers, and the inlined version ran attention 20% slower (bench/ab.ts, m135 at depth 512).
 */
function toF32(dst: usize, src: usize, n: i32): void {
  const n8 = n & ~7;
  const expMask = i16x8.splat(0x7c00), keep = i32x4.splat(0x8fffe000), rebias = f32x4.splat(F16_REBIAS);
  let special = i16x8.splat(0);
  for (let i = 0; i < n8; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    special = v128.or(special, i16x8.eq(v128.and(h, expMask), expMask));
    const lo = i32x4.shl(v128.load16x4_u(src + (<usize>i << 1)), 16);
    const hi = i32x4.shl(v128.load16x4_u(src + (<usize>i << 1), 8), 16);
    v128.store(dst + (<usize>i << 2), f32x4.mul(v128.and(i32x4.shr_s(lo, 3), keep), rebias));
    v128.store(dst + (<usize>i << 2), f32x4.mul(v128.and(i32x4.shr_s(hi, 3), keep), rebias), 16);
  }
  if (v128.any_true(special)) {
    for (let i = 0; i < n8; i += 4) v128.store(dst + (<usize>i << 2), f16x4ToF32(v128.load16x4_u(src + (<usize>i << 1))));
  }
  for (let i = n8; i < n; i++) store<f32>(dst + (<usize>i << 2), f16ToF32(load<u16>(src + (<usize>i << 1))));
}
