// The runtime adapter: the only place that knows which JS runtime we are in. Node gets
// worker_threads (eval workers); browsers, Deno and Bun get Web Workers from a Blob URL. Both run
// the same worker source string. Everything else in src/backend/wasm is runtime-neutral.

/** A started worker, reduced to what the pool needs. */
export interface PoolWorker {
  post(message: unknown): void;
  onMessage(cb: (data: unknown) => void): void;
  onError(cb: (err: Error) => void): void;
  /** Stop keeping the process alive for this worker (Node; no-op elsewhere). */
  unref(): void;
  terminate(): Promise<void>;
}

type AnyGlobal = typeof globalThis & {
  process?: { versions?: { node?: string } };
  Deno?: unknown;
  Bun?: unknown;
  navigator?: { hardwareConcurrency?: number };
};
const g = globalThis as AnyGlobal;

/** Node proper (Bun and Deno also expose `process`, but take the Web Worker path). */
export function isNode(): boolean {
  return typeof g.process?.versions?.node === 'string' && g.Deno === undefined && g.Bun === undefined;
}

/** Whether node:fs can be imported: Node, Deno and Bun all provide it; browsers and edge isolates do not. */
export function hasNodeFs(): boolean {
  return isNode() || g.Deno !== undefined || g.Bun !== undefined;
}

// A specifier in a variable keeps browser bundlers from trying to resolve Node built-ins.
const nodeModule = (name: string): Promise<any> => import(/* @vite-ignore */ `node:${name}`);

/** Hardware threads: navigator.hardwareConcurrency, else os.availableParallelism() on Node. */
export async function hardwareConcurrency(): Promise<number> {
  const n = g.navigator?.hardwareConcurrency;
  if (typeof n === 'number' && n > 0) return n;
  if (isNode()) {
    const os = await nodeModule('os');
    return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  }
  return 1;
}

/**
 * Whether this runtime can share memory between threads at all: shared memory, and workers to
 * share it with (edge isolates may have SharedArrayBuffer but no Worker).
 */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
  if (!isNode() && typeof (g as { Worker?: unknown }).Worker !== 'function') return false;
  if ((g as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * Start a worker running `body`, a plain script that uses two globals we define in front of it:
 * `onFirstMessage(cb)` and `postToHost(msg)`, and `closeSelf()` to exit.
 */
export async function spawnWorker(body: string): Promise<PoolWorker> {
  if (isNode()) {
    const { Worker } = await nodeModule('worker_threads');
    const prelude = `const { parentPort } = require('node:worker_threads');
const onFirstMessage = (cb) => parentPort.once('message', cb);
const postToHost = (m) => parentPort.postMessage(m);
const closeSelf = () => parentPort.close();
`;
    const w = new Worker(prelude + body, { eval: true });
    return {
      post: (m) => w.postMessage(m),
      onMessage: (cb) => w.on('message', cb),
      onError: (cb) => w.on('error', cb),
      unref: () => w.unref(),
      terminate: async () => {
        await w.terminate();
      },
    };
  }
  const prelude = `const onFirstMessage = (cb) => { self.onmessage = (e) => { self.onmessage = null; cb(e.data); }; };
const postToHost = (m) => self.postMessage(m);
const closeSelf = () => self.close();
`;
  const url = URL.createObjectURL(new Blob([prelude + body], { type: 'text/javascript' }));
  const w = new Worker(url, { type: 'module' });
  return {
    post: (m) => w.postMessage(m),
    onMessage: (cb) => w.addEventListener('message', (e) => cb((e as MessageEvent).data)),
    onError: (cb) => w.addEventListener('error', (e) => cb(new Error((e as ErrorEvent).message ?? 'worker error'))),
    unref: () => {},
    terminate: async () => {
      w.terminate();
      URL.revokeObjectURL(url);
    },
  };
}
