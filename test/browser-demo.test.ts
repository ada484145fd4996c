// End to end: the chat page (examples/browser/) in headless Chromium, served by examples/serve.js.
// Load the bundled stories260K through the page, generate (the text must equal what the library
// gives in Node for the same settings), stop a long generation with the Stop button, and save a
// screenshot (test/.cache/browser-demo.png). Then the same page without COOP/COEP runs one thread.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../examples/serve.js';
import { chromiumStatus, launchChromium, type Chromium } from './portable/chromium.js';

const ROOT = join(import.meta.dirname, '..');
const BUNDLE = join(ROOT, 'dist/wasmforge.js');
const SCREENSHOT = join(ROOT, 'test/.cache/browser-demo.png');
const PROMPT = 'Once upon a time';
// The page's sampling fields, set by the test; temperature 0 makes the output deterministic.
const SETTINGS = { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, seed: 5 };

const status = await chromiumStatus();
if (!status.ok) console.warn(`browser-demo: skipping: ${status.reason}`);

/** What the library itself generates in Node for these settings. */
async function expected(maxTokens: number): Promise<string> {
  const { loadModel } = await import(BUNDLE);
  const model = await loadModel(join(ROOT, 'models/stories260K.gguf'), { threads: 1 });
  try {
    return (await model.generate(PROMPT, { ...SETTINGS, maxTokens }).result).text;
  } finally {
    await model.dispose();
  }
}

// Llama 2's chat template, as in test/engine-chat.test.ts.
const LLAMA2 = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** stories260K re-written (by the library's GGUF writer) with a chat template in its metadata. */
async function writeChatModel(path: string): Promise<void> {
  const wf = await import(BUNDLE);
  const bytes = await readFile(join(ROOT, 'models/stories260K.gguf'));
  const file = await wf.readGGUF(wf.bufferSource(bytes));
  const metadata = [...file.metadata].filter(([k]: [string]) => k !== 'general.alignment');
  metadata.push(['tokenizer.chat_template', { type: wf.GGUFValueType.STRING, value: LLAMA2 }]);
  const tensors = file.tensors.map((t: any) => ({ name: t.name, dims: [...t.dims], type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes) }));
  await writeFile(path, wf.writeGGUF(metadata, tensors, { alignment: file.alignment }));
}

/** Load stories260K through the page: the "Load stories260K" button (a URL), the file picker, or drag-and-drop. */
async function loadBundled(page: Page, via: 'url' | 'file' | 'drop' = 'url'): Promise<number> {
  if (via === 'url') await page.click('#bundled');
  else if (via === 'file') await page.setInputFiles('#file', join(ROOT, 'models/stories260K.gguf'));
  else {
    const dataTransfer = await page.evaluateHandle(async () => {
      const bytes = await (await fetch('../../models/stories260K.gguf')).arrayBuffer();
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.gguf'));
      return dt;
    });
    await page.dispatchEvent('#drop', 'dragover', { dataTransfer });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer });
  }
  await page.waitForFunction(() => document.getElementById('model-status')!.textContent!.startsWith('Ready'), null, { timeout: 60_000 });
  expect(await page.isHidden('#progress')).toBe(true);
  return Number(await page.getAttribute('#model-status', 'data-threads'));
}

async function send(page: Page, maxTokens: number, prompt = PROMPT): Promise<{ text: string; stopReason: string }> {
  for (const [id, v] of Object.entries({ ...SETTINGS, maxTokens })) await page.fill(`#${id}`, String(v));
  const before = await page.locator('.msg.assistant').count();
  await page.fill('#prompt', prompt);
  await page.press('#prompt', 'Enter');
  const reply = page.locator('.msg.assistant').nth(before);
  await reply.and(page.locator('[data-stop-reason]')).waitFor({ timeout: 60_000 });
  return { text: (await reply.getAttribute('data-text'))!, stopReason: (await reply.getAttribute('data-stop-reason'))! };
}

describe.skipIf(!status.ok)('browser chat page (examples/browser) in headless Chromium', () => {
  let browser: Chromium;
  beforeAll(async () => {
    if (!existsSync(BUNDLE)) throw new Error('dist/wasmforge.js is missing: run npm run build');
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());

  it('cross-origin isolated: loads the bundled model with threads, streams, stops, reports tok/s', async () => {
    const server = await startServer({ isolated: true });
    const { page, errors } = await browser.page();
    try {
      await page.setViewportSize({ width: 900, height: 900 });
      await page.goto(`${server.url}/examples/browser/`);
      expect(await page.textContent('#env')).toContain('Cross-origin isolated');
      expect(await loadBundled(page)).toBeGreaterThan(1);

      const full = await send(page, 40);
      expect(full.stopReason).toBe('max_tokens');
      expect(full.text).toBe(await expected(40));
      expect(await page.textContent('#speed')).toMatch(/generated: 40 tokens at \d+(\.\d+)? tok\/s/);

      // A long generation stopped with the Stop button once 60 characters have streamed in (the
      // click happens in the page, the moment the text is there, so the test does not race it).
      await page.evaluate(() => {
        const chat = document.getElementById('chat')!;
        const observer = new MutationObserver(() => {
          const streaming = chat.querySelector<HTMLElement>('.msg.assistant.streaming');
          if (streaming && streaming.dataset.text!.length >= 60) {
            observer.disconnect();
            document.getElementById('stop')!.click();
          }
        });
        observer.observe(chat, { subtree: true, childList: true, characterData: true });
      });
      const stopped = await send(page, 600);
      const long = await expected(600);
      expect(stopped.stopReason).toBe('aborted');
      expect(stopped.text.length).toBeGreaterThanOrEqual(60);
      expect(stopped.text.length).toBeLessThan(long.length);
      expect(long.startsWith(stopped.text)).toBe(true);
      expect(await page.isDisabled('#stop')).toBe(true);
      expect(await page.isEnabled('#send')).toBe(true);

      await mkdir(join(ROOT, 'test/.cache'), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  });

  it('offers the GPU: with WebGPU chosen it loads on the adapter (SwiftShader here), says so, and generates', async () => {
    const server = await startServer({ isolated: true });
    const { page, errors } = await browser.page();
    try {
      await page.goto(`${server.url}/examples/browser/`);
      expect(await page.isEnabled('#backend option[value="webgpu"]')).toBe(true);
      await page.selectOption('#backend', 'webgpu');
      await loadBundled(page);
      expect(await page.getAttribute('#model-status', 'data-backend')).toBe('webgpu');
      expect(await page.textContent('#model-status')).toMatch(/WebGPU on google swiftshader/);
      const r = await send(page, 24);
      expect(r.stopReason).toBe('max_tokens');
      expect(r.text.length).toBeGreaterThan(0);
      // the default (auto) takes no software adapter: WebAssembly
      await page.selectOption('#backend', 'auto');
      await loadBundled(page);
      expect(await page.getAttribute('#model-status', 'data-backend')).toBe('wasm');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  });

  it('a model with a chat template: the conversation is rendered with it, turn after turn', async () => {
    await mkdir(join(ROOT, 'test/.cache'), { recursive: true });
    const path = join(ROOT, 'test/.cache/stories260K-llama2-chat.gguf');
    await writeChatModel(path);
    const { loadModel, ChatTemplate } = await import(BUNDLE);
    const local = await loadModel(path, { threads: 1 });
    const template = ChatTemplate.fromMetadata(local.file.metadata, local.tokenizer);
    const server = await startServer({ isolated: true });
    const { page, errors } = await browser.page();
    try {
      await page.goto(`${server.url}/examples/browser/`);
      await page.setInputFiles('#file', path);
      await page.waitForFunction(() => document.getElementById('model-status')!.textContent!.startsWith('Ready'), null, { timeout: 60_000 });
      expect(await page.textContent('#model-status')).toContain('chat template from the model');
      const messages: { role: string; content: string }[] = [];
      for (const user of ['Tell me a story.', 'More!']) {
        messages.push({ role: 'user', content: user });
        const want = await local.generate(template.render(messages), { ...SETTINGS, maxTokens: 16, addSpecial: false, parseSpecial: true }).result;
        const got = await send(page, 16, user);
        expect(got.text).toBe(want.text);
        expect(want.tokens.length).toBeGreaterThan(0);
        messages.push({ role: 'assistant', content: want.text });
      }
      expect(errors).toEqual([]);
    } finally {
      await local.dispose();
      await page.close();
      await server.close();
    }
  });

  it('not isolated: a model from the file picker or dropped on the page, one thread, same text', async () => {
    const server = await startServer({ isolated: false });
    const { page, errors } = await browser.page();
    try {
      await page.goto(`${server.url}/examples/browser/`);
      expect(await page.textContent('#env')).toContain('one thread');
      expect(await loadBundled(page, 'file')).toBe(1);
      const r = await send(page, 24);
      expect(r.text).toBe(await expected(24));
      await page.waitForFunction(() => !document.getElementById('bundled')!.hasAttribute('disabled'));
      expect(await loadBundled(page, 'drop')).toBe(1);
      expect(await page.textContent('#model-status')).toContain('Ready: dropped.gguf');
      expect(await page.locator('.msg').count()).toBe(2); // the chat is still there
      expect((await send(page, 24)).text).toBe(await expected(24));
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  });
});
