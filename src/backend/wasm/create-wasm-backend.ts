// The WASM backend: one wasm memory (shared with a worker pool when threads > 1 and the runtime
// allows SharedArrayBuffer; memory.ts), each Backend op written as a command block that exec()
// runs, split over threads (dispatch.ts). The ops live by family in ops-matmul.ts,
// ops-elementwise.ts and ops-attention.ts; see assembly/ for the kernels.
import { KV_CACHE_TYPES, tensorBytes, type Backend, type Tensor } from '../backend.js';
import { BackendError } from '../errors.js';
import type { ByteSource } from '../../io/byte-source.js';
import type { GGMLType } from '../../tensor/ggml-types.js';
import { log } from '../../log.js';
import { chooseKernels, type KernelBuild, type KernelSources } from './features.js';
import { checkInt, Dispatcher, type OpContext } from './dispatch.js';
import * as K from './kernels.generated.js';
import { MAX_BYTES, PAGE, WasmMemory } from './memory.js';
import { attentionOps } from './ops-attention.js';
import { elementwiseOps } from './ops-elementwise.js';
import { expertOps } from './ops-experts.js';
import { matmulOps, SUPPORTED } from './ops-matmul.js';
import { deinterleave, interleavable, InterleavedWeights, type InterleavedRange } from './interleave.js';
import { CONTROL_SLOTS, WorkerPool } from './pool.js';
import { hardwareConcurrency, sharedMemoryAvailable } from './runtime.js';
import { findMemoryImport, withUnsharedMemory } from './wasm-binary.js';

export interface WasmBackendOptions {
  /** Threads including the calling one (default: hardware threads). 1 = no workers. */
  readonly threads?: number;
  /** 'auto' (default): relaxed build when it validates and passes the known-answer probe. */
  readonly relaxedSimd?: 'auto' | boolean;
  /**
   * Atomics.load iterations a waiting worker spins before sleeping (default 20000, some tens of
   * microseconds: longer than the host's own work between two ops of a forward pass, so workers
   * are awake for the next op instead of paying a futex wake-up per op; the host never waits for a
   * sleeping worker, see pool.ts). m135 Q4_0 decode at 2 threads: 11.6 -> 10.6 ms/token against 2000.
   */
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
  /** Bump-allocate `bytes` (aligned to `align`, default 64) and return its offset in the memory. */
  alloc(bytes: number, align?: number): number;
  /** The tensor at byte offset `ptr` of the memory. */
  tensorAt(ptr: number, type: GGMLType, shape: readonly number[]): Tensor;
  /** Current views of the memory (re-fetch after alloc: memory may grow). */
  u8(): Uint8Array;
  f32(ptr: number, count: number): Float32Array;
  i32(ptr: number, count: number): Int32Array;
}

/** Quantized-activation and attention scratch, reserved up front so ops never grow memory. */
const SCRATCH_BYTES = 1 << 20;

export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const threads = opts.threads ?? (await hardwareConcurrency());
  checkInt('threads', threads, 1);
  if (threads > 255) throw new BackendError('INVALID_ARGUMENT', `threads must be at most 255, got ${threads}`);
  const spin = opts.spin ?? 20000;
  const choice = await chooseKernels(opts.relaxedSimd ?? 'auto', opts.kernels);
  const shared = threads > 1 && sharedMemoryAvailable();
  if (threads > 1 && !shared) log.warn(`wasm backend: SharedArrayBuffer unavailable, running 1 thread instead of ${threads}`);
  const bytes = shared ? choice.bytes : withUnsharedMemory(choice.bytes);
  const minPages = findMemoryImport(bytes)?.minPages ?? 1;
  const memory = new WebAssembly.Memory({ initial: minPages, maximum: MAX_BYTES / PAGE, shared } as WebAssembly.MemoryDescriptor);
  const module = await WebAssembly.compile(bytes as BufferSource);
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exec = instance.exports.exec as (args: number, ith: number, nth: number) => number;
  const mem = new WasmMemory(memory, (instance.exports.heapBase as () => number)());

  const ctrlPtr = mem.alloc(CONTROL_SLOTS * 4);
  const argsPtr = mem.alloc(K.ARG_SLOTS * 4);
  const scratch = mem.alloc(SCRATCH_BYTES);
  const pool = shared ? await WorkerPool.create({ bytes, memory, ctrlPtr, argsPtr, workers: threads - 1, spin }) : undefined;
  const dispatch = new Dispatcher(memory, exec, argsPtr, pool, pool ? pool.size : 1);
  log.debug(`wasm backend: ${choice.build} kernels (${choice.reason}), ${dispatch.nThreads} thread(s)`);
  const weights = new InterleavedWeights();
  /** Rewrite an uploaded weight's rows in groups of four (one thread; the scratch holds a group). */
  const interleave = (r: InterleavedRange): void => {
    const c = dispatch.cmd(K.OP_INTERLEAVE_ROWS);
    c.i[K.INTERLEAVE_PTR] = r.offset;
    c.i[K.INTERLEAVE_GROUPS] = r.bytes / (4 * r.rowBytes);
    c.i[K.INTERLEAVE_ROW_BYTES] = r.rowBytes;
    c.i[K.INTERLEAVE_TYPE] = r.type;
    c.i[K.INTERLEAVE_TEMP] = scratch;
    dispatch.run(1, 1, 1);
  };
  const ctx: OpContext = { mem, dispatch, scratch, scratchBytes: SCRATCH_BYTES, weights };
  const matmuls = matmulOps(ctx);

  return {
    name: `wasm-${choice.build}`,
    nThreads: dispatch.nThreads,
    kernels: choice.build,
    kernelReason: choice.reason,
    sharedMemory: shared,
    capabilities: { weightTypes: SUPPORTED, maxTensorBytes: MAX_BYTES - mem.heapBase, memoryBytes: MAX_BYTES - (64 << 20), kvTypes: new Set(KV_CACHE_TYPES), kvParts: 1 },

    alloc: (n, align) => mem.alloc(n, align),
    tensorAt: (ptr, type, shape) => mem.tensorAt(ptr, type, shape),
    allocate(type, shape, usage = 'data') {
      const t = mem.tensorAt(mem.alloc(tensorBytes(type, shape)), type, shape);
      const range = usage === 'weight' ? interleavable(t, SCRATCH_BYTES) : undefined;
      if (range) weights.add(range);
      return t;
    },
    upload(dst, data, byteOffset = 0) {
      const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const ptr = mem.at(dst, 'upload', byteOffset + src.length);
      const range = weights.uploadTarget(ptr + byteOffset, src.length);
      mem.u8().set(src, ptr + byteOffset);
      if (range) interleave(range);
    },
    async uploadFrom(dst, source: ByteSource, sourceOffset) {
      // Straight into wasm memory: no staging copy of the tensor, let alone the file.
      const ptr = mem.at(dst, 'uploadFrom');
      const range = weights.uploadTarget(ptr, dst.bytes);
      await source.readInto(sourceOffset, new Uint8Array(memory.buffer, ptr, dst.bytes));
      if (range) interleave(range);
    },
    async read(src, byteOffset = 0, n = src.bytes - byteOffset) {
      const ptr = mem.at(src, 'read', byteOffset + n) + byteOffset;
      const range = weights.find(ptr, n);
      if (range) {
        // The file's layout: undo the interleaving of the whole range, then cut out what was asked.
        const whole = deinterleave(mem.u8().slice(range.offset, range.offset + range.bytes), range);
        return whole.slice(ptr - range.offset, ptr - range.offset + n);
      }
      // Copying out of a shared memory goes element by element (racy-safe): 4-byte elements where
      // aligned (logits always are) make it 4x fewer steps than bytes.
      if (ptr % 4 === 0 && n % 4 === 0) return new Uint8Array(new Int32Array(memory.buffer, ptr, n >> 2).slice().buffer);
      return mem.u8().slice(ptr, ptr + n);
    },
    copy(dst, dstOffset, src, srcOffset, n) {
      const to = mem.at(dst, 'copy destination', dstOffset + n) + dstOffset, from = mem.at(src, 'copy source', srcOffset + n) + srcOffset;
      if (weights.find(to, n) || weights.find(from, n)) throw new BackendError('INVALID_ARGUMENT', 'copy: weights keep their own layout here; read() a weight to get its bytes');
      mem.u8().copyWithin(to, from, from + n);
    },
    u8: () => new Uint8Array(memory.buffer),
    f32: (ptr, count) => new Float32Array(memory.buffer, ptr, count),
    i32: (ptr, count) => new Int32Array(memory.buffer, ptr, count),

    ...matmuls,
    ...expertOps(ctx, matmuls),
    ...elementwiseOps(ctx),
    ...attentionOps(ctx),

    async dispose() {
      if (dispatch.disposed) return;
      dispatch.disposed = true;
      await pool?.dispose();
    },
  };
}
