// The sampling chain's building block. A LogitsProcessor sees the candidate tokens (ids with their
// logits) and may change logits, reorder or drop candidates; the Sampler runs a chain of them and
// then draws. Today's steps (logit bias, penalties, top-k, top-p, min-p, temperature) are
// processors in src/sampling/, and a caller's own (a grammar mask, a bias that depends on the
// text so far) plug into the same chain through SamplingOptions.logitsProcessors.
export interface Candidates {
  /** Token ids; the first `size` entries are live. */
  ids: Int32Array;
  logits: Float32Array;
  size: number;
  /** ids/logits are sorted by descending logit (ties: lower id first). */
  sorted: boolean;
}

export interface LogitsProcessor {
  /**
   * Change the candidates: candidate i is token ids[i] with logits[i] (in id order or sorted, see
   * `sorted`); set a logit to -Infinity to ban a token. `history` holds the prompt and the tokens
   * generated so far.
   */
  process(candidates: Candidates, history: ArrayLike<number>): void;
  /** The token the sampler chose (stateful processors, such as a grammar matcher, advance on it). */
  accept?(token: number): void;
}

/**
 * A row's k largest logits and their token ids, most likely first (equal logits: the lower id
 * first): what the backend's topK gives back for a sampler that needs no more (Sampler.candidatesNeeded).
 */
export interface TopLogits {
  readonly ids: Int32Array;
  readonly logits: Float32Array;
}

/** 0..n-1 for the last vocabulary size seen: copied per row instead of filled. */
let identity = new Int32Array(0);

/** All tokens of a logit row, or a row's top logits, as candidates (a copy: the row itself is never changed). */
export function candidatesOf(logits: Float32Array | TopLogits): Candidates {
  if (!(logits instanceof Float32Array)) return { ids: logits.ids.slice(), logits: logits.logits.slice(), size: logits.ids.length, sorted: true };
  if (identity.length !== logits.length) identity = Int32Array.from({ length: logits.length }, (_, i) => i);
  return { ids: identity.slice(), logits: logits.slice(), size: logits.length, sorted: false };
}
