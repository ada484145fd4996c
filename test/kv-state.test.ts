// Saved KV state (Engine.saveState / restoreState): a prompt's K/V saved as bytes and restored into
// a fresh engine (a new process would do the same) is reused there: the prompt is not computed
// again (cached prompt tokens), and the generation continues with exactly the tokens and
// log-probs of one that never stopped. The bytes are untrusted: another model's state, another KV
// layout, truncated or altered bytes are typed errors and nothing changes.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';

const Q8 = '../shared/models/stories260K-q8_0.gguf';
let model: Model;
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball';

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 1 });
});
afterAll(async () => model?.dispose());

describe('saved KV state', () => {
  it('restored into a fresh engine, the prompt is reused and generation continues as uninterrupted, bit for bit', async () => {
    const request = { prompt: PROMPT + ' and', maxTokens: 40, temperature: 0.8, seed: 9, logprobs: true };
    const first = await createEngine(model);
    const state = await first.saveState(PROMPT);
    const uninterrupted = await first.generate(request).result;
    await first.dispose();

    const fresh = await createEngine(model);
    const plain = await fresh.generate(request).result;
    expect(plain.usage.cachedPromptTokens).toBe(0);
    fresh.clearPrefixCache();
    const tokens = fresh.restoreState(state);
    expect(tokens).toEqual(model.tokenizer.encode(PROMPT, { addSpecial: true }));
    const restored = await fresh.generate(request).result;
    // Reused in whole KV blocks.
    expect(restored.usage.cachedPromptTokens).toBeGreaterThanOrEqual(tokens.length - 16);
    expect(restored.tokens).toEqual(uninterrupted.tokens);
    expect(restored.completions[0]!.logprobs).toEqual(uninterrupted.completions[0]!.logprobs);
    expect(restored.tokens).toEqual(plain.tokens);
    await fresh.dispose();
  });

  it('bad bytes, another model, another KV layout: typed errors, and the engine goes on', async () => {
    const engine = await createEngine(model);
    const state = await engine.saveState(PROMPT);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(EngineError);
        return (e as EngineError).code;
      }
      return 'no error';
    };
    expect(code(() => engine.restoreState(state.subarray(0, state.length - 1)))).toBe('INVALID_STATE');
    expect(code(() => engine.restoreState(new Uint8Array(10)))).toBe('INVALID_STATE');
    const wrongMagic = state.slice();
    wrongMagic[0] ^= 0xff;
    expect(code(() => engine.restoreState(wrongMagic))).toBe('INVALID_STATE');
    const otherVersion = state.slice();
    otherVersion[4] = 99;
    expect(code(() => engine.restoreState(otherVersion))).toBe('INVALID_STATE');
    const badToken = state.slice();
    new DataView(badToken.buffer).setUint32(56, 999_999, true); // the first token id
    expect(code(() => engine.restoreState(badToken))).toBe('INVALID_STATE');
    const f32 = await createEngine(model, { kvCacheType: 'f32' });
    expect(code(() => f32.restoreState(state))).toBe('STATE_MISMATCH');
    await f32.dispose();
    if (existsSync(Q8)) {
      const q8 = await loadModel(Q8, { threads: 1 });
      expect(code(() => q8.engine().restoreState(state))).toBe('STATE_MISMATCH');
      await q8.dispose();
    }
    // Still fine.
    expect((await engine.generate({ prompt: PROMPT, maxTokens: 3, temperature: 0 }).result).tokens).toHaveLength(3);
    expect(engine.restoreState(state)).toHaveLength(model.tokenizer.encode(PROMPT, { addSpecial: true }).length);
    await engine.dispose();
  });
});
