// Stop strings may span token boundaries: text is held back while it could still be the start of
// a stop string, and cut before the stop string when one completes.
export class StopStringMatcher {
  private pending = '';

  constructor(private readonly stops: readonly string[]) {
    if (stops.some((s) => s.length === 0)) throw new RangeError('stop strings must not be empty');
  }

  /** Feed newly decoded text; returns what can be shown now, and whether a stop string completed. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.stops.length === 0) return { emit: text, stopped: false };
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const emit = this.pending.slice(0, cut);
      this.pending = '';
      return { emit, stopped: true };
    }
    const hold = this.heldSuffixLength();
    const emit = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { emit, stopped: false };
  }

  /** At the end of generation, whatever was held back is real text. */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }

  /** Length of the longest suffix of pending that is a proper prefix of some stop string. */
  private heldSuffixLength(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > best; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
