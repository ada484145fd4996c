// Quick end-to-end speed check: prompt (one batch) and decode tok/s on a cached random-weight model.
// Run: npx tsx bench/e2e-quick.ts [--model m135|l1b|moe135] [--type q4_0|q8_0] [--threads 1,2] [--runs 3]
//      [--prompt 128] [--decode 64] [--spin N] [--kernels FILE]
// Medians over runs (each run: fresh generate on one loaded model). Check `uptime` first: on a
// shared machine the numbers move with the load.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { loadModel } from '../src/model/model.js';
import { writeSyntheticLlama } from '../test/helpers/synthetic.js';
import { typeByName } from '../src/tensor/ggml-types.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const shapes = {
  m135: { dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536 },
  l1b: { dim: 2048, nLayers: 22, nHeads: 32, nKvHeads: 4, ffnDim: 5632 },
  // m135 with a mixture of 8 experts, 2 per token (a llama file with experts, as mixtral)
  moe135: { dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536, experts: { count: 8, used: 2, ffnDim: 1536 } },
} as const;
const modelName = opt('model', 'm135') as keyof typeof shapes;
const typeName = opt('type', 'q4_0');
const threadCounts = opt('threads', '1,2').split(',').map(Number);
const runs = Number(opt('runs', '3'));
const nPrompt = Number(opt('prompt', '128'));
const nDecode = Number(opt('decode', '64'));
const spin = process.argv.includes('--spin') ? Number(opt('spin', '0')) : undefined;
// --kernels FILE: a baseline kernel build to run instead (e.g. one built with asc --debug, whose
// function names show in a --cpu-prof profile)
const kernelFile = process.argv.includes('--kernels') ? opt('kernels', '') : undefined;
const kernels = kernelFile ? (() => { const b = new Uint8Array(readFileSync(kernelFile)); return { baseline: b, relaxed: b }; })() : undefined;

const dir = join(import.meta.dirname, '.cache', 'models');
mkdirSync(dir, { recursive: true });
const path = join(dir, `${modelName}-${typeName}-s1-v1.gguf`);
if (!existsSync(path)) {
  const type = typeByName(typeName)!.type;
  await writeSyntheticLlama(path, { ...shapes[modelName], vocab: 'llama2', type, seed: 1, distinctBlocks: 256 });
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const tokens = Array.from({ length: nPrompt }, (_, i) => 100 + ((i * 7919) % 20000));
for (const threads of threadCounts) {
  const backend = spin === undefined && !kernels ? undefined : await createWasmBackend({ threads, spin, kernels, relaxedSimd: kernels ? false : 'auto' });
  const model = await loadModel(path, { threads, backend });
  const pp: number[] = [], tg: number[] = [];
  for (let r = 0; r < runs + 1; r++) {
    // Every run evaluates the whole prompt: none of it may come from the prefix cache.
    (model as { engine?: () => { clearPrefixCache(): void } }).engine?.().clearPrefixCache();
    const res = await model.generate(tokens, { temperature: 0, maxTokens: nDecode, ignoreEos: true }).result;
    if (r === 0) continue; // warm-up
    pp.push(res.promptTokensPerSecond);
    tg.push(res.decodeTokensPerSecond);
  }
  console.log(`${modelName} ${typeName} threads=${threads}${spin === undefined ? '' : ` spin=${spin}`}: prompt ${median(pp).toFixed(1)} tok/s [${pp.map((x) => x.toFixed(0)).join(' ')}], decode ${median(tg).toFixed(1)} tok/s [${tg.map((x) => x.toFixed(1)).join(' ')}]`);
  await model.dispose();
  await backend?.dispose();
}
