// storeKV: write K and V rows into their cache slots, as the cache's type (KV_TYPE, a ggml type
// id): f32, f16 (round to nearest even), or Q8_0 / Q4_0 blocks by ggml's reference quantizers.
import { KV_DIM, KV_K, KV_K_CACHE, KV_N_TOKENS, KV_SLOTS, KV_TYPE, KV_V, KV_V_CACHE, T_F16, T_F32, T_Q4_0, T_Q8_0 } from './abi';
import { arg, f32ToF16, splitAt } from './common';
import { quantBlockQ4_0Ref, quantBlockQ8_0Ref } from './quantize';

/** Bytes of n values of a KV cache type (n a multiple of 32 for the block types). */
@inline export function kvBytes(type: i32, n: i32): usize {
  if (type == T_F32) return <usize>n << 2;
  if (type == T_F16) return <usize>n << 1;
  return <usize>(n >> 5) * (type == T_Q8_0 ? 34 : 18);
}

function storeRow(dst: usize, src: usize, n: i32, type: i32): void {
  if (type == T_F32) {
    memory.copy(dst, src, <usize>n << 2);
  } else if (type == T_F16) {
    for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToF16(load<f32>(src + (<usize>i << 2))));
  } else if (type == T_Q8_0) {
    for (let b = 0; b < n >> 5; b++) quantBlockQ8_0Ref(src + (<usize>b << 7), dst + <usize>b * 34);
  } else if (type == T_Q4_0) {
    for (let b = 0; b < n >> 5; b++) quantBlockQ4_0Ref(src + (<usize>b << 7), dst + <usize>b * 18);
  }
}

/** KV_* args (abi.ts); split by tokens. */
export function storeKV(args: usize, ith: i32, nth: i32): void {
  const kc = <usize>arg(args, KV_K_CACHE);
  const vc = <usize>arg(args, KV_V_CACHE);
  const type = arg(args, KV_TYPE);
  const kvDim = arg(args, KV_DIM);
  const k = <usize>arg(args, KV_K);
  const v = <usize>arg(args, KV_V);
  const slots = <usize>arg(args, KV_SLOTS);
  const nTokens = arg(args, KV_N_TOKENS);
  const rb = kvBytes(type, kvDim);
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const slot = <usize>load<i32>(slots + (<usize>t << 2));
    const src = <usize>t * <usize>kvDim * 4;
    storeRow(kc + slot * rb, k + src, kvDim, type);
    storeRow(vc + slot * rb, v + src, kvDim, type);
  }
}
