// Browser runs: Debian's Chromium (headless, driven by playwright-core) loads the bench page from the localhost
// server and calls its drivers (bench/web/page.js). One browser per (runtime, model, threads), each with a fresh
// profile; one fresh browser context, so one fresh renderer process, per repetition. Peak memory is that
// renderer's VmHWM (the page and its worker threads live in it), read from /proc through the pid Chromium
// reports over CDP.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Browser } from 'playwright-core';
import { importPeer } from './peers.js';
import type { RunFigures, RunRequest } from './types.js';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export class BrowserSession {
  private constructor(
    private readonly browser: Browser,
    private readonly origin: string,
  ) {}

  static async launch(origin: string): Promise<BrowserSession> {
    // Imported by file path, so from CommonJS: the API may sit on `default`.
    const pw = await importPeer<typeof import('playwright-core') & { default?: typeof import('playwright-core') }>('playwright-core');
    const chromium = pw.chromium ?? pw.default?.chromium;
    if (!chromium) throw new Error('playwright-core has no chromium export');
    // launch() gives each browser a fresh temporary profile (user-data-dir), removed on close.
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    return new BrowserSession(browser, origin);
  }

  async run(req: RunRequest, timeoutMs: number): Promise<RunFigures> {
    const context = await this.browser.newContext();
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      });
      await page.goto(`${this.origin}/`);
      await page.waitForFunction(() => (window as { benchReady?: boolean }).benchReady === true, undefined, { timeout: 30_000 });
      const isolated = await page.evaluate(() => self.crossOriginIsolated);
      if (!isolated) throw new Error('the bench page is not crossOriginIsolated (COOP/COEP headers missing?)');
      const fn = req.runtime === 'wllama' ? 'benchWllama' : 'benchWasmforge';
      const args = { ...req, modelPath: undefined };
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s`)), timeoutMs);
      });
      let r: { loadS: number; promptTps: number; decodeTps: number; promptTokens: number; decodeTokens: number; detail: string };
      try {
        r = await Promise.race([
          page.evaluate(([name, a]) => (window as unknown as Record<string, (x: unknown) => Promise<never>>)[name as string]!(a), [fn, args] as const),
          timeout,
        ]);
      } catch (e) {
        const more = errors.length ? ` (page: ${errors.slice(-3).join(' | ')})` : '';
        throw new Error(`${(e as Error).message.split('\n')[0]}${more}`);
      } finally {
        clearTimeout(timer);
      }
      if (r.promptTokens !== req.promptTokens) throw new Error(`${req.runtime} saw ${r.promptTokens} prompt tokens, expected ${req.promptTokens}`);
      if (r.decodeTokens !== req.decodeTokens) throw new Error(`${req.runtime} decoded ${r.decodeTokens} tokens, expected ${req.decodeTokens}`);
      const peakRssBytes = await this.rendererPeakRss();
      return { loadS: r.loadS, promptTps: r.promptTps, decodeTps: r.decodeTps, peakRssBytes, detail: r.detail };
    } finally {
      await context.close();
    }
  }

  /** The largest VmHWM among live renderer processes: ours (the only context open) loaded a model; a spare did not. */
  private async rendererPeakRss(): Promise<number | null> {
    try {
      const cdp = await this.browser.newBrowserCDPSession();
      const { processInfo } = (await cdp.send('SystemInfo.getProcessInfo')) as { processInfo: { type: string; id: number }[] };
      await cdp.detach();
      let peak: number | null = null;
      for (const p of processInfo) {
        if (p.type !== 'renderer') continue;
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.id}/status`, 'utf8'));
        if (m) peak = Math.max(peak ?? 0, Number(m[1]) * 1024);
      }
      return peak;
    } catch {
      return null; // reported as n/a in the table
    }
  }

  async close(): Promise<void> {
    await this.browser.close();
  }
}

/** Why browser runs cannot happen here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} not found (apt-get update && apt-get install -y chromium, or set CHROMIUM=/path/to/chromium)`;
  return undefined;
}

/**
 * The wasmforge ESM bundle for the page: dist/wasmforge.js when it is at least as new as every file under src/
 * (npm run build writes it), else a fresh one built here with the same esbuild options into bench/.cache/build.
 */
export async function wasmforgeBundle(root: string, buildDir: string, log: (s: string) => void): Promise<string> {
  const dist = join(root, 'dist', 'wasmforge.js');
  const newestSrc = newestMtime(join(root, 'src'));
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestSrc) return dist;
  const outfile = join(buildDir, `wasmforge-${process.pid}.js`);
  log(`${existsSync(dist) ? 'dist/wasmforge.js is older than src/' : 'dist/wasmforge.js is missing'}: bundling src/index.ts into ${relative(root, outfile)}`);
  const { build } = await import('esbuild');
  await build({
    entryPoints: [join(root, 'src', 'index.ts')], outfile, bundle: true, format: 'esm', platform: 'neutral',
    mainFields: ['module', 'main'], conditions: ['import', 'default'], target: 'es2022', external: ['node:*'], logLevel: 'warning',
  });
  return outfile;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}
