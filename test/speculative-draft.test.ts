// Speculative decoding with a draft model (src/generation/draft-model.ts): the target is the
// bundled stories260K (F32); drafts are its Q4_0 and Q8_0 files from ../shared, the model itself,
// and a random-weight model with its vocabulary (almost every draft rejected).
// - Greedy, and seeded sampling with argmax drafts: tokens and log-probs bit-identical to plain
//   decoding (the draft's KV rolls back to what the target kept, alone, batched, preempted).
// - Sampled drafts (speculative sampling): the generated tokens' distribution is the target's,
//   by a chi-square test against the exact distribution computed from the target's logits; the
//   same test rejects the draft's own distribution, so it would catch verification that let the
//   draft's choices through.
// - Typed errors: another vocabulary, a disposed draft, bad options.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import type { EngineRequest, EngineResult } from '../src/engine/types.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { Sampler, type SamplingOptions } from '../src/sampling/sampler.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { writeSyntheticLlama } from './helpers/synthetic.js';
import { swaModels } from './helpers/swa-model.js';

const SHARED = '../shared/models';
const hasShared = existsSync(`${SHARED}/stories260K-q4_0.gguf`) && existsSync(`${SHARED}/stories260K-q8_0.gguf`);
if (!hasShared) console.warn('speculative-draft: ../shared absent, quantized drafts skipped (the model drafts for itself and a random draft still run)');

let target: Model;
let q4: Model | undefined;
let q8: Model | undefined;
/** Random weights, the target's vocabulary: its drafts are almost never the target's choices. */
let random: Model;
let dir: string;

beforeAll(async () => {
  target = await loadModel(await bundledModelPath(), { threads: 2 });
  if (hasShared) {
    // Room in the drafts' own engines for the drafts of 64 sequences at once.
    q4 = await loadModel(`${SHARED}/stories260K-q4_0.gguf`, { threads: 2, kvCacheTokens: 4096 });
    q8 = await loadModel(`${SHARED}/stories260K-q8_0.gguf`, { threads: 2, kvCacheTokens: 4096 });
  }
  dir = await mkdtemp(join(tmpdir(), 'wasmforge-draft-'));
  const path = join(dir, 'random.gguf');
  await writeSyntheticLlama(path, { dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 4, ffnDim: 128, vocab: { metadataFrom: target.file }, type: GGMLType.F32, seed: 5, std: 0.3, contextLength: 512 });
  random = await loadModel(path, { threads: 2, kvCacheTokens: 4096 });
});
afterAll(async () => {
  for (const m of [target, q4, q8, random]) await m?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function expectSame(a: EngineResult, b: EngineResult): void {
  expect(a.tokens).toEqual(b.tokens);
  expect(a.text).toBe(b.text);
  expect(a.stopReason).toBe(b.stopReason);
  expect(a.completions.map((c) => c.logprobs)).toEqual(b.completions.map((c) => c.logprobs)); // bit for bit
}

/** Draft tokens and the share kept, between two metrics snapshots. */
function drafted(engine: Engine, before: { draftedTokens: number; draftAcceptanceRate: number }) {
  const m = engine.metrics();
  const n = m.draftedTokens - before.draftedTokens;
  return { drafted: n, acceptance: n > 0 ? (m.draftAcceptanceRate * m.draftedTokens - before.draftAcceptanceRate * before.draftedTokens) / n : 0 };
}

/** Every KV block is back in the draft's pool once its prefix cache is emptied. */
function expectDraftKVFree(draft: Model): void {
  draft.engine().clearPrefixCache();
  expect(draft.engine().metrics().kvBlocksUsed).toBe(0);
}

describe('draft-model speculative decoding: exact where plain decoding is deterministic', () => {
  it('greedy: the same tokens and log-probs as plain decoding, in fewer forward passes (Q4_0, Q8_0, the model itself)', async () => {
    const engine = await createEngine(target, { kvCacheTokens: 2048, prefixCacheEntries: 0 });
    try {
      const request: EngineRequest = { prompt: 'Once upon a time', maxTokens: 120, temperature: 0, ignoreEos: true, logprobs: true };
      const plain = await engine.generate(request).result;
      const rates: Record<string, number> = {};
      for (const [name, draft] of [['q4_0', q4], ['q8_0', q8], ['self', target]] as const) {
        if (!draft) continue;
        const m0 = engine.metrics();
        const fast = await engine.generate({ ...request, speculative: { method: 'draft-model', draft, draftTokens: 4, adaptive: false } }).result;
        const steps = engine.metrics().steps - m0.steps;
        expectSame(fast, plain);
        const { drafted: n, acceptance } = drafted(engine, m0);
        rates[name] = acceptance;
        console.log(`greedy, ${name} draft: acceptance ${acceptance.toFixed(3)}, ${steps} steps`);
        expect(n).toBeGreaterThan(0);
        // Each step keeps 1 + its accepted drafts: measured 24-32 steps for 120 tokens.
        expect(steps).toBeLessThan(0.5 * 120);
        expectDraftKVFree(draft);
      }
      // Measured: q4_0 0.70, q8_0 0.96, self 1 (its drafts are its own argmax).
      if (q4) expect(rates.q4_0).toBeGreaterThan(0.5);
      if (q8) expect(rates.q8_0).toBeGreaterThan(0.85);
      expect(rates.self).toBe(1);
    } finally {
      await engine.dispose();
    }
  });

  it('Model.generate with the model as its own draft runs the drafts inside its own engine step; the same tokens', async () => {
    const options = { temperature: 0, maxTokens: 40, ignoreEos: true } as const;
    const plain = await target.generate('Tom and', options).result;
    const fast = await target.generate('Tom and', { ...options, speculative: { method: 'draft-model', draft: target, draftTokens: 6, adaptive: false } }).result;
    expect(fast.tokens).toEqual(plain.tokens);
    expectDraftKVFree(target);
  });

  it('seeded sampling with argmax drafts, penalties, n = 2, many requests at once under a small KV pool: each as plain decoding', async () => {
    const draft = q4 ?? random;
    const engine = await createEngine(target, { kvCacheTokens: 192, blockSize: 4, maxBatchTokens: 64, prefixCacheEntries: 4 });
    try {
      const requests: EngineRequest[] = Array.from({ length: 6 }, (_, i) => ({
        prompt: ['Once upon a time', 'Tom and', 'One day, a', 'She saw a big'][i % 4], maxTokens: 30 + 3 * i, ignoreEos: true, logprobs: true,
        temperature: 0.5 + 0.2 * (i % 3), topK: 20, seed: 40 + i, repeatPenalty: i % 2 ? 1.1 : undefined, n: i === 1 ? 2 : 1,
      }));
      const plain: EngineResult[] = [];
      for (const r of requests) plain.push(await engine.generate(r).result);
      const m0 = engine.metrics();
      const fast = await Promise.all(requests.map((r, i) => engine.generate(i === 4 ? r : { ...r, speculative: { method: 'draft-model', draft, draftTokens: 5, adaptive: false, draftSampling: 'argmax' } }).result));
      fast.forEach((r, i) => expectSame(r, plain[i]));
      expect(engine.metrics().preemptions - m0.preemptions).toBeGreaterThan(0);
      expect(drafted(engine, m0).acceptance).toBeGreaterThan(0);
      engine.clearPrefixCache();
      expect(engine.metrics().kvBlocksUsed).toBe(0);
      expectDraftKVFree(draft);
    } finally {
      await engine.dispose();
    }
  });
});

/** The chi-square quantile with `df` degrees of freedom at upper tail `alpha` = 1e-3 (Wilson-Hilferty; within 1% for df >= 3). */
function chiSquareCritical(df: number): number {
  const z = 3.0902; // the standard normal's 1 - 1e-3 quantile
  return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
}

/**
 * Pearson's chi-square of observed counts against exact probabilities over the same keys (every
 * outcome the distribution allows; an outcome outside it is an impossibility, reported as Infinity).
 * Cells expected below 5 are pooled so the chi-square approximation holds.
 */
function chiSquare(counts: Map<string, number>, probs: Map<string, number>, n: number): { stat: number; df: number; critical: number; impossible: number } {
  const impossible = [...counts].filter(([k]) => !probs.has(k)).reduce((a, [, c]) => a + c, 0);
  if (impossible > 0) return { stat: Infinity, df: 1, critical: chiSquareCritical(1), impossible };
  let stat = 0, cells = 0, poolE = 0, poolO = 0;
  for (const [k, p] of probs) {
    const e = n * p, o = counts.get(k) ?? 0;
    if (e < 5) {
      poolE += e;
      poolO += o;
      continue;
    }
    stat += (o - e) ** 2 / e;
    cells++;
  }
  if (poolE > 0) {
    stat += (poolO - poolE) ** 2 / poolE;
    cells++;
  }
  const df = cells - 1;
  return { stat, df, critical: chiSquareCritical(df), impossible: 0 };
}

describe('draft-model speculative decoding under a grammar', () => {
  it('the draft drafts without the grammar; the target verifies under it: greedy output as plain, sampled output in the language', async () => {
    const draft = q4 ?? random;
    // Words the story model likes, in a fixed shape: drafts the grammar forbids are simply rejected.
    const grammar = 'root ::= (" the" | " a" | " big" | " little" | " dog" | " cat" | " girl" | " boy" | " ran" | " saw")+ "."';
    const request: EngineRequest = { prompt: 'Once upon a time', maxTokens: 30, temperature: 0, grammar, logprobs: true };
    const engine = await createEngine(target, { prefixCacheEntries: 0 });
    try {
      const plain = await engine.generate(request).result;
      const m0 = engine.metrics();
      expectSame(await engine.generate({ ...request, speculative: { method: 'draft-model', draft, draftTokens: 4, adaptive: false } }).result, plain);
      expect(drafted(engine, m0).drafted).toBeGreaterThan(0);
      for (let seed = 0; seed < 5; seed++) {
        const r = await engine.generate({ ...request, temperature: 1, seed, speculative: { method: 'draft-model', draft, draftTokens: 4, adaptive: false } }).result;
        expect(r.text).toMatch(/^( the| a| big| little| dog| cat| girl| boy| ran| saw)+\.?$/);
      }
      expectDraftKVFree(draft);
    } finally {
      await engine.dispose();
    }
  });
});

describe('draft-model speculative decoding: sampled drafts keep the target distribution', () => {
  // Temperature 1 over the 6 most likely tokens: p and q as the sampler makes them. "Tom and" has
  // no dominant continuation (the target's top 6 hold 0.35 .. 0.05; Q4_0's distribution is 0.21
  // from it in total variation), so the tests see both acceptance and rejection often.
  const SAMPLING: SamplingOptions = { temperature: 1, topK: 6, topP: 1, minP: 0 };
  const PROMPT = 'Tom and';
  const RUNS = 2000;

  /** The target's exact distribution of its first two generated tokens (as keys "t1,t2"). */
  async function exactPairs(): Promise<Map<string, number>> {
    const prompt = target.tokenizer.encode(PROMPT, { addSpecial: true }); // as generate() encodes it
    const sampler = new Sampler(SAMPLING);
    const first = sampler.distribution((await target.evaluate(prompt)).at(-1)!, prompt);
    const out = new Map<string, number>();
    for (let i = 0; i < first.ids.length; i++) {
      const history = [...prompt, first.ids[i]];
      const second = sampler.distribution((await target.evaluate(history)).at(-1)!, history);
      for (let j = 0; j < second.ids.length; j++) out.set(`${first.ids[i]},${second.ids[j]}`, first.probs[i] * second.probs[j]);
    }
    return out;
  }

  /** RUNS seeded generations of 3 tokens (draft 2, so the second token is verified too), 64 at a time; counts of their first two tokens. */
  async function samplePairs(engine: Engine, extra: Partial<EngineRequest>): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (let at = 0; at < RUNS; at += 64) {
      const results = await Promise.all(Array.from({ length: Math.min(64, RUNS - at) }, (_, i) => engine.generate({ prompt: PROMPT, maxTokens: 3, ignoreEos: true, ...SAMPLING, seed: 1000 + at + i, ...extra }).result));
      for (const r of results) {
        const key = r.tokens.slice(0, 2).join();
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    return counts;
  }

  it('the first two tokens of 2000 seeded runs match the exact distribution (chi-square, alpha 1e-3), with a Q4_0 and a random draft', async () => {
    const engine = await createEngine(target, { kvCacheTokens: 4096, prefixCacheEntries: 0 });
    const exact = await exactPairs();
    try {
      for (const [name, draft] of [['q4_0', q4], ['random', random]] as const) {
        if (!draft) continue;
        const m0 = engine.metrics();
        const counts = await samplePairs(engine, { speculative: { method: 'draft-model', draft, draftTokens: 2, adaptive: false } });
        const { drafted: n, acceptance } = drafted(engine, m0);
        const chi = chiSquare(counts, exact, RUNS);
        console.log(`speculative sampling, ${name} draft: ${n} drafts, acceptance ${acceptance.toFixed(3)}, chi-square ${chi.stat.toFixed(1)} on ${chi.df} df (critical ${chi.critical.toFixed(1)})`);
        // Every run drafts at its first step (2 tokens) and, after a rejection, 1 at its second.
        expect(n).toBeGreaterThanOrEqual(2 * RUNS);
        expect(chi.stat).toBeLessThan(chi.critical);
        if (name === 'q4_0') expect(acceptance).toBeGreaterThan(0.5); // measured 0.72
        else expect(acceptance).toBeLessThan(0.2); // measured 0: the residual draws make every token
        expectDraftKVFree(draft);
      }
    } finally {
      await engine.dispose();
    }
  });

  it('the test has the power to tell: the Q4_0 draft\'s own sampling fails it', async () => {
    // What verification that let the draft's choices through would produce: the draft model's plain sampling.
    const draft = q4 ?? random;
    const engine = await createEngine(draft, { kvCacheTokens: 4096, prefixCacheEntries: 0 });
    try {
      const chi = chiSquare(await samplePairs(engine, {}), await exactPairs(), RUNS);
      console.log(`the draft's own distribution against the target's: chi-square ${chi.stat.toFixed(1)} on ${chi.df} df (critical ${chi.critical.toFixed(1)}), ${chi.impossible} of ${RUNS} runs impossible under the target's top 6`);
      expect(chi.stat).toBeGreaterThan(4 * chi.critical);
    } finally {
      await engine.dispose();
    }
  });

  it('the same seed replays the same tokens (adaptive by default: a seeded sampled draft keeps its length, whatever the engine measured before)', async () => {
    const draft = q4 ?? random;
    const request = { maxTokens: 40, ignoreEos: true, temperature: 0.9, seed: 9, speculative: { method: 'draft-model', draft, draftTokens: 4 } } as const;
    const a = await target.generate(PROMPT, request).result;
    const b = await target.generate(PROMPT, request).result;
    expect(a.tokens).toEqual(b.tokens);
  });
});

describe('draft-model speculative decoding: bad drafts and options are typed errors before anything runs', () => {
  function errorOf(engine: Engine, speculative: unknown): EngineError {
    try {
      engine.generate({ prompt: 'Tom and', speculative: speculative as never });
    } catch (e) {
      expect(e).toBeInstanceOf(EngineError);
      return e as EngineError;
    }
    throw new Error('no error');
  }

  it('another vocabulary (same size, other tokens), a sliding-window draft, a disposed draft, options out of range', async () => {
    const engine = await createEngine(target);
    const files = await swaModels(); // 512 made-up tokens: the target's size, other strings
    const other = await loadModel(await files.path(undefined), { threads: 1 });
    const windowedPath = join(dir, 'windowed.gguf');
    await writeSyntheticLlama(windowedPath, { dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 4, ffnDim: 128, vocab: { metadataFrom: target.file }, type: GGMLType.F32, seed: 5, slidingWindow: 32 });
    const windowed = await loadModel(windowedPath, { threads: 1 });
    const disposed = await loadModel(await bundledModelPath(), { threads: 1 });
    await disposed.dispose();
    try {
      const e = errorOf(engine, { method: 'draft-model', draft: other });
      expect(e.code).toBe('DRAFT_MISMATCH');
      expect(e.message).toMatch(/token \d+ is .* in the target's vocabulary and .* in the draft's/);
      expect(errorOf(engine, { method: 'draft-model', draft: windowed }).code).toBe('UNSUPPORTED');
      expect(errorOf(engine, { method: 'draft-model', draft: disposed }).code).toBe('DISPOSED');
      for (const bad of [{ draftTokens: 0 }, { draftTokens: 33 }, { draftTokens: 2.5 }, { draftSampling: 'nucleus' }]) {
        const err = errorOf(engine, { method: 'draft-model', draft: random, ...bad });
        expect(err.code).toBe('INVALID_REQUEST');
        expect(err.message).toMatch(/draftTokens|draftSampling/);
      }
      expect(errorOf(engine, { method: 'draft-model' }).message).toMatch(/speculative\.draft must be a loaded Model/);
      expect(engine.metrics().runningRequests + engine.metrics().queuedRequests).toBe(0);
    } finally {
      await engine.dispose();
      await other.dispose();
      await windowed.dispose();
      await files.dispose();
    }
  });

  it('a draft model disposed while a request drafts with it: the request goes on without drafts, unchanged', async () => {
    const draft = await loadModel(await bundledModelPath(), { threads: 1 });
    const engine = await createEngine(target, { prefixCacheEntries: 0 });
    try {
      const request: EngineRequest = { prompt: 'Once upon a time', maxTokens: 60, temperature: 0, ignoreEos: true };
      const plain = await engine.generate(request).result;
      const generation = engine.generate({ ...request, speculative: { method: 'draft-model', draft, draftTokens: 3, adaptive: false } });
      let pieces = 0;
      for await (const _ of generation) if (++pieces === 10) await draft.dispose();
      expect((await generation.result).tokens).toEqual(plain.tokens);
    } finally {
      await engine.dispose();
      await draft.dispose();
    }
  });
});
