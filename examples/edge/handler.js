// An edge fetch handler: wasmforge's OpenAI-compatible server in one file that needs only web APIs
// and dist/wasmforge.js. Run it with
//   deno serve --allow-read --allow-env --allow-net examples/edge/handler.js   (Deno)
//   bun examples/edge/bun.js                                                    (Bun.serve)
// or hand `handler.fetch` to any platform that calls fetch(request) (Workers-style runtimes).
//
//   POST /v1/chat/completions, /v1/completions (JSON, or server-sent events with "stream": true)
//   GET  /v1/models, /health (503 while the model loads), /metrics; POST /tokenize, /detokenize
//
// The model comes from $MODEL_URL (an http(s) URL read with Range requests), else the bundled
// stories260K next to this package. It starts loading when the isolate starts; until it is ready
// /health says "loading" and other routes answer 503 with Retry-After.
import { createServerHandler, loadModel } from '../../dist/wasmforge.js';

const env = (name) => globalThis.Deno?.env.get(name) ?? globalThis.process?.env?.[name];

async function load() {
  const url = env('MODEL_URL') || undefined; // empty counts as unset
  // fetch() reads a file: URL in Deno and Bun, so no file-system API is needed here.
  const input = url ?? (await (await fetch(new URL('../../models/stories260K.gguf', import.meta.url))).arrayBuffer());
  // One thread: edge isolates generally cannot start workers.
  return loadModel(input, { threads: 1 });
}

const handler = createServerHandler(load(), {
  modelId: env('MODEL_ID') || 'stories260K',
  apiKeys: (env('API_KEY') || '').split(',').filter(Boolean),
  maxTokens: 1024,
});

export default { fetch: (request) => handler.fetch(request) };
