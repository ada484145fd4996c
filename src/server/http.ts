// Request plumbing every route shares: bounded, timed JSON bodies; JSON responses; API keys
// compared in constant time; CORS by allow-list.
import { HttpError } from './errors.js';

/** The body as JSON: 413 past `limit` bytes, 408 when it does not arrive within `timeoutMs`, 400 when it does not parse. */
export async function readJsonBody(request: Request, limit: number, timeoutMs: number): Promise<unknown> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit, Number(declared));
  if (!request.body) throw new HttpError(400, 'invalid_request_error', 'invalid_json', 'the request needs a JSON body');
  const reader = request.body.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        reader.cancel().catch(() => {});
        throw tooLarge(limit);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    if (timedOut) throw new HttpError(408, 'invalid_request_error', 'body_timeout', `the request body did not arrive within ${timeoutMs} ms`);
    throw new HttpError(400, 'invalid_request_error', 'invalid_body', `the request body could not be read: ${(err as Error)?.message ?? err}`);
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw new HttpError(408, 'invalid_request_error', 'body_timeout', `the request body did not arrive within ${timeoutMs} ms`);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, 'invalid_request_error', 'invalid_json', 'the request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'invalid_request_error', 'invalid_json', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

function tooLarge(limit: number, size?: number): HttpError {
  return new HttpError(413, 'invalid_request_error', 'request_too_large', `the request body is ${size !== undefined ? `${size} bytes` : 'larger than the limit'}; this server accepts at most ${limit} bytes`);
}

export function jsonResponse(body: unknown, status: number, headers: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...headers, 'Content-Type': 'application/json; charset=utf-8' } });
}

const utf8 = new TextEncoder();

/** Whether `given` equals one of `keys`, taking the same time whichever byte differs (and checking every key). */
export function matchesApiKey(given: string, keys: readonly string[]): boolean {
  const g = utf8.encode(given);
  let match = 0;
  for (const key of keys) {
    const k = utf8.encode(key);
    let diff = g.length ^ k.length;
    const n = Math.max(g.length, k.length, 1);
    for (let i = 0; i < n; i++) diff |= (g[i] ?? 0) ^ (k[i] ?? 0);
    match |= diff === 0 ? 1 : 0;
  }
  return match === 1;
}

/** The bearer token of an Authorization header ("" when there is none). */
export function bearerToken(request: Request): string {
  const m = /^Bearer\s+(.+)$/i.exec(request.headers.get('authorization') ?? '');
  return m ? m[1]!.trim() : '';
}

/** CORS headers for a request's Origin: only an origin on the allow-list (or "*" on it) gets any. */
export function corsHeaders(request: Request, allowed: readonly string[]): Record<string, string> {
  const origin = request.headers.get('origin');
  if (!origin || allowed.length === 0) return {};
  if (!allowed.includes('*') && !allowed.includes(origin)) return {};
  return { 'Access-Control-Allow-Origin': allowed.includes('*') ? '*' : origin, Vary: 'Origin' };
}

export const CORS_PREFLIGHT = {
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type',
  'Access-Control-Max-Age': '600',
};
