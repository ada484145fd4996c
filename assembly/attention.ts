// Causal GQA/MQA attention over the paged KV cache with an online softmax (one pass over the
// keys, as ggml's flash-attention CPU path): per (token, head) a running max M, running sum S and
// the weighted V sum accumulated directly in the output row, then scaled by 1/S.
import { arg, argf, expf, f16x4ToF32, f16ToF32, hsumf, splitAt } from './common';

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

/**
 * args: [op, q, out, nTokens, nHeads, nKvHeads, headDim, scale(f32), kPtr, vPtr, isF16,
 *        blockSize, kvDim, tokenInfo]; split by (token, head) pairs. out must not overlap q.
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
  const eb: usize = f16 ? 2 : 4;
  const group = nHeads / nKvHeads;
  const n4 = headDim & ~3;
  const units = nTokens * nHeads;
  const u1 = splitAt(units, ith + 1, nth);
  for (let u = splitAt(units, ith, nth); u < u1; u++) {
    const t = u / nHeads;
    const hd = u - t * nHeads;
    const qr = q + <usize>u * (<usize>headDim << 2);
    const o = out + <usize>u * (<usize>headDim << 2);
    const table = <usize>load<i32>(info + (<usize>t << 3));
    const nKeys = load<i32>(info + (<usize>t << 3), 4);
    const headOff = <usize>((hd / group) * headDim) * eb;
    memory.fill(o, 0, <usize>headDim << 2);
    let m: f32 = 0;
    let sum: f32 = 0;
    for (let p = 0; p < nKeys; p++) {
      const blk = load<i32>(table + (<usize>(p / blockSize) << 2));
      const slot = <usize>(blk * blockSize + p % blockSize);
      const rowOff = slot * <usize>kvDim * eb + headOff;
      const s = dotQK(qr, kc + rowOff, headDim, f16) * scale;
      let ms: f32 = 1;
      let vs: f32 = 1;
      if (p == 0) {
        m = s;
      } else if (s > m) {
        ms = expf(m - s);
        m = s;
        const msv = f32x4.splat(ms);
        for (let i = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.mul(v128.load(o + (<usize>i << 2)), msv));
        for (let i = n4; i < headDim; i++) store<f32>(o + (<usize>i << 2), load<f32>(o + (<usize>i << 2)) * ms);
      } else {
        vs = expf(s - m);
      }
      const vr = vc + rowOff;
      const vsv = f32x4.splat(vs);
      for (let i = 0; i < n4; i += 4) {
        const op = o + (<usize>i << 2);
        v128.store(op, f32x4.add(v128.load(op), f32x4.mul(kv4(vr + <usize>i * eb, f16), vsv)));
      }
      for (let i = n4; i < headDim; i++) {
        const op = o + (<usize>i << 2);
        store<f32>(op, load<f32>(op) + kv1(vr + <usize>i * eb, f16) * vs);
      }
      sum = sum * ms + vs;
    }
    if (nKeys > 0) {
      const inv: f32 = <f32>1.0 / sum;
      const iv = f32x4.splat(inv);
      for (let i = 0; i < n4; i += 4) v128.store(o + (<usize>i << 2), f32x4.mul(v128.load(o + (<usize>i << 2)), iv));
      for (let i = n4; i < headDim; i++) store<f32>(o + (<usize>i << 2), load<f32>(o + (<usize>i << 2)) * inv);
    }
  }
}
