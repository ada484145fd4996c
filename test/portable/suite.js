// The portable conformance suite: written once against dist/wasmforge.js, run unchanged in Node,
// Deno, Bun, a browser page (with and without cross-origin isolation) and a Web Worker. Plain
// JavaScript so every runtime loads it as is. Each runtime's harness supplies how files are found
// (a path or a URL) and the thread count; the suite returns JSON-safe results: named checks that
// must pass here, plus the raw tokens and logits checksums that test/runtimes.test.ts compares
// across runtimes.

/** llama.cpp's tokenization of these texts with stories260K's tok512 vocabulary (no BOS). */
export const TOKENIZER_VECTORS = [
  ['Once upon a time', [403, 407, 261, 378]],
  ['Hello world', [346, 306, 414, 263, 304, 341]],
  [' leading space', [410, 278, 411, 380, 299, 262, 427, 412, 331]],
  ['naïve café — 日本 🙂', [297, 412, 198, 178, 360, 280, 412, 431, 485, 410, 481, 410, 233, 154, 168, 233, 159, 175, 410, 243, 162, 156, 133]],
  ['line one\nline two\n\n  indented', [278, 271, 411, 353, 411, 13, 421, 271, 411, 259, 424, 414, 13, 13, 410, 410, 417, 264, 377, 266]],
  ["Don't stop, it's 1984!", [410, 455, 289, 439, 413, 349, 414, 427, 432, 312, 439, 419, 410, 475, 483, 487, 484, 443]],
];

/** Fixed prompt whose logits (every position) are checksummed. */
export const LOGITS_PROMPT = 'Once upon a time there was a little dog';
export const LOGITS_MODELS = { F32: 'stories260K.gguf', Q8_0: 'stories260K-q8_0.gguf', Q4_0: 'stories260K-q4_0.gguf' };
/** Greedy tokens compared between the WebGPU and WASM backends (software adapters are slow). */
export const WEBGPU_TOKENS = 48;
export const SAMPLING = { prompt: 'The dog', temperature: 0.8, topK: 40, topP: 0.9, minP: 0.05, repeatPenalty: 1.1, seed: 1234, maxTokens: 64 };

/** FNV-1a over the bytes of every float: equal only when the logits are bit-identical. */
export function checksumRows(rows) {
  let h = 0x811c9dc5;
  let sum = 0;
  for (const row of rows) {
    const bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
    for (let i = 0; i < row.length; i++) sum += row[i];
  }
  return { fnv1a: (h >>> 0).toString(16).padStart(8, '0'), sum, argmax: rows.map((r) => r.indexOf(Math.max(...r))) };
}

/** The reference file: "### prompt: P | command" headers, each followed by llama2.c's output. */
export function parseReference(text) {
  return text.split('### prompt: ').slice(1).map((section) => {
    const [header, ...body] = section.split('\n');
    const [prompt, command] = header.split(' | ');
    return { prompt, steps: Number(/-n (\d+)/.exec(command)[1]), text: body.join('\n').trim() };
  });
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * env: {
 *   runtime: string,                       name in the results
 *   threads: number,                       threads for every model
 *   model(name): Promise<input|undefined>, a loadModel input for models/ or shared models, or undefined when absent
 *   reference(): Promise<string|undefined> the llama2.c greedy reference text, or undefined when absent
 *   progress?(message)
 * }
 */
export async function runSuite(wf, env) {
  const checks = [];
  const check = (name, ok, detail = '') => checks.push({ name, ok: Boolean(ok), detail: String(detail) });
  const skipped = [];
  const note = env.progress ?? (() => {});
  wf.setLogLevel('error');
  const out = { runtime: env.runtime, threads: env.threads, checks, skipped };

  const f32 = await env.model(LOGITS_MODELS.F32);
  if (!f32) throw new Error('the bundled models/stories260K.gguf is not reachable');

  // Default options: the kernel build this runtime picks (relaxed where it passes its probe).
  note('tokenizer + greedy');
  const model = await wf.loadModel(f32, { threads: env.threads, kvCacheType: 'f32' });
  try {
    out.kernels = model.backend.kernels;
    out.actualThreads = model.backend.nThreads;
    check('thread count as asked', model.backend.nThreads === env.threads, `asked ${env.threads}, got ${model.backend.nThreads}`);

    out.tokenizer = TOKENIZER_VECTORS.map(([text, want]) => {
      const got = model.tokenizer.encode(text, { addSpecial: false });
      check(`tokenize ${JSON.stringify(text)}`, same(got, want), `got ${JSON.stringify(got)}`);
      const back = model.tokenizer.decode(got);
      check(`detokenize ${JSON.stringify(text)}`, back === text || back === ' ' + text, JSON.stringify(back));
      return got;
    });

    // llama2.c's greedy reference runs: steps - prompt + 1 generated tokens, compared up to BOS.
    const refText = await env.reference();
    const runs = refText ? parseReference(refText) : [
      { prompt: 'Once upon a time', steps: 256 }, { prompt: 'The cat', steps: 256 }, { prompt: 'Lily and Tom went to the', steps: 256 },
    ];
    if (!refText) skipped.push('llama2.c greedy reference text absent (../shared): greedy tokens compared across runtimes only');
    out.greedy = [];
    for (const run of runs) {
      const prompt = model.tokenizer.encode(run.prompt, { addSpecial: true });
      const n = run.steps - prompt.length + 1;
      const r = await model.generate(prompt, { temperature: 0, maxTokens: n, ignoreEos: true }).result;
      const bos = model.tokenizer.bosId;
      const upToBos = r.tokens.includes(bos) ? r.tokens.slice(0, r.tokens.indexOf(bos)) : r.tokens;
      const text = model.tokenizer.decode([...prompt, ...upToBos], { skipSpecial: true }).trim();
      check(`greedy ${JSON.stringify(run.prompt)}: ${n} tokens`, r.tokens.length === n, r.tokens.length);
      if (run.text !== undefined) check(`greedy ${JSON.stringify(run.prompt)} equals llama2.c`, text === run.text, text.slice(0, 120));
      out.greedy.push({ prompt: run.prompt, tokens: r.tokens });
    }

    // WebGPU where this runtime reaches an adapter (Deno and browsers: navigator.gpu; Node and Bun:
    // the npm webgpu package): the WASM backend's greedy tokens, token for token.
    note('webgpu');
    let gpuModel;
    try {
      gpuModel = await wf.loadModel(f32, { backend: 'webgpu', kvCacheType: 'f32' });
    } catch (e) {
      if (e?.code !== 'NO_ADAPTER') throw e;
      skipped.push(`webgpu: ${e.message}`);
    }
    if (gpuModel) {
      try {
        const run = runs[0];
        const tokens = (await gpuModel.generate(gpuModel.tokenizer.encode(run.prompt, { addSpecial: true }), { temperature: 0, maxTokens: WEBGPU_TOKENS, ignoreEos: true }).result).tokens;
        check(`webgpu greedy ${JSON.stringify(run.prompt)}: the WASM backend's ${WEBGPU_TOKENS} tokens`, same(tokens, out.greedy[0].tokens.slice(0, WEBGPU_TOKENS)), `${gpuModel.backend.adapter}: ${JSON.stringify(tokens)}`);
        out.webgpu = { adapter: gpuModel.backend.adapter, tokens };
      } finally {
        await gpuModel.dispose();
      }
    }

    note('sampling');
    const { prompt, ...opts } = SAMPLING;
    const g = model.generate(prompt, opts);
    let streamed = '';
    for await (const piece of g) streamed += piece.text;
    const s = await g.result;
    const again = await model.generate(prompt, opts).result;
    const other = await model.generate(prompt, { ...opts, seed: opts.seed + 1 }).result;
    check('sampling: streamed pieces add up to the text', streamed === s.text);
    check('sampling: same seed, same tokens', same(again.tokens, s.tokens));
    check('sampling: another seed, other tokens', !same(other.tokens, s.tokens));
    out.sampling = { tokens: s.tokens, text: s.text, stopReason: s.stopReason };
  } finally {
    await model.dispose();
  }

  // Logits checksums on the baseline build: bit-identical in every runtime and at any thread count.
  out.logits = {};
  for (const [type, name] of Object.entries(LOGITS_MODELS)) {
    const input = await env.model(name);
    if (!input) {
      skipped.push(`${type}: ${name} absent (../shared/models)`);
      continue;
    }
    note(`logits ${type}`);
    const sums = [];
    for (const threads of env.threads > 1 ? [env.threads, 1] : [1]) {
      const m = await wf.loadModel(input, { threads, relaxedSimd: false });
      try {
        const tokens = m.tokenizer.encode(LOGITS_PROMPT, { addSpecial: true });
        const rows = await m.evaluate(tokens);
        check(`logits ${type}: ${tokens.length} rows of ${m.config.vocabSize}`, rows.length === tokens.length && rows.every((r) => r.length === m.config.vocabSize));
        check(`logits ${type}: finite`, rows.every((r) => r.every(Number.isFinite)));
        sums.push({ threads, kernels: m.backend.kernels, ...checksumRows(rows) });
      } finally {
        await m.dispose();
      }
    }
    if (sums.length === 2) check(`logits ${type}: ${sums[0].threads} threads bit-identical to 1`, sums[0].fnv1a === sums[1].fnv1a, `${sums[0].fnv1a} vs ${sums[1].fnv1a}`);
    check(`logits ${type}: baseline build`, sums[0].kernels === 'baseline', sums[0].kernels);
    out.logits[type] = { fnv1a: sums[0].fnv1a, sum: sums[0].sum, argmax: sums[0].argmax };
  }
  out.passed = checks.filter((c) => c.ok).length;
  out.failed = checks.filter((c) => !c.ok).length;
  return out;
}
