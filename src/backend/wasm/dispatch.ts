// Running one op: the command block (op code and named argument slots, assembly/abi.ts) written by
// the host, then exec() over threads: the worker pool claims chunks of the op (see pool.ts).
import { BackendError } from '../errors.js';
import * as K from './kernels.generated.js';
import type { WasmMemory } from './memory.js';
import type { InterleavedWeights } from './interleave.js';
import { MAX_CHUNKS, type WorkerPool } from './pool.js';

// Minimum work per thread before another thread is worth waking (rough op counts).
export const MIN_WORK = { matmul: 1 << 16, quant: 1 << 14, elementwise: 1 << 14, transcendental: 1 << 12, attention: 1 << 15 };

/** Chunks per thread an op is cut into: smaller chunks balance better when a thread stalls. */
const CHUNKS_PER_THREAD = 4;

export interface Command {
  readonly i: Int32Array;
  readonly f: Float32Array;
}

export class Dispatcher {
  disposed = false;
  private argBuf: ArrayBuffer | SharedArrayBuffer | undefined;
  private ai32 = new Int32Array(0);
  private af32 = new Float32Array(0);
  private readonly execChunk: (c: number, n: number) => number;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly exec: (args: number, ith: number, nth: number) => number,
    private readonly argsPtr: number,
    private readonly pool: WorkerPool | undefined,
    readonly nThreads: number,
  ) {
    this.execChunk = (c, n) => exec(argsPtr, c, n);
  }

  /** A cleared command block for `op` (views re-made when a non-shared memory's buffer was replaced by growth). */
  cmd(op: number): Command {
    if (this.argBuf !== this.memory.buffer) {
      this.argBuf = this.memory.buffer;
      this.ai32 = new Int32Array(this.argBuf, this.argsPtr, K.ARG_SLOTS);
      this.af32 = new Float32Array(this.argBuf, this.argsPtr, K.ARG_SLOTS);
    }
    this.ai32.fill(0);
    this.ai32[0] = op;
    return { i: this.ai32, f: this.af32 };
  }

  /**
   * Run the command block on up to `units` threads, fewer when `work` is small. With more than one
   * thread the op is cut into up to CHUNKS_PER_THREAD chunks per thread (at most `maxChunks`),
   * claimed by whichever thread is free (see pool.ts).
   */
  run(work: number, minWork: number, units: number, maxChunks = MAX_CHUNKS): void {
    if (this.disposed) throw new BackendError('DISPOSED', 'the wasm backend was disposed');
    const nth = Math.max(1, Math.min(this.nThreads, units, Math.floor(work / minWork)));
    if (nth === 1 || !this.pool) {
      if (this.exec(this.argsPtr, 0, 1) !== 0) throw new BackendError('KERNEL_FAILED', `exec rejected op ${this.ai32[0]}`);
      return;
    }
    const chunks = Math.max(1, Math.min(units, nth * CHUNKS_PER_THREAD, maxChunks, Math.floor(work / (minWork / 2))));
    this.pool.run(nth, chunks, this.execChunk);
  }
}

export function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new BackendError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${v}`);
}

/** What an op family needs: the memory, the dispatcher, and the activation scratch. */
export interface OpContext {
  readonly mem: WasmMemory;
  readonly dispatch: Dispatcher;
  /** Quantized-activation and attention scratch, reserved up front so ops never grow memory. */
  readonly scratch: number;
  readonly scratchBytes: number;
  /** Which weights are interleaved in fours (interleave.ts). */
  readonly weights: InterleavedWeights;
}
