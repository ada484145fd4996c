// Memory read bandwidth: worker threads stream over one shared WebAssembly.Memory with 128-bit loads (a tiny
// hand-assembled SIMD module: 8 loads per iteration into 4 independent xor accumulators), each thread its own
// contiguous slice. Measured at a working set larger than the last-level cache (DRAM) and at each model's
// per-token weight bytes (what a decode step streams: small models stay in L3 and read faster than DRAM).
import { Worker } from 'node:worker_threads';

/** (ptr, end) -> i32: xor of every 16-byte vector in [ptr, end); end - ptr a positive multiple of 128. */
function readModule(): Uint8Array<ArrayBuffer> {
  const u = (...b: number[]) => b;
  const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
  const str = (s: string) => [s.length, ...[...s].map((c) => c.charCodeAt(0))];
  const body: number[] = [];
  body.push(1, 4, 0x7b); // one local group: 4 x v128 (locals 2..5)
  body.push(0x03, 0x40); // loop
  for (let k = 0; k < 8; k++) {
    const acc = 2 + (k % 4);
    body.push(0x20, 0, 0xfd, 0x00, 4, k * 16); // local.get 0; v128.load align=16 offset=16k
    body.push(0x20, acc, 0xfd, 0x51, 0x21, acc); // local.get acc; v128.xor; local.set acc
  }
  body.push(0x20, 0, 0x41, 0x80, 0x01, 0x6a, 0x22, 0); // ptr += 128 (local.tee 0)
  body.push(0x20, 1, 0x49, 0x0d, 0); // br_if (ptr < end)
  body.push(0x0b); // end loop
  body.push(0x20, 2, 0x20, 3, 0xfd, 0x51, 0x20, 4, 0xfd, 0x51, 0x20, 5, 0xfd, 0x51, 0xfd, 0x1b, 0); // xor all, lane 0
  body.push(0x0b);
  return new Uint8Array([
    ...u(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 1, 0x7f]),
    // import env.memory: shared, min 1 page, max 65536 pages
    ...section(2, [1, ...str('env'), ...str('memory'), 0x02, 0x03, 1, ...leb(65536)]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...str('read'), 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { bytes, memory } = workerData;
const read = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports.read;
// Many short calls first: V8 starts wasm in its baseline compiler and optimizes a function only for later calls.
for (let i = 0; i < 300; i++) read(0, Math.min(1 << 16, memory.buffer.byteLength));
parentPort.on('message', ({ from, to, passes }) => {
  let x = 0;
  for (let p = 0; p < passes; p++) x ^= read(from, to);
  parentPort.postMessage(x);
});
`;

export interface BandwidthResult {
  bytes: number;
  threads: number;
  /** Best of the trials (GB/s, 1e9 bytes per second): the machine's capability, least disturbed by neighbours. */
  gbps: number;
  /** Median of the trials. */
  medianGbps: number;
}

/** Read bandwidth over a working set of `bytes` (rounded up to 64 KiB pages) for each thread count. */
export async function measureBandwidth(bytes: number, threadCounts: number[], opts: { trials?: number; minSeconds?: number } = {}): Promise<BandwidthResult[]> {
  const trials = opts.trials ?? 3;
  const minSeconds = opts.minSeconds ?? 0.1;
  const pages = Math.max(2, Math.ceil(bytes / 65536));
  const size = pages * 65536;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  // Touch every page: untouched pages all map to the kernel's one zero page and would read from cache.
  new Uint8Array(memory.buffer).fill(0x5a);
  const module = readModule();
  if (!WebAssembly.validate(module)) throw new Error('bandwidth probe: the hand-assembled wasm module does not validate');
  const maxThreads = Math.max(...threadCounts);
  const workers = Array.from({ length: maxThreads }, () => new Worker(WORKER, { eval: true, workerData: { bytes: module, memory } }));
  // One pending request per worker; a worker error fails it.
  const pending = new Map<Worker, { resolve: (x: number) => void; reject: (e: Error) => void }>();
  for (const w of workers) {
    w.on('message', (x: number) => pending.get(w)?.resolve(x));
    w.on('error', (e) => pending.get(w)?.reject(e));
  }
  const ask = (w: Worker, msg: object) =>
    new Promise<number>((resolve, reject) => {
      pending.set(w, { resolve, reject });
      w.postMessage(msg);
    });
  try {
    const results: BandwidthResult[] = [];
    for (const threads of threadCounts) {
      // Each thread reads its own slice, rounded down to 128-byte steps.
      const slice = Math.floor(size / threads / 128) * 128;
      const run = async (passes: number) => {
        const t0 = performance.now();
        await Promise.all(workers.slice(0, threads).map((w, i) => ask(w, { from: i * slice, to: (i + 1) * slice, passes })));
        return (performance.now() - t0) / 1000;
      };
      // Calibrate the pass count so each trial lasts at least minSeconds (message latency is then noise).
      let passes = 1;
      for (let s = await run(1); s < minSeconds; s = await run(passes)) passes = Math.max(passes * 2, Math.ceil((passes * minSeconds * 1.2) / Math.max(s, 1e-4)));
      const rates: number[] = [];
      for (let t = 0; t < trials; t++) rates.push((slice * threads * passes) / (await run(passes)) / 1e9);
      rates.sort((a, b) => a - b);
      results.push({ bytes: size, threads, gbps: rates[rates.length - 1]!, medianGbps: rates[rates.length >> 1]! });
    }
    return results;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
