// In-page drivers for the browser runs (plain JS, loaded by index.html). Each loads a model from the bench server,
// runs an untimed warm-up, then the timed prompt (one batch) and greedy decode, and returns the figures.
// The prompt is text: each runtime tokenizes it itself, and the count it saw is returned and checked.

function isolationError(threads) {
  if (threads > 1 && !self.crossOriginIsolated) return new Error('the page is not crossOriginIsolated: no SharedArrayBuffer, so no threads');
  return undefined;
}

window.benchWasmforge = async ({ modelUrl, threads, promptText, decodeTokens, warmupText, warmup, contextLength, promptTokens }) => {
  const err = isolationError(threads);
  if (err) throw err;
  const { loadModel } = await import('/wasmforge.js');
  const t0 = performance.now();
  const model = await loadModel(new URL(modelUrl, location.href).href, { threads, contextLength, maxBatchTokens: promptTokens });
  const loadS = (performance.now() - t0) / 1000;
  try {
    if (model.backend.nThreads !== threads) throw new Error(`asked for ${threads} threads, the backend runs ${model.backend.nThreads}`);
    if (warmup) await model.generate(warmupText, { maxTokens: 4, temperature: 0, ignoreEos: true }).result;
    // maxTokens = decode + 1: the first token comes from the prompt pass; decode speed counts the passes after it.
    const r = await model.generate(promptText, { maxTokens: decodeTokens + 1, temperature: 0, ignoreEos: true }).result;
    return {
      loadS, promptTokens: r.promptTokens, decodeTokens: r.tokens.length - 1,
      promptTps: r.promptTokensPerSecond, decodeTps: r.decodeTokensPerSecond,
      detail: `${model.backend.name}, ${model.backend.nThreads} threads, crossOriginIsolated ${self.crossOriginIsolated}`,
    };
  } finally {
    await model.dispose();
  }
};

window.benchWllama = async ({ modelUrl, threads, promptText, decodeTokens, warmupText, warmup, contextLength }) => {
  const err = isolationError(threads);
  if (err) throw err;
  const { Wllama } = await import('/wllama/esm/index.js');
  const quiet = { debug() {}, log() {}, warn: console.warn, error: console.error };
  const t0 = performance.now();
  const blob = await (await fetch(modelUrl)).blob();
  const w = new Wllama(
    { 'single-thread/wllama.wasm': '/wllama/esm/single-thread/wllama.wasm', 'multi-thread/wllama.wasm': '/wllama/esm/multi-thread/wllama.wasm' },
    { suppressNativeLog: true, logger: quiet },
  );
  // n_batch = context: the whole prompt in one llama_decode. One thread uses wllama's single-thread build.
  await w.loadModel([blob], { n_ctx: contextLength, n_batch: contextLength, n_threads: threads, seed: 1 });
  const loadS = (performance.now() - t0) / 1000;
  if (w.getNumThreads() !== threads) throw new Error(`asked for ${threads} threads, wllama runs ${w.getNumThreads()}`);
  // What createCompletion does, without its stop at end-of-generation tokens (random weights may pick one).
  const run = async (text, steps) => {
    await w.kvClear();
    await w.samplingInit({ temp: 0 }); // greedy
    const tokens = await w.tokenize(text, true);
    if (w.mustAddBosToken() && tokens[0] !== w.getBOS()) tokens.unshift(w.getBOS());
    await w.samplingAccept(tokens);
    const t1 = performance.now();
    await w.decode(tokens, {});
    const t2 = performance.now();
    // As in wasmforge's timings: sampling the first token counts to decode.
    let next = await w.samplingSample();
    for (let i = 0; i < steps; i++) {
      await w.samplingAccept([next.token]);
      await w.decode([next.token], {});
      next = await w.samplingSample();
    }
    const t3 = performance.now();
    return { promptTokens: tokens.length, promptMs: t2 - t1, decodeMs: t3 - t2 };
  };
  try {
    if (warmup) await run(warmupText, 3);
    const r = await run(promptText, decodeTokens);
    return {
      loadS, promptTokens: r.promptTokens, decodeTokens,
      promptTps: r.promptTokens / (r.promptMs / 1000), decodeTps: decodeTokens / (r.decodeMs / 1000),
      detail: `wllama ${w.isMultithread() ? 'multi' : 'single'}-thread build, ${w.getNumThreads()} threads, crossOriginIsolated ${self.crossOriginIsolated}`,
    };
  } finally {
    await w.exit();
  }
};

window.benchReady = true;
