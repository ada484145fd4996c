// storeKV: write K and V rows into their cache slots, as f32 or f16 (round to nearest even).
import { arg, f32ToF16, splitAt } from './common';

@inline function storeRow(dst: usize, src: usize, n: i32, f16: bool): void {
  if (!f16) {
    memory.copy(dst, src, <usize>n << 2);
    return;
  }
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToF16(load<f32>(src + (<usize>i << 2))));
}

/** args: [op, kPtr, vPtr, isF16, kvDim, k, v, slots, nTokens]; split by tokens. */
export function storeKV(args: usize, ith: i32, nth: i32): void {
  const kc = <usize>arg(args, 1);
  const vc = <usize>arg(args, 2);
  const f16 = arg(args, 3) != 0;
  const kvDim = arg(args, 4);
  const k = <usize>arg(args, 5);
  const v = <usize>arg(args, 6);
  const slots = <usize>arg(args, 7);
  const nTokens = arg(args, 8);
  const eb: usize = f16 ? 2 : 4;
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const slot = <usize>load<i32>(slots + (<usize>t << 2));
    const src = <usize>t * <usize>kvDim * 4;
    storeRow(kc + slot * <usize>kvDim * eb, k + src, kvDim, f16);
    storeRow(vc + slot * <usize>kvDim * eb, v + src, kvDim, f16);
  }
}
