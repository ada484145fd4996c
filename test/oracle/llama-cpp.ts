// Test oracle: llama.cpp itself, through node-llama-cpp's prebuilt CPU binaries (never built or
// downloaded here). Not shipped; tests use it to check that files we write load in llama.cpp and
// that our numbers match its numbers.
//
// What node-llama-cpp 3.22 gives (read from its sources, checked on stories260K):
// - sequence.controlledEvaluate(tokens.map(t => [t, { generateNext: { logits: true } }])) returns,
//   for every input position, the raw logits of the FULL vocabulary (a Map token -> logit, sorted
//   by logit). They are llama_get_logits_ith() copied as floats: with the default temperature 0
//   the sampler chain is greedy only, which selects but does not filter or rescale candidates
//   (top-k 40 and top-p only apply when temperature > 0).
// - generateNext.probabilities gives the softmax of that same full list, computed in float32 in
//   the addon; we use the logits instead and take log-softmax in float64, which keeps exact
//   tail values (float32 probabilities underflow to 0 for very unlikely tokens).
// - getLlama costs about 1 s (binary load); loading a tiny model about 25 ms; evaluating a few
//   tokens of stories260K about 30 ms.
import type { ControlledEvaluateInputItem, Llama, LlamaModel, Token } from 'node-llama-cpp';

export interface LlamaCppStatus {
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
}

let llamaPromise: Promise<Llama> | undefined;
const models = new Map<string, Promise<LlamaModel>>();

async function llama(): Promise<Llama> {
  llamaPromise ??= (async () => {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    return getLlama({
      gpu: false,
      build: 'never',
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      logLevel: LlamaLogLevel.error,
      // One thread: the same reduction order on every run.
      maxThreads: 1,
    });
  })();
  return llamaPromise;
}

/** Whether node-llama-cpp can load its prebuilt binary here, and if not, why. */
export async function llamaCppStatus(): Promise<LlamaCppStatus> {
  try {
    await llama();
    return { available: true };
  } catch (e) {
    llamaPromise = undefined;
    return { available: false, reason: (e as Error).message.split('\n')[0] };
  }
}

export async function isLlamaCppAvailable(): Promise<boolean> {
  return (await llamaCppStatus()).available;
}

async function model(path: string): Promise<LlamaModel> {
  let m = models.get(path);
  if (!m) {
    m = llama().then((l) => l.loadModel({ modelPath: path, gpuLayers: 0 }));
    models.set(path, m);
    m.catch(() => models.delete(path));
  }
  return m;
}

/** Free one model (a file loaded for a single measurement), if it was loaded. */
export async function llamaCppUnload(path: string): Promise<void> {
  const m = models.get(path);
  if (!m) return;
  models.delete(path);
  await m.then((x) => x.dispose(), () => {});
}

/**
 * Logit rows have one entry per row of the output matrix. node-llama-cpp exposes no n_vocab, so
 * take it from its own GGUF parse (independent of ours): output.weight, else the tied embedding.
 */
function vocabSize(m: LlamaModel, path: string): number {
  const info = m.fileInfo.tensorInfo ?? [];
  const t = info.find((x) => x.name === 'output.weight') ?? info.find((x) => x.name === 'token_embd.weight');
  const n = t ? Number(t.dimensions[1]) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${path}: cannot tell the vocabulary size from node-llama-cpp's tensor info`);
  return n;
}

/** Load a model and report what llama.cpp saw; a file llama.cpp refuses rejects with its error. */
export async function llamaCppLoad(path: string): Promise<{ vocabSize: number; trainContextSize: number; layers: number }> {
  const m = await model(path);
  return { vocabSize: vocabSize(m, path), trainContextSize: m.trainContextSize, layers: m.fileInsights.totalLayers };
}

/** llama.cpp's tokenization. `special` parses special-token text such as "<s>"; `addBos` prepends BOS. */
export async function llamaCppTokenize(path: string, text: string, opts: { addBos?: boolean; special?: boolean } = {}): Promise<number[]> {
  const m = await model(path);
  const tokens = m.tokenize(text, opts.special ?? false).map(Number);
  if (opts.addBos) {
    const bos = m.tokens.bos;
    if (bos === null) throw new Error(`${path}: model has no BOS token`);
    tokens.unshift(Number(bos));
  }
  return tokens;
}

export interface LlamaCppContextOptions {
  /** Tokens per llama_decode call (default: the whole prompt at once). */
  batchSize?: number;
  /** KV cache element type of K and V (llama.cpp's default is f16; -ctk/-ctv). q8_0 / q4_0 need flash attention (a quantized V has no other path). */
  kvCacheType?: 'f16' | 'f32' | 'q8_0' | 'q4_0';
  /**
   * Left out: node-llama-cpp's default, 'auto', which llama.cpp resolves to on for the CPU. Flash
   * attention casts an f32 cache to f16 before using it (llama-graph.cpp build_attn_mha), so only
   * with it off does an f32 cache stay f32.
   */
  flashAttention?: boolean;
  /** LoRA adapters (GGUF files) with their scales. */
  lora?: { filePath: string; scale: number }[];
}

/** A one-sequence, one-thread context of `size` tokens with the options' cache type and attention. */
function createContext(m: LlamaModel, size: number, opts: LlamaCppContextOptions) {
  const kvType = ({ f32: 'F32', f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' } as const)[opts.kvCacheType ?? 'f16'];
  return m.createContext({
    contextSize: size, batchSize: opts.batchSize ?? size, threads: { ideal: 1, min: 1 }, sequences: 1,
    experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
    ...(opts.flashAttention !== undefined ? { flashAttention: opts.flashAttention } : {}),
    ...(opts.lora ? { lora: { adapters: opts.lora } } : {}),
  });
}

/** Raw next-token logits over the full vocabulary after each prompt position (a fresh context per call). */
export async function llamaCppNextTokenLogits(path: string, tokens: number[], opts: LlamaCppContextOptions = {}): Promise<Float32Array[]> {
  if (tokens.length === 0) return [];
  const m = await model(path);
  const nVocab = vocabSize(m, path);
  const context = await createContext(m, Math.max(64, tokens.length + 1), opts);
  try {
    const sequence = context.getSequence();
    const results = await sequence.controlledEvaluate(
      tokens.map((t): ControlledEvaluateInputItem => [t as Token, { generateNext: { logits: true } }]),
    );
    return tokens.map((_, i) => {
      const logits = results[i]?.next.logits;
      if (!logits) throw new Error(`${path}: no logits returned for position ${i}`);
      if (logits.size !== nVocab) throw new Error(`${path}: got ${logits.size} logits at position ${i}, expected the full vocabulary of ${nVocab}`);
      const row = new Float32Array(nVocab);
      for (const [token, logit] of logits) row[token] = logit;
      return row;
    });
  } finally {
    await context.dispose();
  }
}

/** Log-softmax of each row, computed in float64. */
export function logSoftmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return logits.map((v) => v - lse);
}

/** For each prompt position, the full-vocabulary log-probabilities of the next token. */
export async function llamaCppNextTokenLogProbs(path: string, tokens: number[]): Promise<Float32Array[]> {
  return (await llamaCppNextTokenLogits(path, tokens)).map(logSoftmax);
}

/**
 * Free the models and the binding (call from afterAll). Bounded: node-llama-cpp's dispose has
 * been seen to hang in CI (a HookTimeoutError after 120 s with every test passed); the test
 * worker process exits after the file anyway, so a dispose that does not finish in time is
 * abandoned rather than failing the suite.
 */
export async function disposeLlamaCpp(timeoutMs = 15_000): Promise<void> {
  const disposeAll = async () => {
    for (const m of models.values()) await m.then((x) => x.dispose(), () => {});
    models.clear();
    if (llamaPromise) {
      const l = await llamaPromise.catch(() => undefined);
      llamaPromise = undefined;
      await l?.dispose();
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
  const outcome = await Promise.race([disposeAll().then(() => 'done' as const), timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    models.clear();
    llamaPromise = undefined;
    process.stderr.write(`[llama-cpp oracle] dispose did not finish in ${timeoutMs} ms; abandoned (the worker exits after this file)\n`);
  }
}

/** llama.cpp's pooled embedding of `tokens` (an encoder model: BERT), as node-llama-cpp's embedding context returns it. */
export async function llamaCppEmbedding(path: string, tokens: readonly number[], opts: { flashAttention?: boolean; kvCacheType?: 'f16' | 'f32' } = {}): Promise<Float32Array> {
  const m = await model(path);
  const size = { contextSize: Math.max(64, tokens.length), batchSize: Math.max(64, tokens.length), threads: 2 };
  // With flashAttention set, node-llama-cpp's embedding context as its own factory makes it, plus that option and
  // the KV type (for a decoder, whose attention reads its cache: f32 K/V without flash attention stay f32).
  const ctx = opts.flashAttention === undefined ? await m.createEmbeddingContext(size) : await (async () => {
    const { LlamaEmbeddingContext } = await import('node-llama-cpp');
    const kv = opts.kvCacheType === 'f32' ? 'F32' : 'F16';
    const llamaContext = await m.createContext({ ...size, flashAttention: opts.flashAttention, experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv, _embeddings: true } as Parameters<typeof m.createContext>[0]);
    return new (LlamaEmbeddingContext as unknown as new (o: { _llamaContext: unknown }) => Awaited<ReturnType<typeof m.createEmbeddingContext>>)({ _llamaContext: llamaContext });
  })();
  try {
    const e = await ctx.getEmbeddingFor([...tokens] as unknown as Parameters<typeof ctx.getEmbeddingFor>[0] & number[]);
    return Float32Array.from(e.vector);
  } finally {
    await ctx.dispose();
  }
}

/** llama.cpp's greedy continuation of `tokens`: `n` tokens, end-of-generation tokens included (a fresh context). */
export async function llamaCppGreedy(path: string, tokens: number[], n: number, opts: LlamaCppContextOptions = {}): Promise<number[]> {
  const m = await model(path);
  const context = await createContext(m, Math.max(64, tokens.length + n + 1), opts);
  try {
    const out: number[] = [];
    for await (const t of context.getSequence().evaluate(tokens as Token[], { temperature: 0 })) {
      out.push(Number(t));
      if (out.length >= n) break;
    }
    return out;
  } finally {
    await context.dispose();
  }
}

/**
 * llama.cpp's own grammar matcher (its grammar sampler through node-llama-cpp's addon, the internal
 * calls LlamaChatSession uses): for a GBNF grammar and the tokens generated so far, which of
 * `candidates` it allows at each step (before history[0], after history[0], ...).
 */
export async function llamaCppGrammarAllowed(path: string, grammar: string, history: readonly number[], candidates: readonly number[]): Promise<boolean[][]> {
  const l = await llama();
  const m = await model(path);
  const { LlamaGrammarEvaluationState } = await import('node-llama-cpp');
  const g = await l.createGrammar({ grammar });
  const state = new LlamaGrammarEvaluationState({ model: m, grammar: g });
  const addon = (l as unknown as { _bindings: { AddonSampler: { canBeNextTokenForGrammarEvaluationState(s: unknown, t: number): boolean; acceptGrammarEvaluationStateToken(s: unknown, t: number): void } } })._bindings.AddonSampler;
  const raw = (state as unknown as { _state: unknown })._state;
  const out: boolean[][] = [];
  for (let step = 0; step <= history.length; step++) {
    out.push(candidates.map((t) => addon.canBeNextTokenForGrammarEvaluationState(raw, t)));
    if (step < history.length) addon.acceptGrammarEvaluationStateToken(raw, history[step]!);
  }
  return out;
}
