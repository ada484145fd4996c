// The Walsh-Hadamard rotation of a quantized KV cache, as llama.cpp applies it (llama-kv-cache.cpp
// attn_rot_k / attn_rot_v, llama-graph.cpp build_attn): with a q8_0 / q4_0 cache and a head dim
// that is a multiple of 64, each head's query and key are multiplied by an orthonormal Hadamard
// matrix H before the key is stored (q.k is unchanged: H is orthonormal), and each value likewise
// before it is stored, the attention output multiplied by H again after (H^2 = I). The rotation
// spreads a row's outliers over its block, so the 8- and 4-bit blocks lose less: llama.cpp does it
// by default, and a cache without it stores different numbers (its logits differ from llama.cpp's
// by the cache's whole quantization error, not rounding noise).
import type { KVCacheType } from '../backend/backend.js';

/** Rotation sizes for a head dim and cache type: K's (and Q's) and V's, or undefined when llama.cpp does not rotate. */
export function kvRotation(headDim: number, type: KVCacheType): { k: number; v: number } | undefined {
  if ((type !== 'q8_0' && type !== 'q4_0') || headDim % 64 !== 0) return undefined;
  // K: the largest power of two (>= 64) that divides the head dim; V: 64 (llama.cpp found smaller better for V)
  let k = 64;
  while (headDim % (2 * k) === 0) k *= 2;
  return { k, v: 64 };
}

/** The n x n orthonormal Hadamard matrix (Sylvester's construction, entries +-f32(1/sqrtf(n))), row-major f32, as ggml_gen_hadamard. */
export function hadamard(n: number): Float32Array {
  if (!Number.isInteger(Math.log2(n))) throw new RangeError(`a Hadamard matrix needs a power-of-two size, got ${n}`);
  const h = new Float32Array(n * n);
  const a = Math.fround(1 / Math.fround(Math.sqrt(n)));
  for (let i = 0; i < n; i++) {
    // (-1)^popcount(i & j): the sign pattern of the recursive construction
    for (let j = 0; j < n; j++) {
      let x = i & j, parity = 0;
      while (x) { parity ^= x & 1; x >>>= 1; }
      h[i * n + j] = parity ? -a : a;
    }
  }
  return h;
}
