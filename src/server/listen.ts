// Serving a handler on a port with the runtime's own HTTP server: Deno.serve, Bun.serve, or
// node:http (Node; also what Deno and Bun would use without their own). Each adapter makes a
// client that disconnects abort its Request's signal, so the engine drops its work at once.
import type { ServerHandler } from './handler.js';

export interface ListenOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** node:http: headers must arrive within this many ms (default 30 s). */
  headersTimeoutMs?: number;
}

export interface Listener {
  /** e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  /** Stop accepting connections and close the open ones. */
  close(): Promise<void>;
}

type Fetch = ServerHandler['fetch'];

interface DenoServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}
interface BunServer {
  port: number;
  stop(closeActive?: boolean): void | Promise<void>;
}
declare const Deno: { serve(options: { hostname: string; port: number; onListen?: () => void }, handler: Fetch): DenoServer } | undefined;
declare const Bun: { serve(options: { hostname: string; port: number; idleTimeout?: number; fetch: Fetch }): BunServer } | undefined;

export async function listen(handler: Pick<ServerHandler, 'fetch'>, options: ListenOptions = {}): Promise<Listener> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8080;
  const fetch: Fetch = (r) => handler.fetch(r);
  const urlOf = (p: number) => `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
  if (typeof Deno !== 'undefined') {
    const server = Deno.serve({ hostname: host, port, onListen: () => {} }, fetch);
    return { url: urlOf(server.addr.port), port: server.addr.port, close: () => server.shutdown() };
  }
  if (typeof Bun !== 'undefined') {
    // idleTimeout: Bun closes a connection idle for 10 s by default, which a long prompt's first token can exceed (255 is its most).
    const server = Bun.serve({ hostname: host, port, idleTimeout: 255, fetch });
    return { url: urlOf(server.port), port: server.port, close: async () => void (await server.stop(true)) };
  }
  return listenNode(fetch, host, port, options.headersTimeoutMs ?? 30_000, urlOf);
}

async function listenNode(fetch: Fetch, host: string, port: number, headersTimeoutMs: number, urlOf: (p: number) => string): Promise<Listener> {
  const http = await import('node:http');
  const { Readable } = await import('node:stream');
  const server = http.createServer({ headersTimeout: headersTimeoutMs, requestTimeout: 0, keepAliveTimeout: 5_000 }, (req, res) => {
    const abort = new AbortController();
    // 'close' before the response finished: the client went away.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client disconnected'));
    });
    void (async () => {
      let request: Request;
      try {
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
        const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
        request = new Request(new URL(req.url ?? '/', 'http://localhost'), {
          method: req.method, headers, signal: abort.signal,
          ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
        } as RequestInit);
      } catch {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end('{"error":{"message":"malformed request","type":"invalid_request_error","param":null,"code":"bad_request"}}');
        return;
      }
      const response = await fetch(request);
      // Answered before its body arrived (408, 413): close the connection rather than read the rest.
      if (!req.complete) res.shouldKeepAlive = false;
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (!response.body) return void res.end();
      const reader = response.body.getReader();
      abort.signal.addEventListener('abort', () => void reader.cancel(abort.signal.reason).catch(() => {}), { once: true });
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          // Back-pressure: wait for the socket to drain (or close) before reading more.
          if (!res.write(value)) await new Promise<void>((resolve) => {
            res.once('drain', resolve);
            res.once('close', resolve);
          });
          if (abort.signal.aborted) return;
        }
        res.end();
      } catch {
        res.destroy();
      }
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : port;
  return {
    url: urlOf(actual),
    port: actual,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
