// Micro-benchmark of the WASM matmul kernels: GB/s of weight bytes streamed for mat x vec
// (decode) and mat x mat (prefill; --tokens takes a list, default 1,128), Q4_0 / Q8_0 / F32, 1 and 2
// threads. Medians and best runs are both printed: on a shared machine the best run is closer to
// the kernel's speed.
// Run: npx tsx bench/kernels.ts [--rows 5632] [--cols 2048] [--tokens 1,128] [--seconds 1]
//      [--types q4_0,q8_0,f32] [--threads 1,2] [--file-layout] [--kernels build/wasm/X.wasm]
// Weights are allocated as models load them (usage 'weight': quantized rows interleaved in fours);
// --file-layout keeps the file's row-after-row layout instead, for comparison.
import { readFileSync } from 'node:fs';
import { createWasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { asWeight } from '../src/backend/backend.js';
import { GGMLType, rowBytes, typeByName, typeName } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const rows = option('rows', 5632);
const cols = option('cols', 2048);
const tokenArg = process.argv.indexOf('--tokens');
const tokenCounts = tokenArg > 0 ? process.argv[tokenArg + 1]!.split(',').map(Number) : [1, 128];
const seconds = option('seconds', 1);
const typeArg = process.argv.indexOf('--types');
const types = typeArg > 0 ? process.argv[typeArg + 1]!.split(',').map((n) => typeByName(n)!.type) : [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.F32];
const threadArg = process.argv.indexOf('--threads');
const threadCounts = threadArg > 0 ? process.argv[threadArg + 1]!.split(',').map(Number) : [1, 2];
// --kernels: run this kernel module (another build, or an A/B variant) instead of the one chosen for the runtime
const kernelArg = process.argv.indexOf('--kernels');
const kernelBytes = kernelArg > 0 ? new Uint8Array(readFileSync(process.argv[kernelArg + 1]!)) : undefined;

let seed = 42;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const weights = new Float32Array(rows * cols).map(() => rnd() * 0.02);

console.log(`matmul ${rows}x${cols}; ${tokenCounts.join(', ')} tokens per call; median of runs over ~${seconds}s each`);
console.log('threads  type   tokens  ms/call(median)  GB/s weights (median / best)  GMAC/s (median / best)');
for (const threads of threadCounts) {
  const be = await createWasmBackend({ threads, ...(kernelBytes ? { relaxedSimd: false, kernels: { baseline: kernelBytes, relaxed: kernelBytes } } : {}) });
  if (threads === 1) console.log(`kernels: ${be.kernels} (${be.kernelReason})`);
  for (const type of types) {
    const q = quantize(type, weights, cols);
    const w = asWeight(be.allocate(type, [cols, rows], process.argv.includes('--file-layout') ? 'data' : 'weight'), cols, rows);
    be.upload(w, q);
    for (const nTokens of tokenCounts) {
      const x = be.allocate(GGMLType.F32, [cols, nTokens]);
      be.upload(x, Float32Array.from({ length: nTokens * cols }, rnd));
      const out = be.allocate(GGMLType.F32, [rows, nTokens]);
      be.matmul(out, w, x, nTokens); // warm-up
      const times: number[] = [];
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end || times.length < 3) {
        const t0 = performance.now();
        be.matmul(out, w, x, nTokens);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const ms = times[times.length >> 1]!;
      const best = times[0]!;
      const gbs = (t: number) => (q.length / t / 1e6).toFixed(2);
      const gmacs = (rows * cols * nTokens) / ms / 1e6;
      console.log(
        `${String(threads).padStart(7)}  ${typeName(type).padEnd(6)} ${String(nTokens).padStart(6)}  ${ms.toFixed(3).padStart(15)}  ${gbs(ms).padStart(13)} / ${gbs(best).padStart(6)}  ${gmacs.toFixed(2).padStart(15)} / ${((rows * cols * nTokens) / best / 1e6).toFixed(2)}`,
      );
    }
  }
  await be.dispose();
}
