// One completion as the scheduler sees it: its tokens (prompt, then generated), how many of them
// are in its KV sequence, and the sampler and output that turn logits into text. Preemption drops
// the KV (kvLen back to 0) and keeps everything else, so recomputing resumes exactly.
import type { DraftLength } from '../generation/draft-length.js';
import type { Drafter } from '../generation/speculative.js';
import { logitsRequestFor, type LogitsRequest } from '../model/graph.js';
import type { ActiveAdapter } from '../model/lora.js';
import type { Sampler } from '../sampling/sampler.js';
import type { CompletionOutput } from './completion.js';
import type { RequestState } from './request.js';

export type SequenceState = 'waiting' | 'running' | 'follower' | 'done';

export class Sequence {
  state: SequenceState = 'waiting';
  /** KV sequence id while running, else -1. */
  kvId = -1;
  /** Leading tokens whose K/V are in the cache. */
  kvLen = 0;
  /** Has been admitted at least once (later admissions are recomputation). */
  started = false;
  preemptions = 0;
  readonly tokens: number[];
  /** Completions of the same request waiting to fork from this one when its prompt is in. */
  readonly followers: Sequence[] = [];
  /**
   * Next-token logits after each position from `logitsFrom` on, as they are computed (row i is
   * position logitsFrom + i): for evaluate(), and for scoring k draft tokens at once.
   */
  readonly positionLogits: Float32Array[] = [];
  /**
   * What the forward pass returns after one of its positions that needs logits: the row, or with no
   * log-probs and no collected logits only what its sampler needs (the argmax for plain greedy, the
   * top k candidates for plain top-k sampling), which the backend computes.
   */
  readonly logitsRequest: Exclude<LogitsRequest, false>;
  /** The LoRA adapters its forward passes use, and their identity: sequences of one step share it. */
  adapters: readonly ActiveAdapter[] = [];
  adapterKey = '';
  /** How many draft tokens its drafter proposes each step (with a drafter). */
  draftLength?: DraftLength;
  /** The step it last took part in (the scheduler serves the longest-waiting adapter set first). */
  lastStep = -1;

  constructor(
    readonly request: RequestState,
    readonly index: number,
    prompt: readonly number[],
    readonly sampler: Sampler,
    readonly output: CompletionOutput,
    /** Collect logits for every position from this one on (undefined: only the last, to sample). */
    readonly logitsFrom?: number,
    /** Proposes draft tokens to verify with each decode step (speculative decoding); dropped if it fails. */
    public drafter?: Drafter,
    logprobs = false,
  ) {
    this.tokens = [...prompt];
    this.logitsRequest = logprobs || logitsFrom !== undefined ? true : logitsRequestFor(sampler);
  }

  /** Whether the forward pass must return logits after position p. */
  wantsLogits(p: number): boolean {
    return p === this.tokens.length - 1 || (this.logitsFrom !== undefined && p >= this.logitsFrom);
  }

  /** Tokens still to be evaluated: the prompt's rest, or the one sampled last. */
  get pending(): number {
    return this.tokens.length - this.kvLen;
  }

  get generated(): number {
    return this.output.tokens.length;
  }

  /** Scheduling order: higher priority first, then earlier requests, then lower index. */
  static before(a: Sequence, b: Sequence): boolean {
    if (a.request.priority !== b.request.priority) return a.request.priority > b.request.priority;
    if (a.request.id !== b.request.id) return a.request.id < b.request.id;
    return a.index < b.index;
  }
}
