// The engine's public shapes: options, requests, streamed pieces, results and metrics.
import type { KVCacheType } from '../backend/backend.js';
import type { GenerateOptions, StopReason } from '../model/model.js';

export interface EngineOptions {
  /** Most tokens in one forward pass: decode tokens of running requests plus prompt chunks (default 512). */
  maxBatchTokens?: number;
  /**
   * KV pool size in bytes (one of kvCacheBytes / kvCacheTokens; default: 4 contexts of tokens, or
   * for a sliding-window model 4 windows and batches when that is less). Never grows.
   */
  kvCacheBytes?: number;
  /** KV pool size in tokens, across all sequences. */
  kvCacheTokens?: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** KV element type: 'f32', 'f16', 'q8_0' or 'q4_0' (default: the model's, loadModel's kvCacheType) (see LoadModelOptions.kvCacheType); anything else is an EngineError INVALID_OPTION. */
  kvCacheType?: KVCacheType;
  /** Most requests waiting to start; beyond it generate() throws OVERLOADED (default 256). */
  maxQueue?: number;
  /** Most sequences running at once (default 64). */
  maxSequences?: number;
  /** Finished sequences kept for prefix reuse, least recently used dropped first (default 32; 0 disables). */
  prefixCacheEntries?: number;
  /** Tokens per sequence (default: the model's context length). */
  contextLength?: number;
  /**
   * How a sequence's attention relates to its history. 'none' (default): every sequence ends at
   * the context with stopReason 'context_full' (positions past the trained context are never
   * used). A sliding-window model ({arch}.attention.sliding_window) attends to its last W keys
   * and drops older ones as it goes, with either setting; 'sliding-window' names that behaviour and
   * is accepted for such models (sequences still end with 'context_full' at the context). For a
   * model without a sliding window, 'sliding-window' is refused with EngineError UNSUPPORTED:
   * dropping old positions would change what every later token attends to, which the model was
   * not trained for.
   */
  contextShift?: 'none' | 'sliding-window';
}

/** A request: Model.generate's options (sampling, maxTokens, stop, ...) plus what only a shared engine has. */
export interface EngineRequest extends GenerateOptions {
  /** Text (tokenized with the model's tokenizer) or token ids. */
  prompt: string | readonly number[];
  /** Cancels the request and frees its KV blocks at once; it fails with ABORTED. */
  signal?: AbortSignal;
  /** Fail with TIMEOUT if not finished this many milliseconds after submission. */
  timeoutMs?: number;
  /** Higher runs first among waiting requests and is preempted last (default 0). */
  priority?: number;
  /** Completions of the same prompt; they share the prompt's KV blocks. With a seed s, completion i uses seed s + i. */
  n?: number;
  /** Attach the model's log-probability of each token (log-softmax of the raw logits). */
  logprobs?: boolean;
  /** With logprobs: also the this-many most likely tokens at each step, most likely first (0..20, default 0). */
  topLogprobs?: number;
}

/** A token and the model's log-probability of it (log-softmax of the raw logits). */
export interface TokenLogprob {
  tokenId: number;
  logprob: number;
}

export interface EnginePiece {
  /** Which completion (0..n-1). */
  index: number;
  /** Text this token made visible (may be empty: incomplete UTF-8, or a possible stop string held back). */
  text: string;
  /** The generated token; -1 for the held-back text released when the completion ends. */
  tokenId: number;
  logprob?: number;
  /** With topLogprobs: the most likely tokens at this step, most likely first. */
  topLogprobs?: TokenLogprob[];
}

export interface EngineCompletion {
  index: number;
  text: string;
  tokens: number[];
  stopReason: StopReason;
  logprobs?: number[];
  /** With topLogprobs: per generated token, the most likely tokens at its step. */
  topLogprobs?: TokenLogprob[][];
}

export interface EngineUsage {
  promptTokens: number;
  /** Prompt tokens whose KV came from the prefix cache or another sequence. */
  cachedPromptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface EngineTimings {
  /** Submission to the first forward pass that included the request. */
  queueMs: number;
  /** Submission to the first generated token. */
  timeToFirstTokenMs: number;
  totalMs: number;
  /** Generated tokens after the first, per second of the time after the first. */
  decodeTokensPerSecond: number;
  /** Times the request's sequences were preempted (freed and recomputed later). */
  preemptions: number;
}

export interface EngineResult {
  /** Completion 0's text, tokens and stop reason. */
  text: string;
  tokens: number[];
  stopReason: StopReason;
  completions: EngineCompletion[];
  usage: EngineUsage;
  timings: EngineTimings;
}

/** A submitted request: iterate for pieces as they come; `result` settles when it ends. */
export interface EngineGeneration extends AsyncIterable<EnginePiece> {
  readonly id: number;
  readonly result: Promise<EngineResult>;
  /** Same as aborting the request's signal. */
  cancel(): void;
}

export interface EngineMetrics {
  runningRequests: number;
  queuedRequests: number;
  runningSequences: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  kvBlockSize: number;
  prefixCacheEntries: number;
  /** Share of admitted prompt tokens whose KV was reused instead of computed. */
  prefixCacheHitRate: number;
  /** Tokens evaluated by forward passes (prompt chunks, decode tokens, recomputation). */
  computedTokens: number;
  generatedTokens: number;
  preemptions: number;
  steps: number;
  /** Speculative decoding: draft tokens evaluated, and the share of them kept. */
  draftedTokens: number;
  draftAcceptanceRate: number;
  /** Generated tokens per second of time spent in steps. */
  tokensPerSecond: number;
}
