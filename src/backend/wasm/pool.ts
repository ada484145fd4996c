// Persistent worker pool over one shared WebAssembly.Memory. Protocol (all in a small control
// block inside that memory, so no messages per op):
//   WORD = (generation << 8) | nth   the host bumps it to start an op; workers spin on it briefly,
//                                    then sleep in Atomics.wait. Packing nth with the generation
//                                    lets a worker read both in one atomic load.
//   NEXT = (generation << 12) | c    the next unclaimed chunk of the op; every participant (the host
//                                    and workers 1..nth-1) claims chunks with compareExchange and
//                                    runs exec(args, c, CHUNKS). The generation in the word keeps a
//                                    late worker from claiming a chunk of a later op.
//   CHUNKS                           how many chunks the op is cut into.
//   DONE                             chunks finished; the one that finishes the last notifies.
// Chunks are fixed shares of the op (exec's split of its output by (c, CHUNKS)), and every kernel
// computes an element the same way whichever share holds it, so which thread runs a chunk never
// changes a result. Claiming instead of a fixed share per thread means the host never waits for
// a worker that has not woken up (descheduled on a busy machine): it runs the chunks itself.
// The command block (op + arguments) is at a fixed address; the host writes it before bumping
// WORD and does not touch it until every chunk is DONE.
import { BackendError } from '../errors.js';
import { spawnWorker, type PoolWorker } from './runtime.js';

/** How long a worker may take to start before the pool gives up on it. */
const WORKER_START_MS = 60_000;

const WORD = 0;
const DONE = 1;
const SLEEPERS = 2;
const STOP = 3;
const FAILED = 4;
const PROBE = 5;
const NEXT = 6;
const CHUNKS = 7;
/** Generations wrap at 2^19 (NEXT keeps 12 bits for the chunk index, and stays positive). */
const GEN_MASK = 0x7ffff;
/** Most chunks one op may be cut into. */
export const MAX_CHUNKS = 4095;
/** i32 slots of the control block. */
export const CONTROL_SLOTS = 16;

// Runs inside each worker, after the runtime adapter's prelude.
const WORKER_BODY = `
onFirstMessage((init) => {
  const { bytes, memory, ctrlPtr, argsPtr, ith, spin } = init;
  // Compiled here from bytes: not every runtime can post a WebAssembly.Module to a worker.
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const exec = instance.exports.exec;
  const ctrl = new Int32Array(memory.buffer, ctrlPtr, ${CONTROL_SLOTS});
  let last = init.word;
  postToHost({ ready: true });
  for (;;) {
    let w = Atomics.load(ctrl, ${WORD});
    for (let i = 0; w === last && i < spin; i++) w = Atomics.load(ctrl, ${WORD});
    if (w === last) {
      Atomics.add(ctrl, ${SLEEPERS}, 1);
      Atomics.wait(ctrl, ${WORD}, last);
      Atomics.sub(ctrl, ${SLEEPERS}, 1);
      continue;
    }
    last = w;
    if (Atomics.load(ctrl, ${STOP}) !== 0) break;
    const nth = w & 0xff;
    if (ith >= nth) continue;
    const gen = w >>> 8;
    for (;;) {
      const v = Atomics.load(ctrl, ${NEXT});
      if ((v >>> 12) !== gen) break;
      const c = v & 0xfff;
      const n = Atomics.load(ctrl, ${CHUNKS});
      if (c >= n) break;
      if (Atomics.compareExchange(ctrl, ${NEXT}, v, v + 1) !== v) continue;
      try {
        exec(argsPtr, c, n);
      } catch (e) {
        Atomics.store(ctrl, ${FAILED}, ith);
        postToHost({ error: String(e && e.message || e) });
      }
      if (Atomics.add(ctrl, ${DONE}, 1) === n - 1) Atomics.notify(ctrl, ${DONE});
    }
  }
  closeSelf();
});
`;

export interface PoolOptions {
  /** The kernel module's bytes (the same ones the calling thread instantiated). */
  readonly bytes: Uint8Array;
  readonly memory: WebAssembly.Memory;
  /** Byte offset of CONTROL_SLOTS zeroed i32 in memory. */
  readonly ctrlPtr: number;
  readonly argsPtr: number;
  /** Worker threads to start (the calling thread is one more). */
  readonly workers: number;
  /** Atomics.load iterations a waiting thread spins before it sleeps. */
  readonly spin: number;
}

export class WorkerPool {
  private gen = 0;
  private disposed = false;

  private constructor(
    private readonly ctrl: Int32Array,
    private readonly workers: PoolWorker[],
    private readonly spin: number,
    private readonly canBlock: boolean,
  ) {}

  static async create(o: PoolOptions): Promise<WorkerPool> {
    const ctrl = new Int32Array(o.memory.buffer, o.ctrlPtr, CONTROL_SLOTS);
    ctrl.fill(0);
    // Browsers forbid Atomics.wait on the main thread: there the host only spins.
    let canBlock = true;
    try {
      Atomics.wait(ctrl, PROBE, 1, 0);
    } catch {
      canBlock = false;
    }
    const spawned: PoolWorker[] = [];
    try {
      const workers = await Promise.all(
        Array.from({ length: o.workers }, async (_, k) => {
          const w = await spawnWorker(WORKER_BODY);
          spawned.push(w);
          let timer: ReturnType<typeof setTimeout> | undefined;
          await new Promise<void>((resolve, reject) => {
            w.onError(reject);
            w.onMessage((m) => {
              if ((m as { ready?: boolean }).ready) resolve();
            });
            // A worker that never starts (seen rarely from a nested worker in a busy browser) is an error, not a hang.
            timer = setTimeout(() => reject(new BackendError('KERNEL_FAILED', `worker ${k + 1} of ${o.workers} did not start within ${WORKER_START_MS / 1000} s`)), WORKER_START_MS);
            w.post({ bytes: o.bytes, memory: o.memory, ctrlPtr: o.ctrlPtr, argsPtr: o.argsPtr, ith: k + 1, spin: o.spin, word: 0 });
          }).finally(() => clearTimeout(timer));
          w.unref();
          return w;
        }),
      );
      return new WorkerPool(ctrl, workers, o.spin, canBlock);
    } catch (err) {
      await Promise.all(spawned.map((w) => w.terminate().catch(() => {})));
      throw err instanceof BackendError ? err : new BackendError('KERNEL_FAILED', `starting the worker pool failed: ${(err as Error)?.message ?? err}`, { cause: err });
    }
  }

  /** Threads including the caller. */
  get size(): number {
    return this.workers.length + 1;
  }

  /**
   * Run the command block as `chunks` chunks (1..MAX_CHUNKS) on up to nth threads (2..size):
   * workers 1..nth-1 and the caller claim chunks until none is left; `exec(c, chunks)` runs chunk
   * c here. Returns when every chunk is done.
   */
  run(nth: number, chunks: number, exec: (c: number, n: number) => number): void {
    if (this.disposed) throw new BackendError('DISPOSED', 'the worker pool was disposed');
    const ctrl = this.ctrl;
    const gen = (this.gen = (this.gen + 1) & GEN_MASK);
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, CHUNKS, chunks);
    Atomics.store(ctrl, NEXT, gen << 12);
    Atomics.store(ctrl, WORD, (gen << 8) | nth);
    if (Atomics.load(ctrl, SLEEPERS) > 0) Atomics.notify(ctrl, WORD);
    let failure: unknown;
    let rc = 0;
    for (;;) {
      const v = Atomics.load(ctrl, NEXT);
      const c = v & 0xfff;
      if (c >= chunks) break;
      if (Atomics.compareExchange(ctrl, NEXT, v, v + 1) !== v) continue;
      try {
        rc |= exec(c, chunks);
      } catch (e) {
        failure ??= e; // still wait: the workers are using the command block
      }
      Atomics.add(ctrl, DONE, 1);
    }
    let done = Atomics.load(ctrl, DONE);
    for (let i = 0; done < chunks && i < this.spin; i++) done = Atomics.load(ctrl, DONE);
    while (done < chunks) {
      if (this.canBlock) Atomics.wait(ctrl, DONE, done);
      done = Atomics.load(ctrl, DONE);
    }
    if (failure !== undefined) throw new BackendError('KERNEL_FAILED', `kernel failed on the calling thread: ${(failure as Error).message ?? failure}`);
    const failed = Atomics.exchange(ctrl, FAILED, 0);
    if (failed !== 0) throw new BackendError('KERNEL_FAILED', `kernel failed on worker thread ${failed}`);
    if (rc !== 0) throw new BackendError('KERNEL_FAILED', 'exec rejected the op');
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.store(this.ctrl, WORD, ((this.gen + 1) & GEN_MASK) << 8);
    Atomics.notify(this.ctrl, WORD);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
