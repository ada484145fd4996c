// The chat page: UI only. The model runs in worker.js, so loading and generating never block the
// page; this side sends requests, shows progress and streams pieces as they arrive.
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

/** @type {{ role: 'user' | 'assistant', content: string }[]} */
let messages = [];
let busy = false;
let loaded = false;
/** The assistant bubble being streamed into. */
let current;

$('env').textContent = self.crossOriginIsolated
  ? `Cross-origin isolated: inference uses up to ${Math.min(navigator.hardwareConcurrency || 1, 8)} threads in a Web Worker.`
  : 'Not cross-origin isolated (no COOP/COEP headers): inference runs on one thread in a Web Worker.';

function setBusy(next) {
  busy = next;
  $('send').disabled = busy || !loaded;
  $('prompt').disabled = !loaded;
  $('stop').disabled = !busy || !current;
  for (const id of ['file', 'url', 'bundled']) $(id).disabled = busy;
}

function bubble(role, text) {
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  el.append(document.createTextNode(text));
  $('chat').append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

function load(source) {
  loaded = false;
  current = undefined;
  setBusy(true);
  $('progress').hidden = false;
  $('progress').removeAttribute('value'); // indeterminate until the first progress report
  $('model-status').textContent = `Loading ${typeof source === 'string' ? source : source.name}…`;
  worker.postMessage({ type: 'load', source, backend: $('backend').value });
}

// WebGPU is on offer where the browser has it (the worker finds the adapter; a software one is refused by 'auto').
if (!('gpu' in navigator)) {
  const gpu = $('backend').querySelector('option[value="webgpu"]');
  gpu.disabled = true;
  gpu.textContent += ' (not in this browser)';
}

function settings() {
  const num = (id) => ($(id).value === '' ? undefined : Number($(id).value));
  return {
    temperature: num('temperature'), topK: num('topK'), topP: num('topP'), minP: num('minP'),
    repeatPenalty: num('repeatPenalty'), maxTokens: num('maxTokens'),
    seed: num('seed') ?? Math.floor(Math.random() * 2 ** 31),
  };
}

function send() {
  const text = $('prompt').value;
  if (!loaded || busy || !text.trim()) return;
  $('prompt').value = '';
  messages.push({ role: 'user', content: text });
  bubble('user', text);
  current = bubble('assistant', '');
  current.classList.add('streaming');
  current.dataset.text = '';
  $('speed').textContent = 'Evaluating the prompt…';
  setBusy(true);
  worker.postMessage({ type: 'generate', messages, options: settings() });
}

worker.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case 'progress': {
      $('progress').max = m.total || 1;
      $('progress').value = m.loaded;
      const mib = (n) => (n / 2 ** 20).toFixed(1);
      $('model-status').textContent = `${m.phase === 'download' ? 'Downloading' : 'Loading weights'}: ${mib(m.loaded)} / ${mib(m.total)} MiB`;
      break;
    }
    case 'loaded': {
      const i = m.info;
      loaded = true;
      messages = [];
      $('progress').hidden = true;
      $('model-status').textContent = `Ready: ${i.file} — ${i.name} (${i.architecture}, vocab ${i.vocabSize}, context ${i.contextLength}) · ${i.backend === 'webgpu' ? `WebGPU on ${i.adapter}` : `WebAssembly, ${i.threads} thread${i.threads === 1 ? '' : 's'}, ${i.kernels} SIMD kernels`} · ${i.chat ? 'chat template from the model' : 'no chat template: each message is a prompt to continue'} · loaded in ${i.loadMs} ms`;
      $('model-status').dataset.threads = String(i.threads);
      $('model-status').dataset.backend = i.backend;
      setBusy(false);
      $('prompt').focus();
      break;
    }
    case 'piece': {
      current.dataset.text += m.text;
      current.firstChild.textContent = current.dataset.text;
      current.scrollIntoView({ block: 'end' });
      const secs = m.ms / 1000;
      $('speed').textContent = `${m.tokens} tokens · ${secs > 0 ? (m.tokens / secs).toFixed(1) : '–'} tok/s`;
      break;
    }
    case 'done': {
      const r = m.result;
      messages.push({ role: 'assistant', content: r.text });
      current.classList.remove('streaming');
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = `${r.tokens} tokens · ${r.decodeTokensPerSecond.toFixed(1)} tok/s · stopped: ${r.stopReason}`;
      current.append(meta);
      current.dataset.stopReason = r.stopReason;
      $('speed').textContent = `Prompt: ${r.promptTokens} tokens at ${r.promptTokensPerSecond.toFixed(1)} tok/s · generated: ${r.tokens} tokens at ${r.decodeTokensPerSecond.toFixed(1)} tok/s · stop reason: ${r.stopReason}`;
      current = undefined;
      setBusy(false);
      break;
    }
    case 'error': {
      if (m.during === 'load') {
        $('progress').hidden = true;
        $('model-status').textContent = 'No model loaded.';
      }
      if (current) {
        current.classList.remove('streaming');
        messages.pop(); // the user message that failed
        current = undefined;
      }
      bubble('error', `Error while ${m.during === 'load' ? 'loading' : 'generating'}: ${m.message}`);
      setBusy(false);
      break;
    }
  }
};
worker.onerror = (e) => bubble('error', `Worker error: ${e.message}`);

$('file').addEventListener('change', () => $('file').files[0] && load($('file').files[0]));
$('url-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if ($('url').value) load(new URL($('url').value, location.href).href);
});
$('bundled').addEventListener('click', () => load(new URL('../../models/stories260K.gguf', location.href).href));
$('prompt-form').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    send();
  }
});
$('stop').addEventListener('click', () => worker.postMessage({ type: 'stop' }));
$('clear').addEventListener('click', () => {
  if (busy) return;
  messages = [];
  $('chat').replaceChildren();
  $('speed').textContent = '';
});

// Drag and drop anywhere on the page.
const drop = $('drop');
addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
addEventListener('dragleave', (e) => {
  if (e.target === document.documentElement || !e.relatedTarget) drop.classList.remove('over');
});
addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = e.dataTransfer?.files[0];
  if (file && !busy) load(file);
});
setBusy(false);
