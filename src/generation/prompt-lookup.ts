// Draft tokens for speculative decoding by prompt lookup: when the last few tokens of a sequence
// appeared earlier in it (the prompt, or text already generated), guess that what followed them
// then follows again. Free to compute and often right when the output copies from the input
// (rewriting, summarizing with quotes, code edits). The scheduler evaluates the guesses with the
// sequence's next token in one forward pass and keeps those the sampler agrees with, so the
// output is exactly what decoding without drafts would give.

/** Proposes up to `limit` tokens (and no more than it was configured for) that may follow `tokens`. */
export interface Drafter {
  propose(tokens: readonly number[], limit: number): number[];
}

export interface SpeculativeOptions {
  /** Where draft tokens come from: n-gram lookup in the sequence itself. */
  method: 'prompt-lookup';
  /** Most draft tokens evaluated with each decode token (default 8). */
  draftTokens?: number;
  /** Longest n-gram matched against the sequence's end (default 3); shorter ones are tried after it. */
  ngramMax?: number;
  /** Shortest n-gram matched (default 2). */
  ngramMin?: number;
}

/** Checked options with their defaults filled in. */
export function speculativeSettings(o: SpeculativeOptions): Required<SpeculativeOptions> {
  if (o.method !== 'prompt-lookup') throw new RangeError(`speculative.method must be 'prompt-lookup', got ${JSON.stringify(o.method)}`);
  const s = { method: o.method, draftTokens: o.draftTokens ?? 8, ngramMax: o.ngramMax ?? 3, ngramMin: o.ngramMin ?? 2 };
  const int = (name: keyof typeof s, lo: number, hi: number) => {
    const v = s[name];
    if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) throw new RangeError(`speculative.${name} must be an integer in ${lo}..${hi}, got ${v}`);
  };
  int('draftTokens', 1, 64);
  int('ngramMax', 1, 16);
  int('ngramMin', 1, s.ngramMax);
  return s;
}

/**
 * Prompt lookup: for n from ngramMax down to ngramMin, the most recent earlier occurrence of the
 * sequence's last n tokens; the tokens after it are the draft. Nothing found: no draft.
 */
export class PromptLookupDrafter implements Drafter {
  constructor(private readonly draftTokens: number, private readonly ngramMax: number, private readonly ngramMin: number) {}

  propose(tokens: readonly number[], limit: number): number[] {
    const len = tokens.length, max = Math.min(limit, this.draftTokens);
    if (max < 1) return [];
    for (let n = Math.min(this.ngramMax, len - 1); n >= this.ngramMin; n--) {
      const key = len - n;
      // Latest start first: recent context predicts best. (A match may overlap the key: repetition.)
      for (let start = key - 1; start >= 0; start--) {
        let i = 0;
        while (i < n && tokens[start + i] === tokens[key + i]) i++;
        if (i === n) return tokens.slice(start + n, Math.min(start + n + max, len)) as number[];
      }
    }
    return [];
  }
}

export function createDrafter(o: SpeculativeOptions): Drafter {
  const s = speculativeSettings(o);
  return new PromptLookupDrafter(s.draftTokens, s.ngramMax, s.ngramMin);
}
