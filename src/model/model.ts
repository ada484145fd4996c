// A loaded model: weights in backend memory, tokenizer, KV cache and the graph. generate() streams
// text; evaluate() returns logits for every position (for logits/perplexity tools and parity tests).
import type { Backend, KVCacheType } from '../backend/backend.js';
import { createBackend, type BackendKind } from '../backend/registry.js';
import { StopStringMatcher } from '../generation/stop-strings.js';
import { yieldToEventLoop } from '../generation/yield.js';
import { readGGUF, type GGUFFile } from '../gguf/reader.js';
import { openSource, type ModelInput } from '../io/open-source.js';
import { KVCache } from '../kv/kv-cache.js';
import { log } from '../log.js';
import { Sampler, type SamplingOptions } from '../sampling/sampler.js';
import { Tokenizer } from '../tokenizer/index.js';
import { ModelError } from './errors.js';
import { modelConfigFromFile } from './config.js';
import { Graph, type BatchToken, type ModelConfig } from './graph.js';
import { loadWeights, planWeights } from './load-weights.js';
import { findArch } from './arch/arch.js';

export interface LoadModelOptions {
  /** Worker threads for the WASM backend (default: available cores). */
  threads?: number;
  /** Tokens of context per sequence (default: the model's, capped at 4096). */
  contextLength?: number;
  /** KV cache element type (default f16, as llama.cpp). */
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
   * Which backend computes: 'auto' (default: the best one available here), 'wasm', 'reference'
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

export class Model {
  private nextSequenceId = 0;
  private disposed = false;
  /** Forward passes are serialized: the graph's buffers are shared. */
  private busy: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: GGUFFile,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    readonly graph: Graph,
    readonly contextLength: number,
    readonly loadMs: number,
    /** Whether dispose() disposes the backend (false when the caller passed its own). */
    private readonly ownsBackend = true,
  ) {}

  get architecture(): string {
    return String(this.file.metadata.get('general.architecture')?.value ?? 'unknown');
  }

  /** Next-token logits after each prompt position ([positions][vocab]). */
  async evaluate(tokens: readonly number[]): Promise<Float32Array[]> {
    return this.withSequence(async (seq) => {
      const out: Float32Array[] = [];
      for (const chunk of this.chunks(tokens)) {
        out.push(...(await this.graph.forward(chunk.map((token) => ({ token, seqId: seq, logits: true })))));
        await yieldToEventLoop();
      }
      return out;
    });
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

  private async run(prompt: string | readonly number[], o: GenerateOptions, emit: (p: GeneratedPiece) => void): Promise<GenerationResult> {
    const promptTokens = typeof prompt === 'string'
      ? this.tokenizer.encode(prompt, { addSpecial: o.addSpecial ?? true, parseSpecial: o.parseSpecial ?? false })
      : [...prompt];
    if (promptTokens.length === 0) throw new ModelError('PROMPT_TOO_LONG', 'the prompt is empty: give at least one token');
    if (promptTokens.length >= this.contextLength) {
      throw new ModelError('PROMPT_TOO_LONG', `the prompt has ${promptTokens.length} tokens; the context holds ${this.contextLength}`);
    }
    const maxTokens = o.maxTokens ?? 256;
    const sampler = new Sampler(o);
    const stops = new StopStringMatcher(o.stop ?? []);

    return this.withSequence(async (seq) => {
      const t0 = performance.now();
      let logits: Float32Array | undefined;
      const chunks = this.chunks(promptTokens);
      for (let i = 0; i < chunks.length; i++) {
        if (o.signal?.aborted) break;
        const last = i === chunks.length - 1;
        const out = await this.graph.forward(chunks[i].map((token, j) => ({ token, seqId: seq, logits: last && j === chunks[i].length - 1 })));
        if (last) logits = out[0];
        await yieldToEventLoop();
      }
      const t1 = performance.now();

      const history = [...promptTokens];
      const generated: number[] = [];
      const decoder = this.tokenizer.createStreamDecoder({ skipSpecial: true });
      let text = '';
      let stopReason: StopReason = 'max_tokens';
      const show = (s: string, tokenId: number) => {
        if (!s) return;
        text += s;
        emit({ text: s, tokenId });
      };
      while (logits) {
        if (o.signal?.aborted) {
          stopReason = 'aborted';
          break;
        }
        if (generated.length >= maxTokens) break;
        const token = sampler.sample(logits, history);
        if (!o.ignoreEos && this.tokenizer.isEog(token)) {
          stopReason = 'eos';
          break;
        }
        generated.push(token);
        history.push(token);
        const { emit: visible, stopped } = stops.push(decoder.push(token));
        show(visible, token);
        if (stopped) {
          stopReason = 'stop_string';
          break;
        }
        if (generated.length >= maxTokens) break;
        if (this.graph.kv.sequenceLength(seq) >= this.contextLength) {
          stopReason = 'context_full';
          break;
        }
        logits = (await this.graph.forward([{ token, seqId: seq, logits: true }]))[0];
        await yieldToEventLoop();
      }
      if (!logits && o.signal?.aborted) stopReason = 'aborted';
      if (stopReason !== 'stop_string') show(stops.push(decoder.flush()).emit + stops.flush(), generated[generated.length - 1] ?? -1);
      const t2 = performance.now();
      const promptMs = t1 - t0, decodeMs = t2 - t1;
      return {
        text, tokens: generated, promptTokens: promptTokens.length, stopReason, promptMs, decodeMs,
        promptTokensPerSecond: promptTokens.length / (promptMs / 1000),
        // The first generated token came from the prompt pass: decode speed counts the ones after it.
        decodeTokensPerSecond: generated.length > 1 ? (generated.length - 1) / (decodeMs / 1000) : 0,
      };
    });
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.busy.catch(() => {});
    if (this.ownsBackend) await this.backend.dispose();
  }

  private chunks(tokens: readonly number[]): number[][] {
    const out: number[][] = [];
    for (let i = 0; i < tokens.length; i += this.graph.maxBatchTokens) out.push(tokens.slice(i, i + this.graph.maxBatchTokens));
    return out;
  }

  /** Run `fn` on a fresh KV sequence, one caller at a time, and free the sequence after. */
  private withSequence<T>(fn: (seq: number) => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new ModelError('DISPOSED', 'the model was disposed'));
    const run = this.busy.catch(() => {}).then(async () => {
      if (this.disposed) throw new ModelError('DISPOSED', 'the model was disposed');
      const seq = this.nextSequenceId++;
      this.graph.kv.createSequence(seq);
      try {
        return await fn(seq);
      } finally {
        this.graph.kv.removeSequence(seq);
      }
    });
    this.busy = run;
    return run;
  }
}

/** Load a GGUF model from a path, URL, Blob, ArrayBuffer or ByteSource. */
export async function loadModel(input: ModelInput, options: LoadModelOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const source = await openSource(input);
  try {
    const file = await readGGUF(source);
    const config = modelConfigFromFile(file);
    const arch = findArch(String(file.metadata.get('general.architecture')?.value))!; // readHParams checked it
    const tokenizer = Tokenizer.fromGGUF(file.metadata);
    const modelContext = config.contextLength;
    const contextLength = Math.min(options.contextLength ?? Math.min(modelContext, 4096), modelContext);
    const blockSize = options.kvBlockSize ?? 16;
    const maxBatchTokens = Math.min(options.maxBatchTokens ?? 512, contextLength);
    const window = config.slidingWindow;
    const oneSequence = window === undefined ? contextLength : Math.min(contextLength, KVCache.windowBlocks(window, blockSize, maxBatchTokens) * blockSize);
    const kvTokens = Math.max(options.kvCacheTokens ?? oneSequence, blockSize);
    const kvType = options.kvCacheType ?? 'f16';
    const kvDim = config.nKvHeads * config.headDim;
    const nBlocks = Math.ceil(kvTokens / blockSize);

    const choice = options.backend ?? 'auto';
    const given = typeof choice === 'string' ? undefined : choice;
    const backend = typeof choice === 'string' ? await createBackend(choice, { threads: options.threads, relaxedSimd: options.relaxedSimd }) : choice;
    try {
      // Budget the whole model against what the backend holds before allocating anything large.
      const { bytes: weightBytes } = planWeights(file, config, arch, backend);
      const kvBytes = KVCache.bytesNeeded({ nLayers: config.nLayers, kvDim, blockSize, nBlocks, type: kvType });
      const actBytes = Graph.activationBytes(config, maxBatchTokens, Math.min(maxBatchTokens, 256) * Math.ceil(contextLength / blockSize));
      const need = weightBytes + kvBytes + actBytes;
      if (need > backend.capabilities.memoryBytes) {
        const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
        throw new ModelError('TOO_LARGE',
          `${source.name} needs ${mib(need)} (weights ${mib(weightBytes)}, KV cache ${mib(kvBytes)}, activations ${mib(actBytes)}), more than the ${mib(backend.capabilities.memoryBytes)} the ${backend.name} backend can hold; try a smaller contextLength or a smaller quantization`);
      }
      const weights = await loadWeights(source, file, config, arch, backend, options.onProgress);
      const kv = new KVCache(backend, { nLayers: config.nLayers, kvDim, blockSize, nBlocks, type: kvType, maxSequenceLength: contextLength, slidingWindow: window });
      const graph = new Graph(backend, arch, config, weights, kv, maxBatchTokens);
      const loadMs = performance.now() - t0;
      log.info(`loaded ${source.name}: ${config.nLayers} layers, dim ${config.dim}, ${backend.name} with ${backend.nThreads} threads, ${loadMs.toFixed(0)} ms`);
      return new Model(file, config, tokenizer, backend, graph, contextLength, loadMs, given === undefined);
    } catch (err) {
      if (!given) await backend.dispose();
      throw err;
    }
  } finally {
    await source.close();
  }
}
