// Where a forward pass spends its time, per backend op: wraps every op of a wasm backend with a
// timer and runs a prompt then greedy decode on a cached random-weight model (bench/e2e-quick.ts
// writes them). Prints, per op, ms per decode token (or per prompt) and µs per call.
// Each op call is timed from the host: for a threaded op that includes waking the workers and
// waiting for the last chunk, which is the point (dispatch cost is part of the op's cost).
// Run: npx tsx bench/op-times.ts [--model m135|l1b] [--type q4_0|q8_0] [--threads 2] [--prompt 4]
//      [--decode 128] [--kernels FILE]   (FILE: a baseline kernel build to run instead)
//      [--spin N]   (worker pool spin iterations before sleeping; default the backend's)
//      [--by-shape]   (matmuls split by their weights' rows x cols: which matrices cost what)
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { loadModel } from '../src/model/model.js';
import { timeOps } from './op-timer.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const modelName = opt('model', 'm135');
const typeName = opt('type', 'q4_0');
const threads = Number(opt('threads', '2'));
const nPrompt = Number(opt('prompt', '4'));
const nDecode = Number(opt('decode', '128'));
const path = join(import.meta.dirname, '.cache', 'models', `${modelName}-${typeName}-s1-v1.gguf`);
if (!existsSync(path)) throw new Error(`${path} is missing: run npx tsx bench/e2e-quick.ts --model ${modelName} --type ${typeName} once to write it`);

const kernelFile = process.argv.includes('--kernels') ? opt('kernels', '') : undefined;
const kernelBytes = kernelFile ? new Uint8Array(readFileSync(kernelFile)) : undefined;
const spin = process.argv.includes('--spin') ? Number(opt('spin', '')) : undefined;
const backend = await createWasmBackend({ threads, spin, ...(kernelBytes ? { relaxedSimd: false, kernels: { baseline: kernelBytes, relaxed: kernelBytes } } : {}) });
const byShape = process.argv.includes('--by-shape');
/** "rows x cols" of a matmul's weight, or of each part of a matmulShared. */
const shapeOf = (args: unknown[]): string => {
  const dims = (w: { rows: number; cols: number }) => `${w.rows}x${w.cols}`;
  return Array.isArray(args[0]) ? (args[0] as { w: { rows: number; cols: number } }[]).map((p) => dims(p.w)).join('+') : dims(args[1] as { rows: number; cols: number });
};
const times = new Map<string, { ms: number; calls: number }>();
timeOps(backend, (name, args, ms) => {
  const key = byShape && name.startsWith('matmul') ? `${name} ${shapeOf(args)}` : name;
  const e = times.get(key) ?? { ms: 0, calls: 0 };
  e.ms += ms;
  e.calls++;
  times.set(key, e);
});

const model = await loadModel(path, { threads, backend });
const prompt = Array.from({ length: nPrompt }, (_, i) => 100 + ((i * 7919) % 20000));
await model.generate(prompt, { temperature: 0, maxTokens: 4, ignoreEos: true }).result; // warm-up
times.clear();
const t0 = performance.now();
const res = await model.generate(prompt, { temperature: 0, maxTokens: nDecode + 1, ignoreEos: true }).result;
const wall = performance.now() - t0;
const perToken = nDecode + 1; // the prompt pass and every decode step, averaged over the decode steps
console.log(`${modelName} ${typeName}, ${backend.name}, ${threads} thread(s): prompt ${nPrompt} tokens (${res.promptTokensPerSecond.toFixed(1)} tok/s), decode ${nDecode} (${res.decodeTokensPerSecond.toFixed(1)} tok/s)`);
console.log('| op | ms per token | calls per token | µs per call |');
console.log('|---|---|---|---|');
let sum = 0;
for (const [name, { ms, calls }] of [...times].sort((a, b) => b[1].ms - a[1].ms)) {
  sum += ms;
  console.log(`| ${name} | ${(ms / perToken).toFixed(3)} | ${(calls / perToken).toFixed(0)} | ${((ms / calls) * 1000).toFixed(1)} |`);
}
console.log(`| all ops | ${(sum / perToken).toFixed(2)} | | |`);
console.log(`| wall (ops + host: sampling, detokenizing, scheduling) | ${(wall / perToken).toFixed(2)} | | |`);
await model.dispose();
await backend.dispose();
