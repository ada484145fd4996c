// Speculative decoding by prompt lookup: what it buys on a copy-heavy task, and what a draft costs.
// Run: npx tsx bench/speculative.ts [--threads 2] [--runs 3] [--cost-model m135|l1b]
//
// 1. Acceptance (real statistics): the trained stories260K rewrites a paragraph it was given
//    (prompt = the paragraph, then its first words again). Plain greedy decoding against prompt
//    lookup with 4 and 8 draft tokens: decode tok/s, forward passes, tokens per pass, acceptance.
//    Outputs are checked equal (they must be).
// 2. Cost (random weights of a real shape): the time of one forward pass of 1 + k tokens of one
//    sequence against a single decode token, the price of verifying k drafts. With the tokens per
//    pass from (1) that gives the speed-up to expect on a model of that shape.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { createEngine } from '../src/engine/engine.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { writeSyntheticLlama } from '../test/helpers/synthetic.js';
import { GGMLType } from '../src/tensor/ggml-types.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const threads = Number(opt('threads', '2'));
const runs = Number(opt('runs', '3'));
const costModel = opt('cost-model', 'm135');
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

console.log(`# Speculative decoding (prompt lookup), ${new Date().toISOString().slice(0, 10)}`);
console.log(`CPU: ${execSync("lscpu | grep 'Model name' | sed 's/.*: *//'").toString().trim()}, ${threads} threads, medians of ${runs}\n`);

/** Tokens per forward pass and draft tokens per pass with 8 drafts. */
async function acceptance(label: string, model: Model): Promise<{ perPass: number; draftsPerPass: number }> {
  const bos = model.tokenizer.bosId!;
  const paragraph = (await model.generate('Once upon a time', { temperature: 0, maxTokens: 160, ignoreEos: true }).result).tokens;
  const prompt = [bos, ...paragraph, bos, ...paragraph.slice(0, 8)];
  const engine = await createEngine(model, { kvCacheTokens: 2048, prefixCacheEntries: 0 });
  console.log(`## ${label}: rewrite a ${paragraph.length}-token paragraph, 150 tokens greedy\n`);
  console.log('| drafts | decode tok/s | forward passes | tokens / pass | acceptance | same output |');
  console.log('|---|---|---|---|---|---|');
  let reference: number[] | undefined;
  let at8 = { perPass: 1, draftsPerPass: 0 };
  for (const k of [0, 4, 8]) {
    const rates: number[] = [];
    let steps = 0, drafted = 0, accepted = 0, tokens: number[] = [];
    for (let r = 0; r <= runs; r++) {
      const m0 = engine.metrics();
      const res = await engine.generate({ prompt, maxTokens: 150, temperature: 0, ignoreEos: true, ...(k ? { speculative: { method: 'prompt-lookup', draftTokens: k } } : {}) }).result;
      const m1 = engine.metrics();
      if (r === 0) continue; // warm-up
      rates.push(res.timings.decodeTokensPerSecond);
      steps = m1.steps - m0.steps - 1; // the prompt's pass aside
      drafted = m1.draftedTokens - m0.draftedTokens;
      accepted = Math.round(m1.draftAcceptanceRate * m1.draftedTokens - m0.draftAcceptanceRate * m0.draftedTokens);
      tokens = res.tokens;
    }
    reference ??= tokens;
    const perPass = (tokens.length - 1) / steps;
    if (k === 8) at8 = { perPass, draftsPerPass: drafted / steps };
    console.log(`| ${k || 'none'} | ${median(rates).toFixed(1)} | ${steps} | ${perPass.toFixed(2)} | ${k ? ((100 * accepted) / drafted).toFixed(0) + '%' : '-'} | ${tokens.join() === reference.join() ? 'yes' : 'NO'} |`);
  }
  await engine.dispose();
  console.log();
  return at8;
}

const bundled = await loadModel(await bundledModelPath(), { threads });
const rewrite = await acceptance('stories260K F32 (bundled)', bundled);
await bundled.dispose();
const q4 = '../shared/models/stories260K-q4_0.gguf';
if (existsSync(q4)) {
  const m = await loadModel(q4, { threads });
  await acceptance('stories260K Q4_0', m);
  await m.dispose();
}

// --- cost of verifying k drafts on a real shape ---
const shapes = {
  m135: { dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536 },
  l1b: { dim: 2048, nLayers: 22, nHeads: 32, nKvHeads: 4, ffnDim: 5632 },
} as const;
const dir = join(import.meta.dirname, '.cache', 'models');
mkdirSync(dir, { recursive: true });
const path = join(dir, `${costModel}-q4_0-s1-v1.gguf`);
if (!existsSync(path)) await writeSyntheticLlama(path, { ...shapes[costModel as keyof typeof shapes], vocab: 'llama2', type: GGMLType.Q4_0, seed: 1, distinctBlocks: 256 });
const model = await loadModel(path, { threads });
const engine = await createEngine(model, { kvCacheTokens: 1024, prefixCacheEntries: 0 });
const graph = engine.graph, kv = graph.kv;
const seqId = 1 << 20;
kv.createSequence(seqId);
await graph.forward(Array.from({ length: 256 }, (_, i) => ({ token: 100 + i, seqId, logits: i === 255 })));
console.log(`## Cost: one forward pass of 1 + k tokens after 256 cached (${costModel} Q4_0, random weights)\n`);
console.log('| k | ms / pass | × one decode token |');
console.log('|---|---|---|');
let single = 0;
const ratio = new Map<number, number>();
for (const k of [0, 1, 2, 4, 8]) {
  const times: number[] = [];
  for (let r = 0; r < runs + 2; r++) {
    const t0 = performance.now();
    await graph.forward(Array.from({ length: k + 1 }, (_, i) => ({ token: 500 + i, seqId, logits: true })));
    const ms = performance.now() - t0;
    kv.truncate(seqId, 256);
    if (r >= 1) times.push(ms);
  }
  const ms = median(times);
  if (k === 0) single = ms;
  ratio.set(k, ms / single);
  console.log(`| ${k} | ${ms.toFixed(1)} | ${(ms / single).toFixed(2)} |`);
}
// The pass that verifies the rewrite's average draft costs about the measured k at or above it.
const k = [1, 2, 4, 8].find((x) => x >= rewrite.draftsPerPass) ?? 8;
console.log(`\nProjection: stories260K's rewrite made ${rewrite.perPass.toFixed(2)} tokens per pass with ${rewrite.draftsPerPass.toFixed(1)} drafts per pass; ` +
  `on this shape a pass with ${k} drafts costs ${ratio.get(k)!.toFixed(2)}× a decode token, so decode would run about ${(rewrite.perPass / ratio.get(k)!).toFixed(2)}× as fast.`);
kv.removeSequence(seqId);
await engine.dispose();
await model.dispose();
