// Speculative decoding's shared pieces: what a drafter is, the options that choose one, and their
// checks. Drafters: prompt lookup (prompt-lookup.ts: n-gram matches in the sequence itself, free)
// and a draft model (draft-model.ts: a second, smaller model of the same vocabulary). The scheduler
// evaluates a sequence's draft with its next token in one forward pass and keeps what verification
// accepts (src/engine/scheduler.ts).
import type { Model } from '../model/model.js';
import type { TokenDistribution } from '../sampling/sampler.js';

/** A proposal: tokens that may follow the sequence, and for sampled drafts what each was drawn from. */
export interface Draft {
  readonly tokens: number[];
  /**
   * Drafts sampled at random: q[i] is the distribution tokens[i] was drawn from. Verification then
   * uses speculative sampling (accept with probability min(1, p/q), else draw from max(0, p - q)),
   * which gives the target's distribution whatever q is. Absent: the tokens are a deterministic
   * guess, kept while they equal what the target's sampler draws.
   */
  readonly q?: readonly TokenDistribution[];
}

/** Proposes up to `limit` tokens (and no more than it was configured for) that may follow `tokens`. */
export interface Drafter {
  propose(tokens: readonly number[], limit: number): number[] | Draft | Promise<number[] | Draft>;
  /** The sequence ended, was cancelled or preempted: give back what the drafter holds for it (a draft model's KV). */
  release?(): void;
}

export interface PromptLookupOptions {
  /** Where draft tokens come from: n-gram lookup in the sequence itself. */
  method: 'prompt-lookup';
  /** Most draft tokens evaluated with each decode token (default 8). */
  draftTokens?: number;
  /**
   * Choose each step's draft length (default true): between 0 and draftTokens, the number that
   * gives the most tokens per millisecond, from how often the sequence's drafts were kept lately
   * and what a forward pass measurably costs per token on this engine (draft-length.ts). On the WASM
   * CPU path, where every token of a pass costs nearly its own, that means drafting only while the
   * drafts are mostly right; on a GPU, drafting long. The output is the same either way, only the
   * number of forward passes changes. false: always up to draftTokens.
   */
  adaptive?: boolean;
  /** Longest n-gram matched against the sequence's end (default 3); shorter ones are tried after it. */
  ngramMax?: number;
  /** Shortest n-gram matched (default 2). */
  ngramMin?: number;
}

export interface DraftModelOptions {
  /** Where draft tokens come from: decode steps of a second model. */
  method: 'draft-model';
  /**
   * A loaded model with the target's vocabulary (the same tokens at the same ids; checked, else
   * EngineError DRAFT_MISMATCH), usually much smaller. Its forward passes run on its own engine
   * (model.engine(), or the one createEngine made for it), which holds the drafts' KV.
   */
  draft: Model;
  /** Most draft tokens proposed per step: one draft decode step each (default 4). */
  draftTokens?: number;
  /**
   * Choose each step's draft length, as PromptLookupOptions.adaptive (default true). Seeded requests
   * that draft by sampling ('sample', temperature > 0) keep draftTokens, so that a seed replays
   * their output (the draft's random draws depend on how many it makes).
   */
  adaptive?: boolean;
  /**
   * How the draft picks its tokens when the request samples (temperature > 0). 'sample' (default):
   * from its own distribution under the request's sampler settings, verified by speculative
   * sampling: the output has exactly the distribution of plain sampling (not the same draws for
   * a seed). 'argmax': its most likely tokens, kept while the target's sampler draws them: for a
   * seed, exactly the tokens of plain decoding, at a lower acceptance. Greedy requests draft greedily.
   */
  draftSampling?: 'sample' | 'argmax';
}

export type SpeculativeOptions = PromptLookupOptions | DraftModelOptions;

/** Options as speculativeSettings returns them: checked, defaults filled in. */
export type SpeculativeSettings = Required<PromptLookupOptions> | Required<DraftModelOptions>;

/** Checked options with their defaults filled in (RangeError naming the bad one). */
export function speculativeSettings(o: PromptLookupOptions): Required<PromptLookupOptions>;
export function speculativeSettings(o: DraftModelOptions): Required<DraftModelOptions>;
export function speculativeSettings(o: SpeculativeOptions): SpeculativeSettings;
export function speculativeSettings(o: SpeculativeOptions): SpeculativeSettings {
  if (typeof o !== 'object' || o === null) throw new RangeError('speculative must be an object with a method');
  const int = (name: string, v: unknown, lo: number, hi: number) => {
    if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) throw new RangeError(`speculative.${name} must be an integer in ${lo}..${hi}, got ${v}`);
  };
  const bool = (name: string, v: unknown) => {
    if (typeof v !== 'boolean') throw new RangeError(`speculative.${name} must be a boolean, got ${JSON.stringify(v)}`);
  };
  if (o.method === 'prompt-lookup') {
    const s = { method: o.method, draftTokens: o.draftTokens ?? 8, adaptive: o.adaptive ?? true, ngramMax: o.ngramMax ?? 3, ngramMin: o.ngramMin ?? 2 };
    int('draftTokens', s.draftTokens, 1, 64);
    bool('adaptive', s.adaptive);
    int('ngramMax', s.ngramMax, 1, 16);
    int('ngramMin', s.ngramMin, 1, s.ngramMax);
    return s;
  }
  if (o.method === 'draft-model') {
    const s = { method: o.method, draft: o.draft, draftTokens: o.draftTokens ?? 4, adaptive: o.adaptive ?? true, draftSampling: o.draftSampling ?? 'sample' };
    bool('adaptive', s.adaptive);
    // Every draft token is a forward pass of the draft; past a few dozen the target rejects most anyway.
    int('draftTokens', s.draftTokens, 1, 32);
    if (s.draftSampling !== 'sample' && s.draftSampling !== 'argmax') throw new RangeError(`speculative.draftSampling must be 'sample' or 'argmax', got ${JSON.stringify(s.draftSampling)}`);
    if (typeof s.draft !== 'object' || s.draft === null || typeof (s.draft as Model).engine !== 'function') throw new RangeError('speculative.draft must be a loaded Model (loadModel)');
    return s;
  }
  throw new RangeError(`speculative.method must be 'prompt-lookup' or 'draft-model', got ${JSON.stringify((o as { method?: unknown }).method)}`);
}
