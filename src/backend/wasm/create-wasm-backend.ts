// The WASM backend: one wasm memory (shared with a worker pool when threads > 1 and the runtime
// allows SharedArrayBuffer), a bump allocator over it, and each Backend op written as a command
// block that exec() runs, split over threads. See assembly/ for the kernels.
import { tensorBytes, type AttentionArgs, type Backend, type KVLayer, type MatmulPart, type RopeParams, type Tensor, type WeightTensor } from '../backend.js';
import { BackendError } from '../errors.js';
import type { ByteSource } from '../../io/byte-source.js';
import { GGMLType, rowBytes as typeRowBytes, typeName } from '../../tensor/ggml-types.js';
import { log } from '../../log.js';
import { chooseKernels, type KernelBuild, type KernelSources } from './features.js';
import * as K from './kernels.generated.js';
import { CONTROL_SLOTS, MAX_CHUNKS, WorkerPool } from './pool.js';
import { hardwareConcurrency, sharedMemoryAvailable } from './runtime.js';
import { findMemoryImport, withUnsharedMemory } from './wasm-binary.js';

export interface WasmBackendOptions {
  /** Threads including the calling one (default: hardware threads). 1 = no workers. */
  readonly threads?: number;
  /** 'auto' (default): relaxed build when it validates and passes the known-answer probe. */
  readonly relaxedSimd?: 'auto' | boolean;
  /** Atomics.load iterations a waiting thread spins before sleeping (default 2000; the host never waits for a sleeping worker, see pool.ts). */
  readonly spin?: number;
  /** Kernel modules to use instead of the built-in ones (tests). */
  readonly kernels?: KernelSources;
}

/**
 * The contract plus what this backend adds: which build runs, two extra activations, and for its
 * own kernel tests and benches the memory itself: one wasm memory (buffer 0), byte offsets into it.
 */
export interface WasmBackend extends Backend {
  /** 'relaxed' or 'baseline', and why. */
  readonly kernels: KernelBuild;
  readonly kernelReason: string;
  /** Whether threads share memory (false: single-thread path on a non-shared memory). */
  readonly sharedMemory: boolean;
  /** out[i] = x[i] / (1 + exp(-x[i])). out may equal x. */
  silu(out: Tensor, x: Tensor, count: number): void;
  /** out[i] = gelu(x[i]), tanh approximation as ggml_gelu. out may equal x. */
  gelu(out: Tensor, x: Tensor, count: number): void;
  /** Bump-allocate `bytes` (aligned to `align`, default 64) and return its offset in the memory. */
  alloc(bytes: number, align?: number): number;
  /** The tensor at byte offset `ptr` of the memory. */
  tensorAt(ptr: number, type: GGMLType, shape: readonly number[]): Tensor;
  /** Current views of the memory (re-fetch after alloc: memory may grow). */
  u8(): Uint8Array;
  f32(ptr: number, count: number): Float32Array;
  i32(ptr: number, count: number): Int32Array;
}

const PAGE = 65536;
const MAX_BYTES = 2 ** 32; // wasm32
/** Quantized-activation scratch, reserved up front so ops never grow memory. */
const SCRATCH_BYTES = 1 << 20;

const SUPPORTED = new Set<GGMLType>([
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0,
  GGMLType.Q5_1, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_NL,
]);

type ActFormat = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q8_k';

/**
 * Activation format a weight type's kernel reads (mirrors actFormat in assembly/matmul.ts): ggml's
 * vec_dot_type. F16/BF16 weights take the activations rounded to f16/bf16 (kept as f32).
 */
function actFormat(type: GGMLType): ActFormat {
  switch (type) {
    case GGMLType.F32: return 'f32';
    case GGMLType.F16: return 'f16';
    case GGMLType.BF16: return 'bf16';
    case GGMLType.Q2_K: case GGMLType.Q3_K: case GGMLType.Q4_K: case GGMLType.Q5_K: case GGMLType.Q6_K: return 'q8_k';
    default: return 'q8_0';
  }
}

// Minimum work per thread before another thread is worth waking (rough op counts).
const MIN_WORK = { matmul: 1 << 16, quant: 1 << 14, elementwise: 1 << 14, transcendental: 1 << 12, attention: 1 << 15 };

/** Chunks per thread an op is cut into: smaller chunks balance better when a thread stalls. */
const CHUNKS_PER_THREAD = 4;

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new BackendError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${v}`);
}

export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const threads = opts.threads ?? (await hardwareConcurrency());
  checkInt('threads', threads, 1);
  if (threads > 255) throw new BackendError('INVALID_ARGUMENT', `threads must be at most 255, got ${threads}`);
  const spin = opts.spin ?? 2000;
  const choice = await chooseKernels(opts.relaxedSimd ?? 'auto', opts.kernels);
  const shared = threads > 1 && sharedMemoryAvailable();
  if (threads > 1 && !shared) log.warn(`wasm backend: SharedArrayBuffer unavailable, running 1 thread instead of ${threads}`);
  const bytes = shared ? choice.bytes : withUnsharedMemory(choice.bytes);
  const minPages = findMemoryImport(bytes)?.minPages ?? 1;
  const memory = new WebAssembly.Memory({ initial: minPages, maximum: MAX_BYTES / PAGE, shared } as WebAssembly.MemoryDescriptor);
  const module = await WebAssembly.compile(bytes as BufferSource);
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exec = instance.exports.exec as (args: number, ith: number, nth: number) => number;
  const heapBase = (instance.exports.heapBase as () => number)();

  let top = heapBase;
  const alloc = (bytes: number, align = 64): number => {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new BackendError('INVALID_ARGUMENT', `alloc: bad size ${bytes}`);
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) throw new BackendError('INVALID_ARGUMENT', `alloc: bad alignment ${align}`);
    const ptr = Math.ceil(top / align) * align;
    const end = ptr + bytes;
    if (end > MAX_BYTES) {
      throw new BackendError('OUT_OF_MEMORY', `alloc(${bytes}): ${top} bytes in use, the request would end at ${end}, past the 4 GiB wasm32 limit (${MAX_BYTES})`);
    }
    const have = memory.buffer.byteLength;
    if (end > have) {
      try {
        memory.grow(Math.ceil((end - have) / PAGE));
      } catch (e) {
        throw new BackendError('OUT_OF_MEMORY', `alloc(${bytes}): growing memory from ${have} to ${end} bytes failed: ${(e as Error).message}`);
      }
    }
    top = end;
    return ptr;
  };

  /** The memory offset of tensor `t`, checked to be an allocated range of this memory. */
  const at = (t: Tensor, what: string, need = t.bytes): number => {
    if (t.buffer !== 0 || !Number.isSafeInteger(t.offset) || t.offset < heapBase || t.offset + need > top || need > t.bytes) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: tensor [buffer ${t.buffer}, ${t.offset}..${t.offset + t.bytes}) is not ${need} bytes of this backend's memory`);
    }
    return t.offset;
  };
  const tensorAt = (ptr: number, type: GGMLType, shape: readonly number[]): Tensor => ({ buffer: 0, offset: ptr, bytes: tensorBytes(type, shape), type, shape });

  const ctrlPtr = alloc(CONTROL_SLOTS * 4);
  const argsPtr = alloc(K.ARG_SLOTS * 4);
  const scratch = alloc(SCRATCH_BYTES);

  const pool = shared
    ? await WorkerPool.create({ bytes, memory, ctrlPtr, argsPtr, workers: threads - 1, spin })
    : undefined;
  const nThreads = pool ? pool.size : 1;
  log.debug(`wasm backend: ${choice.build} kernels (${choice.reason}), ${nThreads} thread(s)`);

  /** Views of the whole memory (byte and i32), re-made only when the memory grows. */
  let viewBuf: ArrayBuffer | SharedArrayBuffer | undefined;
  let view8 = new Uint8Array(0);
  let view32 = new Int32Array(0);
  const refreshViews = (): void => {
    if (viewBuf !== memory.buffer || view8.length !== memory.buffer.byteLength) {
      viewBuf = memory.buffer;
      view8 = new Uint8Array(viewBuf);
      view32 = new Int32Array(viewBuf);
    }
  };
  const memoryU8 = (): Uint8Array => (refreshViews(), view8);
  const memoryI32 = (): Int32Array => (refreshViews(), view32);

  // Command block views (re-created when a non-shared memory's buffer is replaced by growth).
  let argBuf: ArrayBuffer | SharedArrayBuffer | undefined;
  let ai32 = new Int32Array(0);
  let af32 = new Float32Array(0);
  const cmd = (op: number): { i: Int32Array; f: Float32Array } => {
    if (argBuf !== memory.buffer) {
      argBuf = memory.buffer;
      ai32 = new Int32Array(argBuf, argsPtr, K.ARG_SLOTS);
      af32 = new Float32Array(argBuf, argsPtr, K.ARG_SLOTS);
    }
    ai32.fill(0);
    ai32[0] = op;
    return { i: ai32, f: af32 };
  };

  let disposed = false;
  const execChunk = (c: number, n: number): number => exec(argsPtr, c, n);
  /**
   * Run the command block on up to `units` threads, fewer when `work` is small. With more than one
   * thread the op is cut into up to CHUNKS_PER_THREAD chunks per thread (at most `maxChunks`),
   * claimed by whichever thread is free (see pool.ts).
   */
  const run = (work: number, minWork: number, units: number, maxChunks = MAX_CHUNKS): void => {
    if (disposed) throw new BackendError('DISPOSED', 'the wasm backend was disposed');
    const nth = Math.max(1, Math.min(nThreads, units, Math.floor(work / minWork)));
    if (nth === 1 || !pool) {
      if (exec(argsPtr, 0, 1) !== 0) throw new BackendError('KERNEL_FAILED', `exec rejected op ${ai32[0]}`);
      return;
    }
    const chunks = Math.max(1, Math.min(units, nth * CHUNKS_PER_THREAD, maxChunks, Math.floor(work / (minWork / 2))));
    pool.run(nth, chunks, execChunk);
  };

  const checkWeight = (w: WeightTensor, what: string): void => {
    if (!SUPPORTED.has(w.type)) throw new BackendError('UNSUPPORTED_TYPE', `${what}: no kernel for ${typeName(w.type)}`);
    checkInt(`${what} rows`, w.rows, 1);
    checkInt(`${what} cols`, w.cols, 1);
    const fmt = actFormat(w.type);
    const blk = fmt === 'q8_k' ? 256 : fmt === 'q8_0' ? 32 : 1;
    if (w.cols % blk !== 0) throw new BackendError('INVALID_ARGUMENT', `${what}: ${typeName(w.type)} needs cols divisible by ${blk}, got ${w.cols}`);
    if (w.rowBytes !== typeRowBytes(w.type, w.cols)) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: rowBytes ${w.rowBytes} does not match ${typeName(w.type)} x ${w.cols}`);
    }
    at(w, what, w.rows * w.rowBytes);
  };

  const elementwise = (op: number, out: Tensor, a: Tensor, b: Tensor | undefined, count: number, minWork: number): void => {
    checkInt('count', count, 0);
    if (count === 0) return;
    const c = cmd(op);
    if (b) {
      c.i[K.BINARY_OUT] = at(out, 'output', 4 * count);
      c.i[K.BINARY_A] = at(a, 'input', 4 * count);
      c.i[K.BINARY_B] = at(b, 'second input', 4 * count);
      c.i[K.BINARY_COUNT] = count;
    } else {
      c.i[K.UNARY_OUT] = at(out, 'output', 4 * count);
      c.i[K.UNARY_X] = at(a, 'input', 4 * count);
      c.i[K.UNARY_COUNT] = count;
    }
    run(count, minWork, Math.ceil(count / 16));
  };

  /**
   * One OP_MATMUL over up to MATMUL_MAX_PARTS weights of one type and width: the activations are
   * rounded or quantized once into the scratch, then the parts' row groups run as one dispatch.
   */
  const matmulChunk = (parts: readonly { w: WeightTensor; out: number }[], x: number, nTokens: number): void => {
    const w = parts[0]!.w;
    const fmt = actFormat(w.type);
    let qs = 0, d = 0, s = 0;
    if (fmt === 'f16' || fmt === 'bf16') {
      const r = cmd(K.OP_ROUND_ACT);
      r.i[K.ROUND_X] = x;
      r.i[K.ROUND_COUNT] = nTokens * w.cols;
      r.i[K.ROUND_OUT] = scratch;
      r.i[K.ROUND_BF16] = fmt === 'bf16' ? 1 : 0;
      run(nTokens * w.cols, MIN_WORK.elementwise, Math.ceil((nTokens * w.cols) / 16));
      x = scratch;
    } else if (fmt !== 'f32') {
      const bpb = fmt === 'q8_k' ? 256 : 32;
      const nb = (nTokens * w.cols) / bpb;
      qs = scratch;
      d = qs + Math.ceil((2 * nTokens * w.cols) / 64) * 64; // qs: i8, or i16 for some kernels
      s = d + Math.ceil((nb * 4) / 64) * 64;
      const q = cmd(fmt === 'q8_k' ? K.OP_QUANT_Q8_K : K.OP_QUANT_Q8_0);
      q.i[K.QUANT_X] = x;
      q.i[K.QUANT_N_TOKENS] = nTokens;
      q.i[K.QUANT_COLS] = w.cols;
      q.i[K.QUANT_QS] = qs;
      q.i[K.QUANT_D] = d;
      q.i[K.QUANT_S] = s;
      q.i[K.QUANT_WEIGHT_TYPE] = w.type;
      run(nTokens * w.cols, MIN_WORK.quant, nb);
    }
    const c = cmd(K.OP_MATMUL);
    c.i[K.MATMUL_TYPE] = w.type;
    c.i[K.MATMUL_COLS] = w.cols;
    c.i[K.MATMUL_ROW_BYTES] = w.rowBytes;
    c.i[K.MATMUL_N_TOKENS] = nTokens;
    c.i[K.MATMUL_X] = x;
    c.i[K.MATMUL_QS] = qs;
    c.i[K.MATMUL_D] = d;
    c.i[K.MATMUL_S] = s;
    c.i[K.MATMUL_N_PARTS] = parts.length;
    let rows = 0, groups = 0;
    parts.forEach((p, i) => {
      const at0 = K.MATMUL_PARTS + i * K.MATMUL_PART_SLOTS;
      c.i[at0 + K.MATMUL_PART_WEIGHT] = p.w.offset;
      c.i[at0 + K.MATMUL_PART_ROWS] = p.w.rows;
      c.i[at0 + K.MATMUL_PART_OUT] = p.out;
      rows += p.w.rows;
      groups += Math.ceil(p.w.rows / 4);
    });
    run(rows * w.cols * nTokens, MIN_WORK.matmul, groups);
  };

  /** Parts sharing x and one weight type and width, a batch of tokens at a time through the scratch. */
  const matmulGroup = (group: readonly MatmulPart[], xt: Tensor, nTokens: number): void => {
    const w = group[0]!.w;
    const x = at(xt, 'matmul input', 4 * nTokens * w.cols);
    const parts = group.map((p, i) => ({ w: p.w, out: at(p.out, `matmul output ${i}`, 4 * nTokens * p.w.rows) }));
    const fmt = actFormat(w.type);
    if (fmt === 'f32') {
      matmulChunk(parts, x, nTokens);
      return;
    }
    const perToken = fmt === 'f16' || fmt === 'bf16' ? 4 * w.cols : 2 * w.cols + (w.cols / 32) * 8 + 192;
    const chunk = Math.floor(SCRATCH_BYTES / perToken);
    if (chunk < 1) throw new BackendError('INVALID_ARGUMENT', `matmul: cols ${w.cols} too large for the activation scratch`);
    for (let t = 0; t < nTokens; t += chunk) {
      const n = Math.min(chunk, nTokens - t);
      matmulChunk(parts.map((p) => ({ w: p.w, out: p.out + t * p.w.rows * 4 })), x + t * w.cols * 4, n);
    }
  };

  const backend: WasmBackend = {
    name: `wasm-${choice.build}`,
    nThreads,
    kernels: choice.build,
    kernelReason: choice.reason,
    sharedMemory: shared,

    capabilities: { weightTypes: SUPPORTED, maxTensorBytes: MAX_BYTES - heapBase, memoryBytes: MAX_BYTES - (64 << 20) },

    alloc,
    tensorAt,
    allocate: (type, shape) => tensorAt(alloc(tensorBytes(type, shape)), type, shape),
    upload(dst, data, byteOffset = 0) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      memoryU8().set(bytes, at(dst, 'upload', byteOffset + bytes.length) + byteOffset);
    },
    async uploadFrom(dst, source: ByteSource, sourceOffset) {
      // Straight into wasm memory: no staging copy of the tensor, let alone the file.
      const ptr = at(dst, 'uploadFrom');
      await source.readInto(sourceOffset, new Uint8Array(memory.buffer, ptr, dst.bytes));
    },
    async read(src, byteOffset = 0, bytes = src.bytes - byteOffset) {
      const ptr = at(src, 'read', byteOffset + bytes) + byteOffset;
      return memoryU8().slice(ptr, ptr + bytes);
    },
    copy(dst, dstOffset, src, srcOffset, bytes) {
      const to = at(dst, 'copy destination', dstOffset + bytes) + dstOffset, from = at(src, 'copy source', srcOffset + bytes) + srcOffset;
      memoryU8().copyWithin(to, from, from + bytes);
    },
    u8: () => new Uint8Array(memory.buffer),
    f32: (ptr, count) => new Float32Array(memory.buffer, ptr, count),
    i32: (ptr, count) => new Int32Array(memory.buffer, ptr, count),

    matmul(out, w, x, nTokens) {
      backend.matmulShared([{ out, w }], x, nTokens);
    },

    matmulShared(parts, x, nTokens) {
      checkInt('nTokens', nTokens, 0);
      parts.forEach((p, i) => checkWeight(p.w, `matmul weight ${i}`));
      if (nTokens === 0) return;
      // Parts of one type and width share an op (at most MATMUL_MAX_PARTS each), in order.
      const groups: MatmulPart[][] = [];
      for (const p of parts) {
        const g = groups.find((g) => g[0]!.w.type === p.w.type && g[0]!.w.cols === p.w.cols && g.length < K.MATMUL_MAX_PARTS);
        if (g) g.push(p);
        else groups.push([p]);
      }
      for (const g of groups) matmulGroup(g, x, nTokens);
    },

    getRows(out, table, ids, nTokens) {
      checkWeight(table, 'getRows');
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const idPtr = at(ids, 'getRows ids', 4 * nTokens);
      const mem32 = memoryI32();
      for (let t = 0; t < nTokens; t++) {
        const id = mem32[(idPtr >> 2) + t]!;
        if (id < 0 || id >= table.rows) throw new BackendError('INVALID_ARGUMENT', `getRows: id ${id} outside 0..${table.rows - 1}`);
      }
      const c = cmd(K.OP_GET_ROWS);
      c.i[K.GET_ROWS_TYPE] = table.type;
      c.i[K.GET_ROWS_TABLE] = at(table, 'getRows table');
      c.i[K.GET_ROWS_COLS] = table.cols;
      c.i[K.GET_ROWS_ROW_BYTES] = table.rowBytes;
      c.i[K.GET_ROWS_IDS] = idPtr;
      c.i[K.GET_ROWS_N_TOKENS] = nTokens;
      c.i[K.GET_ROWS_OUT] = at(out, 'getRows output', 4 * nTokens * table.cols);
      run(nTokens * table.cols, MIN_WORK.elementwise, nTokens);
    },

    rmsNorm(out, x, weight, n, nTokens, eps) {
      checkInt('n', n, 1);
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const c = cmd(K.OP_RMS_NORM);
      c.i[K.NORM_OUT] = at(out, 'rmsNorm output', 4 * n * nTokens);
      c.i[K.NORM_X] = at(x, 'rmsNorm input', 4 * n * nTokens);
      c.i[K.NORM_WEIGHT] = at(weight, 'rmsNorm weight', 4 * n);
      c.i[K.NORM_N] = n;
      c.i[K.NORM_N_TOKENS] = nTokens;
      c.f[K.NORM_EPS] = eps;
      run(n * nTokens, MIN_WORK.elementwise, nTokens);
    },

    rope(x, nTokens, nHeads, headDim, positions, p: RopeParams) {
      checkInt('nTokens', nTokens, 0);
      checkInt('nHeads', nHeads, 1);
      checkInt('headDim', headDim, 2);
      if (p.ropeDims % 2 !== 0 || p.ropeDims < 2 || p.ropeDims > headDim) {
        throw new BackendError('INVALID_ARGUMENT', `rope: ropeDims ${p.ropeDims} must be even and in 2..headDim (${headDim})`);
      }
      if (nTokens === 0) return;
      const c = cmd(K.OP_ROPE);
      c.i[K.ROPE_X] = at(x, 'rope input', 4 * nTokens * nHeads * headDim);
      c.i[K.ROPE_N_TOKENS] = nTokens;
      c.i[K.ROPE_N_HEADS] = nHeads;
      c.i[K.ROPE_HEAD_DIM] = headDim;
      c.i[K.ROPE_POSITIONS] = at(positions, 'rope positions', 4 * nTokens);
      c.i[K.ROPE_N_DIMS] = p.ropeDims;
      c.f[K.ROPE_FREQ_BASE] = p.freqBase;
      c.f[K.ROPE_FREQ_SCALE] = p.freqScale;
      c.i[K.ROPE_NEOX] = p.neox ? 1 : 0;
      c.f[K.ROPE_EXT_FACTOR] = p.extFactor;
      c.f[K.ROPE_ATTN_FACTOR] = p.attnFactor;
      c.f[K.ROPE_BETA_FAST] = p.betaFast;
      c.f[K.ROPE_BETA_SLOW] = p.betaSlow;
      c.i[K.ROPE_N_CTX_ORIG] = p.nCtxOrig;
      run(nTokens * (p.ropeDims / 2) * (nHeads + 50), MIN_WORK.elementwise, nTokens);
    },

    swiglu: (out, gate, up, count) => elementwise(K.OP_SWIGLU, out, gate, up, count, MIN_WORK.transcendental),
    add: (out, a, b, count) => elementwise(K.OP_ADD, out, a, b, count, MIN_WORK.elementwise),
    silu: (out, x, count) => elementwise(K.OP_SILU, out, x, undefined, count, MIN_WORK.transcendental),
    gelu: (out, x, count) => elementwise(K.OP_GELU, out, x, undefined, count, MIN_WORK.transcendental),

    addBias(out, x, bias, n, nTokens) {
      checkInt('n', n, 1);
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const c = cmd(K.OP_ADD_BIAS);
      c.i[K.BIAS_OUT] = at(out, 'addBias output', 4 * n * nTokens);
      c.i[K.BIAS_X] = at(x, 'addBias input', 4 * n * nTokens);
      c.i[K.BIAS_BIAS] = at(bias, 'addBias bias', 4 * n);
      c.i[K.BIAS_N] = n;
      c.i[K.BIAS_N_TOKENS] = nTokens;
      run(n * nTokens, MIN_WORK.elementwise, nTokens);
    },

    storeKV(layer: KVLayer, k, v, slots, nTokens) {
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const c = cmd(K.OP_STORE_KV);
      c.i[K.KV_K_CACHE] = at(layer.k, 'K cache');
      c.i[K.KV_V_CACHE] = at(layer.v, 'V cache');
      c.i[K.KV_F16] = layer.type === 'f16' ? 1 : 0;
      c.i[K.KV_DIM] = layer.kvDim;
      c.i[K.KV_K] = at(k, 'storeKV k', 4 * nTokens * layer.kvDim);
      c.i[K.KV_V] = at(v, 'storeKV v', 4 * nTokens * layer.kvDim);
      c.i[K.KV_SLOTS] = at(slots, 'storeKV slots', 4 * nTokens);
      c.i[K.KV_N_TOKENS] = nTokens;
      const nSlots = layer.k.bytes / (layer.kvDim * (layer.type === 'f16' ? 2 : 4));
      const mem32 = memoryI32(), sv = c.i[K.KV_SLOTS]! >> 2;
      for (let t = 0; t < nTokens; t++) {
        const slot = mem32[sv + t]!;
        if (slot < 0 || slot >= nSlots) throw new BackendError('INVALID_ARGUMENT', `storeKV: slot ${slot} outside 0..${nSlots - 1}`);
      }
      run(2 * nTokens * layer.kvDim, MIN_WORK.elementwise, nTokens);
    },

    attention(a: AttentionArgs) {
      const { nTokens, nHeads, nKvHeads, headDim, layer } = a;
      checkInt('nTokens', nTokens, 0);
      checkInt('nKvHeads', nKvHeads, 1);
      checkInt('headDim', headDim, 1);
      if (nHeads % nKvHeads !== 0) throw new BackendError('INVALID_ARGUMENT', `attention: nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
      if (layer.kvDim !== nKvHeads * headDim) throw new BackendError('INVALID_ARGUMENT', `attention: kvDim ${layer.kvDim} != nKvHeads ${nKvHeads} * headDim ${headDim}`);
      if (nTokens === 0) return;
      // Check each token's key range and its block table: the kernel reads the table from
      // firstKey / blockSize on without bounds checks, so every entry it reads must be a block of
      // this cache (entries before it may be released, -1).
      const infoPtr = at(a.tokenInfo, 'attention tokenInfo', 12 * nTokens);
      const tablesPtr = at(a.blockTables, 'attention block tables');
      const mem32 = memoryI32();
      const info = infoPtr >> 2, tables = tablesPtr >> 2, nEntries = a.blockTables.bytes >> 2;
      const nBlocks = layer.k.bytes / (layer.blockSize * layer.kvDim * (layer.type === 'f16' ? 2 : 4));
      let keys = 0;
      for (let t = 0; t < nTokens; t++) {
        const start = mem32[info + 3 * t]!, first = mem32[info + 3 * t + 1]!, end = mem32[info + 3 * t + 2]!;
        if (first < 0 || end < first) throw new BackendError('INVALID_ARGUMENT', `attention: token ${t} has key range [${first}, ${end})`);
        if (end === first) continue;
        const lo = Math.floor(first / layer.blockSize), hi = Math.ceil(end / layer.blockSize);
        if (start < 0 || start + hi > nEntries) throw new BackendError('INVALID_ARGUMENT', `attention: token ${t}'s block table [${start}, ${start + hi}) is outside the ${nEntries} entries`);
        for (let e = lo; e < hi; e++) {
          const block = mem32[tables + start + e]!;
          if (block < 0 || block >= nBlocks) {
            throw new BackendError('INVALID_ARGUMENT', block < 0 ? `attention: token ${t} reads key block ${e}, which was released` : `attention: token ${t}'s block ${block} is outside the cache's ${nBlocks}`);
          }
        }
        keys += end - first;
      }
      const c = cmd(K.OP_ATTENTION);
      c.i[K.ATTN_Q] = at(a.q, 'attention q', 4 * nTokens * nHeads * headDim);
      c.i[K.ATTN_OUT] = at(a.out, 'attention output', 4 * nTokens * nHeads * headDim);
      c.i[K.ATTN_N_TOKENS] = nTokens;
      c.i[K.ATTN_N_HEADS] = nHeads;
      c.i[K.ATTN_N_KV_HEADS] = nKvHeads;
      c.i[K.ATTN_HEAD_DIM] = headDim;
      c.f[K.ATTN_SCALE] = a.scale;
      // An f16 cache follows llama.cpp's flash attention (its default on CPU). Its AVX-512 build
      // rounds as the one-row kernel (f16 Q and V accumulator) when headDim is not a multiple of
      // 16 lanes, at any batch size; otherwise its >= 64-token prefill takes the tiled f32 kernel,
      // which the f32 rounding matches. (Its single-token decode of such heads rounds as the
      // one-row kernel too; results here must not depend on the batch, so prefill wins.)
      const half = layer.type === 'f16' && headDim % 16 !== 0 ? 1 : 0;
      const group = nHeads / nKvHeads;
      // The f32 path works in query tiles: runs of up to ATTN_QUERY_TILE consecutive tokens with one
      // block table (queryTileEnd in attention.ts), each K/V row converted once per tile.
      let tiles = 0;
      for (let t = 0; t < nTokens; tiles++) {
        const table = mem32[info + 3 * t]!;
        const t0 = t;
        for (t++; t < nTokens && t - t0 < K.ATTN_QUERY_TILE && mem32[info + 3 * t] === table; t++);
      }
      // Heads per unit of the f32 path: the whole KV group (K/V converted once for all of them), or
      // one head when that leaves too few units to keep every thread busy (decode of a few tokens).
      const hpu = nThreads > 1 && tiles * nKvHeads < nThreads ? 1 : group;
      // Scratch per share: the f16-rounded query (half), or the f32 path's converted K and V rows plus
      // per tile row a max, a sum and a key tile of scores (attnScratchStride in attention.ts).
      const perShare = half ? headDim * 4 : Math.ceil(((2 * headDim + K.ATTN_QUERY_TILE * hpu * (2 + K.ATTN_KEY_TILE)) * 4) / 64) * 64;
      // Scratch is indexed by chunk (at most nThreads * CHUNKS_PER_THREAD chunks, never fewer than nThreads).
      const maxChunks = Math.floor(SCRATCH_BYTES / perShare);
      if (maxChunks < nThreads) throw new BackendError('INVALID_ARGUMENT', `attention: headDim ${headDim} too large for the scratch`);
      c.i[K.ATTN_K_CACHE] = at(layer.k, 'K cache');
      c.i[K.ATTN_V_CACHE] = at(layer.v, 'V cache');
      c.i[K.ATTN_F16] = layer.type === 'f16' ? 1 : 0;
      c.i[K.ATTN_BLOCK_SIZE] = layer.blockSize;
      c.i[K.ATTN_KV_DIM] = layer.kvDim;
      c.i[K.ATTN_TOKEN_INFO] = infoPtr;
      c.i[K.ATTN_HALF] = half;
      c.i[K.ATTN_SCRATCH] = scratch;
      c.i[K.ATTN_HEADS_PER_UNIT] = hpu;
      c.i[K.ATTN_TABLES] = tablesPtr;
      // Work units: (token, head) pairs for the half path, (query tile, KV head, hpu heads) otherwise.
      run(2 * keys * nHeads * headDim, MIN_WORK.attention, half ? nTokens * nHeads : tiles * nKvHeads * (group / hpu), maxChunks);
    },

    async dispose() {
      if (disposed) return;
      disposed = true;
      await pool?.dispose();
    },
  };
  return backend;
}
