// Quick end-to-end speed check: prompt (one batch) and decode tok/s on a cached random-weight model.
// Run: npx tsx bench/e2e-quick.ts [--model m135|l1b|moe135] [--type q4_0|q8_0] [--threads 1,2] [--runs 3]
//      [--prompt 128] [--decode 64] [--spin N] [--kernels FILE] [--kv-type f16,q8_0,q4_0]
// Medians over runs (each run: fresh generate on one loaded model). Check `uptime` first: on a
// shared machine the numbers move with the load. --kv-type compares KV cache types (one model
// loaded per type, their runs interleaved so load drift hits each alike) and prints each pool's bytes.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isKVCacheType } from '../src/backend/backend.js';
import { createWasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { KVCache } from '../src/kv/kv-cache.js';
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
const kvTypes = opt('kv-type', 'f16').split(',').map((t) => {
  if (!isKVCacheType(t)) throw new Error(`--kv-type takes f32, f16, q8_0, q4_0 (comma-separated), got ${t}`);
  return t;
});
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
  const backends = await Promise.all(kvTypes.map(() => (spin === undefined && !kernels ? undefined : createWasmBackend({ threads, spin, kernels, relaxedSimd: kernels ? false : 'auto' }))));
  const models = await Promise.all(kvTypes.map((kvCacheType, i) => loadModel(path, { threads, backend: backends[i], kvCacheType })));
  const pp = kvTypes.map((): number[] => []), tg = kvTypes.map((): number[] => []);
  for (let r = 0; r < runs + 1; r++) {
    for (const [i, model] of models.entries()) {
      // Every run evaluates the whole prompt: none of it may come from the prefix cache.
      model.engine().clearPrefixCache();
      const res = await model.generate(tokens, { temperature: 0, maxTokens: nDecode, ignoreEos: true }).result;
      if (r === 0) continue; // warm-up
      pp[i]!.push(res.promptTokensPerSecond);
      tg[i]!.push(res.decodeTokensPerSecond);
    }
  }
  for (const [i, model] of models.entries()) {
    const kv = model.engine().graph.kv.options;
    const kvBytes = KVCache.bytesNeeded(kv);
    const kvLabel = kvTypes.length > 1 || kvTypes[0] !== 'f16' ? ` kv=${kvTypes[i]} (${(kvBytes / 2 ** 20).toFixed(2)} MiB for ${kv.nBlocks * kv.blockSize} tokens, ${(kvBytes / (kv.nBlocks * kv.blockSize)).toFixed(0)} B/token)` : '';
    console.log(`${modelName} ${typeName} threads=${threads}${spin === undefined ? '' : ` spin=${spin}`}${kvLabel}: prompt ${median(pp[i]!).toFixed(1)} tok/s [${pp[i]!.map((x) => x.toFixed(0)).join(' ')}], decode ${median(tg[i]!).toFixed(1)} tok/s [${tg[i]!.map((x) => x.toFixed(1)).join(' ')}]`);
    await model.dispose();
  }
  for (const b of backends) await b?.dispose();
}
