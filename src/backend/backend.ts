// The contract between the model graph (src/model/) and a compute backend.
//
// A backend owns one linear memory (wasm memory for the WASM backend; a plain buffer for the
// test-only reference backend). Everything an op touches lives in that memory and is named by a
// byte offset ("pointer"). Activations are f32, row-major, one row per token: x[t * n + i].
// Weights stay in their GGUF type: a weight matrix has `rows` rows of `cols` elements, each row
// `rowBytes` bytes of ggml blocks, exactly as in the file (ggml dims: cols = dims[0], rows = dims[1]).
import type { GGMLType } from '../tensor/ggml-types.js';

export interface WeightTensor {
  readonly ptr: number;
  readonly type: GGMLType;
  readonly rows: number;
  readonly cols: number;
  readonly rowBytes: number;
}

export type KVCacheType = 'f32' | 'f16';

export interface RopeParams {
  /** Number of leading dims per head that rotate (rope.dimension_count); the rest pass through. */
  readonly ropeDims: number;
  readonly freqBase: number;
  /** 1 / linear scaling factor (llama.cpp's freq_scale). */
  readonly freqScale: number;
  /** NeoX layout rotates pairs (i, i + ropeDims/2); normal layout rotates (2i, 2i+1). */
  readonly neox: boolean;
  /** YaRN: extrapolation mix (0 = off), attention factor, beta fast/slow, original context length. */
  readonly extFactor: number;
  readonly attnFactor: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  readonly nCtxOrig: number;
}

/**
 * Paged KV cache for one layer: a pool of blocks, each `blockSize` token slots of `kvDim` values
 * (kvDim = nKvHeads * headDim) for K and likewise for V. A token's slot index is
 * blockId * blockSize + offsetInBlock; slot s of K starts at kPtr + s * kvDim * elementBytes.
 */
export interface KVLayer {
  readonly kPtr: number;
  readonly vPtr: number;
  readonly type: KVCacheType;
  readonly blockSize: number;
  readonly kvDim: number;
}

export interface AttentionArgs {
  /** [nTokens][nHeads * headDim] f32 queries (RoPE already applied). */
  readonly q: number;
  /** [nTokens][nHeads * headDim] f32 output. */
  readonly out: number;
  readonly nTokens: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Softmax scale, usually 1/sqrt(headDim). */
  readonly scale: number;
  readonly layer: KVLayer;
  /**
   * Per token t, three i32 at tokenInfo + 12t: [blockTablePtr, firstKey, endKey]. The token
   * attends to its sequence's cached positions firstKey..endKey-1, whose slots are
   * blockTable[p / blockSize] * blockSize + p % blockSize, blockTable being an i32 array.
   * Causal: endKey = the token's position + 1; firstKey = 0, or with a sliding window of W
   * max(0, position + 1 - W). Entries before blockTable[firstKey / blockSize] are never read:
   * they may be -1 (blocks released because they fell out of the window).
   */
  readonly tokenInfo: number;
}

/** One weight of a matmulShared call and where its output goes. */
export interface MatmulPart {
  readonly out: number;
  readonly w: WeightTensor;
}

export interface Backend {
  readonly name: string;
  readonly nThreads: number;

  /** Bump-allocate `bytes` (aligned to `align`, default 64). Memory is released only by dispose(). */
  alloc(bytes: number, align?: number): number;
  /** Current views of the memory (re-fetch after alloc: memory may have grown). */
  u8(): Uint8Array;
  f32(ptr: number, count: number): Float32Array;
  i32(ptr: number, count: number): Int32Array;

  /** out[t][r] = sum_c W[r][c] * x[t][c] for t < nTokens, r < w.rows. x is [nTokens][w.cols]. */
  matmul(out: number, w: WeightTensor, x: number, nTokens: number): void;
  /**
   * matmul(part.out, part.w, x, nTokens) for every part, with the same results: several weights
   * reading one input (q/k/v, gate/up), which a backend may prepare once and run as one op.
   * Outputs must not overlap x or each other.
   */
  matmulShared(parts: readonly MatmulPart[], x: number, nTokens: number): void;
  /** out[t] = table row ids[t] dequantized to f32 ([nTokens][table.cols]); ids is an i32 array. */
  getRows(out: number, table: WeightTensor, ids: number, nTokens: number): void;
  /** out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight (weight: f32[n]). out may equal x. */
  rmsNorm(out: number, x: number, weight: number, n: number, nTokens: number, eps: number): void;
  /** In place on x [nTokens][nHeads * headDim]; positions is an i32[nTokens] array. */
  rope(x: number, nTokens: number, nHeads: number, headDim: number, positions: number, params: RopeParams): void;
  /** out[i] = silu(gate[i]) * up[i] for i < count. out may equal gate. */
  swiglu(out: number, gate: number, up: number, count: number): void;
  /** out[i] = a[i] + b[i] for i < count. out may equal a. */
  add(out: number, a: number, b: number, count: number): void;
  /** out[t][i] = x[t][i] + bias[i] (bias: f32[n]); used for qwen2's q/k/v biases. */
  addBias(out: number, x: number, bias: number, n: number, nTokens: number): void;
  /** Write K and V rows ([nTokens][kvDim] f32) into the cache at slot indices slots (i32[nTokens]). */
  storeKV(layer: KVLayer, k: number, v: number, slots: number, nTokens: number): void;
  /** Causal (optionally windowed) multi-head attention (GQA/MQA: head h reads kv head h / (nHeads / nKvHeads)) over the paged cache; key ranges per token in tokenInfo. */
  attention(args: AttentionArgs): void;

  /** Release workers and memory. */
  dispose(): Promise<void>;
}
