// The serving engine on real weights: concurrent requests give exactly the tokens each gives alone
// (no cross-talk, batch invariance), cancellations and timeouts fail only their own request and
// free its blocks, prefix reuse skips computation without changing outputs, preemption under a
// tiny KV pool recomputes correctly, and the request API's edges (back-pressure, priorities,
// stop strings, n completions, logprobs, context limits, dispose) behave as documented; a
// sliding-window model runs past its window in bounded KV, batch invariant, with correct prefix reuse.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import type { EngineGeneration, EnginePiece, EngineRequest, EngineResult } from '../src/engine/types.js';
import { KVCache } from '../src/kv/kv-cache.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { swaModels, type SwaModels } from './helpers/swa-model.js';

const SHARED = ['../shared/models/stories260K-q4_0.gguf', '../shared/models/stories260K-q8_0.gguf', '../shared/models/stories260K-f16.gguf'];
const sharedModels = SHARED.filter((p) => existsSync(p));
if (sharedModels.length < SHARED.length) console.warn(`engine: ${SHARED.filter((p) => !existsSync(p)).join(', ')} absent, batch invariance checked on fewer weight types`);

let model: Model;
/** Tokens of a long greedy story: prompts are slices of it, so they read like the training data. */
let story: number[];
let bos: number;

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 2 });
  bos = model.tokenizer.bosId!;
  story = (await model.generate('Once upon a time', { temperature: 0, maxTokens: 400, ignoreEos: true }).result).tokens;
});
afterAll(() => model?.dispose());

const promptOf = (offset: number, length: number) => [bos, ...story.slice(offset, offset + length - 1)];

/** What a request gives alone: Model.generate runs one sequence at a time through its own graph. */
async function alone(m: Model, r: EngineRequest): Promise<number[]> {
  const { prompt, maxTokens, temperature, seed, ignoreEos, stop, topK, topP, minP } = r;
  return (await m.generate(prompt, { maxTokens, temperature, seed, ignoreEos, stop, topK, topP, minP }).result).tokens;
}

interface Outcome {
  pieces: EnginePiece[];
  result?: EngineResult;
  error?: unknown;
}

/** Read a generation to its end, calling onPiece after each piece. */
async function consume(g: EngineGeneration, onPiece?: (n: number) => void): Promise<Outcome> {
  const pieces: EnginePiece[] = [];
  try {
    for await (const p of g) {
      pieces.push(p);
      onPiece?.(pieces.length);
    }
    return { pieces, result: await g.result };
  } catch (error) {
    await expect(g.result).rejects.toBe(error);
    return { pieces, error };
  }
}

const tokensOf = (pieces: EnginePiece[], index = 0) => pieces.filter((p) => p.index === index && p.tokenId >= 0).map((p) => p.tokenId);

function expectCode(error: unknown, code: string): void {
  expect(error).toBeInstanceOf(EngineError);
  expect((error as EngineError).code).toBe(code);
}

/** Every block is back in the pool once the prefix cache lets go. */
function expectAllBlocksReturned(engine: Engine): void {
  const m = engine.metrics();
  expect([m.runningRequests, m.queuedRequests, m.runningSequences]).toEqual([0, 0, 0]);
  engine.clearPrefixCache();
  expect(engine.metrics().kvBlocksUsed).toBe(0);
  expect(engine.metrics().kvBlocksFree).toBe(engine.metrics().kvBlocksTotal);
}

describe('engine: concurrent requests', () => {
  it('16 requests of mixed lengths with cancellations and timeouts: each completes as alone or fails with its own error, blocks all return', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 4096, maxBatchTokens: 256 });
    try {
      const lengths = [3, 250, 17, 64, 5, 120, 33, 200, 9, 80, 40, 150, 2, 12, 100, 25];
      const requests: EngineRequest[] = lengths.map((len, i) => ({
        prompt: promptOf(7 * i, len),
        maxTokens: 8 + ((i * 13) % 60),
        ...(i % 2 === 0 ? { temperature: 0 } : { temperature: 0.9, seed: 100 + i }),
        ignoreEos: i % 3 === 0,
      }));
      const abortAfter3 = new Set([3, 10]), timeout = 6, abortedEarly = 13;
      // Long enough never to finish in time (a decode step of the tiny model takes over 1 ms), late
      // enough to have streamed tokens on a loaded machine.
      requests[timeout] = { ...requests[timeout], maxTokens: 1900, ignoreEos: true, timeoutMs: 2000 };
      const refs: number[][] = [];
      for (const [i, r] of requests.entries()) refs.push(i === timeout ? [] : await alone(model, r));

      const freedOnAbort: boolean[] = [];
      const controllers = requests.map(() => new AbortController());
      controllers[abortedEarly].abort(new Error('user went away'));
      const outcomes = await Promise.all(requests.map((r, i) => {
        const g = engine.generate({ ...r, signal: controllers[i].signal });
        return consume(g, (n) => {
          if (!abortAfter3.has(i) || n !== 3) return;
          const before = engine.metrics();
          controllers[i].abort();
          const after = engine.metrics();
          // freed at once: one sequence fewer, and (its tail block is its own) more free blocks
          freedOnAbort.push(after.runningSequences === before.runningSequences - 1 && after.kvBlocksFree > before.kvBlocksFree);
        });
      }));

      // the timed-out request's reference, as long as what it streamed
      refs[timeout] = await alone(model, { ...requests[timeout], maxTokens: tokensOf(outcomes[timeout].pieces).length });
      outcomes.forEach((o, i) => {
        if (abortAfter3.has(i) || i === abortedEarly) expectCode(o.error, 'ABORTED');
        else if (i === timeout) expectCode(o.error, 'TIMEOUT');
        else {
          expect(o.error).toBeUndefined();
          expect(o.result!.tokens).toEqual(refs[i]);
          expect(tokensOf(o.pieces)).toEqual(refs[i]);
          expect(o.pieces.map((p) => p.text).join('')).toBe(o.result!.text);
          expect(o.result!.usage.promptTokens).toBe(lengths[i]);
          expect(o.result!.timings.timeToFirstTokenMs).toBeGreaterThanOrEqual(o.result!.timings.queueMs);
        }
        // whatever was streamed, even by a request cut short, is its own tokens
        expect(refs[i].slice(0, tokensOf(o.pieces).length)).toEqual(tokensOf(o.pieces));
      });
      expect(tokensOf(outcomes[timeout].pieces).length).toBeGreaterThan(0);
      expect(outcomes[abortedEarly].pieces).toEqual([]);
      expect(freedOnAbort).toEqual([true, true]);
      expectAllBlocksReturned(engine);
    } finally {
      await engine.dispose();
    }
  });

  const invarianceModels = [['bundled stories260K (F32)', ''], ...sharedModels.map((p) => [p.split('/').pop()!, p])];
  for (const [name, path] of invarianceModels) {
    it(`batch invariance on ${name}: 8 seeded requests give the same tokens and log-probs alone and together`, async () => {
      const m = path ? await loadModel(path, { threads: 2 }) : model;
      const engine = await createEngine(m, { kvCacheTokens: 2048, prefixCacheEntries: 0 });
      try {
        const requests: EngineRequest[] = Array.from({ length: 8 }, (_, i) => ({
          prompt: promptOf(11 * i, 4 + 9 * i), maxTokens: 24, temperature: 1, seed: i, ignoreEos: true, logprobs: true,
        }));
        const solo: EngineResult[] = [];
        for (const r of requests) solo.push(await engine.generate(r).result);
        const stepsBefore = engine.metrics().steps;
        const together = await Promise.all(requests.map((r) => engine.generate(r).result));
        for (let i = 0; i < 8; i++) {
          expect(together[i].tokens).toEqual(solo[i].tokens);
          expect(together[i].completions[0].logprobs).toEqual(solo[i].completions[0].logprobs); // bit for bit
        }
        expect(engine.metrics().steps - stepsBefore).toBe(24); // one step for all prompts, then 23 shared decode steps
        expectAllBlocksReturned(engine);
      } finally {
        await engine.dispose();
        if (path) await m.dispose();
      }
    });
  }

  it('preemption under a tiny KV pool: every request finishes with its alone output', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 96, blockSize: 4, maxBatchTokens: 64 });
    try {
      const requests: EngineRequest[] = Array.from({ length: 8 }, (_, i) => ({
        prompt: promptOf(5 * i, 5 + i), maxTokens: 50 + i, ignoreEos: true, ...(i % 2 ? { temperature: 0.8, seed: i } : { temperature: 0 }),
      }));
      const refs: number[][] = [];
      for (const r of requests) refs.push(await alone(model, r));
      const results = await Promise.all(requests.map((r) => engine.generate(r).result));
      results.forEach((r, i) => expect(r.tokens).toEqual(refs[i]));
      expect(engine.metrics().preemptions).toBeGreaterThan(0);
      expect(results.reduce((n, r) => n + r.timings.preemptions, 0)).toBe(engine.metrics().preemptions);
      expectAllBlocksReturned(engine);
    } finally {
      await engine.dispose();
    }
  });
});

describe('engine: prefix reuse', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(model, { kvCacheTokens: 4096, blockSize: 16 });
  });
  afterAll(() => engine?.dispose());

  const lcp = (a: number[], b: number[]) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };

  it('a prompt extending a finished one computes only its new tokens, with the same output', async () => {
    const p = promptOf(0, 150);
    const a = await engine.generate({ prompt: p, maxTokens: 5, temperature: 0, ignoreEos: true }).result;
    const b: EngineRequest = { prompt: [...p, ...story.slice(300, 320)], maxTokens: 8, temperature: 0, ignoreEos: true };
    const before = engine.metrics().computedTokens;
    const rb = await engine.generate(b).result;
    const computed = engine.metrics().computedTokens - before;
    // a's KV holds its prompt and the generated tokens but the last (never evaluated)
    const cached = lcp([...p, ...a.tokens.slice(0, -1)], b.prompt as number[]);
    expect(cached).toBeGreaterThanOrEqual(150);
    expect(rb.usage.cachedPromptTokens).toBe(cached);
    expect(computed).toBe(170 - cached + rb.tokens.length - 1);
    expect(rb.tokens).toEqual(await alone(model, b));
    expect(engine.metrics().prefixCacheHitRate).toBeGreaterThan(0);
  });

  it('a request shares the computed prompt of a live one', async () => {
    const q = promptOf(40, 200);
    const c = engine.generate({ prompt: q, maxTokens: 60, temperature: 0, ignoreEos: true });
    for await (const _ of c) break; // c's prompt is in
    const d: EngineRequest = { prompt: [...q, ...story.slice(250, 260)], maxTokens: 10, temperature: 0, ignoreEos: true };
    const rd = await engine.generate(d).result;
    expect(rd.usage.cachedPromptTokens).toBeGreaterThanOrEqual(200);
    expect(rd.tokens).toEqual(await alone(model, d));
    expect((await c.result).tokens).toEqual(await alone(model, { prompt: q, maxTokens: 60, temperature: 0, ignoreEos: true }));
  });

  it('n completions share one prompt computation; completion i samples as seed + i alone', async () => {
    const prompt = promptOf(123, 90);
    const before = engine.metrics().computedTokens;
    const pieces: EnginePiece[] = [];
    const g = engine.generate({ prompt, n: 3, maxTokens: 12, temperature: 1, seed: 40, ignoreEos: true });
    for await (const p of g) pieces.push(p);
    const r = await g.result;
    const computed = engine.metrics().computedTokens - before;
    expect(r.completions.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of r.completions) {
      expect(c.tokens).toEqual(await alone(model, { prompt, maxTokens: 12, temperature: 1, seed: 40 + c.index, ignoreEos: true }));
      expect(tokensOf(pieces, c.index)).toEqual(c.tokens);
    }
    expect(new Set(r.completions.map((c) => c.tokens.join())).size).toBeGreaterThan(1);
    expect(computed).toBe(90 - r.usage.cachedPromptTokens + 3 * (12 - 1));
    expect(r.usage.completionTokens).toBe(36);
  });
});

describe('engine: request API', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine(model, { kvCacheTokens: 2048, maxQueue: 2, maxSequences: 1 });
  });
  afterAll(() => engine?.dispose());

  it('back-pressure: beyond maxQueue waiting requests, generate throws OVERLOADED; later it accepts again', async () => {
    const a = engine.generate({ prompt: promptOf(0, 5), maxTokens: 5, temperature: 0 });
    const b = engine.generate({ prompt: promptOf(9, 5), maxTokens: 5, temperature: 0 });
    let thrown: unknown;
    try {
      engine.generate({ prompt: promptOf(0, 5), maxTokens: 5 });
    } catch (e) {
      thrown = e;
    }
    expectCode(thrown, 'OVERLOADED');
    await Promise.all([a.result, b.result]);
    await expect(engine.generate({ prompt: promptOf(0, 5), maxTokens: 2 }).result).resolves.toBeDefined();
  });

  it('higher priority starts first; a queued request times out and leaves the queue', async () => {
    const order: string[] = [];
    const low = engine.generate({ prompt: promptOf(0, 4), maxTokens: 30, temperature: 0, ignoreEos: true });
    const high = engine.generate({ prompt: promptOf(3, 4), maxTokens: 30, temperature: 0, ignoreEos: true, priority: 5 });
    void low.result.then(() => order.push('low'));
    void high.result.then(() => order.push('high'));
    await Promise.all([low.result, high.result]);
    expect(order).toEqual(['high', 'low']);

    const long = engine.generate({ prompt: promptOf(0, 4), maxTokens: 300, temperature: 0, ignoreEos: true });
    const queued = engine.generate({ prompt: promptOf(5, 4), maxTokens: 5, timeoutMs: 30 });
    const q = await consume(queued);
    expectCode(q.error, 'TIMEOUT');
    expect(q.pieces).toEqual([]);
    expect(engine.metrics().queuedRequests).toBe(0);
    long.cancel();
    expectCode((await consume(long)).error, 'ABORTED');
  });

  it('stop strings across token boundaries cut the text, streamed and final alike', async () => {
    const req: EngineRequest = { prompt: promptOf(0, 6), maxTokens: 60, temperature: 0, ignoreEos: true };
    const ref = await consume(engine.generate(req));
    const texts = ref.pieces.map((p) => p.text);
    const k = texts.findIndex((t, i) => i > 5 && t.length >= 3 && (texts[i + 1] ?? '').length >= 3);
    expect(k).toBeGreaterThan(0);
    const stop = texts[k].slice(-2) + texts[k + 1].slice(0, 2);
    const full = ref.result!.text;
    const r = await consume(engine.generate({ ...req, stop: ['zzz-never', stop] }));
    expect(r.result!.stopReason).toBe('stop_string');
    expect(r.result!.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.pieces.map((p) => p.text).join('')).toBe(r.result!.text);
  });

  it('log-probs are the model\'s log-softmax at each generated token', async () => {
    const prompt = promptOf(20, 10);
    const r = await engine.generate({ prompt, maxTokens: 5, temperature: 0.7, seed: 3, logprobs: true }).result;
    const logits = await model.evaluate([...prompt, ...r.tokens.slice(0, -1)]);
    r.tokens.forEach((t, i) => {
      const row = logits[prompt.length - 1 + i];
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      expect(r.completions[0].logprobs![i]).toBeCloseTo(row[t] - lse, 5);
    });
  });

  it('top log-probs are the most likely tokens at each step, in order, streamed and final alike', async () => {
    const prompt = promptOf(30, 8);
    const g = engine.generate({ prompt, maxTokens: 6, temperature: 0.9, seed: 5, logprobs: true, topLogprobs: 4 });
    const pieces: EnginePiece[] = [];
    for await (const p of g) pieces.push(p);
    const r = await g.result;
    const tops = r.completions[0].topLogprobs!;
    expect(tops).toHaveLength(r.tokens.length);
    expect(pieces.filter((p) => p.tokenId >= 0).map((p) => p.topLogprobs)).toEqual(tops);
    const logits = await model.evaluate([...prompt, ...r.tokens.slice(0, -1)]);
    tops.forEach((top, i) => {
      const row = logits[prompt.length - 1 + i];
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      // Independent ranking: sort every id by logit (ties by id).
      const ranked = [...row.keys()].sort((a, b) => row[b] - row[a] || a - b).slice(0, 4);
      expect(top.map((t) => t.tokenId)).toEqual(ranked);
      top.forEach((t) => expect(t.logprob).toBeCloseTo(row[t.tokenId] - lse, 5));
    });
    expect(() => engine.generate({ prompt, topLogprobs: 3 })).toThrow(/needs logprobs/);
    expect(() => engine.generate({ prompt, logprobs: true, topLogprobs: 21 })).toThrow(/0\.\.20/);
  });

  it('typed errors for bad requests; maxTokens 0 generates nothing', async () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as EngineError).code;
      }
      return 'none';
    };
    expect(code(() => engine.generate({ prompt: [] }))).toBe('INVALID_REQUEST');
    expect(code(() => engine.generate({ prompt: [1, 99999] }))).toBe('INVALID_REQUEST');
    expect(code(() => engine.generate({ prompt: promptOf(0, 3), n: 2 }))).toBe('INVALID_REQUEST'); // maxSequences 1
    expect(code(() => engine.generate({ prompt: promptOf(0, 3), stop: [''] }))).toBe('INVALID_REQUEST');
    expect(code(() => engine.generate({ prompt: Array(2048).fill(bos) }))).toBe('PROMPT_TOO_LONG');
    expect(() => engine.generate({ prompt: promptOf(0, 3), topP: 2 })).toThrow(/topP/);
    const r = await engine.generate({ prompt: promptOf(0, 3), maxTokens: 0 }).result;
    expect([r.tokens, r.stopReason]).toEqual([[], 'max_tokens']);
  });
});

describe('engine: limits and lifecycle', () => {
  it('a sequence reaching the context ends with context_full; sliding-window shift is refused for a model without a window', async () => {
    const engine = await createEngine(model, { contextLength: 40, kvCacheTokens: 256 });
    try {
      const req: EngineRequest = { prompt: promptOf(0, 10), maxTokens: 100, temperature: 0, ignoreEos: true };
      const r = await engine.generate(req).result;
      expect(r.stopReason).toBe('context_full');
      expect(r.tokens.length).toBe(40 - 10 + 1);
      expect(r.tokens).toEqual((await alone(model, req)).slice(0, 31));
      expect(() => engine.generate({ prompt: promptOf(0, 40) })).toThrow(expect.objectContaining({ code: 'PROMPT_TOO_LONG' }));
    } finally {
      await engine.dispose();
    }
    await expect(createEngine(model, { contextShift: 'sliding-window' })).rejects.toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/sliding_window/) });
    await expect(createEngine(model, { kvCacheBytes: 1, kvCacheTokens: 1 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });

  it('dispose fails what is in flight with DISPOSED and refuses new requests; the model still works', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 256 });
    const g = engine.generate({ prompt: promptOf(0, 5), maxTokens: 200, ignoreEos: true });
    await engine.dispose();
    expectCode((await consume(g)).error, 'DISPOSED');
    expect(() => engine.generate({ prompt: promptOf(0, 5) })).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
    expect((await model.generate(promptOf(0, 5), { maxTokens: 3, temperature: 0 }).result).tokens.length).toBe(3);
  });
});

describe('engine: sliding-window model (window 12, KV blocks of 4)', () => {
  const W = 12, BS = 4;
  let models: SwaModels;
  let swa: Model;
  beforeAll(async () => {
    models = await swaModels();
    swa = await loadModel(await models.path(W), { threads: 2 });
  });
  afterAll(async () => {
    await swa?.dispose();
    await models?.dispose();
  });
  const tokens = (seed: number, n: number) => [1, ...Array.from({ length: n - 1 }, (_, i) => 3 + ((i * 89 + seed * 53) % 500))];

  it('6 concurrent requests run far past the window: the same tokens and log-probs alone and together, blocks bounded by the window, none leaked', async () => {
    // 40 blocks: the requests' 6 x 80 tokens fit only because blocks out of the window go back
    const engine = await createEngine(swa, { blockSize: BS, kvCacheTokens: 160, maxBatchTokens: 64, prefixCacheEntries: 0 });
    try {
      expect(engine.contextLength).toBe(swa.contextLength); // not capped by the pool
      const requests: EngineRequest[] = Array.from({ length: 6 }, (_, i) => ({
        prompt: tokens(i, 3 + 5 * i), maxTokens: 50, ignoreEos: true, logprobs: true, ...(i % 2 ? { temperature: 1, seed: i } : { temperature: 0 }),
      }));
      const solo: EngineResult[] = [];
      for (const r of requests) solo.push(await engine.generate(r).result);
      for (const [i, r] of requests.entries()) expect(solo[i].tokens).toEqual(await alone(swa, r));

      let worst = 0;
      const together = await Promise.all(requests.map(async (r) => {
        const g = engine.generate(r);
        for await (const _ of g) {
          // between steps every running sequence holds at most its next token's window
          const m = engine.metrics();
          worst = Math.max(worst, m.kvBlocksUsed - m.runningSequences * KVCache.windowBlocks(W, BS, 0));
        }
        return g.result;
      }));
      for (let i = 0; i < 6; i++) {
        expect(together[i].tokens).toEqual(solo[i].tokens);
        expect(together[i].completions[0].logprobs).toEqual(solo[i].completions[0].logprobs); // bit for bit
        expect(together[i].tokens.length).toBe(50);
      }
      expect(worst).toBeLessThanOrEqual(0);
      expect(engine.metrics().preemptions).toBe(0);
      expectAllBlocksReturned(engine);
    } finally {
      await engine.dispose();
    }
  });

  it('reaches the context with a pool smaller than it, ending with context_full as alone', async () => {
    // a sequence holds at most windowBlocks(12, 4, 16) = 8 blocks: 32 of the pool's 64 tokens
    const engine = await createEngine(swa, { blockSize: BS, kvCacheTokens: 64, maxBatchTokens: 16, contextLength: 120, contextShift: 'sliding-window' });
    try {
      expect(engine.contextLength).toBe(120);
      const req: EngineRequest = { prompt: tokens(9, 10), maxTokens: 500, temperature: 0, ignoreEos: true };
      const r = await engine.generate(req).result;
      expect(r.stopReason).toBe('context_full');
      expect(r.tokens.length).toBe(120 - 10 + 1);
      expect(r.tokens).toEqual((await alone(swa, req)).slice(0, r.tokens.length));
      // a prompt longer than the whole pool is admitted (it holds one window and chunk at a time)
      const long: EngineRequest = { prompt: tokens(10, 100), maxTokens: 10, temperature: 0, ignoreEos: true };
      expect((await engine.generate(long).result).tokens).toEqual(await alone(swa, long));
      expectAllBlocksReturned(engine);
    } finally {
      await engine.dispose();
    }
    // a pool that cannot hold one window and batch (6 blocks here) caps the context instead
    const small = await createEngine(swa, { blockSize: BS, kvCacheTokens: 16, maxBatchTokens: 8 });
    try {
      expect(small.contextLength).toBe(16);
    } finally {
      await small.dispose();
    }
  });

  it('prefix reuse only where the cached sequence still holds the window, with the output of a lone run', async () => {
    const engine = await createEngine(swa, { blockSize: BS, kvCacheTokens: 256, maxBatchTokens: 32 });
    try {
      const p = tokens(20, 20);
      const a = await engine.generate({ prompt: p, maxTokens: 30, temperature: 0, ignoreEos: true }).result;
      const kept = [...p, ...a.tokens.slice(0, -1)]; // 49 tokens in the KV of a's finished sequence
      // extends all of it: reused
      const b: EngineRequest = { prompt: [...kept, 7, 8, 9], maxTokens: 20, temperature: 0, ignoreEos: true };
      const rb = await engine.generate(b).result;
      expect(rb.usage.cachedPromptTokens).toBe(49);
      expect(rb.tokens).toEqual(await alone(swa, b));
      // shares 30 leading tokens, whose window a's sequence released: recomputed
      const c: EngineRequest = { prompt: [...kept.slice(0, 30), 5, 6], maxTokens: 20, temperature: 0, ignoreEos: true };
      const before = engine.metrics().computedTokens;
      const rc = await engine.generate(c).result;
      expect(rc.usage.cachedPromptTokens).toBe(0);
      expect(engine.metrics().computedTokens - before).toBe(32 + 19);
      expect(rc.tokens).toEqual(await alone(swa, c));
      // n completions fork the prompt past the window and decode on
      const n = await engine.generate({ prompt: tokens(21, 25), n: 3, maxTokens: 30, temperature: 1, seed: 5, ignoreEos: true }).result;
      for (const comp of n.completions) expect(comp.tokens).toEqual(await alone(swa, { prompt: tokens(21, 25), maxTokens: 30, temperature: 1, seed: 5 + comp.index, ignoreEos: true }));
      expectAllBlocksReturned(engine);
    } finally {
      await engine.dispose();
    }
  });

  it('contextShift: sliding-window is accepted here; a bad value is INVALID_OPTION', async () => {
    const engine = await createEngine(swa, { contextShift: 'sliding-window' });
    await engine.dispose();
    await expect(createEngine(swa, { contextShift: 'wrap' as never })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });
});

describe('engine: logits processors and evaluate', () => {
  it('each completion gets its own processors, which see its tokens and constrain its choices', async () => {
    const engine = await createEngine(model, { maxBatchTokens: 32, kvCacheTokens: 1024 });
    try {
      const allowed = new Set(Array.from({ length: 60 }, (_, i) => 200 + i));
      const made: { accepted: number[] }[] = [];
      const request = {
        prompt: promptOf(0, 6), maxTokens: 12, temperature: 0.9, seed: 4, n: 3, ignoreEos: true,
        logitsProcessors: () => {
          const p = {
            accepted: [] as number[],
            process(c: { ids: Int32Array; logits: Float32Array; size: number }) {
              for (let i = 0; i < c.size; i++) if (!allowed.has(c.ids[i])) c.logits[i] = -Infinity;
            },
            accept(t: number) { p.accepted.push(t); },
          };
          made.push(p);
          return [p];
        },
      };
      const r = await engine.generate(request).result;
      expect(made.length).toBe(3);
      expect(r.completions.map((c) => c.tokens)).toEqual(made.map((p) => p.accepted));
      for (const c of r.completions) expect(c.tokens.every((t) => allowed.has(t))).toBe(true);
      // Model.generate takes the same option
      const g = await model.generate(promptOf(0, 6), { maxTokens: 5, temperature: 0, logitsProcessors: request.logitsProcessors }).result;
      expect(g.tokens.every((t) => allowed.has(t))).toBe(true);
    } finally {
      await engine.dispose();
    }
  });

  it('evaluate runs as a request beside others: every position, equal to each prefix\'s last logits', async () => {
    const engine = await createEngine(model, { maxBatchTokens: 16, kvCacheTokens: 1024 });
    try {
      const prompt = promptOf(3, 40);
      const busy = engine.generate({ prompt: promptOf(50, 9), maxTokens: 20, temperature: 0, ignoreEos: true });
      const [rows] = await Promise.all([engine.evaluate(prompt), busy.result]);
      expect(rows.length).toBe(prompt.length);
      for (const p of [0, 7, 16, 39]) {
        // the logits after position p are what a request of prompt[0..p] samples from
        const again = await engine.evaluate(prompt.slice(0, p + 1));
        expect(again[p]).toEqual(rows[p]);
      }
    } finally {
      await engine.dispose();
    }
  });
});
