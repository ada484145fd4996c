// The contract between the model graph (src/model/) and a compute backend.
//
// A backend owns its memory: one or more buffers (a wasm memory, GPU buffers with size limits,
// plain ArrayBuffers). Everything outside the backend names memory by Tensor handles (which
// buffer, where in it, how many bytes, what type and shape) and never sees a view of it: data goes
// in by upload / uploadFrom, comes back by the asynchronous read, and moves inside by copy. So a
// backend whose memory the host cannot map (a GPU) fits the same contract as the WASM one.
//
// Activations are f32, row-major, one row per token: x[t * n + i]. Index arrays (token ids,
// positions, slots, block tables) are i32. Weights stay in their GGUF type: a weight matrix has
// `rows` rows of `cols` elements, each row `rowBytes` bytes of ggml blocks, exactly as in the
// file (ggml dims: cols = dims[0], rows = dims[1]).
import type { ByteSource } from '../io/byte-source.js';
import { GGMLType, rowBytes, typeName } from '../tensor/ggml-types.js';
import { BackendError } from './errors.js';

/** Where a tensor lives. Created by the backend that owns the memory; opaque to everyone else. */
export interface Tensor {
  /** Which of the backend's buffers. */
  readonly buffer: number;
  /** Byte offset inside that buffer. */
  readonly offset: number;
  readonly bytes: number;
  readonly type: GGMLType;
  /** ggml order: shape[0] is the contiguous dimension. */
  readonly shape: readonly number[];
}

/** A weight matrix in its file type. */
export interface WeightTensor extends Tensor {
  readonly rows: number;
  readonly cols: number;
  readonly rowBytes: number;
}

/** Bytes a tensor of this type and shape takes (rows of shape[0] elements in the type's blocks). */
export function tensorBytes(type: GGMLType, shape: readonly number[]): number {
  if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new BackendError('INVALID_ARGUMENT', `bad tensor shape [${shape.join(', ')}]`);
  }
  const rows = shape.slice(1).reduce((a, b) => a * b, 1);
  return rowBytes(type, shape[0]!) * rows;
}

/** A tensor naming part of another: `bytes` bytes from `byteOffset` on, seen as `type` and `shape`. */
export function subTensor(t: Tensor, byteOffset: number, type: GGMLType, shape: readonly number[]): Tensor {
  const bytes = tensorBytes(type, shape);
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset + bytes > t.bytes) {
    throw new BackendError('INVALID_ARGUMENT', `sub-tensor [${byteOffset}, ${byteOffset + bytes}) is outside its tensor of ${t.bytes} bytes`);
  }
  return { buffer: t.buffer, offset: t.offset + byteOffset, bytes, type, shape };
}

/** A weight view of a tensor holding `rows` rows of `cols` elements of its type. */
export function asWeight(t: Tensor, cols: number, rows: number): WeightTensor {
  const rb = rowBytes(t.type, cols);
  if (rb * rows !== t.bytes) {
    throw new BackendError('INVALID_ARGUMENT', `${typeName(t.type)} [${cols}, ${rows}] needs ${rb * rows} bytes, the tensor has ${t.bytes}`);
  }
  return { ...t, shape: [cols, rows], rows, cols, rowBytes: rb };
}

/** The largest k topK takes: a WebGPU workgroup sorts the candidates in its memory; top-k sampling keeps tens. */
export const MAX_TOP_K = 256;

/** topK's sizes, checked alike by every backend: n >= 1, nRows >= 0, 1 <= k <= min(n, MAX_TOP_K). */
export function checkTopK(n: number, nRows: number, k: number): void {
  const bad = !Number.isInteger(n) || n < 1 ? `n ${n} must be an integer >= 1`
    : !Number.isInteger(nRows) || nRows < 0 ? `nRows ${nRows} must be an integer >= 0`
    : !Number.isInteger(k) || k < 1 || k > Math.min(n, MAX_TOP_K) ? `k ${k} must be an integer in 1..${Math.min(n, MAX_TOP_K)} (n ${n}, at most ${MAX_TOP_K})` : undefined;
  if (bad) throw new BackendError('INVALID_ARGUMENT', `topK: ${bad}`);
}

/**
 * KV cache element types, as llama.cpp's -ctk / -ctv: f32, f16, or ggml's Q8_0 / Q4_0 blocks (32
 * values: an f16 scale and 32 int8, or 16 bytes of 4-bit codes, value = (q - 8) d). A slot's row of
 * kvDim values is kvRowBytes(type, kvDim) bytes; block types need a head dim that is a multiple of
 * 32 so no block straddles two heads (llama.cpp's per-head K/V views need the same).
 */
export const KV_CACHE_TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export type KVCacheType = (typeof KV_CACHE_TYPES)[number];

export function isKVCacheType(v: unknown): v is KVCacheType {
  return typeof v === 'string' && (KV_CACHE_TYPES as readonly string[]).includes(v);
}

/** The ggml type a KV cache of this type is stored in. */
export function kvElementType(type: KVCacheType): GGMLType {
  switch (type) {
    case 'f32': return GGMLType.F32;
    case 'f16': return GGMLType.F16;
    case 'q8_0': return GGMLType.Q8_0;
    case 'q4_0': return GGMLType.Q4_0;
    default: throw new BackendError('INVALID_ARGUMENT', `unknown KV cache type ${JSON.stringify(type)}; expected one of ${KV_CACHE_TYPES.join(', ')}`);
  }
}

/** Bytes of one token slot's K (or V) row of kvDim values. */
export function kvRowBytes(type: KVCacheType, kvDim: number): number {
  return rowBytes(kvElementType(type), kvDim);
}

/**
 * Why a KV cache of `type` cannot hold heads of headDim values on a backend that stores `supported`
 * (an unknown type, a block type over a head dim that is not a multiple of 32, a type the backend
 * lacks), or undefined when it can. Every entry point (loadModel, createEngine, the KV cache)
 * throws it as its own typed error before anything is allocated.
 */
export function kvCacheTypeProblem(type: unknown, headDim: number, supported?: ReadonlySet<KVCacheType>): { code: 'INVALID' | 'UNSUPPORTED'; message: string } | undefined {
  if (!isKVCacheType(type)) return { code: 'INVALID', message: `kvCacheType must be one of ${KV_CACHE_TYPES.join(', ')}, got ${typeof type === 'string' ? JSON.stringify(type) : String(type)}` };
  if ((type === 'q8_0' || type === 'q4_0') && headDim % 32 !== 0) {
    return { code: 'UNSUPPORTED', message: `a ${type} KV cache stores 32-value blocks per head, and this model's head dim ${headDim} is not a multiple of 32; use kvCacheType f16 or f32` };
  }
  if (supported && !supported.has(type)) return { code: 'UNSUPPORTED', message: `this backend has no ${type} KV cache (it stores ${[...supported].join(', ')})` };
  return undefined;
}

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
 * (kvDim = nKvHeads * headDim) in K and likewise in V. A token's slot index is
 * blockId * blockSize + offsetInBlock; slot s of K is row s of `k` ([kvDim, slots] of `type`).
 */
export interface KVLayer {
  readonly k: Tensor;
  readonly v: Tensor;
  readonly type: KVCacheType;
  readonly blockSize: number;
  readonly kvDim: number;
}

export interface AttentionArgs {
  /** [nTokens][nHeads * headDim] f32 queries (RoPE already applied). */
  readonly q: Tensor;
  /** [nTokens][nHeads * headDim] f32 output. */
  readonly out: Tensor;
  readonly nTokens: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Softmax scale, usually 1/sqrt(headDim). */
  readonly scale: number;
  /** Attention-logit soft-capping (gemma 2): each score s = q.k * scale becomes softcap * tanh(s / softcap). Absent or 0: off. */
  readonly softcap?: number;
  /**
   * ALiBi (jina-bert-v2): each score, after the scale and soft-capping, gets slope_h * -|i - j|
   * added, i the query token's position (positions: i32[nTokens]) and j the key's position in the
   * sequence; slope_h is `alibiSlopes(maxBias, nHeads)[h]` (ggml's soft_max / flash_attn_ext with
   * max_bias over llama.cpp's -|i - j| mask). Absent: off. maxBias must be a finite number > 0.
   */
  readonly alibi?: { readonly maxBias: number; readonly positions: Tensor };
  readonly layer: KVLayer;
  /** The batch's block tables, one after another (i32 block ids). */
  readonly blockTables: Tensor;
  /**
   * Per token t, three i32 at 3t: [tableStart, firstKey, endKey]. The token attends to its
   * sequence's cached positions firstKey..endKey-1, whose slots are
   * table[p / blockSize] * blockSize + p % blockSize, table being blockTables from entry
   * tableStart on. Causal: endKey = the token's position + 1; firstKey = 0, or with a sliding
   * window of W max(0, position + 1 - W). Entries before table[firstKey / blockSize] are never
   * read: they may be -1 (blocks released because they fell out of the window).
   */
  readonly tokenInfo: Tensor;
}

/** One weight of a matmulShared call and where its output goes. */
export interface MatmulPart {
  readonly out: Tensor;
  readonly w: WeightTensor;
}

/** Mixture-of-experts routing of a batch: which experts each token uses, and with what weight. */
export interface ExpertRouting {
  /** i32 [nTokens][used]: the chosen experts of each token, most probable first. */
  readonly ids: Tensor;
  /** f32 [nTokens][used]: their weights. */
  readonly weights: Tensor;
  readonly nTokens: number;
  /** Experts per token. */
  readonly used: number;
}

/** What a backend runs and holds, for planning before anything is allocated. */
export interface BackendCapabilities {
  /** Weight types matmul and getRows take as they are in the file. */
  readonly weightTypes: ReadonlySet<GGMLType>;
  /** The largest single tensor it can allocate. */
  readonly maxTensorBytes: number;
  /** Everything it can hold at once: weights, KV cache and activations together. */
  readonly memoryBytes: number;
  /** KV cache types storeKV and attention take. */
  readonly kvTypes: ReadonlySet<KVCacheType>;
  /**
   * How many buffers one layer's K (or V) cache may span: a cache tensor over maxTensorBytes is
   * split by whole rows (slots) into parts of rowsPerPart rows, which storeKV, attention and copy
   * bind together (a GPU's binding limit). 1 where a layer's cache must be one tensor.
   */
  readonly kvParts: number;
}

/** Rows of `rowBytes` in each part of a tensor split by rows: as many as maxTensorBytes holds, every part a whole number of 4-byte words. */
export function rowsPerPart(rowBytes: number, maxTensorBytes: number): number {
  let rows = Math.floor(maxTensorBytes / rowBytes);
  if (!Number.isFinite(rows)) return rows;
  while (rows > 0 && (rows * rowBytes) % 4 !== 0) rows--;
  return rows;
}

/** What a tensor is for: 'data' (the default: activations, KV cache, anything written by ops) or 'weight'. */
export type TensorUsage = 'data' | 'weight';

export interface Backend {
  readonly name: string;
  readonly nThreads: number;
  readonly capabilities: BackendCapabilities;

  /**
   * A new tensor (contents undefined). Memory is released only by dispose(). OUT_OF_MEMORY past capabilities.
   * usage 'weight': a matmul / getRows weight ([cols, rows]) written only by upload / uploadFrom
   * (in whole groups of 4 rows) and read by ops; the backend may keep it in a layout of its own
   * (the WASM one interleaves quantized rows in fours). read() still returns the file's layout;
   * copy() refuses it.
   */
  allocate(type: GGMLType, shape: readonly number[], usage?: TensorUsage): Tensor;
  /** Copy `data` into `dst` from byte `byteOffset` on. */
  upload(dst: Tensor, data: ArrayBufferView, byteOffset?: number): void;
  /** Fill `dst` with its byte size from `source` starting at `sourceOffset`, in bounded chunks (never a whole-file copy). */
  uploadFrom(dst: Tensor, source: ByteSource, sourceOffset: number): Promise<void>;
  /** A copy of `bytes` bytes of `src` from `byteOffset` on (default: all of it), once every op before has run. */
  read(src: Tensor, byteOffset?: number, bytes?: number): Promise<Uint8Array>;
  /** Copy bytes inside the backend: dst[dstOffset..] = src[srcOffset..srcOffset + bytes]. Ranges must not overlap. */
  copy(dst: Tensor, dstOffset: number, src: Tensor, srcOffset: number, bytes: number): void;

  /** out[t][r] = sum_c W[r][c] * x[t][c] for t < nTokens, r < w.rows. x is [nTokens][w.cols]. */
  matmul(out: Tensor, w: WeightTensor, x: Tensor, nTokens: number): void;
  /**
   * matmul(part.out, part.w, x, nTokens) for every part, with the same results: several weights
   * reading one input (q/k/v, gate/up), which a backend may prepare once and run as one op.
   * Outputs must not overlap x or each other.
   */
  matmulShared(parts: readonly MatmulPart[], x: Tensor, nTokens: number): void;
  /**
   * Routed matmul (ggml's mul_mat_id): w stacks nExperts matrices of w.rows / nExperts rows each
   * (expert e: rows e * rows/nExperts ..); out[t][j] = W[ids[t][j]] . x, where x is x[t] (inputPerSlot
   * false: gate/up read the token's row) or x[t][j] (true: down reads each slot's own row). Only the
   * experts some token chose are computed. out is [nTokens][used][rows / nExperts].
   */
  matmulRouted(out: Tensor, w: WeightTensor, nExperts: number, x: Tensor, routing: ExpertRouting, inputPerSlot: boolean): void;
  /**
   * Choose experts from router logits ([nTokens][nExperts] f32), as llama.cpp's softmax gating:
   * p = softmax(logits); ids = the `used` largest p (most probable first, lower id on ties);
   * weights = their p, divided by their sum (at least 2^-14) when `normalize`.
   */
  routeExperts(routing: ExpertRouting, logits: Tensor, nExperts: number, normalize: boolean): void;
  /** out[t] = sum over j in order of y[t][j] * weights[t][j] ([nTokens][used][n] f32 to [nTokens][n]): the experts' outputs combined. */
  combineExperts(out: Tensor, y: Tensor, routing: ExpertRouting, n: number): void;
  /** out[t] = table row ids[t] dequantized to f32 ([nTokens][table.cols]); ids is an i32 array. */
  getRows(out: Tensor, table: WeightTensor, ids: Tensor, nTokens: number): void;
  /** out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight (weight: f32[n]). out may equal x. */
  rmsNorm(out: Tensor, x: Tensor, weight: Tensor, n: number, nTokens: number, eps: number): void;
  /**
   * out[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias, as ggml_norm then ggml_mul and ggml_add
   * (weight, bias: f32[n]; BERT's LayerNorm). out may equal x.
   */
  layerNorm(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, n: number, nTokens: number, eps: number): void;
  /**
   * In place on x [nTokens][nHeads * headDim]; positions is an i32[nTokens] array. freqFactors
   * (f32[ropeDims / 2]): pair i turns at theta_i / freqFactors[i] (llama 3's rope_freqs, LongRoPE).
   */
  rope(x: Tensor, nTokens: number, nHeads: number, headDim: number, positions: Tensor, params: RopeParams, freqFactors?: Tensor): void;
  /** out[i] = silu(gate[i]) * up[i] for i < count. out may equal gate. */
  swiglu(out: Tensor, gate: Tensor, up: Tensor, count: number): void;
  /**
   * out[i] = gelu(gate[i]) * up[i] for i < count: GELU's tanh form as ggml's CPU backend computes it
   * (f16-rounded input and output, 0 below -10, identity above 10). out may equal gate.
   */
  geglu(out: Tensor, gate: Tensor, up: Tensor, count: number): void;
  /** out[i] = gelu(x[i]) for i < count, GELU as in geglu (ggml's CPU backend). out may equal x. */
  gelu(out: Tensor, x: Tensor, count: number): void;
  /** out[i] = 1 / (1 + exp(-x[i])) for i < count. out may equal x. */
  sigmoid(out: Tensor, x: Tensor, count: number): void;
  /** out[i] = x[i] * factor for i < count. out may equal x. */
  scale(out: Tensor, x: Tensor, count: number, factor: number): void;
  /** out[i] = cap * tanh(x[i] / cap) for i < count (logit soft-capping, as ggml: times the f32 1/cap, tanh, times cap). out may equal x. */
  softcap(out: Tensor, x: Tensor, count: number, cap: number): void;
  /**
   * out[r] (i32[nRows]) = the first index of the largest value of row r of x ([nRows][n] f32), as a
   * greedy sampler scanning in id order picks it: greedy decoding reads back a token id, not a vocabulary row.
   */
  argmax(out: Tensor, x: Tensor, n: number, nRows: number): void;
  /**
   * The k largest values of each row of x ([nRows][n] f32, 1 <= k <= min(n, MAX_TOP_K)) and their
   * indices, most likely first: ids[r][j] (i32[nRows][k]) and values[r][j] (f32[nRows][k], x's bits),
   * both apart from x.
   * Equal values (-0 and 0 among them) by the lower index first; a NaN ranks above every number (a
   * row with one puts a NaN first, so the caller sees it). The order of the sampler's top-k: top-k
   * sampling reads back k candidates, not a vocabulary row.
   */
  topK(ids: Tensor, values: Tensor, x: Tensor, n: number, nRows: number, k: number): void;
  /** out[i] = a[i] + b[i] for i < count. out may equal a. */
  add(out: Tensor, a: Tensor, b: Tensor, count: number): void;
  /** out[t][i] = x[t][i] + bias[i] (bias: f32[n]); used for qwen2's q/k/v biases. */
  addBias(out: Tensor, x: Tensor, bias: Tensor, n: number, nTokens: number): void;
  /**
   * Write K and V rows ([nTokens][kvDim] f32) into the cache at slot indices slots (i32[nTokens]):
   * f16 rounds to nearest even; q8_0 / q4_0 quantize each 32-value block as ggml's
   * quantize_row_q8_0_ref / quantize_row_q4_0_ref (src/tensor/quantize.ts).
   */
  storeKV(layer: KVLayer, k: Tensor, v: Tensor, slots: Tensor, nTokens: number): void;
  /**
   * Multi-head attention (GQA/MQA: head h reads kv head h / (nHeads / nKvHeads)) over the paged cache: key ranges per token in tokenInfo (causal, windowed or a whole sequence), optional soft-capping and ALiBi.
   * Over a q8_0 / q4_0 cache, as ggml's CPU flash attention: each query head row is quantized to
   * Q8_0 (K's vec_dot_type; by the same reference quantizer) and q.k is the block dot product
   * sum_b isum_b d_k d_q; V rows are dequantized (exactly) and accumulated in f32.
   */
  attention(args: AttentionArgs): void;

  /** Release workers and memory. */
  dispose(): Promise<void>;
}

/**
 * ALiBi's per-head slopes in ggml's f32 steps (ops.cpp soft_max): n = the largest power of two
 * <= nHeads, m0 = 2^(-maxBias / n), m1 = 2^(-maxBias / 2 / n); head h < n takes m0^(h + 1), the
 * others m1^(2 (h - n) + 1) (the interleaved slopes of a twice larger power of two).
 */
export function alibiSlopes(maxBias: number, nHeads: number): Float32Array {
  if (!(maxBias > 0 && Number.isFinite(maxBias))) throw new BackendError('INVALID_ARGUMENT', `ALiBi maxBias ${maxBias} must be a finite number > 0`);
  if (!Number.isSafeInteger(nHeads) || nHeads < 1) throw new BackendError('INVALID_ARGUMENT', `ALiBi needs a positive head count, got ${nHeads}`);
  const f = Math.fround, bias = f(maxBias);
  const n = 2 ** (31 - Math.clz32(nHeads));
  const m0 = f(2 ** f(-bias / n)), m1 = f(2 ** f(-f(bias / 2) / n));
  return Float32Array.from({ length: nHeads }, (_, h) => (h < n ? m0 ** (h + 1) : m1 ** (2 * (h - n) + 1)));
}

/** f32 values of a read. */
export function asF32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}
