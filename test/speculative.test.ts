// Speculative decoding by prompt lookup: draft tokens verified in the same forward pass as the
// decode token, kept while the sampler agrees, the KV rolled back past the first it does not.
// Exactness is the point: with the same options (greedy, or seeded sampling with penalties) the
// tokens and log-probs are bit-identical to decoding without drafts, alone and beside other
// requests, under preemption, and at stop strings and token limits that fall inside a draft; on
// text that repeats its prompt it takes fewer forward passes.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import type { EngineRequest, EngineResult } from '../src/engine/types.js';
import { PromptLookupDrafter } from '../src/generation/prompt-lookup.js';
import { speculativeSettings } from '../src/generation/speculative.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { swaModels } from './helpers/swa-model.js';

describe('prompt lookup drafter', () => {
  const d = new PromptLookupDrafter(8, 3, 1);

  it('continues the most recent earlier occurrence of the longest matching n-gram', () => {
    //             0  1  2  3  4  5  6  7  8  9 10 11
    const tokens = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 2, 3];
    // 3-gram [8, 2, 3] never occurred; 2-gram [2, 3] last occurred at 6 (followed by 7, 8, 2, 3).
    expect(d.propose(tokens, 3)).toEqual([7, 8, 2]);
    expect(d.propose(tokens, 10)).toEqual([7, 8, 2, 3]);
    expect(new PromptLookupDrafter(2, 3, 1).propose(tokens, 10)).toEqual([7, 8]); // its own draft limit
    // With a longer match available it wins over a more recent shorter one.
    expect(d.propose([5, 6, 7, 1, 7, 0, 5, 6, 7], 2)).toEqual([1, 7]);
  });

  it('repetition: a match may overlap the sequence end; nothing when nothing repeats', () => {
    expect(d.propose([4, 4, 4, 4], 5)).toEqual([4]);
    expect(d.propose([1, 2, 3, 4], 5)).toEqual([]);
    expect(d.propose([1], 5)).toEqual([]);
    expect(d.propose([1, 2, 1, 2], 0)).toEqual([]);
    expect(new PromptLookupDrafter(8, 3, 2).propose([1, 2, 3, 4, 1], 4)).toEqual([]); // only a 1-gram matches
  });

  it('options are checked, with defaults', () => {
    expect(speculativeSettings({ method: 'prompt-lookup' })).toEqual({ method: 'prompt-lookup', draftTokens: 8, adaptive: true, ngramMax: 3, ngramMin: 2 });
    expect(() => speculativeSettings({ method: 'eagle' as 'prompt-lookup' })).toThrow(/method/);
    expect(() => speculativeSettings({ method: 'prompt-lookup', draftTokens: 0 })).toThrow(/draftTokens/);
    expect(() => speculativeSettings({ method: 'prompt-lookup', ngramMax: 2, ngramMin: 3 })).toThrow(/ngramMin/);
    expect(() => speculativeSettings({ method: 'prompt-lookup', adaptive: 'yes' as unknown as boolean })).toThrow(/adaptive must be a boolean/);
  });
});

const SPEC = { method: 'prompt-lookup', draftTokens: 6, adaptive: false } as const;

let model: Model;
/** A greedy story; prompts that quote part of it make the continuation copy from the prompt. */
let story: number[];
let bos: number;

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 2 });
  bos = model.tokenizer.bosId!;
  story = (await model.generate('Once upon a time', { temperature: 0, maxTokens: 200, ignoreEos: true }).result).tokens;
});
afterAll(() => model?.dispose());

/** The story, then its first `quoted` tokens again: the model goes on copying. */
const repeating = (quoted: number) => [bos, ...story.slice(0, 120), bos, ...story.slice(0, quoted)];

function expectSame(a: EngineResult, b: EngineResult): void {
  expect(a.tokens).toEqual(b.tokens);
  expect(a.text).toBe(b.text);
  expect(a.stopReason).toBe(b.stopReason);
  expect(a.completions[0].logprobs).toEqual(b.completions[0].logprobs); // bit for bit
}

describe('speculative decoding in the engine (stories260K)', () => {
  it('greedy on text that repeats its prompt: the same tokens and log-probs in fewer forward passes', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 1024, prefixCacheEntries: 0 });
    try {
      const request: EngineRequest = { prompt: repeating(8), maxTokens: 80, temperature: 0, ignoreEos: true, logprobs: true };
      const plain = await engine.generate(request).result;
      const steps0 = engine.metrics().steps;
      const fast = await engine.generate({ ...request, speculative: SPEC }).result;
      const steps = engine.metrics().steps - steps0;
      expectSame(fast, plain);
      const m = engine.metrics();
      expect(m.draftedTokens).toBeGreaterThan(0);
      expect(m.draftedTokens).toBeLessThanOrEqual(SPEC.draftTokens * steps);
      expect(m.draftAcceptanceRate).toBeGreaterThan(0);
      // One prompt step, then where the model copies several tokens come per pass (this tiny model
      // copies the first ~26 tokens, then wanders: measured 35 steps for 80 tokens).
      expect(steps).toBeLessThan(0.6 * 80);
      engine.clearPrefixCache();
      expect(engine.metrics().kvBlocksUsed).toBe(0);
    } finally {
      await engine.dispose();
    }
  });

  it('adaptive draft lengths (the default): the same tokens, drafting where the model copies, kept more often than a fixed length', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 1024, prefixCacheEntries: 0 });
    try {
      const request: EngineRequest = { prompt: repeating(8), maxTokens: 80, temperature: 0, ignoreEos: true, logprobs: true };
      const plain = await engine.generate(request).result;
      const run = async (speculative: EngineRequest['speculative']) => {
        const m0 = engine.metrics();
        const r = await engine.generate({ ...request, speculative }).result;
        const m1 = engine.metrics();
        const drafted = m1.draftedTokens - m0.draftedTokens;
        const kept = m1.draftAcceptanceRate * m1.draftedTokens - m0.draftAcceptanceRate * m0.draftedTokens;
        return { r, steps: m1.steps - m0.steps, drafted, acceptance: kept / drafted };
      };
      const fixed = await run({ method: 'prompt-lookup', draftTokens: 8, adaptive: false });
      const adaptive = await run({ method: 'prompt-lookup', draftTokens: 8 });
      expectSame(adaptive.r, plain);
      // Where the model copies (its first ~26 tokens) drafts are kept and it drafts; once it wanders it
      // drafts less than the fixed length does, so a larger share of its drafts is kept.
      expect(adaptive.drafted).toBeGreaterThan(0);
      expect(adaptive.steps).toBeLessThan(80 - 10);
      expect(adaptive.drafted).toBeLessThan(fixed.drafted);
      expect(adaptive.acceptance).toBeGreaterThan(fixed.acceptance);
    } finally {
      await engine.dispose();
    }
  });

  it('seeded sampling with penalties, several requests at once beside plain ones: each as without drafts, alone', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 4096, prefixCacheEntries: 0 });
    try {
      const requests: EngineRequest[] = Array.from({ length: 6 }, (_, i) => ({
        prompt: repeating(4 + 5 * i), maxTokens: 40 + i, temperature: 0.3 + 0.2 * (i % 3), topK: 20, seed: 100 + i,
        repeatPenalty: i % 2 ? 1.1 : undefined, ignoreEos: true, logprobs: true,
      }));
      const plain: EngineResult[] = [];
      for (const r of requests) plain.push(await engine.generate(r).result);
      // Odd requests speculate, even ones do not; all run together.
      const mixed = await Promise.all(requests.map((r, i) => engine.generate(i % 2 ? { ...r, speculative: SPEC } : r).result));
      mixed.forEach((r, i) => expectSame(r, plain[i]));
      expect(engine.metrics().draftAcceptanceRate).toBeGreaterThan(0);
      engine.clearPrefixCache();
      expect(engine.metrics().kvBlocksUsed).toBe(0);
    } finally {
      await engine.dispose();
    }
  });

  it('a stop string or the token limit inside an accepted draft ends the text exactly where plain decoding does', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 1024, prefixCacheEntries: 0 });
    try {
      const copied = model.tokenizer.decode(story.slice(8, 60));
      const stop = copied.slice(40, 46);
      for (const extra of [{ maxTokens: 3 }, { maxTokens: 17 }, { maxTokens: 60, stop: [stop] }]) {
        const request: EngineRequest = { prompt: repeating(8), temperature: 0, ignoreEos: true, logprobs: true, ...extra };
        const plain = await engine.generate(request).result;
        const fast = await engine.generate({ ...request, speculative: { method: 'prompt-lookup', draftTokens: 16, adaptive: false } }).result;
        expectSame(fast, plain);
      }
      engine.clearPrefixCache();
      expect(engine.metrics().kvBlocksUsed).toBe(0);
    } finally {
      await engine.dispose();
    }
  });

  it('under a KV pool too small for every draft and sequence: drafts give way, preemption recomputes, outputs unchanged', async () => {
    const engine = await createEngine(model, { kvCacheTokens: 128, blockSize: 4, maxBatchTokens: 64 });
    try {
      const requests: EngineRequest[] = Array.from({ length: 4 }, (_, i) => ({
        prompt: [bos, ...story.slice(0, 40), bos, ...story.slice(0, 3 + i)], maxTokens: 30, ignoreEos: true, logprobs: true,
        ...(i % 2 ? { temperature: 0.8, seed: i } : { temperature: 0 }),
      }));
      const plain: EngineResult[] = [];
      for (const r of requests) plain.push(await engine.generate(r).result);
      const fast = await Promise.all(requests.map((r) => engine.generate({ ...r, speculative: SPEC }).result));
      fast.forEach((r, i) => expectSame(r, plain[i]));
      expect(engine.metrics().preemptions).toBeGreaterThan(0);
      engine.clearPrefixCache();
      expect(engine.metrics().kvBlocksUsed).toBe(0);
    } finally {
      await engine.dispose();
    }
  });

  it('Model.generate takes the option; bad options are INVALID_REQUEST', async () => {
    const prompt = repeating(8);
    const plain = await model.generate(prompt, { temperature: 0, maxTokens: 30, ignoreEos: true }).result;
    const fast = await model.generate(prompt, { temperature: 0, maxTokens: 30, ignoreEos: true, speculative: SPEC }).result;
    expect(fast.tokens).toEqual(plain.tokens);
    const engine = await createEngine(model);
    try {
      for (const speculative of [{ method: 'eagle' }, { method: 'prompt-lookup', draftTokens: 1.5 }, { method: 'prompt-lookup', ngramMin: 0 }]) {
        let error: unknown;
        try {
          engine.generate({ prompt, speculative: speculative as never });
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(EngineError);
        expect((error as EngineError).code).toBe('INVALID_REQUEST');
      }
    } finally {
      await engine.dispose();
    }
  });
});

describe('speculative decoding on a sliding-window model', () => {
  it('drafts nothing (its KV cannot roll back over released blocks) and gives the plain output', async () => {
    const files = await swaModels();
    const m = await loadModel(await files.path(12), { threads: 1 });
    try {
      const engine = await createEngine(m, { blockSize: 4, kvCacheTokens: 256 });
      const prompt = [1, ...Array.from({ length: 30 }, (_, i) => 5 + (i % 7))];
      const request: EngineRequest = { prompt, maxTokens: 40, temperature: 0, ignoreEos: true, logprobs: true };
      const plain = await engine.generate(request).result;
      const fast = await engine.generate({ ...request, speculative: SPEC }).result;
      expectSame(fast, plain);
      expect(engine.metrics().draftedTokens).toBe(0);
      await engine.dispose();
    } finally {
      await m.dispose();
      await files.dispose();
    }
  });
});

if (!existsSync('../shared/models/stories260K-q4_0.gguf')) console.warn('speculative: ../shared absent, checked on the bundled F32 model only');
describe.skipIf(!existsSync('../shared/models/stories260K-q4_0.gguf'))('speculative decoding on Q4_0 weights', () => {
  it('greedy and seeded outputs identical to plain decoding', async () => {
    const m = await loadModel('../shared/models/stories260K-q4_0.gguf', { threads: 2 });
    try {
      const engine = await createEngine(m, { kvCacheTokens: 1024, prefixCacheEntries: 0 });
      for (const sampling of [{ temperature: 0 }, { temperature: 0.7, seed: 3 }]) {
        const request: EngineRequest = { prompt: repeating(6), maxTokens: 60, ignoreEos: true, logprobs: true, ...sampling };
        const plain = await engine.generate(request).result;
        expectSame(await engine.generate({ ...request, speculative: SPEC }).result, plain);
      }
      expect(engine.metrics().draftAcceptanceRate).toBeGreaterThan(0);
      await engine.dispose();
    } finally {
      await m.dispose();
    }
  });
});
