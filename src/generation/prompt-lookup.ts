// Draft tokens for speculative decoding by prompt lookup: when the last few tokens of a sequence
// appeared earlier in it (the prompt, or text already generated), guess that what followed them
// then follows again. Free to compute and often right when the output copies from the input
// (rewriting, summarizing with quotes, code edits). The scheduler evaluates the guesses with the
// sequence's next token in one forward pass and keeps those the sampler agrees with, so the
// output is exactly what decoding without drafts would give.
import { speculativeSettings, type Drafter, type PromptLookupOptions } from './speculative.js';

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

/** The drafter of prompt-lookup options (checked: RangeError). It keeps nothing per sequence: one serves them all. */
export function createPromptLookupDrafter(o: PromptLookupOptions): Drafter {
  const s = speculativeSettings(o);
  return new PromptLookupDrafter(s.draftTokens, s.ngramMax, s.ngramMin);
}
