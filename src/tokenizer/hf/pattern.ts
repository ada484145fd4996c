// The tokenizers library's Pattern and split behaviours: a pattern cuts a text into segments that matched
// and segments between matches; Split, Replace and the character-class pre-tokenizers all work on those.

/** [start, end, matched] in UTF-16 units of the text. */
export type Segment = [start: number, end: number, matched: boolean];

export type Pattern = (text: string) => Segment[];

export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
export const SPLIT_BEHAVIORS: readonly SplitBehavior[] = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];

const cpLength = (text: string, i: number): number => (text.codePointAt(i)! > 0xffff ? 2 : 1);

/**
 * Matches of a global regex as onig's find_iter yields them: leftmost first, an empty match is taken unless
 * it sits right where the previous match ended (then the search steps one character on).
 */
export function regexPattern(re: RegExp): Pattern {
  return (text) => {
    if (text === '') return [[0, 0, false]];
    const out: Segment[] = [];
    let prev = 0;
    let from = 0;
    let lastMatchEnd = -1;
    while (from <= text.length) {
      re.lastIndex = from;
      const m = re.exec(text);
      if (!m) break;
      const start = m.index;
      const end = start + m[0].length;
      if (start === end && end === lastMatchEnd) {
        from += from < text.length ? cpLength(text, from) : 1;
        continue;
      }
      from = end;
      lastMatchEnd = end;
      if (prev !== start) out.push([prev, start, false]);
      out.push([start, end, true]);
      prev = end;
    }
    if (prev !== text.length) out.push([prev, text.length, false]);
    return out;
  };
}

/** Every character for which `test` holds is a match of its own. */
export function charPattern(test: (ch: string) => boolean): Pattern {
  return (text) => {
    if (text === '') return [[0, 0, false]];
    const out: Segment[] = [];
    let last = 0;
    for (let i = 0; i < text.length; ) {
      const n = cpLength(text, i);
      if (test(text.slice(i, i + n))) {
        if (last < i) out.push([last, i, false]);
        out.push([i, i + n, true]);
        last = i + n;
      }
      i += n;
    }
    if (last < text.length) out.push([last, text.length, false]);
    return out;
  };
}

export function invert(pattern: Pattern): Pattern {
  return (text) => pattern(text).map(([s, e, m]) => [s, e, !m]);
}

/** The pieces a split keeps, as [start, end] (empty ones included; callers drop them as the library does). */
export function splitSegments(segments: Segment[], behavior: SplitBehavior): [number, number][] {
  switch (behavior) {
    case 'Isolated':
      return segments.map(([s, e]) => [s, e]);
    case 'Removed':
      return segments.filter((g) => !g[2]).map(([s, e]) => [s, e]);
    case 'Contiguous': {
      const out: [number, number][] = [];
      let previous = false;
      for (const [s, e, m] of segments) {
        if (m === previous && out.length > 0) out[out.length - 1][1] = e;
        else out.push([s, e]);
        previous = m;
      }
      return out;
    }
    case 'MergedWithPrevious': {
      const out: [number, number][] = [];
      let previous = false;
      for (const [s, e, m] of segments) {
        if (m && !previous && out.length > 0) out[out.length - 1][1] = e;
        else out.push([s, e]);
        previous = m;
      }
      return out;
    }
    case 'MergedWithNext': {
      const out: [number, number][] = [];
      let previous = false;
      for (let i = segments.length - 1; i >= 0; i--) {
        const [s, e, m] = segments[i];
        if (m && !previous && out.length > 0) out[out.length - 1][0] = s;
        else out.push([s, e]);
        previous = m;
      }
      return out.reverse();
    }
  }
}

/** Replace every matched segment with `content` (a plain string: no `$` substitutions). */
export function replaceMatches(text: string, pattern: Pattern, content: string): string {
  let out = '';
  for (const [s, e, m] of pattern(text)) out += m ? content : text.slice(s, e);
  return out;
}
