// loadModel: a GGUF file to a Model (weights in backend memory, tokenizer, metadata). generate()
// streams text and evaluate() returns logits for every position, both through the model's engine.
import { kvCacheTypeProblem, type Backend, type KVCacheType } from '../backend/backend.js';
import { Engine } from '../engine/engine.js';
import { EngineError } from '../engine/errors.js';
import { createBackend, type BackendKind } from '../backend/registry.js';
import type { GGUFFile } from '../gguf/reader.js';
import { openGGUF, type ModelInput } from '../io/open-source.js';
import { hfDirectoryOf, openHFModel } from '../hf/model-dir.js';
import { loadLoraAdapter, mergeLoraAdapter, type ActiveAdapter, type LoraAdapter } from './lora.js';
import { KVCache } from '../kv/kv-cache.js';
import { log } from '../log.js';
import type { SamplingOptions } from '../sampling/sampler.js';
import type { SpeculativeOptions } from '../generation/speculative.js';
import { Tokenizer } from '../tokenizer/index.js';
import { ModelError } from './errors.js';
import { modelConfigFromFile } from './config.js';
import { everyLayerWindow, Graph, type ModelConfig, type ModelWeights } from './graph.js';
import { loadWeights, planWeights } from './load-weights.js';
import { ARCHITECTURES, findArch, type ArchDef } from './arch/arch.js';

export interface LoadModelOptions {
  /** Worker threads for the WASM backend (default: available cores). */
  threads?: number;
  /** Tokens of context per sequence (default: the model's, capped at 4096). */
  contextLength?: number;
  /**
   * KV cache element type (default f16, as llama.cpp): 'f32', 'f16', or the block types 'q8_0' /
   * 'q4_0' (llama.cpp's -ctk/-ctv q8_0 with flash attention; about 0.53x / 0.28x of f16's bytes; need
   * a head dim that is a multiple of 32). Anything else is a ModelError INVALID_OPTION.
   */
  kvCacheType?: KVCacheType;
  /** Tokens per KV block (default 16). */
  kvBlockSize?: number;
  /**
   * Total KV tokens across all sequences (default: one full context; for a sliding-window model
   * at most what one sequence ever holds: its window plus a batch, see KVCache.windowBlocks).
   */
  kvCacheTokens?: number;
  /** Most tokens evaluated in one forward pass (default 512); longer prompts go in chunks. */
  maxBatchTokens?: number;
  /**
   * Which backend computes: 'auto' (default: the best one available here), 'wasm', 'webgpu', 'reference'
   * (scalar, exact, slow: for checking), or a Backend instance (the caller keeps ownership: it is
   * not disposed with the model).
   */
  backend?: BackendKind | Backend;
  /** WASM backend: force the relaxed-SIMD build on or off; default picks by feature detection. */
  relaxedSimd?: 'auto' | boolean;
  onProgress?: (loaded: number, total: number) => void;
}

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop when any of these strings appears (it is not included in the output). */
  stop?: string[];
  /** Keep going past end-of-generation tokens (default false). */
  ignoreEos?: boolean;
  /** Add BOS (per the model's tokenizer metadata) to a text prompt (default true). */
  addSpecial?: boolean;
  /** Parse special-token text like "<s>" in the prompt (default false). */
  parseSpecial?: boolean;
  signal?: AbortSignal;
  /**
   * Speculative decoding: draft tokens checked in the same forward pass as each decode token.
   * Prompt lookup (`{ method: 'prompt-lookup' }`) guesses them from the text so far; a draft model
   * (`{ method: 'draft-model', draft }`, a smaller loaded model of the same vocabulary) by decode
   * steps of its own. Deterministic drafts are kept while the sampler agrees with them: the output
   * is the same as without (greedy or seeded). A draft model's sampled drafts are verified by
   * speculative sampling: the output has plain sampling's distribution. Fewer forward passes of
   * this model when the drafts are often right. Off by default. Not used by sliding-window models.
   */
  speculative?: SpeculativeOptions;
  /**
   * Constrain the output to a GBNF grammar (llama.cpp's syntax; `root` is the start rule): only
   * tokens the grammar allows are sampled, and the end of generation only where it is complete.
   */
  grammar?: string;
  /**
   * With grammar: leave the text free until this text appears, and constrain it from there on (the
   * grammar then starts with it): llama.cpp's lazy grammars, for a tool call the model may or may
   * not make.
   */
  grammarTrigger?: string;
  /** LoRA adapters (Model.loadAdapter) for this request, each with its scale (default: the engine's, see Engine.setAdapters). */
  adapters?: readonly ActiveAdapter[];
  /** Constrain the output to JSON valid under this JSON schema (converted to a grammar as llama.cpp does). */
  jsonSchema?: Record<string, unknown> | boolean;
}

export interface EmbedOptions {
  /** L2-normalize the vector (default true). */
  normalize?: boolean;
  /** How to pool the tokens' states (default: what the model file says). */
  pooling?: 'mean' | 'cls' | 'last';
  /** Add the special tokens the model asks for ([CLS] ... [SEP]) to a text (default true). */
  addSpecial?: boolean;
}

export interface GeneratedPiece {
  text: string;
  tokenId: number;
}

export type StopReason = 'eos' | 'max_tokens' | 'stop_string' | 'aborted' | 'context_full';

export interface GenerationResult {
  text: string;
  tokens: number[];
  promptTokens: number;
  stopReason: StopReason;
  /** Milliseconds spent evaluating the prompt, and generating after it. */
  promptMs: number;
  decodeMs: number;
  promptTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

/** A running generation: iterate for pieces as they come; `result` settles when it ends. */
export interface Generation extends AsyncIterable<GeneratedPiece> {
  readonly result: Promise<GenerationResult>;
}

/** The KV pool and batch shape of the model's own context (the engine that generate/evaluate use). */
interface ContextDefaults {
  readonly contextLength: number;
  readonly kvCacheType: KVCacheType;
  readonly blockSize: number;
  readonly kvCacheTokens: number;
  readonly maxBatchTokens: number;
}

/**
 * A loaded model: weights in backend memory, tokenizer, metadata. Generation runs through one
 * engine (src/engine/): the KV pool, activation buffers and scheduler of the model's context,
 * created on first use, or by createEngine (which then serves generate() and evaluate() too:
 * one KV pool and one activation set per model). generate() is a one-request use of it.
 */
export class Model {
  private disposed = false;
  private defaultEngine: Engine | undefined;

  constructor(
    readonly file: GGUFFile,
    readonly arch: ArchDef,
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    private readonly defaults: ContextDefaults,
    readonly loadMs: number,
    /** Whether dispose() disposes the backend (false when the caller passed its own). */
    private readonly ownsBackend = true,
  ) {}

  get architecture(): string {
    return String(this.file.metadata.get('general.architecture')?.value ?? 'unknown');
  }

  /**
   * The sampling the model's authors recommend, from llama.cpp's `general.sampling.*` keys (which
   * its converter writes from generation_config.json, as does a Hugging Face directory here): the
   * defaults of every request that does not set these options itself.
   */
  get samplingDefaults(): Partial<SamplingOptions> {
    return (this.cachedSamplingDefaults ??= samplingDefaultsOf(this.file));
  }
  private cachedSamplingDefaults?: Partial<SamplingOptions>;

  /** The KV cache type of loadModel's options: the model's own engine's, and createEngine's default. */
  get kvCacheType(): KVCacheType {
    return this.defaults.kvCacheType;
  }

  /** Tokens a generate() sequence may reach. */
  get contextLength(): number {
    return this.defaultEngine?.contextLength ?? this.defaults.contextLength;
  }

  /** The engine generate() and evaluate() run on: created on first use with the loadModel options. */
  engine(): Engine {
    if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
    this.defaultEngine ??= new Engine(this, {
      contextLength: this.defaults.contextLength, kvCacheType: this.defaults.kvCacheType, blockSize: this.defaults.blockSize,
      kvCacheTokens: this.defaults.kvCacheTokens, maxBatchTokens: this.defaults.maxBatchTokens,
    });
    return this.defaultEngine;
  }

  /** The forward pass of the model's context (low level: tests drive KV sequences through it directly). */
  get graph(): Graph {
    return this.engine().graph;
  }

  /**
   * createEngine's engine: the model's own when it has none yet (so generate() shares its KV pool),
   * else a second one with its own pool.
   */
  adoptEngine(create: () => Engine): Engine {
    if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
    if (this.defaultEngine) {
      log.info('createEngine: the model already has an engine (generate or evaluate ran first); this one allocates its own KV pool');
      return create();
    }
    this.defaultEngine = create();
    return this.defaultEngine;
  }

  /** The engine is going away: generate() gets a new one when next called. */
  releaseEngine(engine: Engine): void {
    if (this.defaultEngine === engine) this.defaultEngine = undefined;
  }

  /**
   * The embedding of a text or token ids, for an encoder model (BERT): the final states of its
   * tokens pooled as the model says (mean, CLS or last token), L2-normalized unless `normalize` is
   * false (as llama.cpp's embedding tool and server do by default).
   */
  async embed(input: string | readonly number[], options: EmbedOptions = {}): Promise<Float32Array> {
    if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
    const pooling = options.pooling ?? this.config.pooling;
    if (options.pooling !== undefined && !['mean', 'cls', 'last'].includes(options.pooling)) {
      throw new ModelError('UNSUPPORTED_OPERATION', `pooling must be 'mean', 'cls' or 'last', got ${JSON.stringify(options.pooling)}`);
    }
    if (!pooling) {
      throw new ModelError('UNSUPPORTED_OPERATION', `${this.architecture} generates text and its file declares no pooling ({arch}.pooling_type, as embedding models such as Qwen3-Embedding do): pass options.pooling to embed with it anyway, or use an encoder (${ARCHITECTURES.filter((a) => a.encoder).flatMap((a) => a.names).join(', ')})`);
    }
    const tokens = typeof input === 'string' ? this.tokenizer.encode(input, { addSpecial: options.addSpecial ?? true }) : [...input];
    const states = await this.engine().encode(tokens);
    const dim = this.config.dim, out = new Float64Array(dim);
    const take = pooling === 'cls' ? [states[0]!] : pooling === 'last' ? [states[states.length - 1]!] : states;
    for (const row of take) for (let i = 0; i < dim; i++) out[i] += row[i]!;
    for (let i = 0; i < dim; i++) out[i] /= take.length;
    if (options.normalize ?? true) {
      const norm = Math.sqrt(out.reduce((a, v) => a + v * v, 0));
      if (norm > 0) for (let i = 0; i < dim; i++) out[i] /= norm;
    }
    return Float32Array.from(out);
  }

  /** embed() for each input, in order (one encoder pass each). */
  async embedBatch(inputs: readonly (string | readonly number[])[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const input of inputs) out.push(await this.embed(input, options));
    return out;
  }

  /** Read a LoRA adapter (llama.cpp's GGUF format) for this model; switch it on with engine.setAdapters. */
  async loadAdapter(input: ModelInput): Promise<LoraAdapter> {
    if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
    return loadLoraAdapter(this, input);
  }

  /** Merge an adapter into the weights for good (see mergeLoraAdapter); the model's own engine's prefix cache is cleared. */
  async mergeAdapter(adapter: LoraAdapter, scale = 1): Promise<void> {
    if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
    await mergeLoraAdapter(this, adapter, scale);
    this.defaultEngine?.clearPrefixCache();
  }

  /** Next-token logits after each prompt position ([positions][vocab]). */
  async evaluate(tokens: readonly number[], options: { signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    if (tokens.length === 0) return [];
    return this.engine().evaluate(tokens, options);
  }

  generate(prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
    const queue: GeneratedPiece[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    const notify = () => {
      wake?.();
      wake = undefined;
    };
    const result = this.run(prompt, options, (piece) => {
      queue.push(piece);
      notify();
    }).finally(() => {
      finished = true;
      notify();
    });
    result.catch(() => {}); // surfaced through the iterator and `result`
    return {
      result,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length > 0) yield queue.shift()!;
          if (finished) {
            await result; // rethrow a failure
            return;
          }
          await new Promise<void>((r) => (wake = r));
        }
      },
    };
  }

  /** One request on the engine; an abort ends it with stopReason 'aborted' and what it had produced. */
  private async run(prompt: string | readonly number[], o: GenerateOptions, emit: (p: GeneratedPiece) => void): Promise<GenerationResult> {
    const t0 = performance.now();
    const generation = this.engine().generate({ ...o, prompt });
    let text = '';
    const tokens: number[] = [];
    let firstAt: number | undefined;
    try {
      for await (const piece of generation) {
        firstAt ??= performance.now();
        if (piece.tokenId >= 0) tokens.push(piece.tokenId);
        text += piece.text;
        if (piece.text) emit({ text: piece.text, tokenId: piece.tokenId });
      }
      const r = await generation.result;
      const promptMs = r.timings.timeToFirstTokenMs, decodeMs = r.timings.totalMs - r.timings.timeToFirstTokenMs;
      return timed({ text: r.text, tokens: r.tokens, promptTokens: r.usage.promptTokens, stopReason: r.stopReason }, promptMs, decodeMs);
    } catch (err) {
      if (!(err instanceof EngineError && err.code === 'ABORTED' && o.signal?.aborted)) throw err;
      const end = performance.now(), first = firstAt ?? end;
      const promptTokens = typeof prompt === 'string' ? this.tokenizer.encode(prompt, { addSpecial: o.addSpecial ?? true, parseSpecial: o.parseSpecial ?? false }).length : prompt.length;
      return timed({ text, tokens, promptTokens, stopReason: 'aborted' }, first - t0, end - first);
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    const engine = this.defaultEngine;
    this.defaultEngine = undefined;
    await engine?.dispose();
    this.disposed = true;
    if (this.ownsBackend) await this.backend.dispose();
  }
}

function timed(r: Pick<GenerationResult, 'text' | 'tokens' | 'promptTokens' | 'stopReason'>, promptMs: number, decodeMs: number): GenerationResult {
  return {
    ...r, promptMs, decodeMs,
    promptTokensPerSecond: r.promptTokens / (promptMs / 1000),
    // The first generated token came from the prompt pass: decode speed counts the ones after it.
    decodeTokensPerSecond: r.tokens.length > 1 ? (r.tokens.length - 1) / (decodeMs / 1000) : 0,
  };
}

/**
 * Load a GGUF model from a path, URL, Blob, ArrayBuffer or ByteSource; a split model (gguf-split) from
 * its first part's path or URL, or from the list of its parts in order; a Hugging Face model
 * directory (config.json, tokenizer.json, safetensors) from its path, or its base URL ending in "/".
 */
export async function loadModel(input: ModelInput | readonly ModelInput[], options: LoadModelOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const directory = Array.isArray(input) ? undefined : await hfDirectoryOf(input);
  // A Hugging Face directory becomes the same file description a GGUF gives (src/hf/), with its own tokenizer.
  const { source, file, tokenizer: hfTokenizer } = directory ? await openHFModel(directory) : { ...(await openGGUF(input)), tokenizer: undefined };
  try {
    const config = modelConfigFromFile(file);
    const arch = findArch(String(file.metadata.get('general.architecture')?.value))!; // readHParams checked it
    const tokenizer = hfTokenizer ?? Tokenizer.fromGGUF(file.metadata);
    const modelContext = config.contextLength;
    const contextLength = Math.min(options.contextLength ?? Math.min(modelContext, 4096), modelContext);
    const blockSize = options.kvBlockSize ?? 16;
    const maxBatchTokens = Math.min(options.maxBatchTokens ?? 512, contextLength);
    const window = everyLayerWindow(config);
    const oneSequence = window === undefined ? contextLength : Math.min(contextLength, KVCache.windowBlocks(window, blockSize, maxBatchTokens) * blockSize);
    const kvTokens = Math.max(options.kvCacheTokens ?? oneSequence, blockSize);
    const kvType = options.kvCacheType ?? 'f16';
    // Checked before a backend is created or anything allocated (JS callers may pass any string).
    const kvProblem = kvCacheTypeProblem(kvType, config.headDim);
    if (kvProblem) throw new ModelError(kvProblem.code === 'INVALID' ? 'INVALID_OPTION' : 'UNSUPPORTED_OPTION', kvProblem.message);
    const kvDim = config.nKvHeads * config.headDim;
    const nBlocks = Math.ceil(kvTokens / blockSize);

    const choice = options.backend ?? 'auto';
    const given = typeof choice === 'string' ? undefined : choice;
    const backend = typeof choice === 'string' ? await createBackend(choice, { threads: options.threads, relaxedSimd: options.relaxedSimd }) : choice;
    try {
      const backendKv = kvCacheTypeProblem(kvType, config.headDim, backend.capabilities.kvTypes);
      if (backendKv) throw new ModelError('UNSUPPORTED_OPTION', `${backend.name}: ${backendKv.message}`);
      // Budget the whole model against what the backend holds before allocating anything large.
      const { bytes: weightBytes } = planWeights(file, config, arch, backend);
      const kvBytes = KVCache.bytesNeeded({ nLayers: config.nLayers, kvDim, blockSize, nBlocks, type: kvType });
      const actBytes = Graph.activationBytes(config, maxBatchTokens, Math.min(maxBatchTokens, 256) * Math.ceil(contextLength / blockSize), backend.capabilities.maxTensorBytes) + Graph.rotationBytes(config, maxBatchTokens, kvType);
      const need = weightBytes + kvBytes + actBytes;
      if (need > backend.capabilities.memoryBytes) {
        const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
        throw new ModelError('TOO_LARGE',
          `${source.name} needs ${mib(need)} (weights ${mib(weightBytes)}, KV cache ${mib(kvBytes)}, activations ${mib(actBytes)}), more than the ${mib(backend.capabilities.memoryBytes)} the ${backend.name} backend can hold; try a smaller contextLength or a smaller quantization`);
      }
      const kvMostTokens = KVCache.maxBlocks({ kvDim, blockSize, type: kvType }, backend.capabilities) * blockSize;
      if (nBlocks * blockSize > kvMostTokens) {
        throw new ModelError('TOO_LARGE', `${source.name}: a KV cache of ${nBlocks * blockSize} tokens takes more for each layer's K and V than the ${backend.name} backend holds (${backend.capabilities.kvParts} tensor(s) of at most ${backend.capabilities.maxTensorBytes} bytes); give a contextLength or kvCacheTokens of at most ${kvMostTokens}`);
      }
      const weights = await loadWeights(source, file, config, arch, backend, options.onProgress);
      const loadMs = performance.now() - t0;
      log.info(`loaded ${source.name}: ${arch.names[0]}, ${config.nLayers} layers, dim ${config.dim}, ${backend.name} with ${backend.nThreads} threads, ${loadMs.toFixed(0)} ms`);
      const defaults: ContextDefaults = { contextLength, kvCacheType: kvType, blockSize, kvCacheTokens: kvTokens, maxBatchTokens };
      return new Model(file, arch, config, weights, tokenizer, backend, defaults, loadMs, given === undefined);
    } catch (err) {
      if (!given) await backend.dispose();
      throw err;
    }
  } finally {
    await source.close();
  }
}

/** general.sampling.* key -> the SamplingOptions field it sets (numbers only; anything else is ignored with a warning). */
const SAMPLING_KEYS: readonly [string, keyof SamplingOptions][] = [
  ['general.sampling.temp', 'temperature'], ['general.sampling.top_k', 'topK'], ['general.sampling.top_p', 'topP'],
  ['general.sampling.min_p', 'minP'], ['general.sampling.penalty_repeat', 'repeatPenalty'], ['general.sampling.penalty_last_n', 'penaltyWindow'],
];

function samplingDefaultsOf(file: GGUFFile): Partial<SamplingOptions> {
  const out: Record<string, number> = {};
  for (const [key, field] of SAMPLING_KEYS) {
    const v = file.metadata.get(key)?.value;
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      log.warn(`${key} is not a finite number (${String(v)}): ignored`);
      continue;
    }
    out[field] = v;
  }
  return out as Partial<SamplingOptions>;
}
