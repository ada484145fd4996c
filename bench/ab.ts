// A/B of WASM backend configurations in one process: each variant gets its own backend (own worker
// pool) and its own copy of the model, and their runs alternate, so a shared machine's drift hits
// every variant alike. Separate processes run minutes apart on these machines differ by 10-50% with
// identical code (bench/results/2026-12-03-session14.md); alternating in one process does not.
// Rounds alternate the order (ABBA). Prints the median prompt or decode rate per variant and the median time per op and run, per variant.
// Run: npx tsx bench/ab.ts [--model m135] [--type q4_0] [--mode decode|prompt] [--tokens 48] [--rounds 12]
//      [--depth 16]   (decode: the prompt's length, i.e. the context the decoded tokens attend to)
//      --variants SPEC,SPEC...   SPEC: relaxed | baseline | kernels=FILE, with optional :threads=N :spin=N
//      e.g. --variants relaxed,baseline   or   --variants baseline:threads=1,baseline:threads=2
// (kernels=FILE: a kernel build run in place of both of the runtime's, e.g. an A/B variant of assembly/.)
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWasmBackend, type WasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { loadModel, type Model } from '../src/model/model.js';
import { timeOps } from './op-timer.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const modelName = opt('model', 'm135');
const typeName = opt('type', 'q4_0');
const mode = opt('mode', 'decode');
const tokens = Number(opt('tokens', mode === 'prompt' ? '128' : '48'));
const rounds = Number(opt('rounds', '12'));
const depth = Number(opt('depth', '16'));
const path = join(import.meta.dirname, '.cache', 'models', `${modelName}-${typeName}-s1-v1.gguf`);
if (!existsSync(path)) throw new Error(`${path} is missing: run npx tsx bench/e2e-quick.ts --model ${modelName} --type ${typeName} once to write it`);
if (mode !== 'decode' && mode !== 'prompt') throw new Error(`--mode is decode or prompt, got ${mode}`);

interface Variant {
  label: string;
  backend: WasmBackend;
  model?: Model;
  rates: number[];
  /** Per op name: ms per run, one entry per timed run. */
  ops: Map<string, number[]>;
  current: Map<string, number>;
}

/** A backend for SPEC, its ops wrapped to add their time (outermost calls only) into variant.current. */
async function makeVariant(spec: string): Promise<Variant> {
  const [kind, ...mods] = spec.split(':');
  const settings = Object.fromEntries(mods.map((m) => m.split('=') as [string, string]));
  const threads = settings.threads === undefined ? 2 : Number(settings.threads);
  // Idle workers sleep soon: the other variants' pools must not spin on the cores this one runs on.
  const spin = settings.spin === undefined ? 2000 : Number(settings.spin);
  let choice: Parameters<typeof createWasmBackend>[0];
  if (kind === 'relaxed') choice = { relaxedSimd: true };
  else if (kind === 'baseline') choice = { relaxedSimd: false };
  else if (kind?.startsWith('kernels=')) {
    const bytes = new Uint8Array(readFileSync(kind.slice('kernels='.length)));
    choice = { relaxedSimd: false, kernels: { baseline: bytes, relaxed: bytes } };
  } else throw new Error(`variant ${spec}: relaxed, baseline or kernels=FILE, then :threads=N / :spin=N`);
  const backend = await createWasmBackend({ threads, spin, ...choice });
  const v: Variant = { label: spec, backend, rates: [], ops: new Map(), current: new Map() };
  timeOps(backend, (name, _args, ms) => v.current.set(name, (v.current.get(name) ?? 0) + ms));
  return v;
}

const specs = opt('variants', 'relaxed,baseline').split(',');
const variants: Variant[] = [];
for (const spec of specs) variants.push(await makeVariant(spec));
for (const v of variants) v.model = await loadModel(path, { backend: v.backend });
const prompt = Array.from({ length: mode === 'prompt' ? tokens : depth }, (_, i) => 100 + ((i * 7919) % 20000));
for (let r = 0; r < rounds + 2; r++) {
  // Each round in the other order: a variant's place in the round (after which one, how warm) evens out.
  for (const v of r % 2 ? [...variants].reverse() : variants) {
    const engine = v.model!.engine();
    v.current = new Map();
    const t0 = performance.now();
    const res = await engine.generate({ prompt, maxTokens: mode === 'prompt' ? 1 : tokens, temperature: 0, ignoreEos: true }).result;
    const ms = performance.now() - t0;
    engine.clearPrefixCache(); // every prompt run computes its whole prompt
    if (r < 2) continue; // warm-up
    v.rates.push(mode === 'prompt' ? (tokens / ms) * 1000 : res.timings.decodeTokensPerSecond);
    for (const [name, t] of v.current) v.ops.set(name, [...(v.ops.get(name) ?? []), t]);
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
console.log(`# A/B, ${modelName} ${typeName}, ${mode} (${tokens} tokens${mode === 'decode' ? ` after ${depth}` : ''}), medians of ${rounds} alternated runs\n`);
console.log(`| | ${variants.map((v) => `${v.label} (${v.backend.name}, ${v.backend.nThreads}T)`).join(' | ')} |`);
console.log(`|---|${variants.map(() => '---').join('|')}|`);
console.log(`| ${mode} tok/s | ${variants.map((v) => median(v.rates).toFixed(1)).join(' | ')} |`);
const names = [...variants[0]!.ops.keys()].sort((a, b) => median(variants[0]!.ops.get(b)!) - median(variants[0]!.ops.get(a)!));
for (const name of names) {
  const row = variants.map((v) => (v.ops.has(name) ? median(v.ops.get(name)!).toFixed(2) : '-'));
  if (row.every((x) => x === '-' || Number(x) < 0.01)) continue;
  console.log(`| ${name} (ms / run) | ${row.join(' | ')} |`);
}
for (const v of variants) await v.model!.dispose();
for (const v of variants) await v.backend.dispose();
