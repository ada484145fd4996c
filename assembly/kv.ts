// storeKV: write K and V rows into their cache slots, as f32 or f16 (round to nearest even).
import { KV_DIM, KV_F16, KV_K, KV_K_CACHE, KV_N_TOKENS, KV_SLOTS, KV_V, KV_V_CACHE } from './abi';
import { arg, f32ToF16, splitAt } from './common';

@inline function storeRow(dst: usize, src: usize, n: i32, f16: bool): void {
  if (!f16) {
    memory.copy(dst, src, <usize>n << 2);
    return;
  }
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToF16(load<f32>(src + (<usize>i << 2))));
}

/** KV_* args (abi.ts); split by tokens. */
export function storeKV(args: usize, ith: i32, nth: i32): void {
  const kc = <usize>arg(args, KV_K_CACHE);
  const vc = <usize>arg(args, KV_V_CACHE);
  const f16 = arg(args, KV_F16) != 0;
  const kvDim = arg(args, KV_DIM);
  const k = <usize>arg(args, KV_K);
  const v = <usize>arg(args, KV_V);
  const slots = <usize>arg(args, KV_SLOTS);
  const nTokens = arg(args, KV_N_TOKENS);
  const eb: usize = f16 ? 2 : 4;
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const slot = <usize>load<i32>(slots + (<usize>t << 2));
    const src = <usize>t * <usize>kvDim * 4;
    storeRow(kc + slot * <usize>kvDim * eb, k + src, kvDim, f16);
    storeRow(vc + slot * <usize>kvDim * eb, v + src, kvDim, f16);
  }
}
