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

/** 0..n-1 for the last vocabulary size seen: copied per row instead of filled. */
let identity = new Int32Array(0);

/** All tokens of a logit row as candidates (a copy: the row itself is never changed). */
export function candidatesOf(logits: Float32Array): Candidates {
  if (identity.length !== logits.length) identity = Int32Array.from({ length: logits.length }, (_, i) => i);
  return { ids: identity.slice(), logits: logits.slice(), size: logits.length, sorted: false };
}
