// The OpenAI-compatible server under load beside llama.cpp's own llama-server (../shared/bin), on
// the same model, machine and load, in one run: 1, 8 and 32 concurrent streaming clients sending
// /v1/completions requests back to back (distinct prompts, so no prefix reuse; ignore_eos, so each
// makes exactly --tokens tokens). Reports requests/s, aggregate generated tok/s and TTFT p50/p99.
// Run: npx tsx bench/server.ts [--model m135] [--type Q4_0] [--seconds 30] [--threads 2] [--tokens 64]
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureModel, MODELS } from './src/models.js';
import { percentile, runLoad } from '../test/helpers/server-load.js';
import { freePort } from '../test/helpers/ports.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const ROOT = join(import.meta.dirname, '..');
const shape = MODELS.find((m) => m.name === opt('model', 'm135'))!;
const type = opt('type', 'Q4_0');
const seconds = Number(opt('seconds', '30'));
const threads = Number(opt('threads', '2'));
const tokens = Number(opt('tokens', '64'));
const LEVELS = [1, 8, 32];
const LLAMA_SERVER = join(ROOT, '../shared/bin/llama-server');

async function waitHealthy(url: string, child: ChildProcess): Promise<void> {
  const end = Date.now() + 300_000;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not become healthy`);
}

/** Prompts of ~32 tokens from random words of the vocabulary's plain-letter pieces, distinct per request. */
function prompt(random: () => number): string {
  const words = ['the', 'little', 'cat', 'ran', 'to', 'a', 'big', 'tree', 'and', 'saw', 'bird', 'sky', 'blue', 'happy', 'day', 'sun', 'water', 'friend'];
  return Array.from({ length: 28 }, () => words[Math.floor(random() * words.length)]).join(' ') + ` ${Math.floor(random() * 1e9)}`;
}

const model = await ensureModel(shape, type, (s) => console.error(s));
const cpu = execSync("lscpu | grep 'Model name' | sed 's/.*: *//'").toString().trim();
console.log(`# Server throughput: wasmforge serve vs llama-server, ${new Date().toISOString().slice(0, 10)}`);
console.log(`CPU: ${cpu}, ${threads} threads each; model ${shape.name} ${type} (${shape.like}-shaped, random weights); ` +
  `~32-token distinct prompts, ${tokens} tokens each (ignore_eos), streamed; ${seconds} s per level after a warm-up\n`);
console.log('| server | clients | requests/s | generated tok/s | TTFT p50 ms | TTFT p99 ms | requests |');
console.log('|---|---|---|---|---|---|---|');

const servers: { name: string; start: (port: number) => ChildProcess }[] = [
  { name: 'wasmforge', start: (port) => spawn(process.execPath, [join(ROOT, 'bin/wasmforge.js'), 'serve', '-m', model, '--port', String(port), '--parallel', '32', '--ctx', '512', '--threads', String(threads), '--kv-tokens', '4096', '--alias', 'bench'], { stdio: 'ignore' }) },
];
if (existsSync(LLAMA_SERVER)) {
  servers.push({ name: 'llama-server', start: (port) => spawn(LLAMA_SERVER, ['-m', model, '--port', String(port), '-np', '32', '-c', '4096', '-t', String(threads), '-tb', String(threads), '--no-webui', '-a', 'bench', '--log-disable'], { stdio: 'ignore' }) });
} else console.error(`${LLAMA_SERVER} is missing: wasmforge alone`);

const rows: Record<string, Record<number, number>> = {};
for (const server of servers) {
  const port = await freePort();
  const child = server.start(port);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(url, child);
    const next = (random: () => number) => ({ key: '', body: { model: 'bench', prompt: prompt(random), max_tokens: tokens, temperature: 0, ignore_eos: true } });
    await runLoad({ url, clients: 4, durationMs: 3000, next, seed: 99, keepAlive: false }); // warm-up
    for (const clients of LEVELS) {
      const r = await runLoad({ url, clients, durationMs: seconds * 1000, next, seed: clients, keepAlive: false });
      const failed = r.records.filter((x) => x.outcome !== 'done');
      if (failed.length) throw new Error(`${server.name}: ${failed.length} requests failed: ${failed[0]!.error}`);
      const generated = r.records.reduce((n, x) => n + x.completionTokens, 0);
      const ttft = r.records.map((x) => x.ttftMs ?? NaN);
      const s = r.wallMs / 1000;
      (rows[server.name] ??= {})[clients] = generated / s;
      console.log(`| ${server.name} | ${clients} | ${(r.records.length / s).toFixed(2)} | ${(generated / s).toFixed(1)} | ${percentile(ttft, 50).toFixed(0)} | ${percentile(ttft, 99).toFixed(0)} | ${r.records.length} |`);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}
if (rows['llama-server']) {
  console.log(`\nwasmforge / llama-server, generated tok/s: ${LEVELS.map((c) => `${c} clients ${(rows.wasmforge![c]! / rows['llama-server']![c]!).toFixed(2)}×`).join(', ')}`);
}
