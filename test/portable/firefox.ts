// Headless Firefox for the browser tests: Debian's firefox-esr (or $FIREFOX) driven by
// puppeteer-core over WebDriver BiDi, with a fresh profile that is removed on close. A second
// browser engine (SpiderMonkey) beside Chromium's V8. Node-only test helper.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX ?? '/usr/bin/firefox-esr';

/** Whether a Firefox test can run here; `reason` says why not. */
export async function firefoxStatus(): Promise<{ ok: boolean; reason?: string }> {
  if (!existsSync(FIREFOX)) return { ok: false, reason: `${FIREFOX} not found (apt-get install -y firefox-esr, or set FIREFOX)` };
  try {
    await import('puppeteer-core');
  } catch {
    return { ok: false, reason: 'npm package puppeteer-core is not installed' };
  }
  return { ok: true };
}

export interface Firefox {
  /** A new page whose console errors and page errors are collected into `errors`, and every console line into `lines`. */
  page(): Promise<{ page: Page; errors: string[]; lines: string[] }>;
  /** Open `url` in a new page and wait for its window.__wasmforgeResult (the portable suite's). */
  suiteResult(url: string): Promise<{ result: unknown; errors: string[] }>;
  close(): Promise<void>;
}

/** Firefox with a fresh profile. On 2 busy cores its first start has once taken over puppeteer's default 30 s
 *  (seen in CI 2026-12-02), so the start may take 120 s and a failed start is tried once more with a new profile. */
async function startFirefox(): Promise<{ browser: Browser; profile: string }> {
  const { default: puppeteer } = await import('puppeteer-core');
  for (let attempt = 1; ; attempt++) {
    const profile = await mkdtemp(join(tmpdir(), 'wasmforge-firefox-'));
    try {
      const browser = await puppeteer.launch({ browser: 'firefox', protocol: 'webDriverBiDi', executablePath: FIREFOX, headless: true, userDataDir: profile, timeout: 120_000 });
      return { browser, profile };
    } catch (err) {
      await rm(profile, { recursive: true, force: true });
      if (attempt >= 2) throw err;
    }
  }
}

export async function launchFirefox(): Promise<Firefox> {
  const { browser, profile } = await startFirefox();
  const firefox: Firefox = {
    async page() {
      const page = await browser.newPage();
      const errors: string[] = [];
      const lines: string[] = [];
      page.on('pageerror', (e) => errors.push(`pageerror: ${(e as Error).message}`));
      page.on('console', (m) => {
        lines.push(`${m.type()}: ${m.text()}`);
        // 404s are expected: the suite probes /models/ before /shared/models/.
        if (m.type() === 'error' && !m.text().includes('404')) errors.push(`console: ${m.text()}`);
      });
      return { page, errors, lines };
    },
    async suiteResult(url) {
      const { page, errors, lines } = await firefox.page();
      try {
        await page.goto(url);
        const handle = await page.waitForFunction(() => (window as { __wasmforgeResult?: unknown }).__wasmforgeResult, { timeout: 150_000, polling: 200 }).catch((err: unknown) => {
          // Say what the page had printed when it gave no result (a hang seen once in a while in full runs).
          throw new Error(`${(err as Error).message}; the page's last console lines:\n${lines.slice(-20).join('\n') || '(none)'}`, { cause: err });
        });
        return { result: await handle.jsonValue(), errors };
      } finally {
        await page.close();
      }
    },
    async close() {
      await browser.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
  return firefox;
}
