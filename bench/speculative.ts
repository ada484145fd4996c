// Speculative decoding by prompt lookup and with a draft model: what it buys on a copy-heavy task,
// and what a draft costs.
// Run: npx tsx bench/speculative.ts [--threads 2] [--runs 3] [--cost-model m135|l1b] [--only lookup|draft]
//
// 1. Cost (random weights of a real shape): the time of one forward pass of 1 + k tokens of one
//    sequence against a single decode token, the price of verifying k drafts.
// 2. Acceptance (real statistics): the trained stories260K rewrites a paragraph it was given
//    (prompt = the paragraph, then its first words again). Plain greedy decoding against prompt
//    lookup with 4 and 8 draft tokens fixed, adaptive lengths (up to 8) on this engine's own pass
//    costs, and adaptive lengths chosen as if every pass cost what (1) measured: decode tok/s, forward
//    passes, tokens per pass, acceptance, and each run's passes timed on (1)'s costs, the speed-up
//    to expect on a model of that shape. Outputs are checked equal (they must be).
// 3. Draft model (real statistics): the same rewrite with stories260K Q4_0 drafting for the F32
//    model, and the F32 file drafting for itself (the upper bound on acceptance), k = 2, 4, 8
//    draft tokens, greedy and temperature 0.8: decode tok/s, forward passes of the target and of
//    the draft, tokens per target pass, acceptance.
// 4. Draft-model cost (random weights, the Llama 2 vocabulary both): s15m Q4_0 drafting for m135
//    Q4_0. Acceptance between random models means nothing; what is measured is the price: a draft
//    decode pass against a target pass, plain decoding against decoding with drafts that are all
//    rejected, and the projection with (3)'s tokens per pass.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { createEngine } from '../src/engine/engine.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { writeSyntheticLlama } from '../test/helpers/synthetic.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import type { SpeculativeOptions } from '../src/generation/speculative.js';
import { PassCost } from '../src/generation/draft-length.js';
import type { BatchToken } from '../src/model/graph.js';
import { ensureModel, MODELS } from './src/models.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const threads = Number(opt('threads', '2'));
const runs = Number(opt('runs', '3'));
const costModel = opt('cost-model', 'm135');
const only = opt('only', '');
const q4Path = '../shared/models/stories260K-q4_0.gguf';
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

console.log(`# Speculative decoding (${only === 'draft' ? 'draft model' : only === 'lookup' ? 'prompt lookup' : 'prompt lookup, draft model'}), ${new Date().toISOString().slice(0, 10)}`);
console.log(`CPU: ${execSync("lscpu | grep 'Model name' | sed 's/.*: *//'").toString().trim()}, ${threads} threads, medians of ${runs}\n`);

/** ms of one forward pass of n tokens on the cost model, interpolated between the measured sizes. */
type CostTable = [tokens: number, ms: number][];
function passMs(table: CostTable, n: number): number {
  let i = 1;
  while (i < table.length - 1 && table[i]![0] < n) i++;
  const [n0, t0] = table[i - 1]!, [n1, t1] = table[i]!;
  return t0 + ((t1 - t0) * (n - n0)) / (n1 - n0);
}

/** A PassCost that has seen only the cost model's passes and learns nothing more (the scheduler's own, replaced). */
function frozenCost(table: CostTable): PassCost {
  const c = new PassCost();
  for (let r = 0; r < 10; r++) for (const [n, ms] of table) c.observe(n, ms);
  c.observe = () => {};
  return c;
}

/**
 * The rewrite with prompt lookup: plain, fixed draft lengths, adaptive lengths (this engine's own
 * pass costs), and adaptive lengths choosing as if each pass cost what it costs on the cost model.
 * Each run's forward-pass sizes give its time on the cost model: the projected speed-up there.
 */
async function acceptance(label: string, model: Model, costs: CostTable): Promise<void> {
  const prompt = await rewritePrompt(model);
  const engine = await createEngine(model, { kvCacheTokens: 2048, prefixCacheEntries: 0 });
  const scheduler = (engine as unknown as { scheduler: { passCost: PassCost } }).scheduler;
  const ownCost = scheduler.passCost;
  const sizes: number[] = [];
  const graph = engine.graph, forward = graph.forward.bind(graph);
  graph.forward = ((batch: readonly BatchToken[]) => (sizes.push(batch.length), forward(batch))) as typeof graph.forward;
  console.log(`## ${label}: rewrite a ${prompt.length - 10}-token paragraph, 150 tokens greedy\n`);
  console.log(`| drafts | decode tok/s | forward passes | tokens / pass | acceptance | same output | projected × on ${costModel} Q4_0 |`);
  console.log('|---|---|---|---|---|---|---|');
  let reference: number[] | undefined;
  const configs: [string, SpeculativeOptions | undefined, PassCost][] = [
    ['none', undefined, ownCost],
    ['4, fixed', { method: 'prompt-lookup', draftTokens: 4, adaptive: false }, ownCost],
    ['8, fixed', { method: 'prompt-lookup', draftTokens: 8, adaptive: false }, ownCost],
    ['up to 8, adaptive', { method: 'prompt-lookup', draftTokens: 8 }, ownCost],
    [`up to 8, adaptive to ${costModel}'s costs`, { method: 'prompt-lookup', draftTokens: 8 }, frozenCost(costs)],
  ];
  for (const [name, speculative, cost] of configs) {
    scheduler.passCost = cost;
    const rates: number[] = [];
    let steps = 0, drafted = 0, accepted = 0, tokens: number[] = [], projected = 0;
    for (let r = 0; r <= runs; r++) {
      const m0 = engine.metrics();
      sizes.length = 0;
      const res = await engine.generate({ prompt, maxTokens: 150, temperature: 0, ignoreEos: true, speculative }).result;
      const m1 = engine.metrics();
      if (r === 0) continue; // warm-up
      rates.push(res.timings.decodeTokensPerSecond);
      steps = m1.steps - m0.steps - 1; // the prompt's pass aside
      drafted = m1.draftedTokens - m0.draftedTokens;
      accepted = Math.round(m1.draftAcceptanceRate * m1.draftedTokens - m0.draftAcceptanceRate * m0.draftedTokens);
      tokens = res.tokens;
      // Decode passes only (the prompt's is the same for all), against one decode pass per token.
      const decodeMs = sizes.slice(1).reduce((t, n) => t + passMs(costs, n), 0);
      projected = ((tokens.length - 1) * passMs(costs, 1)) / decodeMs;
    }
    reference ??= tokens;
    const perPass = (tokens.length - 1) / steps;
    console.log(`| ${name} | ${median(rates).toFixed(1)} | ${steps} | ${perPass.toFixed(2)} | ${drafted ? ((100 * accepted) / drafted).toFixed(0) + '%' : '-'} | ${tokens.join() === reference.join() ? 'yes' : 'NO'} | ${projected.toFixed(2)} |`);
  }
  scheduler.passCost = ownCost;
  await engine.dispose();
  console.log();
}

/** The rewrite prompt: a greedy paragraph of the model's, then its first words again. */
async function rewritePrompt(model: Model): Promise<number[]> {
  const bos = model.tokenizer.bosId!;
  const paragraph = (await model.generate('Once upon a time', { temperature: 0, maxTokens: 160, ignoreEos: true }).result).tokens;
  return [bos, ...paragraph, bos, ...paragraph.slice(0, 8)];
}

async function lookupSections(): Promise<void> {
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
  const costs: CostTable = [];
  for (const k of [0, 1, 2, 3, 4, 6, 8]) {
    const times: number[] = [];
    // Medians of at least 11: the projections below lean on the differences between these.
    for (let r = 0; r < Math.max(runs, 10) + 2; r++) {
      const t0 = performance.now();
      await graph.forward(Array.from({ length: k + 1 }, (_, i) => ({ token: 500 + i, seqId, logits: true })));
      const ms = performance.now() - t0;
      kv.truncate(seqId, 256);
      if (r >= 1) times.push(ms);
    }
    costs.push([k + 1, median(times)]);
    console.log(`| ${k} | ${median(times).toFixed(1)} | ${(median(times) / costs[0]![1]).toFixed(2)} |`);
  }
  console.log();
  kv.removeSequence(seqId);
  await engine.dispose();
  await model.dispose();

  // --- acceptance (real statistics), and what it makes of the cost above ---
  const bundled = await loadModel(await bundledModelPath(), { threads });
  await acceptance('stories260K F32 (bundled)', bundled, costs);
  await bundled.dispose();
  if (existsSync(q4Path)) {
    const m = await loadModel(q4Path, { threads });
    await acceptance('stories260K Q4_0', m, costs);
    await m.dispose();
  }
}

interface DraftRow {
  k: number;
  /** Tokens per target forward pass (the prompt's aside), greedy. */
  perPass: number;
}

/** (3): the rewrite with a draft model; returns greedy tokens per pass per k of the first draft. */
async function draftModelSection(target: Model, drafts: [string, Model][]): Promise<DraftRow[]> {
  const prompt = await rewritePrompt(target);
  const engine = await createEngine(target, { kvCacheTokens: 2048, prefixCacheEntries: 0 });
  // Draft forward passes, counted on each draft's graph (they run outside any engine step).
  const draftPasses = new Map<Model, number>();
  for (const [, d] of drafts) {
    const g = d.engine().graph, forward = g.forward.bind(g);
    draftPasses.set(d, 0);
    g.forward = ((batch: readonly BatchToken[]) => (draftPasses.set(d, draftPasses.get(d)! + 1), forward(batch))) as typeof g.forward;
  }
  console.log(`## Draft model: rewrite a ${prompt.length - 10}-token paragraph, 150 tokens (stories260K F32 target)\n`);
  console.log('| draft | k | sampling | decode tok/s | target passes | draft passes | tokens / target pass | acceptance | same output |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  const rows: DraftRow[] = [];
  for (const temperature of [0, 0.8]) {
    const label = temperature === 0 ? 'greedy' : `T ${temperature}`;
    let reference: string | undefined;
    const configs: [string, Model | undefined, number][] = [['none', undefined, 0], ...drafts.flatMap(([name, d]) => [2, 4, 8].map((k) => [name, d, k] as [string, Model, number]))];
    for (const [name, draft, k] of configs) {
      const rates: number[] = [];
      let steps = 0, dPasses = 0, drafted = 0, accepted = 0, tokens = 0, same = true;
      for (let r = 0; r <= runs; r++) {
        const m0 = engine.metrics(), d0 = draft ? draftPasses.get(draft)! : 0;
        const speculative: SpeculativeOptions | undefined = draft ? { method: 'draft-model', draft, draftTokens: k, adaptive: false } : undefined;
        // Sampled runs: seed r, the same for every configuration (the outputs differ: speculative sampling keeps the distribution, not the draws).
        const res = await engine.generate({ prompt, maxTokens: 150, temperature, seed: r, ignoreEos: true, speculative }).result;
        const m1 = engine.metrics();
        if (r === 0) continue; // warm-up
        rates.push(res.timings.decodeTokensPerSecond);
        steps += m1.steps - m0.steps - 1; // the prompt's pass aside
        dPasses += draft ? draftPasses.get(draft)! - d0 : 0;
        drafted += m1.draftedTokens - m0.draftedTokens;
        accepted += Math.round(m1.draftAcceptanceRate * m1.draftedTokens - m0.draftAcceptanceRate * m0.draftedTokens);
        tokens += res.tokens.length - 1;
        if (temperature === 0) {
          reference ??= res.tokens.join();
          same &&= res.tokens.join() === reference;
        }
      }
      const perPass = tokens / steps;
      if (temperature === 0 && draft === drafts[0]?.[1]) rows.push({ k, perPass });
      console.log(`| ${name} | ${k || '-'} | ${label} | ${median(rates).toFixed(1)} | ${(steps / runs).toFixed(0)} | ${(dPasses / runs).toFixed(0)} | ${perPass.toFixed(2)} | ` +
        `${draft ? ((100 * accepted) / drafted).toFixed(0) + '%' : '-'} | ${temperature === 0 ? (same ? 'yes' : 'NO') : 'n/a'} |`);
    }
  }
  await engine.dispose();
  console.log();
  return rows;
}

/** (4): the price of drafting with s15m for m135 (random weights, one vocabulary). */
async function draftModelCost(rows: DraftRow[]): Promise<void> {
  const note = (s: string) => console.error(s);
  const shape = (name: string) => MODELS.find((m) => m.name === name)!;
  const target = await loadModel(await ensureModel(shape('m135'), 'Q4_0', note), { threads });
  const draft = await loadModel(await ensureModel(shape('s15m'), 'Q4_0', note), { backend: target.backend });
  const passMs = async (m: Model, k: number) => {
    const graph = m.engine().graph, kv = graph.kv, seqId = 1 << 20;
    kv.createSequence(seqId);
    await graph.forward(Array.from({ length: 256 }, (_, i) => ({ token: 100 + i, seqId, logits: i === 255 })));
    const times: number[] = [];
    for (let r = 0; r < runs + 2; r++) {
      const t0 = performance.now();
      await graph.forward(Array.from({ length: k + 1 }, (_, i) => ({ token: 500 + i, seqId, logits: true })));
      if (r >= 1) times.push(performance.now() - t0);
      kv.truncate(seqId, 256);
    }
    kv.removeSequence(seqId);
    return median(times);
  };
  const draftMs = await passMs(draft, 0);
  const verify = new Map<number, number>();
  for (const k of [0, 2, 4, 8]) verify.set(k, await passMs(target, k));
  console.log(`## Draft-model cost: s15m Q4_0 drafting for m135 Q4_0 (random weights, Llama 2 vocabulary), 256 tokens cached\n`);
  console.log(`One s15m decode pass ${draftMs.toFixed(2)} ms; one m135 decode pass ${verify.get(0)!.toFixed(1)} ms (${(verify.get(0)! / draftMs).toFixed(1)}×).\n`);
  // Decoding with drafts that are all rejected (random models disagree): the whole overhead, measured.
  const prompt = Array.from({ length: 64 }, (_, i) => 1000 + i);
  const engine = target.engine();
  const tps = async (speculative?: SpeculativeOptions) => {
    const rates: number[] = [];
    for (let r = 0; r <= runs; r++) {
      const res = await engine.generate({ prompt, maxTokens: 64, temperature: 0, ignoreEos: true, speculative }).result;
      if (r > 0) rates.push(res.timings.decodeTokensPerSecond);
    }
    return median(rates);
  };
  const plain = await tps();
  console.log('| k | target pass of 1 + k (ms) | step: k draft passes + verify (ms) | decode tok/s, drafts all rejected | projected × with stories260K Q4_0\'s tokens / pass |');
  console.log('|---|---|---|---|---|');
  console.log(`| - | ${verify.get(0)!.toFixed(1)} | ${verify.get(0)!.toFixed(1)} | ${plain.toFixed(1)} (plain) | 1.00 |`);
  for (const k of [2, 4, 8]) {
    const step = k * draftMs + verify.get(k)!;
    const m0 = engine.metrics();
    const rejected = await tps({ method: 'draft-model', draft, draftTokens: k, adaptive: false });
    const m1 = engine.metrics();
    const acc = (m1.draftAcceptanceRate * m1.draftedTokens - m0.draftAcceptanceRate * m0.draftedTokens) / (m1.draftedTokens - m0.draftedTokens);
    const perPass = rows.find((r) => r.k === k)?.perPass;
    console.log(`| ${k} | ${verify.get(k)!.toFixed(1)} | ${step.toFixed(1)} | ${rejected.toFixed(1)} (acceptance ${(100 * acc).toFixed(0)}%) | ${perPass ? ((perPass * verify.get(0)!) / step).toFixed(2) + ` (${perPass.toFixed(2)} tokens / pass)` : '-'} |`);
  }
  // Adaptive lengths stop drafting once the drafts are seen rejected: what that leaves of the loss.
  const m0 = engine.metrics();
  const adaptive = await tps({ method: 'draft-model', draft, draftTokens: 8 });
  console.log(`| up to 8, adaptive | - | - | ${adaptive.toFixed(1)} (${engine.metrics().draftedTokens - m0.draftedTokens} draft tokens in ${runs + 1} runs of 64) | - |`);
  console.log();
  await draft.dispose();
  await target.dispose();
}

if (only !== 'draft') await lookupSections();
if (only !== 'lookup') {
  const target = await loadModel(await bundledModelPath(), { threads });
  const drafts: [string, Model][] = [];
  // On the target's backend, as the CLI loads a draft: the same kind and threads, one worker pool.
  if (existsSync(q4Path)) drafts.push(['stories260K Q4_0', await loadModel(q4Path, { backend: target.backend })]);
  drafts.push(['stories260K F32 (itself)', await loadModel(await bundledModelPath(), { backend: target.backend })]);
  const rows = await draftModelSection(target, drafts);
  for (const [, d] of drafts) await d.dispose();
  await target.dispose();
  await draftModelCost(rows);
}
