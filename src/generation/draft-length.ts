// How many draft tokens a speculative step should verify. Each draft makes the step's forward pass
// one token longer; it pays when the drafts kept are worth more than that. On a GPU a pass of 9
// tokens costs about what one does, so long drafts pay even when most are rejected; on the WASM CPU
// path each token costs nearly its own (its matmuls are arithmetic-bound already at one token), and
// only drafts that are usually right pay: a fixed length there makes decoding slower than without
// drafts wherever the text stops copying. So each step takes the length that gives the most tokens
// per millisecond, from two measurements kept as decoding goes: what a pass costs per token on this
// engine (PassCost, the scheduler's), and how often this sequence's draft tokens were kept lately
// (DraftLength, the sequence's). Which drafts are proposed never changes what is generated: only
// how many forward passes it takes.

/** How fast old observations fade: each new one weighs as much as the last ~30 together. */
const COST_MEMORY = 0.97;

/**
 * The time of a forward pass as fixedMs + perTokenMs * tokens, fitted by least squares to recent
 * decode steps (exponentially forgotten). Until passes of different sizes have been seen, a pass
 * of n tokens is assumed to cost (n + 1) / 2 passes of one, about what the WASM CPU path measures
 * for a few tokens: cautious where drafts cost most, and measured away where they cost less.
 */
export class PassCost {
  private w = 0;
  private sx = 0;
  private sy = 0;
  private sxx = 0;
  private sxy = 0;

  observe(tokens: number, ms: number): void {
    if (!(tokens > 0) || !(ms >= 0) || !Number.isFinite(ms)) return;
    const f = COST_MEMORY;
    this.w = this.w * f + 1;
    this.sx = this.sx * f + tokens;
    this.sy = this.sy * f + ms;
    this.sxx = this.sxx * f + tokens * tokens;
    this.sxy = this.sxy * f + tokens * ms;
  }

  /** The fitted line (any positive scale before the first observation: only ratios are used). */
  estimate(): { fixedMs: number; perTokenMs: number } {
    if (this.w === 0) return { fixedMs: 1, perTokenMs: 1 };
    const mx = this.sx / this.w, my = this.sy / this.w;
    const vx = this.sxx / this.w - mx * mx;
    // A spread of pass sizes below ~0.5 token is too little to fit a slope against timing noise.
    let perToken = vx > 0.25 ? (this.sxy / this.w - mx * my) / vx : my / (mx + 1);
    // Noise may tilt the line either way: a token costs something, and a pass no less than its tokens.
    perToken = Math.min(Math.max(perToken, (0.01 * my) / mx), my / mx);
    return { fixedMs: my - perToken * mx, perTokenMs: perToken };
  }
}

/** How fast a sequence's acceptance record fades: per verification step, so copying stretches are seen as they start and end. */
const ACCEPTANCE_MEMORY = 0.9;
/** The record a sequence starts from, and fades back to: as if 4 of 5 draft tokens had been kept (prompt lookup drafts only on a match). */
const PRIOR_KEPT = 2.4;
const PRIOR_MISSED = 0.6;

/**
 * A speculating sequence's draft length: up to `max`, chosen each step (adaptive) or always `max`.
 * Its record: draft tokens kept, and drafts cut short by a rejection, both fading per step; their
 * ratio estimates the chance that a draft token is kept given that the ones before it were.
 */
export class DraftLength {
  private kept = 0;
  private missed = 0;
  /** Milliseconds to propose one draft token (a draft model's decode step; ~0 for prompt lookup), smoothed. */
  private proposeMs = 0;

  constructor(
    readonly max: number,
    readonly adaptive: boolean,
  ) {}

  /** The chance that the next draft token is kept, given that the ones before it were. */
  get acceptance(): number {
    return (this.kept + PRIOR_KEPT) / (this.kept + this.missed + PRIOR_KEPT + PRIOR_MISSED);
  }

  /**
   * Draft tokens to propose for a step already holding `batchTokens` tokens (this sequence's own
   * among them): the k in 0..max that maximizes (batchTokens + expected kept drafts) per millisecond
   * of the pass with k more tokens and of proposing them. Draft i is kept with chance p^i.
   */
  choose(batchTokens: number, cost: PassCost): number {
    if (!this.adaptive) return this.max;
    const { fixedMs, perTokenMs } = cost.estimate();
    const p = this.acceptance;
    let best = 0;
    let bestRate = batchTokens / (fixedMs + perTokenMs * batchTokens);
    let expected = 0, pi = 1;
    for (let k = 1; k <= this.max; k++) {
      pi *= p;
      expected += pi;
      const rate = (batchTokens + expected) / (fixedMs + perTokenMs * (batchTokens + k) + this.proposeMs * k);
      if (rate > bestRate) [best, bestRate] = [k, rate];
    }
    return best;
  }

  /** A step verified `drafted` draft tokens and kept the first `kept` (0, 0: a step without drafts, which lets the record fade). */
  verified(drafted: number, kept: number): void {
    this.kept = this.kept * ACCEPTANCE_MEMORY + kept;
    this.missed = this.missed * ACCEPTANCE_MEMORY + (kept < drafted ? 1 : 0);
  }

  /** Proposing `tokens` draft tokens took `ms`. */
  proposed(tokens: number, ms: number): void {
    if (tokens < 1 || !(ms >= 0) || !Number.isFinite(ms)) return;
    const perToken = ms / tokens;
    this.proposeMs = this.proposeMs === 0 ? perToken : 0.7 * this.proposeMs + 0.3 * perToken;
  }
}
