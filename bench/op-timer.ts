// Times every op of a WASM backend from the host (for a threaded op that includes waking the workers
// and waiting for the last chunk): bench/op-times.ts and bench/ab.ts.
import type { WasmBackend } from '../src/backend/wasm/create-wasm-backend.js';

/** Backend members that are not ops (allocation, views, teardown). */
const NOT_OPS = new Set(['alloc', 'u8', 'f32', 'i32', 'dispose']);

/** Wrap the backend's ops: record(name, args, ms) after each outermost call (matmul calls matmulShared: timed once, as matmul). */
export function timeOps(backend: WasmBackend, record: (name: string, args: unknown[], ms: number) => void): void {
  let depth = 0;
  for (const name of Object.keys(backend) as (keyof WasmBackend)[]) {
    const fn = backend[name];
    if (typeof fn !== 'function' || NOT_OPS.has(name)) continue;
    (backend as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      const t0 = performance.now();
      depth++;
      try {
        return (fn as (...a: unknown[]) => unknown).apply(backend, args);
      } finally {
        if (--depth === 0) record(name, args, performance.now() - t0);
      }
    };
  }
}
