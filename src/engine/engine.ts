// The serving engine over one loaded model: its own KV pool (paged, prefix-sharing) and graph on
// the model's backend and weights, a scheduler doing continuous batching, and the request API
// (generate / chat) with streaming, cancellation, timeouts and back-pressure.
//
// Memory: the backend's allocator never frees, so the KV pool and activation buffers are
// allocated once, here, and stay until the model is disposed. Make one engine per model.
import { ChatTemplate, type ChatMessage, type ChatRenderOptions } from '../chat/template.js';
import { yieldToEventLoop } from '../generation/yield.js';
import { createPromptLookupDrafter } from '../generation/prompt-lookup.js';
import { DraftModelDrafter, vocabularyMismatch, type DraftHost } from '../generation/draft-model.js';
import { speculativeSettings, type Drafter, type SpeculativeOptions } from '../generation/speculative.js';
import { DraftLength } from '../generation/draft-length.js';
import { jsonSchemaToGBNF } from '../generation/constrained/json-schema.js';
import { CompiledGrammar, LazyGrammarMatcher } from '../generation/constrained/matcher.js';
import { kvCacheTypeProblem } from '../backend/backend.js';
import { KVCache, type KVBudget } from '../kv/kv-cache.js';
import { log } from '../log.js';
import { everyLayerWindow, Graph } from '../model/graph.js';
import type { Model } from '../model/model.js';
import { ModelError } from '../model/errors.js';
import { Sampler, type SamplingOptions } from '../sampling/sampler.js';
import { SeededRandom } from '../sampling/rng.js';
import { CompletionOutput } from './completion.js';
import { EngineError } from './errors.js';
import { decodeState, encodeState, modelIdentity, type StateLayout } from './kv-state.js';
import type { ActiveAdapter } from '../model/lora.js';
import { RequestState } from './request.js';
import { Scheduler } from './scheduler.js';
import { Sequence } from './sequence.js';
import type { EngineGeneration, EngineMetrics, EngineOptions, EngineRequest } from './types.js';

export interface ChatRequestOptions extends Omit<EngineRequest, 'prompt' | 'addSpecial' | 'parseSpecial'>, ChatRenderOptions {
  /** Use this Jinja template (source, or one already parsed) instead of the model's tokenizer.chat_template. */
  chatTemplate?: string | ChatTemplate;
}

/**
 * An engine over the model: its KV pool, activation buffers and scheduler. The model's first
 * engine is also the one its generate() and evaluate() run on, so a model with an engine holds
 * one KV pool and one set of activations.
 */
export async function createEngine(model: Model, options: EngineOptions = {}): Promise<Engine> {
  return model.adoptEngine(() => new Engine(model, options));
}

const adapterIds = new WeakMap<object, number>();
let nextAdapterId = 1;

/** The identity of a set of adapters with their scales: KV computed under one is reused only under the same. */
function keyOfAdapters(active: readonly ActiveAdapter[]): string {
  return active.map((a) => {
    let id = adapterIds.get(a.adapter);
    if (id === undefined) adapterIds.set(a.adapter, (id = nextAdapterId++));
    return `${id}x${a.scale}`;
  }).join(',');
}

/** Compiled grammars an engine keeps (each holds up to 16 MiB of cached masks). */
const GRAMMAR_CACHE = 8;

/** The most alternatives per token a request may ask for (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;

/** The KV sequence id encode() uses (the scheduler's ids count up from 0). */
const ENCODE_SEQUENCE = Number.MAX_SAFE_INTEGER;

export class Engine {
  /** The forward pass over this engine's KV pool (low level; requests go through generate). */
  readonly graph: Graph;
  private readonly scheduler: Scheduler;
  private readonly requests = new Set<RequestState>();
  private readonly maxQueue: number;
  private nextRequestId = 0;
  private looping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private disposed = false;
  private template: ChatTemplate | undefined;
  /** The LoRA adapters of requests that name none (setAdapters). */
  private defaultAdapters: readonly ActiveAdapter[] = [];
  /** Compiled grammars by GBNF text (their automata and masks grow as they are used: reuse pays). */
  private readonly grammars = new Map<string, CompiledGrammar>();
  private identity: Uint8Array | undefined;
  /** The forward pass in flight (a scheduler step or an encode): the next waits for it. */
  private busy: Promise<void> = Promise.resolve();

  constructor(
    readonly model: Model,
    options: EngineOptions = {},
  ) {
    const int = (v: number | undefined, fallback: number, min: number, what: string) => {
      const n = v ?? fallback;
      if (!Number.isInteger(n) || n < min) throw new EngineError('INVALID_OPTION', `${what} must be an integer >= ${min}, got ${v}`);
      return n;
    };
    const c = model.config;
    const window = everyLayerWindow(c); // the KV drops old keys only when no layer reads them
    const shift = options.contextShift ?? 'none';
    if (shift !== 'none' && shift !== 'sliding-window') throw new EngineError('INVALID_OPTION', `contextShift must be 'none' or 'sliding-window', got ${String(shift)}`);
    if (shift === 'sliding-window' && window === undefined) {
      throw new EngineError('UNSUPPORTED', 'sliding-window context shift needs a model trained with sliding-window attention ({arch}.attention.sliding_window); this one attends to its whole context, and dropping old positions would change what every later token attends to. Sequences end with stopReason "context_full" instead');
    }
    if (options.kvCacheBytes !== undefined && options.kvCacheTokens !== undefined) {
      throw new EngineError('INVALID_OPTION', 'give kvCacheBytes or kvCacheTokens, not both');
    }
    const contextLength = Math.min(int(options.contextLength, model.contextLength, 1, 'contextLength'), c.contextLength);
    const maxBatchTokens = int(options.maxBatchTokens, 512, 1, 'maxBatchTokens');
    const blockSize = int(options.blockSize, 16, 1, 'blockSize');
    this.maxQueue = int(options.maxQueue, 256, 0, 'maxQueue');
    // The graph packs at most min(maxBatchTokens, 256) block tables per pass.
    const maxSequences = Math.min(int(options.maxSequences, 64, 1, 'maxSequences'), maxBatchTokens, 256);
    const type = options.kvCacheType ?? model.kvCacheType;
    const kvProblem = kvCacheTypeProblem(type, c.headDim, model.backend.capabilities.kvTypes);
    if (kvProblem) throw new EngineError(kvProblem.code === 'INVALID' ? 'INVALID_OPTION' : 'UNSUPPORTED', kvProblem.message);
    const shape = { nLayers: c.nLayers, kvDim: c.nKvHeads * c.headDim, headDim: c.headDim, blockSize, type };
    // The most KV one sequence holds: its context, or under a sliding window its window and a batch.
    const sequenceTokens = window === undefined ? contextLength : Math.min(contextLength, KVCache.windowBlocks(window, blockSize, maxBatchTokens) * blockSize);
    const budget: KVBudget | undefined = options.kvCacheBytes !== undefined ? { bytes: options.kvCacheBytes } : options.kvCacheTokens !== undefined ? { tokens: options.kvCacheTokens } : undefined;
    let nBlocks = KVCache.blocksForBudget(shape, budget ?? { tokens: 4 * sequenceTokens });
    // The default pool (four whole sequences) shrinks to what one layer's tensor can hold on this
    // backend (a GPU's binding limit), as long as a whole sequence still fits; a pool asked for is kept.
    const caps = model.backend.capabilities;
    const most = KVCache.maxBlocks(shape, caps);
    if (budget === undefined && nBlocks > most && most * blockSize >= sequenceTokens) {
      log.info(`engine: the KV pool holds ${most * blockSize} tokens, not ${nBlocks * blockSize}: one layer's K is at most ${caps.kvParts} tensor(s) of ${caps.maxTensorBytes} bytes on ${model.backend.name}`);
      nBlocks = most;
    }
    const prefixCacheEntries = int(options.prefixCacheEntries, 32, 0, 'prefixCacheEntries');
    // Everything is checked: allocate (once; backend memory is never given back).
    const kv = new KVCache(model.backend, { ...shape, nBlocks, maxSequenceLength: contextLength, slidingWindow: window });
    const graph = new Graph(model.backend, model.arch, c, model.weights, kv, maxBatchTokens);
    this.graph = graph;
    // A sequence alone must always fit the pool: it may reach the context when the pool holds the
    // most one sequence holds, else only as many tokens as the pool has.
    const reach = kv.capacityTokens >= sequenceTokens ? contextLength : Math.min(contextLength, kv.capacityTokens);
    this.scheduler = new Scheduler(graph, model.tokenizer, { maxBatchTokens, maxSequences, contextLength: reach, prefixCacheEntries });
    log.info(`engine: ${nBlocks} KV blocks of ${blockSize} tokens (${(KVCache.bytesNeeded({ ...shape, nBlocks }) / 2 ** 20).toFixed(1)} MiB), batch ${maxBatchTokens} tokens, up to ${maxSequences} sequences${window === undefined ? '' : `, sliding window ${window}`}`);
  }

  /** Tokens a sequence may reach (the context, capped by the KV pool unless it holds a whole sliding-window sequence). */
  get contextLength(): number {
    return this.scheduler.config.contextLength;
  }

  /**
   * Submit a request. Throws at once (EngineError) when it cannot be accepted: OVERLOADED when
   * maxQueue requests are already waiting, PROMPT_TOO_LONG, INVALID_REQUEST, DISPOSED; bad
   * sampling options throw SamplingError. Later failures (ABORTED, TIMEOUT) reject `result`
   * and the iterator.
   */
  generate(request: EngineRequest): EngineGeneration {
    return this.submit(request).generation;
  }

  /**
   * Next-token logits after every position of `tokens` ([positions][vocab]): a request like any
   * other (batched with the rest, never served from the prefix cache, since every position's
   * logits are computed). Up to the whole context: no token is generated after it.
   */
  async evaluate(tokens: readonly number[], options: { signal?: AbortSignal; priority?: number } = {}): Promise<Float32Array[]> {
    const { generation, state } = this.submit({ ...options, prompt: tokens, maxTokens: 0, temperature: 0 }, 0);
    await generation.result;
    return state.sequences[0].positionLogits;
  }

  /**
   * The final states of every token of one whole sequence (what Model.embed pools): an encoder's
   * last layer, a decoder's final norm. Passes take turns with scheduler steps, one at a time.
   */
  encode(tokens: readonly number[]): Promise<Float32Array[]> {
    if (this.disposed) throw new EngineError('DISPOSED', 'the engine was disposed');
    const limit = Math.min(this.graph.maxBatchTokens, this.contextLength);
    if (tokens.length === 0 || tokens.length > limit) {
      throw new EngineError(tokens.length === 0 ? 'INVALID_REQUEST' : 'PROMPT_TOO_LONG', `an embedding input must have 1..${limit} tokens (the batch and context), got ${tokens.length}`);
    }
    const bad = tokens.find((t) => !Number.isInteger(t) || t < 0 || t >= this.model.config.vocabSize);
    if (bad !== undefined) throw new EngineError('INVALID_REQUEST', `token id ${bad} is outside the vocabulary`);
    // Between scheduler steps (they share the activation buffers), with room in the KV pool for the sequence.
    return this.exclusive(async () => {
      const kv = this.graph.kv, need = Math.ceil(tokens.length / kv.blockSize);
      while (need > kv.pool.freeCount && this.scheduler.prefixCache.evictOne());
      if (need > kv.pool.freeCount) throw new EngineError('OVERLOADED', `embedding ${tokens.length} tokens needs ${need} free KV blocks and ${kv.pool.freeCount} are free while requests run; retry later`);
      this.scheduler.useAdapters(this.defaultAdapters, keyOfAdapters(this.defaultAdapters));
      return this.graph.encode(tokens, ENCODE_SEQUENCE);
    });
  }

  /** Run `f` when no forward pass (scheduler step or encode) is in flight, and keep others out until it ends. */
  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.busy.then(f);
    this.busy = run.then(() => undefined, () => undefined);
    return run;
  }

  /** Check and queue a request; with logitsFrom, its sequences collect logits from that position on. */
  private submit(request: EngineRequest, logitsFrom?: number): { generation: EngineGeneration; state: RequestState } {
    if (this.disposed) throw new EngineError('DISPOSED', 'the engine was disposed');
    if (this.model.arch.encoder) throw new EngineError('UNSUPPORTED', `${this.model.architecture} is an encoder: it embeds text (Model.embed), it does not generate`);
    const prompt = this.promptTokens(request, logitsFrom !== undefined && request.maxTokens === 0);
    const n = request.n ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > this.scheduler.config.maxSequences) {
      throw new EngineError('INVALID_REQUEST', `n must be an integer in 1..${this.scheduler.config.maxSequences}, got ${request.n}`);
    }
    const maxTokens = request.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new EngineError('INVALID_REQUEST', `maxTokens must be an integer >= 0, got ${request.maxTokens}`);
    const priority = request.priority ?? 0;
    if (!Number.isFinite(priority)) throw new EngineError('INVALID_REQUEST', `priority must be a finite number, got ${priority}`);
    const { timeoutMs } = request;
    if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new EngineError('INVALID_REQUEST', `timeoutMs must be > 0, got ${timeoutMs}`);
    if (request.stop?.some((s) => typeof s !== 'string' || s.length === 0)) throw new EngineError('INVALID_REQUEST', 'stop strings must be non-empty strings');
    const topLogprobs = request.topLogprobs ?? 0;
    if (!Number.isInteger(topLogprobs) || topLogprobs < 0 || topLogprobs > MAX_TOP_LOGPROBS) {
      throw new EngineError('INVALID_REQUEST', `topLogprobs must be an integer in 0..${MAX_TOP_LOGPROBS}, got ${request.topLogprobs}`);
    }
    if (topLogprobs > 0 && !request.logprobs) throw new EngineError('INVALID_REQUEST', 'topLogprobs needs logprobs: true');
    const queued = [...this.requests].filter((r) => r.admittedAt === undefined).length;
    if (queued >= this.maxQueue) {
      throw new EngineError('OVERLOADED', `${queued} requests are already waiting (maxQueue ${this.maxQueue}); retry later`);
    }
    // A grammar is compiled once per request (and cached by text); each completion gets its own matcher.
    const constraint = this.constraintOf(request);
    const trigger = request.grammarTrigger;
    if (trigger !== undefined && (typeof trigger !== 'string' || trigger === '' || !constraint)) throw new EngineError('INVALID_REQUEST', 'grammarTrigger must be non-empty text, given with a grammar');
    const matcher = () => (trigger === undefined ? constraint!.matcher() : new LazyGrammarMatcher(constraint!, trigger));
    const logitsProcessors = constraint ? () => [...(request.logitsProcessors?.() ?? []), matcher()] : request.logitsProcessors;
    // Completion i of a seeded request samples as a lone request with seed + i would.
    // The model's recommended sampling (general.sampling.*) fills the options the request leaves unset.
    const sampling = { ...request };
    for (const [k, v] of Object.entries(this.model.samplingDefaults)) if ((sampling as Record<string, unknown>)[k] === undefined) (sampling as Record<string, unknown>)[k] = v;
    const samplers = Array.from({ length: n }, (_, i) => new Sampler({ ...sampling, logitsProcessors, seed: request.seed === undefined ? undefined : (request.seed + i) >>> 0 }));
    const drafterFor = request.speculative === undefined ? undefined : this.drafters(request.speculative, sampling, request.seed, samplers[0]!.isGreedy);

    const params = { maxTokens, ignoreEos: request.ignoreEos ?? false, logprobs: request.logprobs ?? false, topLogprobs, priority };
    const adapters = request.adapters === undefined ? this.defaultAdapters : this.checkAdapters(request.adapters, 'INVALID_REQUEST');
    const adapterKey = keyOfAdapters(adapters);
    const r = new RequestState(this.nextRequestId++, prompt.length, params);
    for (let i = 0; i < n; i++) {
      const speculation = drafterFor?.(i);
      const seq = new Sequence(r, i, prompt, samplers[i], new CompletionOutput(this.model.tokenizer, request.stop ?? [], params.logprobs, topLogprobs), logitsFrom, speculation?.drafter, params.logprobs);
      seq.draftLength = speculation?.length;
      seq.adapters = adapters;
      seq.adapterKey = adapterKey;
      r.sequences.push(seq);
    }
    this.requests.add(r);
    r.onSettle(() => this.requests.delete(r));

    const cancel = (error: EngineError) => {
      if (!r.settled) this.scheduler.cancel(r, error);
    };
    const { signal } = request;
    if (signal) {
      const onAbort = () => cancel(new EngineError('ABORTED', `request ${r.id} was aborted`, { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      r.onSettle(() => signal.removeEventListener('abort', onAbort));
    }
    if (timeoutMs !== undefined) {
      const timer = setTimeout(() => cancel(new EngineError('TIMEOUT', `request ${r.id} did not finish within ${timeoutMs} ms`)), timeoutMs);
      r.onSettle(() => clearTimeout(timer));
    }
    this.scheduler.submit(r);
    if (signal?.aborted) cancel(new EngineError('ABORTED', `request ${r.id} was aborted before it started`, { cause: signal.reason }));
    this.kick();
    const generation: EngineGeneration = {
      id: r.id,
      result: r.result,
      cancel: () => cancel(new EngineError('ABORTED', `request ${r.id} was cancelled`)),
      [Symbol.asyncIterator]: () => r.channel[Symbol.asyncIterator](),
    };
    return { generation, state: r };
  }

  /**
   * The drafter and draft length of each completion of a speculative request (checked: INVALID_REQUEST
   * for bad options; for a draft model, DISPOSED when it was disposed, DRAFT_MISMATCH when its
   * vocabulary is not this model's, UNSUPPORTED for a sliding-window draft, whose KV cannot roll back).
   */
  private drafters(spec: SpeculativeOptions, sampling: SamplingOptions, seed: number | undefined, greedy: boolean): (index: number) => { drafter: Drafter; length: DraftLength } {
    let s: ReturnType<typeof speculativeSettings>;
    try {
      s = speculativeSettings(spec);
    } catch (err) {
      throw new EngineError('INVALID_REQUEST', (err as Error).message);
    }
    if (s.method === 'prompt-lookup') {
      const lookup = createPromptLookupDrafter(s); // keeps nothing per sequence
      return () => ({ drafter: lookup, length: new DraftLength(s.draftTokens, s.adaptive) });
    }
    const draft = s.draft;
    let engine: Engine;
    try {
      engine = draft.engine();
    } catch (err) {
      if (err instanceof ModelError && err.code === 'DISPOSED') throw new EngineError('DISPOSED', 'speculative.draft: the draft model was disposed', { cause: err });
      throw err;
    }
    if (draft.arch.encoder) throw new EngineError('INVALID_REQUEST', `speculative.draft: ${draft.architecture} is an encoder, it has no next-token logits`);
    const mismatch = vocabularyMismatch(this.model, draft);
    if (mismatch) throw new EngineError('DRAFT_MISMATCH', `speculative.draft has another vocabulary than the model: ${mismatch}`);
    if (everyLayerWindow(draft.config) !== undefined) throw new EngineError('UNSUPPORTED', 'speculative.draft is a sliding-window model: its KV cannot roll back over the blocks it releases');
    const host = engine.draftHost(this);
    const argmax = s.draftSampling === 'argmax';
    // Sampled drafts of a seeded request: how many the draft makes decides its random draws, so a fixed number replays them.
    const adaptive = s.adaptive && (seed === undefined || argmax || greedy);
    // The draft samples with the request's settings, not its processors (see DraftModelDrafter),
    // from a random stream of its own: completion i's is a hash of seed + i, so a seed replays it.
    return (i) => ({
      drafter: new DraftModelDrafter(host, new Sampler({
        ...sampling, logitsProcessors: undefined, ...(argmax ? { temperature: 0 } : {}),
        seed: seed === undefined ? undefined : Math.floor(new SeededRandom((seed + i) ^ 0x2545f491).next() * 2 ** 32),
      }), s.draftTokens),
      length: new DraftLength(s.draftTokens, adaptive),
    });
  }

  /**
   * What this engine lends a draft-model drafter serving `target`'s requests: its graph, KV pool
   * and turns between its own steps. When target is this engine (a model drafting for itself) the
   * drafter runs inside target's step, which holds the turn already.
   */
  draftHost(target: Engine): DraftHost {
    const scheduler = this.scheduler, pool = this.graph.kv.pool;
    return {
      graph: this.graph,
      contextLength: this.contextLength,
      newSequenceId: () => scheduler.newSequenceId(),
      run: <T>(f: () => Promise<T>) => {
        const checked = () => (this.disposed ? Promise.reject(new EngineError('DISPOSED', 'the draft model\'s engine was disposed')) : f());
        return target === this ? checked() : this.exclusive(checked);
      },
      makeRoom: (blocks) => {
        while (blocks > pool.freeCount && scheduler.prefixCache.evictOne());
        return blocks <= pool.freeCount;
      },
    };
  }

  /** The request's grammar or JSON schema compiled for this vocabulary (GrammarError when it is bad), from a small cache. */
  private constraintOf(request: EngineRequest): CompiledGrammar | undefined {
    if (request.grammar !== undefined && request.jsonSchema !== undefined) throw new EngineError('INVALID_REQUEST', 'give grammar or jsonSchema, not both');
    let source: string;
    if (request.grammar !== undefined) {
      if (typeof request.grammar !== 'string') throw new EngineError('INVALID_REQUEST', 'grammar must be GBNF text');
      source = request.grammar;
    } else if (request.jsonSchema !== undefined) source = jsonSchemaToGBNF(request.jsonSchema);
    else return undefined;
    let compiled = this.grammars.get(source);
    if (compiled) this.grammars.delete(source);
    else compiled = CompiledGrammar.fromGBNF(source, this.model.tokenizer);
    this.grammars.set(source, compiled); // most recently used last
    if (this.grammars.size > GRAMMAR_CACHE) this.grammars.delete(this.grammars.keys().next().value!);
    return compiled;
  }

  /** Render messages with the model's chat template (or options.chatTemplate) and generate the reply. */
  chat(messages: readonly ChatMessage[], options: ChatRequestOptions = {}): EngineGeneration {
    const { chatTemplate, addGenerationPrompt, variables, ...request } = options;
    const tok = this.model.tokenizer;
    const template = chatTemplate instanceof ChatTemplate ? chatTemplate
      : chatTemplate !== undefined ? ChatTemplate.forTokenizer(chatTemplate, tok)
      : (this.template ??= ChatTemplate.fromMetadata(this.model.file.metadata, tok));
    const text = template.render(messages, { addGenerationPrompt, variables });
    // Templates usually write BOS themselves; add it only when they did not.
    const writesBos = template.bosToken !== '' && text.startsWith(template.bosToken);
    return this.generate({ ...request, prompt: text, addSpecial: !writesBos, parseSpecial: true });
  }

  /**
   * Apply these LoRA adapters (Model.loadAdapter) to every request from the next step on, each with
   * its scale; [] switches them off. The prefix cache is emptied (its KV was computed without them).
   */
  setAdapters(active: readonly ActiveAdapter[]): void {
    if (this.disposed) throw new EngineError('DISPOSED', 'the engine was disposed');
    this.defaultAdapters = this.checkAdapters(active, 'INVALID_OPTION');
  }

  /** Adapters checked (from Model.loadAdapter for this model, finite scales), copied. */
  private checkAdapters(active: readonly ActiveAdapter[], code: 'INVALID_OPTION' | 'INVALID_REQUEST'): readonly ActiveAdapter[] {
    if (!Array.isArray(active)) throw new EngineError(code, 'adapters must be a list of { adapter, scale }');
    for (const a of active) {
      if (!a?.adapter?.pairs?.length) throw new EngineError(code, 'adapters take [{ adapter, scale }] with adapters from Model.loadAdapter');
      if (a.adapter.pairs[0]!.target !== this.findTarget(a.adapter.pairs[0]!.target)) throw new EngineError(code, `adapter ${a.adapter.name} was loaded for another model`);
      if (typeof a.scale !== 'number' || !Number.isFinite(a.scale)) throw new EngineError(code, `adapter ${a.adapter.name}: scale must be a finite number, got ${a.scale}`);
    }
    return active.map((a) => ({ adapter: a.adapter, scale: a.scale }));
  }

  /** The model weight tensor `t` is, if it is one of this model's. */
  private findTarget(t: unknown): unknown {
    const w = this.model.weights;
    if (w.output === t) return t;
    for (const layer of w.layers) for (const d of this.model.arch.layerTensors(this.model.config)) if (layer.optional(d.role) === t) return t;
    return undefined;
  }

  /**
   * The KV state of a prompt (text or token ids) as bytes, to restore later with restoreState (in
   * this or another engine over the same model) so that prompts starting with it skip computing it.
   * The prompt is computed first unless the prefix cache holds it.
   */
  async saveState(prompt: string | readonly number[], options: { addSpecial?: boolean; parseSpecial?: boolean } = {}): Promise<Uint8Array> {
    const tokens = this.promptTokens({ prompt, ...options });
    if (everyLayerWindow(this.model.config) !== undefined) throw new EngineError('UNSUPPORTED', 'a sliding-window model does not keep the KV of a whole prompt: its state cannot be saved');
    if (this.scheduler.config.prefixCacheEntries < 1) throw new EngineError('UNSUPPORTED', 'saveState needs the prefix cache (prefixCacheEntries > 0)');
    const key = keyOfAdapters(this.defaultAdapters);
    let pinned = this.scheduler.pinPrefix(tokens, key);
    if (pinned === undefined) {
      await this.generate({ prompt: tokens, maxTokens: 0, temperature: 0 }).result;
      pinned = this.scheduler.pinPrefix(tokens, key);
      if (pinned === undefined) throw new EngineError('INTERNAL', 'the prompt was computed but its KV was evicted before it could be saved; retry with a larger KV pool');
    }
    const kv = this.graph.kv;
    try {
      const slots = tokens.map((_, p) => kv.blockTable(pinned!)[Math.floor(p / kv.blockSize)]! * kv.blockSize + (p % kv.blockSize));
      return await encodeState(this.model.backend, kv.layers, this.stateLayout(), tokens, slots);
    } finally {
      kv.removeSequence(pinned);
    }
  }

  /** Put a state saved by saveState into the prefix cache: prompts that start with its tokens reuse its KV. Returns its tokens. */
  restoreState(bytes: Uint8Array): number[] {
    if (this.disposed) throw new EngineError('DISPOSED', 'the engine was disposed');
    if (everyLayerWindow(this.model.config) !== undefined) throw new EngineError('UNSUPPORTED', 'a sliding-window model cannot restore a saved state');
    if (this.scheduler.config.prefixCacheEntries < 1) throw new EngineError('UNSUPPORTED', 'restoreState needs the prefix cache (prefixCacheEntries > 0)');
    const state = decodeState(bytes, this.stateLayout(), this.model.config.vocabSize, this.contextLength - 1);
    const kv = this.graph.kv;
    const need = Math.ceil(state.tokens.length / kv.blockSize);
    while (need > kv.pool.freeCount && this.scheduler.prefixCache.evictOne());
    if (need > kv.pool.freeCount) throw new EngineError('OVERLOADED', `restoring ${state.tokens.length} tokens needs ${need} free KV blocks and ${kv.pool.freeCount} are free; retry when fewer requests run`);
    this.scheduler.adoptPrefix(state.tokens, (slots) => state.write(this.model.backend, kv.layers, slots), keyOfAdapters(this.defaultAdapters));
    return state.tokens;
  }

  private stateLayout(): StateLayout {
    const kv = this.graph.kv;
    return { identity: (this.identity ??= modelIdentity(this.model)), type: kv.options.type, nLayers: kv.options.nLayers, kvDim: kv.options.kvDim };
  }

  metrics(): EngineMetrics {
    const s = this.scheduler, st = s.stats, pool = s.kv.pool;
    const requests = [...this.requests];
    const queued = requests.filter((r) => r.admittedAt === undefined).length;
    return {
      runningRequests: requests.length - queued,
      queuedRequests: queued,
      runningSequences: s.runningCount,
      kvBlocksTotal: pool.nBlocks,
      kvBlocksUsed: pool.usedCount,
      kvBlocksFree: pool.freeCount,
      kvBlockSize: s.kv.blockSize,
      prefixCacheEntries: s.prefixCache.size,
      prefixCacheHitRate: st.admittedPromptTokens > 0 ? st.reusedPromptTokens / st.admittedPromptTokens : 0,
      computedTokens: st.computedTokens,
      generatedTokens: st.generatedTokens,
      preemptions: st.preemptions,
      steps: st.steps,
      draftedTokens: st.draftedTokens,
      draftAcceptanceRate: st.draftedTokens > 0 ? st.acceptedDraftTokens / st.draftedTokens : 0,
      tokensPerSecond: st.busyMs > 0 ? st.generatedTokens / (st.busyMs / 1000) : 0,
    };
  }

  /** Drop every prefix-cache entry (their blocks return to the pool unless live sequences share them). */
  clearPrefixCache(): void {
    this.scheduler.prefixCache.clear();
  }

  /** Fail every request with DISPOSED and stop. The model (and its backend) stays usable. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const r of [...this.requests]) this.scheduler.cancel(r, new EngineError('DISPOSED', 'the engine was disposed'));
    await this.loopDone;
    await this.busy; // a forward pass lent out (encode, another engine's drafts) ends before the model may go
    this.scheduler.prefixCache.clear();
    this.model.releaseEngine(this);
  }

  /** The request's prompt as token ids, checked; `whole` allows a prompt of the full context (nothing generated after it). */
  private promptTokens(request: EngineRequest, whole = false): number[] {
    const { prompt } = request;
    const tok = this.model.tokenizer;
    let tokens: number[];
    if (typeof prompt === 'string') {
      tokens = tok.encode(prompt, { addSpecial: request.addSpecial ?? true, parseSpecial: request.parseSpecial ?? false });
    } else if (Array.isArray(prompt) || ArrayBuffer.isView(prompt)) {
      tokens = [...prompt];
      const vocab = this.model.config.vocabSize;
      const bad = tokens.find((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
      if (bad !== undefined) throw new EngineError('INVALID_REQUEST', `token id ${bad} is outside the vocabulary (0..${vocab - 1})`);
    } else {
      throw new EngineError('INVALID_REQUEST', 'prompt must be a string or an array of token ids');
    }
    if (tokens.length === 0) throw new EngineError('INVALID_REQUEST', 'the prompt is empty: give at least one token');
    if (tokens.length > this.contextLength || (tokens.length === this.contextLength && !whole)) {
      throw new EngineError('PROMPT_TOO_LONG', `the prompt has ${tokens.length} tokens; a sequence holds ${this.contextLength} (context and KV pool)`);
    }
    return tokens;
  }

  /** Run steps while there is work; new requests join at the next step. */
  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    this.loopDone = this.loop();
  }

  private async loop(): Promise<void> {
    try {
      await yieldToEventLoop(); // requests submitted together start in one step
      while (!this.disposed && this.scheduler.hasWork()) {
        await this.stepOnce();
        await yieldToEventLoop();
      }
    } finally {
      this.looping = false; // in the same tick as the last check for work: no request can slip between
    }
  }

  private async stepOnce(): Promise<void> {
    try {
      const before = this.scheduler.stats.steps;
      await this.exclusive(() => this.scheduler.step());
      if (this.scheduler.stats.steps === before && this.scheduler.runningCount === 0 && this.scheduler.hasWork()) {
        throw new EngineError('INTERNAL', 'the scheduler could not start any waiting request');
      }
    } catch (err) {
      // A scheduler bug must not leave callers hanging: fail everything in flight.
      const e = err instanceof EngineError ? err : new EngineError('INTERNAL', `engine step failed: ${(err as Error)?.message ?? err}`, { cause: err });
      for (const r of [...this.requests]) this.scheduler.cancel(r, e);
    }
  }
}
