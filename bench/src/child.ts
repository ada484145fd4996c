// One measured run in a fresh Node process (so its peak RSS is its own): load the model, an untimed warm-up,
// then the timed prompt (one batch) and greedy decode. Prints one line `BENCH_RESULT <json>` on stdout.
import { readFileSync } from 'node:fs';
import type { RunFigures, RunRequest } from './types.js';

export async function childMain(requestFile: string): Promise<void> {
  const req = JSON.parse(readFileSync(requestFile, 'utf8')) as RunRequest;
  const figures = req.runtime === 'wasmforge' || req.runtime === 'wasmforge-webgpu' ? await runWasmforge(req) : await runLlamaCpp(req);
  // ru_maxrss: the process's peak resident set, in KiB on Linux.
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ ...figures, peakRssBytes })}\n`);
}

function check(req: RunRequest, promptTokens: number, decodeTokens: number): void {
  if (promptTokens !== req.promptTokens) throw new Error(`${req.runtime} saw ${promptTokens} prompt tokens, expected ${req.promptTokens}`);
  if (decodeTokens !== req.decodeTokens) throw new Error(`${req.runtime} decoded ${decodeTokens} tokens, expected ${req.decodeTokens}`);
}

async function runWasmforge(req: RunRequest): Promise<Omit<RunFigures, 'peakRssBytes'>> {
  const { loadModel } = await import('../../src/index.js');
  const t0 = performance.now();
  const gpu = req.runtime === 'wasmforge-webgpu';
  const model = await loadModel(req.modelPath, { threads: req.threads, contextLength: req.contextLength, maxBatchTokens: req.promptTokens, backend: gpu ? 'webgpu' : 'wasm' });
  const loadS = (performance.now() - t0) / 1000;
  try {
    if (!gpu && model.backend.nThreads !== req.threads) throw new Error(`asked for ${req.threads} threads, the backend runs ${model.backend.nThreads}`);
    if (req.warmup) await model.generate(req.warmupText, { maxTokens: 4, temperature: 0, ignoreEos: true }).result;
    // maxTokens = decode + 1: the first token comes from the prompt pass; decode speed counts the passes after it.
    const r = await model.generate(req.promptText, { maxTokens: req.decodeTokens + 1, temperature: 0, ignoreEos: true }).result;
    check(req, r.promptTokens, r.tokens.length - 1);
    const adapter = (model.backend as { adapter?: string }).adapter;
    const detail = gpu
      ? `webgpu on ${adapter}${/swiftshader|llvmpipe|lavapipe/i.test(adapter ?? '') ? ' (a SOFTWARE adapter: not GPU speed)' : ''}`
      : `${model.backend.name}, ${model.backend.nThreads} threads`;
    return { loadS, promptTps: r.promptTokensPerSecond, decodeTps: r.decodeTokensPerSecond, detail };
  } finally {
    await model.dispose();
  }
}

async function runLlamaCpp(req: RunRequest): Promise<Omit<RunFigures, 'peakRssBytes'>> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const gpu = req.runtime === 'llama.cpp-gpu';
  const llama = await getLlama({
    gpu: gpu ? 'auto' : false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: LlamaLogLevel.error, maxThreads: req.threads,
  });
  if (gpu && !llama.gpu) throw new Error('node-llama-cpp found no GPU build (@node-llama-cpp/linux-x64-vulkan or -cuda) or no GPU');
  // llama.cpp's Vulkan backend skips CPU devices (SwiftShader, lavapipe): its build then loads and
  // runs the model on the CPU, which must not be reported as a GPU figure.
  if (gpu && (await llama.getGpuDeviceNames()).length === 0) {
    await llama.dispose();
    throw new Error(`node-llama-cpp's ${llama.gpu} build found no GPU device (llama.cpp skips CPU Vulkan devices such as SwiftShader and lavapipe)`);
  }
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: req.modelPath, gpuLayers: gpu ? 'max' : 0 });
  const context = await model.createContext({
    contextSize: req.contextLength, batchSize: req.contextLength, sequences: 1, threads: { ideal: req.threads, min: req.threads },
  });
  const loadS = (performance.now() - t0) / 1000;
  try {
    const sequence = context.getSequence();
    const tokenize = (text: string) => {
      const t = model.tokenize(text);
      const bos = model.tokens.bos;
      if (bos !== null && t[0] !== bos) t.unshift(bos);
      return t;
    };
    // evaluate() yields one greedy token per step; the first step evaluates the whole prompt in one batch.
    const timed = async (tokens: ReturnType<typeof tokenize>, steps: number) => {
      const it = sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true });
      const t1 = performance.now();
      let r = await it.next();
      const t2 = performance.now();
      let n = 0;
      for (; n < steps && !r.done; n++) r = await it.next();
      const t3 = performance.now();
      await it.return();
      return { promptMs: t2 - t1, decodeMs: t3 - t2, decoded: n };
    };
    if (req.warmup) {
      await timed(tokenize(req.warmupText), 3);
      await sequence.clearHistory();
    }
    const prompt = tokenize(req.promptText);
    const r = await timed(prompt, req.decodeTokens);
    check(req, prompt.length, r.decoded);
    return {
      loadS, promptTps: prompt.length / (r.promptMs / 1000), decodeTps: r.decoded / (r.decodeMs / 1000),
      detail: `node-llama-cpp ${llama.buildType} ${llama.gpu || 'cpu'}, ${context.currentThreads} threads`,
    };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}
