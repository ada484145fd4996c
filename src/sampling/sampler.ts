// Token sampling as a chain of LogitsProcessors over a candidate list, in llama.cpp's default
// order: logit bias → penalties → the caller's processors → top-k → top-p → min-p → temperature →
// draw. Greedy when temperature <= 0 (the truncation steps and the temperature then do not run).
import { SeededRandom } from './rng.js';
import { WasmforgeError } from '../errors.js';
import { candidatesOf, type Candidates, type LogitsProcessor, type TopLogits } from '../generation/logits-processor.js';

export interface SamplingOptions {
  /** 0 (or less) means greedy. Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 disables. Default 40. */
  topK?: number;
  /** Keep the smallest set with cumulative probability >= p; 1 disables. Default 0.95. */
  topP?: number;
  /** Drop tokens with probability < minP * p(max); 0 disables. Default 0.05. */
  minP?: number;
  /** Divide positive logits (multiply negative ones) of recently seen tokens; 1 disables. Default 1. */
  repeatPenalty?: number;
  /** Subtract frequencyPenalty * count(token) over the window. Default 0. */
  frequencyPenalty?: number;
  /** Subtract presencePenalty once for any token in the window. Default 0. */
  presencePenalty?: number;
  /** How many of the most recent tokens the penalties look at. Default 64. */
  penaltyWindow?: number;
  /** Added to the logits of the given token ids (-Infinity bans a token). */
  logitBias?: Record<number, number> | Map<number, number>;
  /** Seed of the random draw; same seed and inputs, same tokens. Default: random. */
  seed?: number;
  /**
   * The caller's processors (a grammar mask, a context-dependent bias), made fresh for each sampler
   * (each completion of a request has its own): they run after the logit bias and penalties,
   * before top-k / top-p / min-p and the temperature, and are told every token chosen.
   */
  logitsProcessors?: () => LogitsProcessor[];
}

/** Tokens and their probabilities (the candidates a draw picks from), most likely first. */
export interface TokenDistribution {
  readonly ids: Int32Array;
  readonly probs: Float64Array;
}

export type SamplingErrorCode = 'INVALID_OPTION' | 'NO_CANDIDATES';

export class SamplingError extends WasmforgeError<SamplingErrorCode> {
  override readonly name = 'SamplingError';
}

export class Sampler {
  private readonly rng: SeededRandom;
  private readonly greedy: boolean;
  /** Everything before the draw. */
  private readonly chain: LogitsProcessor[];
  /**
   * Greedy with nothing that changes logits (no bias, penalties or processors of the caller's): it
   * picks a row's argmax, which the backend can compute, so only a token id need come back.
   */
  readonly picksArgmax: boolean;
  /**
   * k when it samples with top-k and nothing before top-k changes logits (no bias, penalties or
   * processors of the caller's): its draw depends only on the row's k largest logits, so it takes
   * them (TopLogits, as the backend's topK gives them) in place of the row, for the same token from
   * the same state. Undefined when it needs the whole row (or is greedy: picksArgmax).
   */
  readonly candidatesNeeded: number | undefined;

  constructor(options: SamplingOptions = {}) {
    const o = {
      temperature: options.temperature ?? 0.8,
      topK: options.topK ?? 40,
      topP: options.topP ?? 0.95,
      minP: options.minP ?? 0.05,
      repeatPenalty: options.repeatPenalty ?? 1,
      frequencyPenalty: options.frequencyPenalty ?? 0,
      presencePenalty: options.presencePenalty ?? 0,
      penaltyWindow: options.penaltyWindow ?? 64,
    };
    const check = (ok: boolean, what: string) => {
      if (!ok) throw new SamplingError('INVALID_OPTION', what);
    };
    check(Number.isFinite(o.temperature), `temperature must be a finite number, got ${o.temperature}`);
    check(Number.isInteger(o.topK) && o.topK >= 0, `topK must be an integer >= 0, got ${o.topK}`);
    check(o.topP > 0 && o.topP <= 1, `topP must be in (0, 1], got ${o.topP}`);
    check(o.minP >= 0 && o.minP < 1, `minP must be in [0, 1), got ${o.minP}`);
    check(o.repeatPenalty > 0 && Number.isFinite(o.repeatPenalty), `repeatPenalty must be > 0, got ${o.repeatPenalty}`);
    check(Number.isFinite(o.frequencyPenalty) && Number.isFinite(o.presencePenalty), 'penalties must be finite');
    check(Number.isInteger(o.penaltyWindow) && o.penaltyWindow >= 0, `penaltyWindow must be an integer >= 0, got ${o.penaltyWindow}`);
    const bias = options.logitBias instanceof Map ? [...options.logitBias] : Object.entries(options.logitBias ?? {}).map(([k, v]) => [Number(k), v] as [number, number]);
    for (const [id, v] of bias) check(Number.isInteger(id) && id >= 0 && !Number.isNaN(v), `logitBias entry ${id}: ${v} is invalid`);
    check(options.logitsProcessors === undefined || typeof options.logitsProcessors === 'function', 'logitsProcessors must be a function that makes the processors');
    const own = options.logitsProcessors?.() ?? [];
    check(Array.isArray(own) && own.every((p) => typeof p?.process === 'function'), 'logitsProcessors() must return processors with a process(candidates, history) method');

    this.greedy = o.temperature <= 0;
    const penalized = o.penaltyWindow > 0 && (o.repeatPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0);
    this.picksArgmax = this.greedy && bias.length === 0 && !penalized && own.length === 0;
    this.candidatesNeeded = !this.greedy && o.topK > 0 && bias.length === 0 && !penalized && own.length === 0 ? o.topK : undefined;
    // Bias and penalties index logits by token id: they run while candidates are still in id order.
    this.chain = [new LogitBias(bias), new Penalties(o.repeatPenalty, o.frequencyPenalty, o.presencePenalty, o.penaltyWindow), ...own];
    if (!this.greedy) {
      this.chain.push(
        step((c) => topK(c, o.topK)),
        step((c) => topP(c, o.topP)),
        step((c) => minP(c, o.minP)),
        step((c) => { for (let i = 0; i < c.size; i++) c.logits[i] /= o.temperature; }),
      );
    }
    this.rng = new SeededRandom(options.seed ?? (Math.random() * 2 ** 32) >>> 0);
  }

  /** Pick the next token from a row of logits (or its top logits: candidatesNeeded), given the tokens generated or seen so far. */
  sample(logits: Float32Array | TopLogits, history: ArrayLike<number>): number {
    const c = this.run(logits, history);
    const token = this.greedy ? greedy(c) : this.draw({ ids: c.ids, probs: softmax(c) });
    for (const p of this.chain) p.accept?.(token);
    return token;
  }

  /** Temperature <= 0: sample() picks the most likely token (after bias, penalties and the caller's processors). */
  get isGreedy(): boolean {
    return this.greedy;
  }

  /**
   * sample(), also returning the distribution the token was drawn from (distribution()'s): what a
   * draft model's sampler gives speculative sampling to verify against.
   */
  sampleWithDistribution(logits: Float32Array | TopLogits, history: ArrayLike<number>): { token: number; distribution: TokenDistribution } {
    const c = this.run(logits, history);
    let distribution: TokenDistribution, token: number;
    if (this.greedy) {
      token = greedy(c);
      distribution = { ids: Int32Array.of(token), probs: Float64Array.of(1) };
    } else {
      distribution = { ids: c.ids.slice(0, c.size), probs: softmax(c) };
      token = this.draw(distribution);
    }
    for (const p of this.chain) p.accept?.(token);
    return { token, distribution };
  }

  /**
   * Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): `draft` was drawn from `q`, and
   * this picks a token distributed exactly as sample() would draw from these logits, keeping the
   * draft when it can. With p this sampler's distribution: keep the draft with probability
   * min(1, p(draft) / q(draft)); else draw from max(0, p - q), normalized. (So a token other than
   * the draft is never the draft.) Greedy: the argmax, as sample().
   */
  speculate(logits: Float32Array | TopLogits, history: ArrayLike<number>, draft: number, q: TokenDistribution): number {
    const c = this.run(logits, history);
    let token: number;
    if (this.greedy) token = greedy(c);
    else {
      const probs = softmax(c);
      const qOf = new Map<number, number>();
      for (let i = 0; i < q.ids.length; i++) qOf.set(q.ids[i], q.probs[i]);
      let pDraft = 0;
      for (let i = 0; i < c.size; i++) if (c.ids[i] === draft) pDraft = probs[i];
      const qDraft = qOf.get(draft) ?? 0;
      // One uniform per verified draft, whatever the outcome: a seed replays the same choices.
      const u = this.rng.next();
      if (qDraft > 0 && u * qDraft < pDraft) token = draft;
      else {
        const residual = new Float64Array(c.size);
        let sum = 0;
        for (let i = 0; i < c.size; i++) sum += residual[i] = Math.max(0, probs[i] - (qOf.get(c.ids[i]) ?? 0));
        // sum is 0 only when p <= q everywhere, i.e. p = q, where nothing is rejected; rounding aside, draw from p.
        if (sum > 0) for (let i = 0; i < c.size; i++) residual[i] /= sum;
        token = this.draw({ ids: c.ids.slice(0, c.size), probs: sum > 0 ? residual : probs });
      }
    }
    for (const p of this.chain) p.accept?.(token);
    return token;
  }

  /** The token sample() would have picked, from the row's argmax computed elsewhere (picksArgmax samplers only). */
  takeArgmax(token: number): number {
    if (!this.picksArgmax) throw new SamplingError('INVALID_OPTION', 'this sampler does not pick the plain argmax');
    return token;
  }

  /**
   * The distribution sample() would draw from, after every processor (greedy: all mass on the
   * argmax), without drawing or advancing anything: what a draft token is verified against.
   */
  distribution(logits: Float32Array | TopLogits, history: ArrayLike<number>): TokenDistribution {
    const c = this.run(logits, history);
    if (this.greedy) return { ids: Int32Array.of(greedy(c)), probs: Float64Array.of(1) };
    const probs = softmax(c);
    return { ids: c.ids.slice(0, c.size), probs };
  }

  private run(logits: Float32Array | TopLogits, history: ArrayLike<number>): Candidates {
    if (!(logits instanceof Float32Array) && this.candidatesNeeded === undefined) throw new SamplingError('INVALID_OPTION', 'this sampler needs the whole row of logits, not its top candidates');
    const c = candidatesOf(logits);
    for (const p of this.chain) p.process(c, history);
    return c;
  }

  /** A draw over `probs` (its length: the candidates; ids may be longer). */
  private draw({ ids, probs }: TokenDistribution): number {
    let r = this.rng.next();
    for (let i = 0; i < probs.length; i++) {
      r -= probs[i];
      if (r < 0) return ids[i];
    }
    // Rounding left a sliver: the last candidate with any probability takes it.
    let last = probs.length - 1;
    while (last > 0 && probs[last] === 0) last--;
    return ids[last];
  }
}

/** Adds a fixed amount to given tokens' logits (-Infinity bans a token). */
class LogitBias implements LogitsProcessor {
  constructor(private readonly bias: readonly [number, number][]) {}
  process(c: Candidates): void {
    for (const [id, v] of this.bias) if (id < c.size) c.logits[id] += v;
  }
}

/** Repetition (divide/multiply), frequency and presence penalties over the last `window` tokens. */
class Penalties implements LogitsProcessor {
  constructor(private readonly repeat: number, private readonly frequency: number, private readonly presence: number, private readonly window: number) {}
  process(c: Candidates, history: ArrayLike<number>): void {
    if (this.window === 0 || (this.repeat === 1 && this.frequency === 0 && this.presence === 0)) return;
    const counts = new Map<number, number>();
    for (let i = Math.max(0, history.length - this.window); i < history.length; i++) counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
    for (const [id, n] of counts) {
      if (id < 0 || id >= c.size) continue;
      let l = c.logits[id];
      l = l > 0 ? l / this.repeat : l * this.repeat;
      c.logits[id] = l - n * this.frequency - this.presence;
    }
  }
}

/** A stateless step of the chain. */
const step = (process: (c: Candidates) => void): LogitsProcessor => ({ process });

function greedy(c: Candidates): number {
  let best = -1;
  for (let i = 0; i < c.size; i++) if (best < 0 || c.logits[i] > c.logits[best]) best = i;
  if (best < 0 || c.logits[best] === -Infinity) throw new SamplingError('NO_CANDIDATES', 'every token is banned');
  return c.ids[best];
}

function sortCandidates(c: Candidates): void {
  if (c.sorted) return;
  const order = Array.from({ length: c.size }, (_, i) => i).sort((a, b) => c.logits[b] - c.logits[a] || c.ids[a] - c.ids[b]);
  const ids = order.map((i) => c.ids[i]), logits = order.map((i) => c.logits[i]);
  c.ids.set(ids);
  c.logits.set(logits);
  c.sorted = true;
}

function dropBanned(c: Candidates): void {
  sortCandidates(c);
  while (c.size > 0 && c.logits[c.size - 1] === -Infinity) c.size--;
  if (c.size === 0) throw new SamplingError('NO_CANDIDATES', 'every token is banned');
}

function topK(c: Candidates, k: number): void {
  if (k > 0 && k < c.size && !c.sorted) selectTop(c, k);
  dropBanned(c);
  if (k > 0 && k < c.size) c.size = k;
}

/** Keep the k best candidates (unsorted) with a min-heap: O(n log k) instead of sorting the vocabulary. */
function selectTop(c: Candidates, k: number): void {
  const heap: number[] = []; // candidate indices; heap[0] is the worst kept
  const worse = (a: number, b: number) => c.logits[a] < c.logits[b] || (c.logits[a] === c.logits[b] && c.ids[a] > c.ids[b]);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && worse(heap[l], heap[m])) m = l;
      if (r < heap.length && worse(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let i = 0; i < c.size; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let j = heap.length - 1; j > 0; ) {
        const parent = (j - 1) >> 1;
        if (!worse(heap[j], heap[parent])) break;
        [heap[j], heap[parent]] = [heap[parent], heap[j]];
        j = parent;
      }
    } else if (worse(heap[0], i)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  const ids = heap.map((i) => c.ids[i]), logits = heap.map((i) => c.logits[i]);
  c.ids.set(ids);
  c.logits.set(logits);
  c.size = heap.length;
}

/** Probabilities of the current candidates (sorted, descending). */
function softmax(c: Candidates): Float64Array {
  dropBanned(c);
  const p = new Float64Array(c.size);
  const max = c.logits[0];
  let sum = 0;
  for (let i = 0; i < c.size; i++) sum += p[i] = Math.exp(c.logits[i] - max);
  for (let i = 0; i < c.size; i++) p[i] /= sum;
  return p;
}

function topP(c: Candidates, p: number): void {
  if (p >= 1) return;
  const probs = softmax(c);
  let cum = 0;
  for (let i = 0; i < c.size; i++) {
    cum += probs[i];
    if (cum >= p) {
      c.size = i + 1;
      return;
    }
  }
}

function minP(c: Candidates, m: number): void {
  if (m <= 0) return;
  const probs = softmax(c);
  const threshold = probs[0] * m;
  let keep = 1;
  while (keep < c.size && probs[keep] >= threshold) keep++;
  c.size = keep;
}
