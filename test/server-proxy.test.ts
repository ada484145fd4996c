// Prefix-affine routing with a real proxy: deploy/nginx.conf (nginx, Debian package) in front of
// two server replicas on loopback. Conversations carry X-Conversation-Id; every follow-up turn must
// reach the replica that served the conversation's first turn, and hit its prefix cache there
// (cached prompt tokens in usage and in that replica's /metrics); streamed answers pass through
// unbuffered. Skipped where nginx is not installed (CI installs it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { createServerHandler, type ServerHandler } from '../src/server/handler.js';
import { listen, type Listener } from '../src/server/listen.js';
import { freePort } from './helpers/ports.js';

const NGINX = process.env.NGINX ?? '/usr/sbin/nginx';
const haveNginx = spawnSync(NGINX, ['-v']).status === 0;
if (!haveNginx) console.warn(`server-proxy: ${NGINX} not found (apt-get install nginx), skipping`);

interface Replica { model: Model; handler: ServerHandler; listener: Listener }
const replicas: Replica[] = [];
const nginxes: { process: ChildProcess; dir: string }[] = [];
let url: string;

beforeAll(async () => {
  if (!haveNginx) return;
  for (let i = 0; i < 2; i++) {
    const model = await loadModel(await bundledModelPath(), { threads: 1 });
    const handler = createServerHandler(model, { modelId: 'stories' });
    await handler.ready;
    replicas.push({ model, handler, listener: await listen(handler, { port: 0 }) });
  }
  url = await startNginx(readFileSync(join(import.meta.dirname, '../deploy/nginx.conf'), 'utf8'));
});

/** nginx with `site` (an http-context file like deploy/nginx.conf) pointed at the replicas on loopback; returns its URL. */
async function startNginx(site: string): Promise<string> {
  const port = await freePort();
  site = site.replace('127.0.0.1:8081', `127.0.0.1:${replicas[0]!.listener.port}`).replace('127.0.0.1:8082', `127.0.0.1:${replicas[1]!.listener.port}`).replace('listen 127.0.0.1:8080', `listen 127.0.0.1:${port}`);
  expect(site).toContain(`:${replicas[1]!.listener.port}`);
  const dir = mkdtempSync(join(tmpdir(), 'wasmforge-nginx-'));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  writeFileSync(join(dir, 'site.conf'), site);
  writeFileSync(join(dir, 'nginx.conf'), [
    process.getuid?.() === 0 ? 'user root;' : '', 'daemon off;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`,
    'events { worker_connections 256; }',
    `http { access_log off; client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi; include ${dir}/site.conf; }`,
  ].join('\n'));
  const check = spawnSync(NGINX, ['-t', '-p', dir, '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' });
  expect(check.status, check.stderr).toBe(0);
  nginxes.push({ process: spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' }), dir });
  const base = `http://127.0.0.1:${port}`;
  const end = Date.now() + 10_000;
  while (!(await fetch(`${base}/health`).then((r) => r.ok, () => false))) {
    if (Date.now() > end) throw new Error(`nginx did not come up: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return base;
}

afterAll(async () => {
  for (const n of nginxes) {
    n.process.kill('SIGQUIT');
    rmSync(n.dir, { recursive: true, force: true });
  }
  for (const r of replicas) {
    await r.listener.close();
    await r.handler.close();
    await r.model.dispose();
  }
});

/** Which replica's engine did work during `f`. */
async function servedBy<T>(f: () => Promise<T>): Promise<{ value: T; replica: number }> {
  const before = replicas.map((r) => r.model.engine().metrics().steps);
  const value = await f();
  const moved = replicas.map((r, i) => r.model.engine().metrics().steps - before[i]!);
  expect(moved.filter((m) => m > 0), 'exactly one replica ran the request').toHaveLength(1);
  return { value, replica: moved.findIndex((m) => m > 0) };
}

describe.skipIf(!haveNginx)('server behind nginx (deploy/nginx.conf): prefix-affine routing', () => {
  /** Three turns of each conversation through `base`: per turn, the replica that ran it and the cached prompt tokens. */
  async function converse(base: string, ids: string[]) {
    const turns = new Map<string, { replica: number; cached: number; previousPrompt: number }[]>();
    for (const id of ids) {
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, defaultHeaders: { 'X-Conversation-Id': id } });
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: `You tell short stories. This is story ${id}.` }];
      const log: { replica: number; cached: number; previousPrompt: number }[] = [];
      let previousPrompt = 0;
      for (const question of ['Once upon a time', 'What happened next?', 'How did it end?']) {
        messages.push({ role: 'user', content: question });
        const { value: r, replica } = await servedBy(() => client.chat.completions.create({ model: 'stories', messages, max_tokens: 20, temperature: 0 }));
        log.push({ replica, cached: r.usage!.prompt_tokens_details!.cached_tokens!, previousPrompt });
        messages.push({ role: 'assistant', content: r.choices[0]!.message.content! });
        previousPrompt = r.usage!.prompt_tokens;
      }
      turns.set(id, log);
    }
    return turns;
  }

  it('every turn of a conversation reaches the replica holding its prefix, and hits its cache there', async () => {
    const turns = await converse(url, ['chat-a', 'chat-b', 'chat-c', 'chat-d', 'chat-e', 'chat-f']);
    // The hash ring is built from the replicas' addresses, whose ports are random here: six ids all
    // land on one replica ~3% of the time, so add conversations until both have one (or 40 did not).
    const firstReplicas = () => new Set([...turns.values()].map((log) => log[0]!.replica));
    for (let i = 0; firstReplicas().size < 2 && i < 34; i++) {
      for (const [id, log] of await converse(url, [`chat-more-${i}`])) turns.set(id, log);
    }
    for (const [id, log] of turns) {
      for (const [i, t] of log.entries()) {
        expect(t.replica, `${id} turn ${i}`).toBe(log[0]!.replica);
        // A follow-up's prompt starts with the previous turn's whole prompt: its KV is reused (whole 16-token blocks).
        if (i > 0) expect(t.cached, `${id} turn ${i}`).toBeGreaterThanOrEqual(16 * Math.floor(t.previousPrompt / 16) - 16);
      }
    }
    // Consistent hashing spreads the conversations over both replicas.
    expect(firstReplicas().size).toBe(2);
    // Each replica's /metrics counts the cached prompt tokens of the follow-ups it served.
    for (const r of replicas) {
      const text = await (await fetch(`${r.listener.url}/metrics`)).text();
      expect(Number(/^wasmforge_prompt_tokens_cached_total (\d+)$/m.exec(text)![1])).toBeGreaterThan(0);
    }
  });

  it('the same config without the hash (round robin) moves follow-ups and misses the cache: what the hash buys', async () => {
    for (const r of replicas) r.model.engine().clearPrefixCache();
    const site = readFileSync(join(import.meta.dirname, '../deploy/nginx.conf'), 'utf8').replace(/^\s*hash .*$/m, '');
    const turns = await converse(await startNginx(site), ['rr-a', 'rr-b']);
    const followUps = [...turns.values()].flatMap((log) => log.slice(1).map((t, i) => ({ ...t, moved: t.replica !== log[i]!.replica })));
    expect(followUps.some((t) => t.moved)).toBe(true);
    // A moved follow-up reuses less than an affine one is required to (above): at most what an older turn left there.
    for (const t of followUps.filter((f) => f.moved)) expect(t.cached).toBeLessThan(16 * Math.floor(t.previousPrompt / 16) - 16);
  });

  it('streams pass through nginx unbuffered, token by token', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, defaultHeaders: { 'X-Conversation-Id': 'stream' } });
    const direct = await new OpenAI({ baseURL: `${replicas[0]!.listener.url}/v1`, apiKey: 'none', maxRetries: 0 }).chat.completions.create({ model: 'stories', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 30, temperature: 0 });
    let text = '', chunks = 0;
    for await (const c of await client.chat.completions.create({ model: 'stories', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 30, temperature: 0, stream: true })) {
      text += c.choices[0]?.delta.content ?? '';
      chunks++;
    }
    expect(text).toBe(direct.choices[0]!.message.content);
    expect(chunks).toBeGreaterThan(10);
  });
});

