// Persistent worker pool over one shared WebAssembly.Memory. Protocol (all in a small control
// block inside that memory, so no messages per op):
//   WORD = (generation << 8) | nth   the host bumps it to start an op; workers spin on it briefly,
//                                    then sleep in Atomics.wait. Packing nth with the generation
//                                    lets a worker read both in one atomic load.
//   DONE                             workers 1..nth-1 increment it when their share is finished;
//                                    the last one notifies the host.
// The command block (op + arguments) is at a fixed address; the host writes it before bumping
// WORD and does not touch it until every participant has reported DONE.
import { BackendError } from '../errors.js';
import { spawnWorker, type PoolWorker } from './runtime.js';

const WORD = 0;
const DONE = 1;
const SLEEPERS = 2;
const STOP = 3;
const FAILED = 4;
const PROBE = 5;
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
    try {
      exec(argsPtr, ith, nth);
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, ith);
      postToHost({ error: String(e && e.message || e) });
    }
    if (Atomics.add(ctrl, ${DONE}, 1) === nth - 2) Atomics.notify(ctrl, ${DONE});
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
    const workers = await Promise.all(
      Array.from({ length: o.workers }, async (_, k) => {
        const w = await spawnWorker(WORKER_BODY);
        await new Promise<void>((resolve, reject) => {
          w.onError(reject);
          w.onMessage((m) => {
            if ((m as { ready?: boolean }).ready) resolve();
          });
          w.post({ bytes: o.bytes, memory: o.memory, ctrlPtr: o.ctrlPtr, argsPtr: o.argsPtr, ith: k + 1, spin: o.spin, word: 0 });
        });
        w.unref();
        return w;
      }),
    );
    return new WorkerPool(ctrl, workers, o.spin, canBlock);
  }

  /** Threads including the caller. */
  get size(): number {
    return this.workers.length + 1;
  }

  /**
   * Run the command block on nth threads (2..size): workers 1..nth-1 plus `own`, the caller's
   * share (thread 0), run here. Returns when every share is done.
   */
  run(nth: number, own: () => void): void {
    if (this.disposed) throw new BackendError('DISPOSED', 'the worker pool was disposed');
    const ctrl = this.ctrl;
    this.gen = (this.gen + 1) & 0x7fffff;
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, WORD, (this.gen << 8) | nth);
    if (Atomics.load(ctrl, SLEEPERS) > 0) Atomics.notify(ctrl, WORD);
    let failure: unknown;
    try {
      own();
    } catch (e) {
      failure = e; // still wait: the workers are using the command block
    }
    const target = nth - 1;
    let done = Atomics.load(ctrl, DONE);
    for (let i = 0; done < target && i < this.spin; i++) done = Atomics.load(ctrl, DONE);
    while (done < target) {
      if (this.canBlock) Atomics.wait(ctrl, DONE, done);
      done = Atomics.load(ctrl, DONE);
    }
    if (failure !== undefined) throw new BackendError('KERNEL_FAILED', `kernel failed on the calling thread: ${(failure as Error).message ?? failure}`);
    const failed = Atomics.exchange(ctrl, FAILED, 0);
    if (failed !== 0) throw new BackendError('KERNEL_FAILED', `kernel failed on worker thread ${failed}`);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.store(this.ctrl, WORD, ((this.gen + 1) & 0x7fffff) << 8);
    Atomics.notify(this.ctrl, WORD);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
