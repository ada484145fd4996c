// Inference worker for the chat page: the model lives here, so the page never blocks while weights
// load or tokens are computed. Messages in:  { type: 'load', source: File | url string }
//                                            { type: 'generate', messages, options }
//                                            { type: 'stop' }
// Messages out: progress, loaded, piece, done, error (see app.js).
import { loadModel, ByteSourceError, ChatTemplate, bufferSource } from '../../dist/wasmforge.js';

/** @type {import('../../dist/src/index.js').Model | undefined} */
let model;
/** @type {AbortController | undefined} */
let running;
/** The model's own chat template (tokenizer.chat_template), when it has one. */
let template;

// Threads need SharedArrayBuffer, which browsers allow only in cross-origin isolated pages.
const threads = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;

const post = (msg) => self.postMessage(msg);

/** A whole-file download with progress: the fallback for servers that ignore Range requests. */
async function download(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const parts = [];
  let loaded = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.length;
    post({ type: 'progress', phase: 'download', loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return bufferSource(bytes, url);
}

async function load(source, backend = 'auto') {
  running?.abort();
  await model?.dispose();
  model = undefined;
  const t0 = performance.now();
  const options = { threads, backend, onProgress: (loaded, total) => post({ type: 'progress', phase: 'weights', loaded, total }) };
  try {
    model = await loadModel(source, options);
  } catch (e) {
    if (!(typeof source === 'string' && e instanceof ByteSourceError && e.code === 'NO_RANGE_SUPPORT')) throw e;
    model = await loadModel(await download(source), options);
  }
  const meta = model.file.metadata;
  template = meta.has('tokenizer.chat_template') ? ChatTemplate.fromMetadata(meta, model.tokenizer) : undefined;
  post({
    type: 'loaded',
    info: {
      file: typeof source === 'string' ? source.split('/').pop() : source.name,
      name: String(meta.get('general.name')?.value ?? 'unnamed'),
      architecture: model.architecture,
      contextLength: model.contextLength,
      vocabSize: model.config.vocabSize,
      threads: model.backend.nThreads,
      backend: model.backend.name === 'webgpu' ? 'webgpu' : 'wasm',
      adapter: model.backend.adapter,
      kernels: model.backend.kernels ?? model.backend.name,
      crossOriginIsolated: self.crossOriginIsolated === true,
      chat: template !== undefined,
      loadMs: Math.round(performance.now() - t0),
    },
  });
}

async function generate({ messages, options }) {
  if (!model) throw new Error('no model loaded');
  running = new AbortController();
  // With a chat template the whole conversation is rendered (the template writes BOS and the
  // turn markers itself); without one, e.g. TinyStories, the latest message is a prompt to continue.
  const prompt = template ? template.render(messages) : messages[messages.length - 1].content;
  const g = model.generate(prompt, {
    ...options,
    addSpecial: !template,
    parseSpecial: Boolean(template),
    signal: running.signal,
  });
  const t0 = performance.now();
  let n = 0;
  for await (const piece of g) {
    n++;
    post({ type: 'piece', text: piece.text, tokens: n, ms: performance.now() - t0 });
  }
  const r = await g.result;
  running = undefined;
  post({
    type: 'done',
    result: {
      text: r.text, tokens: r.tokens.length, promptTokens: r.promptTokens, stopReason: r.stopReason,
      promptTokensPerSecond: r.promptTokensPerSecond, decodeTokensPerSecond: r.decodeTokensPerSecond,
    },
  });
}

// One request at a time (the page disables its buttons meanwhile); 'stop' is handled at once.
let queue = Promise.resolve();
self.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === 'stop') {
    running?.abort();
    return;
  }
  queue = queue.then(async () => {
    try {
      if (msg.type === 'load') await load(msg.source, msg.backend);
      else if (msg.type === 'generate') await generate(msg);
    } catch (err) {
      running = undefined;
      post({ type: 'error', during: msg.type, message: String(err?.message ?? err) });
    }
  });
};
