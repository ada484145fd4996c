// WebGPU prompt speed: the matmuls of a model's shapes for a batch of tokens (the kernel the backend
// picks for that count), and a prompt through a cached random-weight model (bench/e2e-quick.ts
// writes them to bench/.cache/models/). On a software adapter (SwiftShader) the figures show the
// kernels' arithmetic and memory traffic on the CPU, not GPU speed: label them so.
// First the host time to record a dispatch (bind groups, parameters), which bounds decode on a fast GPU.
// Run: npx tsx bench/webgpu-matmul.ts [--model s15m|m135|l1b] [--type q4_0] [--tokens 1,8,64] [--prompt 64 (0: none)] [--reps 3]
//      [--split lanes|row] (mat x vec's thread layout; default: the backend's choice for the adapter)
//      [--src DIR]  (another checkout's src/, e.g. a git worktree of the commit before: a before/after)
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBlocks, rng, uniform } from '../test/helpers/random-tensors.js';
import { useSoftwareVulkanUnlessSet } from '../test/helpers/webgpu.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const src = resolve(opt('src', join(import.meta.dirname, '../src')));
const modelName = opt('model', 'm135');
const typeName = opt('type', 'q4_0');
const tokenCounts = opt('tokens', '1,8,64').split(',').map(Number);
const nPrompt = Number(opt('prompt', '64'));
const reps = Number(opt('reps', '3'));
// [rows, cols] of one layer's matmuls: q/o, k/v, gate/up, down
const SHAPES: Record<string, [number, number][]> = {
  s15m: [[288, 288], [768, 288], [288, 768], [32000, 288]],
  m135: [[576, 576], [192, 576], [1536, 576], [576, 1536]],
  l1b: [[2048, 2048], [256, 2048], [5632, 2048], [2048, 5632]],
};

useSoftwareVulkanUnlessSet();
const { createWebGPUBackend } = await import(join(src, 'backend/webgpu/webgpu-backend.ts'));
const { loadModel } = await import(join(src, 'model/model.ts'));
const { GGMLType, typeByName } = await import(join(src, 'tensor/ggml-types.ts'));
const type = typeByName(typeName)!.type;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

const split = opt('split', '');
const backend = await createWebGPUBackend(split ? { matvecSplit: split } : {});
console.log(`adapter: ${backend.adapter}; src: ${src}`);
{
  // host time to record one dispatch (parameters, bind group, pass commands), apart from the GPU's
  // work: 2000 small adds over 4 tensors recorded, then one read
  const t = [0, 1, 2, 3].map(() => backend.allocate(GGMLType.F32, [64]));
  const perDispatch: number[] = [];
  for (let r = 0; r <= reps + 2; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 2000; i++) backend.add(t[i % 4], t[(i + 1) % 4], t[(i + 2) % 4], 64);
    if (r > 0) perDispatch.push(((performance.now() - t0) / 2000) * 1000);
    await backend.read(t[0], 0, 4);
  }
  console.log(`recording: ${median(perDispatch).toFixed(1)} us of host time per dispatch [${perDispatch.map((v) => v.toFixed(1)).join(' ')}]`);
}
for (const [rows, cols] of SHAPES[modelName]!) {
  const w = backend.allocate(type, [cols, rows], 'weight');
  const weight = { ...w, rows, cols, rowBytes: w.bytes / rows };
  backend.upload(weight, randomBlocks(type, rows, cols, rng(rows + cols)));
  const line: string[] = [];
  for (const n of tokenCounts) {
    const x = backend.allocate(GGMLType.F32, [n * cols]);
    backend.upload(x, uniform(n * cols, rng(n)));
    const out = backend.allocate(GGMLType.F32, [n * rows]);
    const times: number[] = [];
    for (let r = 0; r <= reps; r++) {
      const t0 = performance.now();
      backend.matmul(out, weight, x, n);
      await backend.read(out, 0, 4); // waits for the submission
      if (r > 0) times.push(performance.now() - t0); // the first compiles the pipeline
    }
    const ms = median(times);
    line.push(`${n} tok ${ms.toFixed(1)} ms (${((rows * cols * n) / ms / 1e6).toFixed(2)} GMAC/s)`);
  }
  console.log(`matmul ${typeName} ${rows}x${cols}: ${line.join(', ')}`);
}
await backend.dispose();

const path = join(import.meta.dirname, '.cache', 'models', `${modelName}-${typeName}-s1-v1.gguf`);
if (nPrompt === 0) {
  // --prompt 0: the matmuls alone
} else if (!existsSync(path)) {
  console.log(`no ${path}: run npx tsx bench/e2e-quick.ts --model ${modelName} --type ${typeName} once to write it`);
} else {
  const model = await loadModel(path, { backend: 'webgpu', maxBatchTokens: nPrompt, contextLength: 512 });
  const tokens = Array.from({ length: nPrompt }, (_, i) => 100 + ((i * 7919) % 20000));
  const pp: number[] = [];
  for (let r = 0; r <= Math.min(reps, 2); r++) {
    model.engine().clearPrefixCache();
    const res = await model.generate(tokens, { temperature: 0, maxTokens: 1, ignoreEos: true }).result;
    if (r > 0) pp.push(res.promptTokensPerSecond);
  }
  console.log(`${modelName} ${typeName} prompt of ${nPrompt} tokens: ${median(pp).toFixed(2)} tok/s [${pp.map((v) => v.toFixed(2)).join(' ')}]`);
  await model.dispose();
}
