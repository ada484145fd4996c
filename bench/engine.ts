// Engine benchmark: aggregate decode tokens/s with 1, 4, 8 and 16 concurrent streams (continuous
// batching), and time to first token for a 512-token prompt with and without its prefix already in
// the KV cache. The model is a random-weight SmolLM-135M-shaped Q4_0 llama (dim 576, 30 layers,
// 9/3 heads, ffn 1536, Llama 2 vocabulary), written once and cached under bench/.cache/engine/.
// Speed does not depend on the weights' values. Numbers on a shared machine are noisy: best of runs.
// Run: npx tsx bench/engine.ts [--threads 2] [--tokens 32] [--streams 1,4,8,16] [--runs 2]
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import type { EngineGeneration } from '../src/engine/types.js';
import { loadModel } from '../src/model/model.js';
import { writeSyntheticLlama } from '../test/helpers/synthetic.js';
import { GGMLType } from '../src/tensor/ggml-types.js';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
}
const threads = Number(option('threads', '2'));
const tokens = Number(option('tokens', '32'));
const streamCounts = option('streams', '1,4,8,16').split(',').map(Number);
const runs = Number(option('runs', '2'));
const PREFIX = 512, SUFFIX = 16;

async function ensureModel(): Promise<string> {
  const dir = join(process.cwd(), 'bench', '.cache', 'engine');
  const path = join(dir, 'm135-q4_0-s1.gguf');
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  console.log(`writing ${path} (random weights, SmolLM-135M shape, Q4_0) ...`);
  const t0 = performance.now();
  try {
    await writeSyntheticLlama(`${path}.partial`, {
      dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536, vocab: 'llama2', type: GGMLType.Q4_0, seed: 1, contextLength: 2048, distinctBlocks: 4096,
    });
    renameSync(`${path}.partial`, path);
  } catch (e) {
    rmSync(`${path}.partial`, { force: true });
    throw e;
  }
  console.log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return path;
}

let seed = 7;
const randomTokens = (n: number) => Array.from({ length: n }, () => 3 + ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % 31997));

/** Read a generation; returns when its first piece and its end arrived. */
async function timed(g: EngineGeneration): Promise<{ first: number; end: number; n: number }> {
  let first = 0;
  for await (const _ of g) first ||= performance.now();
  const r = await g.result;
  return { first, end: performance.now(), n: r.tokens.length };
}

/** Aggregate decode tokens/s of c streams started together: tokens after each stream's first, over the time after the last first token. */
async function decodeRate(engine: Engine, c: number): Promise<number> {
  const gens = Array.from({ length: c }, () => engine.generate({ prompt: [1, ...randomTokens(8)], maxTokens: tokens, temperature: 0, ignoreEos: true }));
  const t = await Promise.all(gens.map(timed));
  const start = Math.max(...t.map((x) => x.first)), end = Math.max(...t.map((x) => x.end));
  return t.reduce((s, x) => s + x.n - 1, 0) / ((end - start) / 1000);
}

async function ttft(engine: Engine, prompt: number[]): Promise<{ ms: number; cached: number }> {
  const r = await engine.generate({ prompt, maxTokens: 1, temperature: 0, ignoreEos: true }).result;
  return { ms: r.timings.timeToFirstTokenMs, cached: r.usage.cachedPromptTokens };
}

const path = await ensureModel();
// The model's own graph is unused here: keep its KV and batch buffers minimal.
const model = await loadModel(path, { threads, contextLength: 2048, kvCacheTokens: 16, maxBatchTokens: 16 });
const engine = await createEngine(model, { kvCacheTokens: 8192, maxBatchTokens: 512, blockSize: 16 });
console.log(`m135-shaped Q4_0, ${model.backend.name}, ${threads} threads, ${tokens} generated tokens per stream, best of ${runs}`);

await decodeRate(engine, 1); // warm-up
const rates = new Map<number, number>();
for (const c of streamCounts) {
  let best = 0;
  for (let i = 0; i < runs; i++) best = Math.max(best, await decodeRate(engine, c));
  rates.set(c, best);
}
const one = rates.get(1) ?? rates.get(streamCounts[0])!;
console.log('\nstreams  aggregate decode tok/s  per stream  vs 1 stream');
for (const [c, r] of rates) console.log(`${String(c).padStart(7)}  ${r.toFixed(1).padStart(22)}  ${(r / c).toFixed(1).padStart(10)}  ${(r / one).toFixed(2).padStart(10)}x`);

// TTFT for a 512-token prefix + 16-token suffix: cold, then with the prefix left in the cache by a previous request.
const cold: number[] = [], warm: number[] = [];
let cachedSeen = 0;
for (let i = 0; i < runs + 1; i++) {
  const prefix = [1, ...randomTokens(PREFIX - 1)];
  cold.push((await ttft(engine, [...prefix, ...randomTokens(SUFFIX)])).ms);
  const w = await ttft(engine, [...prefix, ...randomTokens(SUFFIX)]);
  warm.push(w.ms);
  cachedSeen = w.cached;
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
console.log(`\nTTFT, ${PREFIX}+${SUFFIX}-token prompt (median of ${cold.length}):`);
console.log(`  no shared prefix      ${median(cold).toFixed(1)} ms`);
console.log(`  512-token prefix hit  ${median(warm).toFixed(1)} ms  (${cachedSeen} prompt tokens reused)`);
const m = engine.metrics();
console.log(`\nengine: ${m.steps} steps, ${m.computedTokens} tokens computed, prefix hit rate ${(100 * m.prefixCacheHitRate).toFixed(1)}%, KV ${m.kvBlocksUsed}/${m.kvBlocksTotal} blocks in use (prefix cache)`);
await engine.dispose();
await model.dispose();
