#!/usr/bin/env node
// A small static server for the browser demo and the browser tests. It serves the repository root
// (so pages import /dist/wasmforge.js and fetch /models/*.gguf) on 127.0.0.1 only, answers HTTP
// Range requests (wasmforge reads model URLs by range), and by default sends the COOP/COEP headers
// that make a page cross-origin isolated: SharedArrayBuffer, and so threads, are only allowed then.
//
//   npm run demo                     http://127.0.0.1:8080/examples/browser/ (threads)
//   npm run demo -- --no-isolation   the same page without COOP/COEP (one thread)
//   npm run demo -- --port 9000
import { createReadStream, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream',
};

/**
 * Start serving. `mounts` maps URL prefixes ("/shared/") to extra directories; `isolated` adds
 * COOP/COEP; `throttle` ({ chunkBytes, delayMs }) sends files slowly, like a slow network (tests
 * of interrupted downloads). Resolves to { url, port, close() }.
 */
export async function startServer({ root = REPO, port = 0, isolated = true, mounts = {}, throttle } = {}) {
  const roots = [...Object.entries(mounts).map(([prefix, dir]) => [prefix, resolve(dir)]), ['/', resolve(root)]];

  const server = createServer(async (req, res) => {
    const headers = { 'Cache-Control': 'no-store', 'Accept-Ranges': 'bytes', 'Cross-Origin-Resource-Policy': 'same-origin' };
    if (isolated) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    const fail = (status, text) => {
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      return fail(400, 'bad URL');
    }
    const [prefix, dir] = roots.find(([p]) => pathname.startsWith(p));
    let file = normalize(join(dir, pathname.slice(prefix.length)));
    // Never leave the served directory (.. segments, encoded or not).
    if (file !== dir && !file.startsWith(dir + sep)) return fail(403, 'forbidden');
    let info;
    try {
      info = await stat(file);
      if (info.isDirectory()) {
        if (!pathname.endsWith('/')) {
          res.writeHead(301, { ...headers, Location: `${pathname}/` });
          return res.end();
        }
        file = join(file, 'index.html');
        info = await stat(file);
      }
    } catch {
      return fail(404, 'not found');
    }
    headers['Content-Type'] = TYPES[extname(file)] ?? 'application/octet-stream';
    const size = info.size;
    // A strong validator: clients resuming a download send it back as If-Range.
    const etag = `"${size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    headers.ETag = etag;
    let start = 0, end = size - 1, status = 200;
    const ifRange = req.headers['if-range'];
    // A Range with a stale If-Range gets the whole (changed) file.
    const range = ifRange && ifRange !== etag ? undefined : req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) return fail(416, 'bad range');
      if (m[1] === '') start = Math.max(0, size - Number(m[2])); // suffix range: the last N bytes
      else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
        return res.end();
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['Content-Length'] = String(end - start + 1);
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || size === 0) return res.end();
    const stream = createReadStream(file, { start, end, highWaterMark: throttle?.chunkBytes }).on('error', () => res.destroy());
    if (!throttle) return stream.pipe(res);
    stream.on('data', (chunk) => {
      res.write(chunk);
      stream.pause();
      setTimeout(() => stream.resume(), throttle.delayMs);
    });
    stream.on('end', () => res.end());
    res.on('close', () => stream.destroy());
  });

  await new Promise((ok, bad) => {
    server.once('error', bad);
    server.listen(port, '127.0.0.1', ok);
  });
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    close: () => new Promise((ok) => {
      server.closeAllConnections?.();
      server.close(() => ok());
    }),
  };
}

// Run as a program: the demo.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const portAt = args.indexOf('--port');
  const port = portAt >= 0 ? Number(args[portAt + 1]) : 8080;
  const isolated = !args.includes('--no-isolation');
  if (!existsSync(join(REPO, 'dist/wasmforge.js'))) {
    process.stderr.write('dist/wasmforge.js is missing: run `npm run build` first\n');
    process.exit(1);
  }
  const { url } = await startServer({ port, isolated });
  process.stdout.write(`wasmforge demo: ${url}/examples/browser/  (${isolated ? 'cross-origin isolated: threads' : 'not isolated: one thread'}; Ctrl-C stops)\n`);
}
