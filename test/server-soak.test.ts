// The server under load (issue: no request lost or cross-wired, every KV block returned): 64
// concurrent streaming clients on loopback for SOAK_SECONDS (default 60) sending seeded requests,
// some abandoned after a few tokens (abort) or before the first (disconnect), on a KV pool small
// enough that sequences get preempted. Every finished stream must equal the same request run
// alone; at the end nothing runs or waits and every KV block is free. RSS (sampled each second)
// and TTFT percentiles are printed, not asserted (timing belongs in bench/).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { createServerHandler, type ServerHandler } from '../src/server/handler.js';
import { listen, type Listener } from '../src/server/listen.js';
import { percentile, runLoad, type LoadRequest } from './helpers/server-load.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const CLIENTS = 64;
const PROMPTS = [
  'Once upon a time', 'The little dog', 'Lily and Ben went', 'One day, a big bird', 'Tom had a red ball', 'The sun was hot',
  'Mom said', 'In the park, there', 'A small cat named', 'The boy wanted to', 'It was a rainy day', 'Sue found a box',
];

let model: Model;
let handler: ServerHandler;
let listener: Listener;

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 1 });
  // 1024 KV tokens for up to 64 sequences of up to ~60 tokens: the pool runs out and sequences are preempted.
  handler = createServerHandler(model, { modelId: 'soak', engine: { maxSequences: 64, kvCacheTokens: 1024 } });
  await handler.ready;
  listener = await listen(handler, { port: 0 });
});

afterAll(async () => {
  await listener?.close();
  await handler?.close();
  await model?.dispose();
});

function next(random: () => number): LoadRequest {
  const p = Math.floor(random() * PROMPTS.length), seed = Math.floor(random() * 6), max = [8, 24, 48][Math.floor(random() * 3)]!;
  return { key: `${p}|${seed}|${max}`, body: { model: 'soak', prompt: PROMPTS[p], seed, max_tokens: max, temperature: 0.8 } };
}

it(`${CLIENTS} streaming clients for ${SECONDS} s with aborts and disconnects: nothing lost or cross-wired, every KV block back`, { timeout: (SECONDS + 240) * 1000 }, async () => {
  const rss: number[] = [], heap: number[] = [];
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    rss.push(m.rss / 2 ** 20);
    heap.push(m.heapUsed / 2 ** 20);
  }, 1000);
  const engine = model.engine();
  let preemptions = 0;
  const report = await runLoad({ url: listener.url, clients: CLIENTS, durationMs: SECONDS * 1000, next, abortRate: 0.1, disconnectRate: 0.1, seed: 7 });
  clearInterval(sampler);
  preemptions = engine.metrics().preemptions;

  const by = (o: string) => report.records.filter((r) => r.outcome === o);
  const done = by('done');
  expect(by('error').map((r) => r.error)).toEqual([]);
  expect(done.length).toBeGreaterThan(CLIENTS);
  expect(by('aborted').length).toBeGreaterThan(0);
  expect(by('disconnected').length).toBeGreaterThan(0);
  for (const r of done) expect(r.finishReason, r.key).toMatch(/^(stop|length)$/);

  // Nothing left running or waiting; with the prefix cache emptied, every block is free.
  const end = Date.now() + 10_000;
  while ((engine.metrics().runningRequests > 0 || engine.metrics().queuedRequests > 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(engine.metrics()).toMatchObject({ runningRequests: 0, queuedRequests: 0, runningSequences: 0 });
  engine.clearPrefixCache();
  expect(engine.metrics().kvBlocksUsed).toBe(0);

  // Same key, same text: each finished stream equals the request run alone (non-streamed).
  const keys = [...new Set(done.map((r) => r.key))];
  for (const key of keys) {
    const [p, seed, max] = key.split('|').map(Number) as [number, number, number];
    const alone = await (await fetch(`${listener.url}/v1/completions`, {
      method: 'POST', body: JSON.stringify({ model: 'soak', prompt: PROMPTS[p], seed, max_tokens: max, temperature: 0.8 }),
    })).json();
    for (const r of done.filter((d) => d.key === key)) expect(r.text, `request ${key}`).toBe(alone.choices[0].text);
  }

  const every = Math.max(1, Math.round(rss.length / 12));
  const curve = (v: number[]) => v.filter((_, i) => i % every === 0).map((x) => x.toFixed(0)).join(' ');
  const ttft = done.map((r) => r.ttftMs!).filter((t) => t !== undefined);
  const tokens = done.reduce((n, r) => n + r.completionTokens, 0);
  console.log(
    `soak: ${report.records.length} requests in ${(report.wallMs / 1000).toFixed(0)} s (${done.length} done, ${by('aborted').length} aborted, ` +
    `${by('disconnected').length} disconnected), ${tokens} tokens streamed (${(tokens / (report.wallMs / 1000)).toFixed(0)} tok/s), ` +
    `${keys.length} distinct requests checked against a lone run, ${preemptions} preemptions; TTFT p50 ${percentile(ttft, 50).toFixed(0)} ms, ` +
    `p99 ${percentile(ttft, 99).toFixed(0)} ms; MiB each ${every} s, RSS: ${curve(rss)}; JS heap: ${curve(heap)}`,
  );
});
