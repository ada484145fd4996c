// A load generator for OpenAI-compatible servers (ours, llama.cpp's llama-server): `clients`
// concurrent loops, each sending streamed /v1/completions requests back to back until the time is
// up. Some requests are abandoned on purpose: "abort" closes the connection after a few streamed
// tokens, "disconnect" closes it before any token came (queued or mid-prompt). Each request's
// outcome, streamed text, TTFT and tokens are recorded. Used by test/server-soak.test.ts
// (correctness under load) and bench/server.ts (throughput beside llama-server).
import { Agent, request as httpRequest } from 'node:http';
import { rng } from './random-tensors.js';

export interface LoadRequest {
  /** Requests with equal keys must give equal text (seeded sampling). */
  key: string;
  /** The /v1/completions body (stream is set here). */
  body: Record<string, unknown>;
}

export interface LoadOptions {
  url: string;
  clients: number;
  durationMs: number;
  /** The next request of a client, from a seeded random number in [0, 1). */
  next: (random: () => number) => LoadRequest;
  /** Shares of requests abandoned after 1..8 streamed tokens, and before the first token. */
  abortRate?: number;
  disconnectRate?: number;
  seed?: number;
  apiKey?: string;
  /** Reuse connections (default true); llama-server closes idle kept-alive ones, so its bench turns this off for both. */
  keepAlive?: boolean;
}

export type Outcome = 'done' | 'aborted' | 'disconnected' | 'error';

export interface LoadRecord {
  key: string;
  outcome: Outcome;
  text: string;
  completionTokens: number;
  ttftMs: number | undefined;
  totalMs: number;
  finishReason?: string;
  error?: string;
}

export interface LoadReport {
  records: LoadRecord[];
  wallMs: number;
}

export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const agent = new Agent({ keepAlive: o.keepAlive ?? true, maxSockets: o.clients });
  const records: LoadRecord[] = [];
  const start = performance.now();
  const end = start + o.durationMs;
  await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
    const random = rng((o.seed ?? 1) * 1000 + c);
    while (performance.now() < end) {
      const req = o.next(random);
      const roll = random();
      const plan: Plan = roll < (o.abortRate ?? 0) ? { kind: 'abort', afterTokens: 1 + Math.floor(random() * 8) }
        : roll < (o.abortRate ?? 0) + (o.disconnectRate ?? 0) ? { kind: 'disconnect', afterMs: Math.floor(random() * 30) } : { kind: 'finish' };
      records.push(await streamOne(o.url, req, plan, agent, o.keepAlive ?? true, o.apiKey));
    }
  }));
  agent.destroy();
  return { records, wallMs: performance.now() - start };
}

type Plan = { kind: 'finish' } | { kind: 'abort'; afterTokens: number } | { kind: 'disconnect'; afterMs: number };

function streamOne(base: string, req: LoadRequest, plan: Plan, agent: Agent, keepAlive: boolean, apiKey?: string): Promise<LoadRecord> {
  const t0 = performance.now();
  const body = JSON.stringify({ ...req.body, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve) => {
    const rec: LoadRecord = { key: req.key, outcome: 'done', text: '', completionTokens: 0, ttftMs: undefined, totalMs: 0 };
    let settled = false;
    const finish = (outcome: Outcome, error?: string) => {
      if (settled) return;
      settled = true;
      rec.outcome = outcome;
      rec.totalMs = performance.now() - t0;
      if (error) rec.error = error;
      resolve(rec);
    };
    const url = new URL('/v1/completions', base);
    const r = httpRequest(url, {
      method: 'POST', agent: keepAlive ? agent : false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
    }, (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => finish('error', `HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        return;
      }
      let buffer = '';
      let chunks = 0;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buffer += d;
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split('\n')) {
            if (!line.startsWith('data: ')) continue;
            const data = line.slice(6);
            if (data === '[DONE]') continue;
            const json = JSON.parse(data);
            if (json.error) return finish('error', JSON.stringify(json.error));
            if (json.usage) rec.completionTokens = json.usage.completion_tokens;
            for (const ch of json.choices ?? []) {
              if (ch.text) {
                rec.ttftMs ??= performance.now() - t0;
                rec.text += ch.text;
                chunks++;
              }
              if (ch.finish_reason) rec.finishReason = ch.finish_reason;
            }
          }
          if (plan.kind === 'abort' && chunks >= plan.afterTokens) {
            r.destroy();
            return finish('aborted');
          }
        }
      });
      res.on('end', () => finish('done'));
      res.on('error', (e) => finish('error', e.message));
    });
    r.on('error', (e) => finish('error', e.message)); // after a planned close, already settled
    r.end(body);
    if (plan.kind === 'disconnect') setTimeout(() => {
      if (settled) return;
      r.destroy();
      finish('disconnected');
    }, plan.afterMs);
  });
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
