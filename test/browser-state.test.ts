// Saved KV states in the browser (src/runtime/state-store.ts) in headless Chromium over OPFS: a
// prompt's KV saved, the page reloaded (a new engine, nothing in memory), the state restored from
// OPFS: the prompt's KV is reused and the generation is bit for bit the uninterrupted one (tokens
// and log-probs); names are checked, unknown ones are NOT_FOUND, list and delete see the states.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../examples/serve.js';
import { chromiumStatus, launchChromium, type Chromium } from './portable/chromium.js';

const ROOT = join(import.meta.dirname, '..');
const status = await chromiumStatus();
if (!status.ok) console.warn(`browser-state: skipping: ${status.reason}`);

const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends every day.';
const REQUEST = { prompt: PROMPT + ' One day', temperature: 0, maxTokens: 32, ignoreEos: true, logprobs: true };

describe.skipIf(!status.ok)('saved KV states in OPFS (headless Chromium)', () => {
  let browser: Chromium;
  let server: Awaited<ReturnType<typeof startServer>>;
  let page: Page;
  let errors: string[];

  /** Load the bundle and stories260K with an engine in the page (after every reload). */
  const setUp = () => page.evaluate(`(async () => {
    window.wf = await import('/dist/wasmforge.js');
    window.model = await window.wf.loadModel('/models/stories260K.gguf', { threads: 1 });
    window.engine = await window.wf.createEngine(window.model);
  })()`);
  const generate = () => page.evaluate(`(async () => {
    const r = await window.engine.generate(${JSON.stringify(REQUEST)}).result;
    return { tokens: r.tokens, logprobs: r.completions[0].logprobs, cached: r.usage.cachedPromptTokens, prompt: r.usage.promptTokens };
  })()`) as Promise<{ tokens: number[]; logprobs: number[]; cached: number; prompt: number }>;

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist/wasmforge.js'))) throw new Error('dist/wasmforge.js is missing: run npm run build');
    browser = await launchChromium();
    server = await startServer({ isolated: false });
    ({ page, errors } = await browser.page());
    await page.goto(`${server.url}/test/portable/blank.html`);
  }, 120_000);
  afterAll(async () => {
    await page?.close();
    await server?.close();
    await browser?.close();
  });

  it('a state saved to OPFS survives a reload and gives the uninterrupted generation, reusing its KV', async () => {
    await setUp();
    const uninterrupted = await generate();
    expect(uninterrupted.cached).toBe(0);
    await page.evaluate(`(async () => {
      const bytes = await window.engine.saveState(${JSON.stringify(PROMPT)});
      await window.wf.saveStateToOPFS('lily story', bytes);
    })()`);
    await page.reload();
    await setUp();
    const names = await page.evaluate(`window.wf.listSavedStates()`);
    expect(names).toEqual(['lily story']);
    const restoredTokens = await page.evaluate(`(async () => window.engine.restoreState(await window.wf.loadStateFromOPFS('lily story')).length)()`) as number;
    expect(restoredTokens).toBeGreaterThan(20);
    const restored = await generate();
    expect(restored.cached).toBeGreaterThanOrEqual(restoredTokens - 1); // the last prompt token is evaluated again for its logits
    expect(restored.tokens).toEqual(uninterrupted.tokens);
    expect(restored.logprobs).toEqual(uninterrupted.logprobs);
    expect(errors).toEqual([]);
  }, 120_000);

  it('typed errors for unknown and bad names; delete removes a state', async () => {
    const codes = await page.evaluate(`(async () => {
      const code = async (f) => { try { await f(); return 'none'; } catch (e) { return e.name + ' ' + e.code; } };
      return {
        unknown: await code(() => window.wf.loadStateFromOPFS('nope')),
        slash: await code(() => window.wf.saveStateToOPFS('a/b', new Uint8Array(4))),
        empty: await code(() => window.wf.loadStateFromOPFS('')),
        deleted: await window.wf.deleteSavedState('lily story'),
        again: await window.wf.deleteSavedState('lily story'),
        left: await window.wf.listSavedStates(),
      };
    })()`);
    expect(codes).toEqual({ unknown: 'StateStoreError NOT_FOUND', slash: 'StateStoreError BAD_NAME', empty: 'StateStoreError BAD_NAME', deleted: true, again: false, left: [] });
  });
});
