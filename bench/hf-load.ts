// Load time of the same model as a GGUF file and as a Hugging Face directory (config.json +
// safetensors + tokenizer.json), on the WASM backend: the directory's llama q/k rows are permuted on
// the way in, and its tokenizer comes from tokenizer.json. Random weights, m135 shape, F16.
// Run: npx tsx bench/hf-load.ts [--runs 5]
import { existsSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../src/model/model.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { writeHFDirectory } from '../test/helpers/hf-model-dir.js';
import { writeSyntheticLlama } from '../test/helpers/synthetic.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 5);
const dir = join(import.meta.dirname, '.cache', 'models');
mkdirSync(dir, { recursive: true });
const gguf = join(dir, 'm135-f16-hf-s1.gguf');
const hf = join(dir, 'm135-f16-hf-s1');
if (!existsSync(gguf)) await writeSyntheticLlama(gguf, { dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536, vocab: 'llama2', type: GGMLType.F16, seed: 1 });
if (!existsSync(join(hf, 'config.json'))) await writeHFDirectory(gguf, hf, { shards: 2 });

const times: Record<string, number[]> = { gguf: [], hf: [] };
for (let r = 0; r < runs; r++) {
  for (const [name, input] of [['gguf', gguf], ['hf', hf]] as const) {
    const t0 = performance.now();
    const model = await loadModel(input, { threads: 2, backend: 'wasm' });
    times[name]!.push(performance.now() - t0);
    await model.dispose();
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
console.log(`CPU ${cpus()[0]?.model}, ${runs} alternated runs, medians: GGUF ${median(times.gguf!).toFixed(0)} ms, Hugging Face directory ${median(times.hf!).toFixed(0)} ms (${(median(times.hf!) / median(times.gguf!)).toFixed(2)}x)`);
