// The browser model cache (src/runtime/model-cache.ts) in headless Chromium, over OPFS: an
// interrupted download resumes with a Range request, the file is verified by size and SHA-256,
// a complete one is served without the network, a changed file on the server restarts the
// download (If-Range), wrong size or hash is rejected, and list/delete see it all. The cached File
// then loads in wasmforge and generates what Node generates.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../examples/serve.js';
import { chromiumStatus, launchChromium, type Chromium } from './portable/chromium.js';

const ROOT = join(import.meta.dirname, '..');
const CACHE = join(ROOT, 'test/.cache');
const MODEL = join(ROOT, 'models/stories260K.gguf');

const status = await chromiumStatus();
if (!status.ok) console.warn(`browser-cache: skipping: ${status.reason}`);

describe.skipIf(!status.ok)('browser model cache (OPFS) in headless Chromium', () => {
  let browser: Chromium;
  let server: Awaited<ReturnType<typeof startServer>>;
  let page: Page;
  let errors: string[];
  /** Range header (or "none") of every .gguf request the page makes. */
  const ranges: string[] = [];
  let bytes: Buffer;
  let sha: string;

  beforeAll(async () => {
    await mkdir(CACHE, { recursive: true });
    // The module under test, built for the browser (the library bundle does not export it yet).
    await build({ entryPoints: [join(ROOT, 'src/runtime/model-cache.ts')], outfile: join(CACHE, 'model-cache.js'), bundle: true, format: 'esm', platform: 'neutral', logLevel: 'warning' });
    bytes = await readFile(MODEL);
    sha = createHash('sha256').update(bytes).digest('hex');
    await copyFile(MODEL, join(CACHE, 'changing.gguf'));
    browser = await launchChromium();
    // 32 KiB every 5 ms: a download lasts long enough to be interrupted part way.
    server = await startServer({ isolated: false, throttle: { chunkBytes: 32768, delayMs: 5 } });
    ({ page, errors } = await browser.page());
    page.on('request', (r) => {
      if (r.url().includes('.gguf')) ranges.push(r.headers().range ?? 'none');
    });
    await page.goto(`${server.url}/test/portable/blank.html`);
    // A string, so vitest does not rewrite import() in code that runs in the page.
    await page.evaluate(`(async () => {
      window.importModule = (url) => import(url);
      window.cache = await import('/test/.cache/model-cache.js');
    })()`);
  });
  afterAll(async () => {
    await page?.close();
    await server?.close();
    await browser?.close();
  });

  /** Run fetchModel in the page, aborting once `abortAfter` bytes have arrived; returns the outcome. */
  const fetchIn = (url: string, opts: { sha256?: string; size?: number; abortAfter?: number }) =>
    page.evaluate(async ({ url, opts }) => {
      const ctl = new AbortController();
      try {
        const file = await (window as any).cache.fetchModel(url, {
          sha256: opts.sha256, size: opts.size, signal: ctl.signal, checkpointBytes: 65536,
          onProgress: (loaded: number) => opts.abortAfter !== undefined && loaded >= opts.abortAfter && ctl.abort(),
        });
        (window as any).lastFile = file;
        return { size: file.size as number };
      } catch (e) {
        return { error: (e as { code?: string }).code ?? String(e) };
      }
    }, { url, opts });
  const list = () => page.evaluate(() => (window as any).cache.listCachedModels()) as Promise<{ url: string; size: number; downloaded: number; complete: boolean; sha256?: string }[]>;

  it('resumes an interrupted download with a Range request and verifies it', async () => {
    const url = `${server.url}/models/stories260K.gguf`;
    expect(await list()).toEqual([]);
    expect(await fetchIn(url, { sha256: sha, size: bytes.length, abortAfter: 200_000 })).toEqual({ error: 'ABORTED' });
    const [partial] = await list();
    expect(partial).toMatchObject({ url, size: bytes.length, complete: false });
    expect(partial.downloaded).toBeGreaterThanOrEqual(200_000);
    expect(partial.downloaded).toBeLessThan(bytes.length);

    ranges.length = 0;
    expect(await fetchIn(url, { sha256: sha, size: bytes.length })).toEqual({ size: bytes.length });
    expect(ranges).toEqual([`bytes=${partial.downloaded}-`]);
    expect(await list()).toMatchObject([{ url, size: bytes.length, downloaded: bytes.length, complete: true, sha256: sha }]);
    // The File handed back holds the server's bytes (hashed again here by WebCrypto).
    const digest = await page.evaluate(async () => {
      const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await (window as any).lastFile.arrayBuffer()));
      return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
    });
    expect(digest).toBe(sha);
  });

  it('serves a complete model without the network, and it loads and generates', async () => {
    const url = `${server.url}/models/stories260K.gguf`;
    ranges.length = 0;
    expect(await fetchIn(url, { sha256: sha })).toEqual({ size: bytes.length });
    expect(ranges).toEqual([]);
    const text = await page.evaluate(async () => {
      const { loadModel } = await (window as any).importModule('/dist/wasmforge.js');
      const model = await loadModel((window as any).lastFile, { threads: 1 });
      const r = await model.generate('Once upon a time', { temperature: 0, maxTokens: 24 }).result;
      await model.dispose();
      return r.text;
    });
    const { loadModel } = await import(join(ROOT, 'dist/wasmforge.js'));
    const local = await loadModel(MODEL, { threads: 1 });
    expect(text).toBe((await local.generate('Once upon a time', { temperature: 0, maxTokens: 24 }).result).text);
    await local.dispose();
  });

  it('restarts from zero when the file changed on the server since the partial download', async () => {
    const url = `${server.url}/test/.cache/changing.gguf`;
    expect(await fetchIn(url, { abortAfter: 200_000 })).toEqual({ error: 'ABORTED' });
    const changed = Buffer.from(bytes);
    changed[10] ^= 0xff; // inside the part already downloaded: a plain resume would keep the old byte
    await new Promise((r) => setTimeout(r, 20)); // a new mtime, so a new ETag
    await writeFile(join(CACHE, 'changing.gguf'), changed);
    const want = createHash('sha256').update(changed).digest('hex');
    ranges.length = 0;
    expect(await fetchIn(url, { sha256: want })).toEqual({ size: changed.length });
    expect(ranges).toHaveLength(1);
    expect(ranges[0]).toMatch(/^bytes=\d+-$/); // it asked to resume; the server's 200 restarted it
    expect((await list()).find((m) => m.url === url)).toMatchObject({ complete: true, sha256: want });
  });

  it('rejects a wrong size or hash and keeps nothing of a bad download', async () => {
    const url = `${server.url}/models/stories260K.gguf?copy=2`;
    expect(await fetchIn(url, { size: bytes.length + 1 })).toEqual({ error: 'SIZE_MISMATCH' });
    expect(await fetchIn(url, { sha256: '0'.repeat(64) })).toEqual({ error: 'HASH_MISMATCH' });
    expect((await list()).map((m) => m.url)).not.toContain(url);
  });

  it('deletes cached models', async () => {
    const urls = (await list()).map((m) => m.url);
    expect(urls.length).toBeGreaterThanOrEqual(2);
    for (const url of urls) expect(await page.evaluate((u) => (window as any).cache.deleteCachedModel(u), url)).toBe(true);
    expect(await list()).toEqual([]);
    expect(await page.evaluate((u) => (window as any).cache.deleteCachedModel(u), urls[0])).toBe(false);
    expect(errors).toEqual([]);
  });
});
