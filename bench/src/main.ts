// `npm run bench`: wasmforge against llama.cpp (node-llama-cpp) and wllama, in Node and headless Chromium, on
// random-weight llama models of real shapes. See bench/README.md for the flags and what each column means.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, join, relative } from 'node:path';
import { measureBandwidth, type BandwidthResult } from './bandwidth.js';
import { BrowserSession, chromiumMissing, CHROMIUM, wasmforgeBundle } from './browser.js';
import { childMain } from './child.js';
import { ensureModel, MODELS, modelBytes, type ModelBytes } from './models.js';
import { ensurePeers, peerDir, peerVersion, resolvePeer } from './peers.js';
import { BUILD_DIR, BUNDLE, CACHE, MODELS_DIR, RESULTS_DIR, ROOT, WEB_DIR } from './paths.js';
import { benchPrompt, DECODE_TOKENS, PROMPT_TOKENS } from './prompt.js';
import { renderMarkdown, type Report } from './report.js';
import { startServer, type BenchServer } from './server.js';
import { RUNTIMES, type Cell, type RunFigures, type RunRequest, type RuntimeId } from './types.js';

const USAGE = `npm run bench -- [options]
  --quick                 s15m Q4_0 only: under 3 minutes on a 2-core machine (--models s15m for all its types)
  --models LIST           s15m,m135,l1b,l8b (default all but l8b, the 4.6 GB GPU model); an entry may pick types: m135:q4_0+q4_k
  --types LIST            only these tensor types, e.g. q4_0,q8_0
  --runtimes LIST         wasmforge,wasmforge-web,llama.cpp,wllama (default all CPU ones), wasmforge-webgpu,llama.cpp-gpu
  --backend webgpu        the GPU table: wasmforge-webgpu, llama.cpp-gpu (node-llama-cpp's Vulkan/CUDA builds,
                          installed unless --no-install) and the WASM path beside them
  --threads LIST          thread counts (default 1,2)
  --reps N                repetitions per figure, median reported (default 3)
  --no-warmup             skip the untimed warm-up pass before each timed run
  --no-bandwidth          skip the memory bandwidth measurement
  --no-install            do not install missing peers (playwright-core, @wllama/wllama, Chromium)
  --no-save               print the report only; do not write bench/results/
  --out NAME              results file name (default DATE, DATE-quick or DATE-partial)
  --timeout S             per-run limit in seconds (default scales with model size)
  --render FILE.json      re-render a saved results JSON as markdown (written beside it), run nothing`;

/** Bad flags: printed without a stack trace. */
class UsageError extends Error {}

interface Options {
  quick: boolean;
  models: Map<string, string[] | undefined>;
  types?: string[];
  runtimes: RuntimeId[];
  threads: number[];
  reps: number;
  warmup: boolean;
  bandwidth: boolean;
  install: boolean;
  save: boolean;
  out?: string;
  timeoutS?: number;
  partial: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    quick: false, models: new Map(MODELS.filter((m) => !m.onRequest).map((m) => [m.name, undefined])), runtimes: RUNTIMES.filter((r) => !r.gpu).map((r) => r.id), threads: [1, 2],
    reps: 3, warmup: true, bandwidth: true, install: true, save: true, partial: false,
  };
  const list = (i: number) => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${argv[i]} needs a value`);
    return v.split(',').map((s) => s.trim()).filter(Boolean);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    switch (a) {
      case '--quick': o.quick = true; o.models = new Map([['s15m', ['Q4_0']]]); break;
      case '--models':
        o.models = new Map(list(i).map((e) => {
          const [name, types] = e.split(':');
          if (!MODELS.some((m) => m.name === name)) throw new UsageError(`unknown model ${name} (have ${MODELS.map((m) => m.name).join(', ')})`);
          return [name!, types ? types.split('+').map((t) => t.toUpperCase()) : undefined];
        }));
        o.partial = true; i++; break;
      case '--types': o.types = list(i).map((t) => t.toUpperCase()); o.partial = true; i++; break;
      case '--runtimes':
        o.runtimes = list(i).map((r) => {
          if (!RUNTIMES.some((x) => x.id === r)) throw new UsageError(`unknown runtime ${r} (have ${RUNTIMES.map((x) => x.id).join(', ')})`);
          return r as RuntimeId;
        });
        o.partial = true; i++; break;
      case '--threads':
        o.threads = list(i).map(Number);
        if (o.threads.some((t) => !Number.isInteger(t) || t < 1)) throw new UsageError('--threads takes positive integers');
        o.partial = true; i++; break;
      case '--reps': o.reps = Number(argv[++i]); if (!Number.isInteger(o.reps) || o.reps < 1) throw new UsageError('--reps takes a positive integer'); break;
      case '--backend':
        if (argv[i + 1] !== 'webgpu') throw new UsageError('--backend takes webgpu');
        o.runtimes = ['wasmforge-webgpu', 'llama.cpp-gpu', 'wasmforge'];
        i++;
        break;
      case '--no-warmup': o.warmup = false; break;
      case '--no-bandwidth': o.bandwidth = false; break;
      case '--no-install': o.install = false; break;
      case '--no-save': o.save = false; break;
      case '--out': o.out = argv[++i]; break;
      case '--timeout': o.timeoutS = Number(argv[++i]); break;
      case '-h': case '--help': console.log(USAGE); process.exit(0);
      default: throw new UsageError(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

const t0 = performance.now();
const log = (s: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

function medianFigures(runs: RunFigures[]): RunFigures {
  const rss = runs.map((r) => r.peakRssBytes).filter((x): x is number => x !== null);
  return {
    loadS: median(runs.map((r) => r.loadS)), promptTps: median(runs.map((r) => r.promptTps)), decodeTps: median(runs.map((r) => r.decodeTps)),
    peakRssBytes: rss.length ? median(rss) : null, detail: runs[0]?.detail,
  };
}

/** One run in a fresh Node process; the child prints `BENCH_RESULT <json>`. */
async function runNodeChild(req: RunRequest, timeoutMs: number): Promise<RunFigures> {
  const reqFile = join(BUILD_DIR, `request-${process.pid}.json`);
  writeFileSync(reqFile, JSON.stringify(req));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BUNDLE, '--child', reqFile], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      if (code === 0 && line) resolve(JSON.parse(line.slice('BENCH_RESULT '.length)) as RunFigures);
      else {
        const why = signal === 'SIGKILL' ? `timed out after ${(timeoutMs / 1000).toFixed(0)} s` : `exit ${code ?? signal}`;
        // the error's own line (its stack follows it) and the last lines
        const lines = stderr.trim().split('\n').filter((l) => l.trim());
        const error = lines.find((l) => /\b\w*Error\b/.test(l) && !/^\s+at /.test(l));
        const tail = [...new Set([...(error ? [error] : []), ...lines.slice(-3)])].join(' | ').slice(0, 600);
        reject(new Error(`${why}${tail ? `: ${tail}` : ''}`));
      }
    });
  });
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'assembly'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${sha} (src/ or assembly/ modified)` : sha;
  } catch {
    return 'unknown';
  }
}

function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

function chromiumVersion(): string {
  try {
    return execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'not available';
  }
}

/** Try Debian's Chromium when it is missing and we may install things (root, apt-get). */
function tryInstallChromium(): void {
  if (process.getuid?.() !== 0) return;
  try {
    log('Chromium is missing: apt-get update && apt-get install -y chromium ...');
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (e) {
    log(`  apt-get failed: ${(e as Error).message.split('\n')[0]}`);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return childMain(argv[1]!);
  if (argv[0] === '--render') {
    if (!argv[1]) throw new UsageError('--render needs a results .json file');
    const md = renderMarkdown(JSON.parse(readFileSync(argv[1], 'utf8')) as Report);
    writeFileSync(argv[1].replace(/\.json$/, '') + '.md', md + '\n');
    console.log(md);
    return;
  }
  const o = parseArgs(argv);
  const started = performance.now();
  // Other processes skew the figures (2-thread runs most): the load average says how busy the machine was.
  const loadBefore = loadavg()[0]!;
  mkdirSync(BUILD_DIR, { recursive: true });
  const notes: string[] = [];

  // ---- models
  const selected: { model: (typeof MODELS)[number]; type: string; path: string; bytes: ModelBytes }[] = [];
  for (const model of MODELS) {
    if (!o.models.has(model.name)) continue;
    const pick = o.models.get(model.name);
    for (const type of model.types) {
      if (pick && !pick.includes(type)) continue;
      if (o.types && !o.types.includes(type)) continue;
      const path = await ensureModel(model, type, log);
      selected.push({ model, type, path, bytes: await modelBytes(path) });
    }
  }
  if (selected.length === 0) throw new Error('no model matches the selection');
  const prompt = await benchPrompt(selected[0]!.path);

  // ---- peers: a runtime that cannot run here is skipped, with the reason in every one of its cells
  const skip = new Map<RuntimeId, string>();
  const wantBrowser = o.runtimes.some((r) => RUNTIMES.find((x) => x.id === r)!.where === 'browser');
  if (o.runtimes.includes('llama.cpp') && !resolvePeer('node-llama-cpp')) skip.set('llama.cpp', 'node-llama-cpp (a devDependency) is not installed: run npm install');
  if (o.runtimes.includes('llama.cpp-gpu')) {
    if (!resolvePeer('node-llama-cpp')) skip.set('llama.cpp-gpu', 'node-llama-cpp (a devDependency) is not installed: run npm install');
    else if (o.install && process.platform === 'linux' && process.arch === 'x64') {
      // node-llama-cpp's prebuilt GPU builds, the same version as its CPU one
      const v = peerVersion('node-llama-cpp');
      try {
        execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', `@node-llama-cpp/linux-x64-vulkan@${v}`, `@node-llama-cpp/linux-x64-cuda@${v}`], { cwd: ROOT, stdio: 'ignore' });
      } catch (e) {
        notes.push(`installing node-llama-cpp's GPU builds failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  if (wantBrowser) {
    if (chromiumMissing() && o.install) tryInstallChromium();
    const missing = chromiumMissing() ?? ensurePeers(['playwright-core'], { install: o.install, log }).get('playwright-core');
    if (missing) for (const r of ['wasmforge-web', 'wllama'] as const) skip.set(r, missing);
  }
  if (o.runtimes.includes('wllama') && !skip.has('wllama')) {
    const why = ensurePeers(['@wllama/wllama'], { install: o.install, log }).get('@wllama/wllama');
    if (why) skip.set('wllama', why);
    else if (peerVersion('@wllama/wllama') !== '2.3.7') notes.push(`wllama ${peerVersion('@wllama/wllama')} found (2.3.7 is the version the bench is written for)`);
  }
  for (const [r, why] of skip) log(`skipping ${r}: ${why}`);

  // ---- browser side: server and bundle
  let server: BenchServer | undefined;
  let bundle: string | undefined;
  if (wantBrowser && !(skip.has('wasmforge-web') && skip.has('wllama'))) {
    bundle = await wasmforgeBundle(ROOT, BUILD_DIR, log);
    const wllamaDir = peerDir('@wllama/wllama');
    server = await startServer(
      { '/models/': MODELS_DIR, ...(wllamaDir ? { '/wllama/': wllamaDir } : {}) },
      { '/': join(WEB_DIR, 'index.html'), '/page.js': join(WEB_DIR, 'page.js'), '/wasmforge.js': bundle },
    );
  }

  // ---- bandwidth
  let dram: BandwidthResult[] = [];
  const perModelBw = new Map<string, BandwidthResult[]>();
  if (o.bandwidth) {
    log('measuring memory read bandwidth ...');
    try {
      dram = await measureBandwidth(1 << 30, o.threads);
      for (const s of selected) perModelBw.set(`${s.model.name} ${s.type}`, await measureBandwidth(s.bytes.bytesPerToken, o.threads));
    } catch (e) {
      notes.push(`bandwidth measurement failed: ${(e as Error).message}`);
    }
  }

  // ---- runs
  const cells: Cell[] = [];
  try {
    for (const s of selected) {
      const timeoutMs = (o.timeoutS ?? 120 + (4 * s.bytes.fileBytes) / 2 ** 20) * 1000;
      for (const threads of o.threads) {
        for (const runtime of o.runtimes) {
          if (RUNTIMES.find((x) => x.id === runtime)!.gpu && threads !== o.threads[0]) continue; // a GPU run does not depend on CPU threads
          const cell: Cell = { model: s.model.name, type: s.type, runtime, threads, runs: [] };
          cells.push(cell);
          const label = `${s.model.name} ${s.type} ${runtime} ${threads}T`;
          if (skip.has(runtime)) {
            cell.skipped = skip.get(runtime);
            continue;
          }
          const req: RunRequest = {
            runtime, modelPath: s.path, modelUrl: `/models/${basename(s.path)}`, threads, promptText: prompt.text, promptTokens: PROMPT_TOKENS,
            decodeTokens: DECODE_TOKENS, warmupText: prompt.warmupText, warmup: o.warmup, contextLength: 512,
          };
          const where = RUNTIMES.find((x) => x.id === runtime)!.where;
          let session: BrowserSession | undefined;
          try {
            if (where === 'browser') session = await BrowserSession.launch(server!.origin);
            for (let rep = 0; rep < o.reps; rep++) {
              const f = session ? await session.run(req, timeoutMs) : await runNodeChild(req, timeoutMs);
              cell.runs.push(f);
            }
            cell.median = medianFigures(cell.runs);
            const m = cell.median;
            log(`${label.padEnd(34)} load ${m.loadS.toFixed(2)} s  pp ${m.promptTps.toFixed(1)}  tg ${m.decodeTps.toFixed(1)} tok/s  peak ${m.peakRssBytes ? (m.peakRssBytes / 2 ** 20).toFixed(0) + ' MiB' : 'n/a'}`);
          } catch (e) {
            cell.error = (e as Error).message;
            log(`${label.padEnd(34)} FAILED: ${cell.error}`);
          } finally {
            await session?.close().catch((e: Error) => log(`closing Chromium: ${e.message}`));
          }
        }
      }
    }
  } finally {
    await server?.close();
    rmSync(join(BUILD_DIR, `request-${process.pid}.json`), { force: true });
    if (bundle?.startsWith(BUILD_DIR)) rmSync(bundle, { force: true });
  }

  // ---- report
  const now = new Date();
  const date = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
  if (cells.some((c) => c.runs.some((r) => /SOFTWARE adapter/.test(r.detail ?? '')))) {
    notes.push('the WebGPU figures come from a software adapter (SwiftShader or lavapipe on the CPU): they check that the path runs, they are not GPU speed');
  }
  if (o.runtimes.includes('llama.cpp')) {
    notes.push('node-llama-cpp adds per-token overhead to small-model decode, and its 2-thread decode can be slower than 1-thread (shared/notes/peers.md); ' +
      'the llama-bench columns are llama.cpp\'s own figures from peers.md (quiet machine, 64 decode steps), not measured in this run');
  }
  const report: Report = {
    date,
    machine: {
      cpu: `${cpuModel()}, ${cpus().length} logical cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
      node: process.version,
      chromium: wantBrowser ? chromiumVersion() : 'not used',
      'load average (1 min) at start / end': `${loadBefore.toFixed(2)} / ${loadavg()[0]!.toFixed(2)}`,
      'wasmforge commit': gitCommit(),
      'browser bundle': bundle ? (bundle.startsWith(BUILD_DIR) ? 'src/index.ts bundled by the bench (dist/wasmforge.js missing or older than src/)' : relative(ROOT, bundle)) : 'not used',
      peers: `node-llama-cpp ${peerVersion('node-llama-cpp') ?? 'missing'}, @wllama/wllama ${peerVersion('@wllama/wllama') ?? 'missing'}, playwright-core ${peerVersion('playwright-core') ?? 'missing'}`,
    },
    settings: { 'prompt tokens': PROMPT_TOKENS, 'decode tokens': DECODE_TOKENS, repetitions: o.reps, warmup: o.warmup, context: 512 },
    bandwidth: dram,
    models: selected.map((s) => ({ key: `${s.model.name} ${s.type}`, model: s.model.name, type: s.type, bytes: s.bytes, bandwidth: perModelBw.get(`${s.model.name} ${s.type}`) ?? [] })),
    cells,
    notes,
  };
  const md = renderMarkdown(report);
  console.log(md);
  if (o.save) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const name = o.out ?? (o.quick && !o.partial ? `${date}-quick` : o.partial ? `${date}-partial` : date);
    writeFileSync(join(RESULTS_DIR, `${name}.md`), md + '\n');
    writeFileSync(join(RESULTS_DIR, `${name}.json`), JSON.stringify(report, null, 2) + '\n');
    log(`saved ${relative(ROOT, join(RESULTS_DIR, name))}.md and .json`);
  }
  log(`bench finished in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (cells.some((c) => c.error)) process.exitCode = 1;
}

main().catch((e) => {
  log(`bench: ${e instanceof UsageError ? e.message : ((e as Error).stack ?? e)}`);
  process.exit(1);
});
