// An edge fetch handler: text generation behind HTTP, in one file that needs only web APIs and
// dist/wasmforge.js. Run it with
//   deno serve --allow-read --allow-env --allow-net examples/edge/handler.js   (Deno)
//   bun examples/edge/bun.js                                                    (Bun.serve)
// or hand `handler.fetch` to any platform that calls fetch(request) (Workers-style runtimes).
//
//   GET  /            model info
//   POST /generate    {"prompt": "...", "maxTokens": 64, "temperature": 0.8, "seed": 1, "stream": false}
//                     → JSON {text, tokens, stopReason, ...}; with "stream": true, the text as it is generated
//
// The model comes from $MODEL_URL (an http(s) URL read with Range requests), else the bundled
// stories260K next to this package. It is loaded once per isolate, on the first request.
import { loadModel } from '../../dist/wasmforge.js';

const env = (name) => globalThis.Deno?.env.get(name) ?? globalThis.process?.env?.[name];

let modelPromise;
const modelSource = () => env('MODEL_URL') || 'bundled stories260K'; // empty counts as unset
function model() {
  modelPromise ??= (async () => {
    const url = env('MODEL_URL') || undefined;
    // fetch() reads a file: URL in Deno and Bun, so no file-system API is needed here.
    const input = url ?? (await (await fetch(new URL('../../models/stories260K.gguf', import.meta.url))).arrayBuffer());
    // One thread: edge isolates generally cannot start workers.
    return loadModel(input, { threads: 1 });
  })();
  modelPromise.catch(() => (modelPromise = undefined)); // retry on the next request
  return modelPromise;
}

const json = (body, status = 200) => Response.json(body, { status, headers: { 'Cache-Control': 'no-store' } });

const SAMPLING = ['temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'seed'];

async function generate(request) {
  let body;
  try {
    body = await request.json();
  } catch {
    return json({ error: 'the body must be JSON' }, 400);
  }
  if (typeof body?.prompt !== 'string' || body.prompt === '') return json({ error: '"prompt" must be a non-empty string' }, 400);
  const maxTokens = Math.min(Number(body.maxTokens ?? 64), 1024);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) return json({ error: '"maxTokens" must be an integer from 1 to 1024' }, 400);
  const stop = new AbortController();
  const options = { maxTokens, signal: stop.signal };
  for (const k of SAMPLING) if (typeof body[k] === 'number') options[k] = body[k];
  if (Array.isArray(body.stop)) options.stop = body.stop.filter((s) => typeof s === 'string');

  const m = await model();
  const g = m.generate(body.prompt, options);
  if (!body.stream) {
    try {
      const r = await g.result;
      return json({ text: r.text, tokens: r.tokens, stopReason: r.stopReason, promptTokens: r.promptTokens, decodeTokensPerSecond: r.decodeTokensPerSecond });
    } catch (e) {
      return json({ error: String(e?.message ?? e) }, 400);
    }
  }
  const encoder = new TextEncoder();
  const it = g[Symbol.asyncIterator]();
  return new Response(new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await it.next();
        if (done) controller.close();
        else controller.enqueue(encoder.encode(value.text));
      } catch (e) {
        controller.error(e);
      }
    },
    // The client hung up: stop generating.
    cancel() {
      stop.abort();
    },
  }), { headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' } });
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    try {
      if (request.method === 'POST' && pathname === '/generate') return await generate(request);
      if (request.method === 'GET' && pathname === '/') {
        const m = await model();
        return json({ source: modelSource(), architecture: m.architecture, contextLength: m.contextLength, vocabSize: m.config.vocabSize, backend: m.backend.name });
      }
      return json({ error: 'not found: GET / or POST /generate' }, 404);
    } catch (e) {
      return json({ error: String(e?.message ?? e) }, 500);
    }
  },
};
