// Inference worker for the chat page: the model lives here, so the page never blocks while weights
// load or tokens are computed. Messages in:  { type: 'load', source: File | url string }
//                                            { type: 'generate', prompt, format, options }
//                                            { type: 'stop' }
// Messages out: progress, loaded, piece, done, error (see app.js).
import { loadModel, ByteSourceError, bufferSource } from '../../dist/wasmforge.js';

/** @type {import('../../dist/src/index.js').Model | undefined} */
let model;
/** @type {AbortController | undefined} */
let running;

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

async function load(source) {
  running?.abort();
  await model?.dispose();
  model = undefined;
  const t0 = performance.now();
  const options = { threads, onProgress: (loaded, total) => post({ type: 'progress', phase: 'weights', loaded, total }) };
  try {
    model = await loadModel(source, options);
  } catch (e) {
    if (!(typeof source === 'string' && e instanceof ByteSourceError && e.code === 'NO_RANGE_SUPPORT')) throw e;
    model = await loadModel(await download(source), options);
  }
  const meta = model.file.metadata;
  post({
    type: 'loaded',
    info: {
      file: typeof source === 'string' ? source.split('/').pop() : source.name,
      name: String(meta.get('general.name')?.value ?? 'unnamed'),
      architecture: model.architecture,
      contextLength: model.contextLength,
      vocabSize: model.config.vocabSize,
      threads: model.backend.nThreads,
      kernels: model.backend.kernels ?? model.backend.name,
      crossOriginIsolated: self.crossOriginIsolated === true,
      format: chatFormat(String(meta.get('tokenizer.chat_template')?.value ?? '')),
      loadMs: Math.round(performance.now() - t0),
    },
  });
}

/** Recognize the common chat templates by their markers; 'completion' when there is none. */
function chatFormat(template) {
  if (template.includes('<|start_header_id|>')) return 'llama3';
  if (template.includes('<|im_start|>')) return 'chatml';
  if (template.includes('[INST]')) return 'llama2';
  if (template.includes('<|user|>')) return 'zephyr';
  return 'completion';
}

/** The conversation as the model expects it, and the strings that end an assistant turn. */
function render(format, messages) {
  const last = messages[messages.length - 1];
  switch (format) {
    case 'llama3':
      return {
        text: '<|begin_of_text|>' + messages.map((m) => `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content}<|eot_id|>`).join('') +
          '<|start_header_id|>assistant<|end_header_id|>\n\n',
        stop: ['<|eot_id|>'],
      };
    case 'chatml':
      return { text: messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n', stop: ['<|im_end|>'] };
    case 'llama2': {
      let text = '';
      for (const m of messages) text += m.role === 'user' ? `<s>[INST] ${m.content} [/INST]` : ` ${m.content} </s>`;
      return { text, stop: ['</s>', '[INST]'] };
    }
    case 'zephyr':
      return { text: messages.map((m) => `<|${m.role}|>\n${m.content}</s>\n`).join('') + '<|assistant|>\n', stop: ['</s>', '<|user|>'] };
    default:
      // No chat template (e.g. TinyStories): the latest message is a prompt the model continues.
      return { text: last.content, stop: [] };
  }
}

async function generate({ messages, format, options }) {
  if (!model) throw new Error('no model loaded');
  running = new AbortController();
  const { text, stop } = render(format, messages);
  const templated = format !== 'completion';
  const g = model.generate(text, {
    ...options,
    stop: [...stop, ...(options.stop ?? [])],
    addSpecial: !templated, // templates spell out BOS themselves
    parseSpecial: templated,
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
      if (msg.type === 'load') await load(msg.source);
      else if (msg.type === 'generate') await generate(msg);
    } catch (err) {
      running = undefined;
      post({ type: 'error', during: msg.type, message: String(err?.message ?? err) });
    }
  });
};
