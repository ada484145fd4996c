// Headless Chromium for the browser tests: Debian's /usr/bin/chromium (or $CHROMIUM) driven by
// playwright-core, with a fresh profile that is removed on close. Node-only test helper.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// --enable-unsafe-webgpu: WebGPU on SwiftShader without a GPU (the suite runs the WebGPU backend there).
const FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Whether a browser test can run here; `reason` says why not. */
export async function chromiumStatus(): Promise<{ ok: boolean; reason?: string }> {
  if (!existsSync(CHROMIUM)) return { ok: false, reason: `${CHROMIUM} not found (apt-get install -y chromium, or set CHROMIUM)` };
  try {
    await import('playwright-core');
  } catch {
    return { ok: false, reason: 'npm package playwright-core is not installed' };
  }
  return { ok: true };
}

export interface Chromium {
  context: BrowserContext;
  /** A new page whose console errors and page errors are collected into `errors`. */
  page(): Promise<{ page: Page; errors: string[] }>;
  /** Open `url` in a new page and wait for its window.__wasmforgeResult (the portable suite's). */
  suiteResult(url: string): Promise<{ result: unknown; errors: string[] }>;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Chromium> {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'wasmforge-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  const browser: Chromium = {
    context,
    async page() {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        // 404s are expected: the suite probes /models/ before /shared/models/.
        if (m.type() === 'error' && !m.text().includes('404')) errors.push(`console: ${m.text()}`);
      });
      return { page, errors };
    },
    async suiteResult(url) {
      const { page, errors } = await browser.page();
      try {
        await page.goto(url);
        const handle = await page.waitForFunction(() => (window as { __wasmforgeResult?: unknown }).__wasmforgeResult, null, { timeout: 150_000 });
        return { result: await handle.jsonValue(), errors };
      } finally {
        await page.close();
      }
    },
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
  return browser;
}
