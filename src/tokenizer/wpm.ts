// WordPiece as llama.cpp's WPM tokenizer runs it for `tokenizer.ggml.model = bert`: normalize (lowercase,
// NFD accent stripping, both one code point for one as llama.cpp's tables do), split on whitespace and
// around punctuation and CJK ideographs, then greedily take the longest vocabulary entry. The converter
// stores word-initial pieces with a ▁ prefix and `##` continuations bare, so each word is looked up as
// "▁word". A word that cannot be covered becomes the unknown token.
import { TokenizerError } from './errors.js';
import {
  codePoints, isAccentMark, isChineseChar, isControl, isPunctuation, isSymbol, isWhitespace, lowerFirst, nfdFirst,
} from './unicode.js';
import type { Vocab } from './vocab.js';

// what to do with a (normalized) code point
const enum Kind { Keep, Skip, Break, Alone }

export class WpmTokenizer {
  private readonly kinds = new Map<number, Kind>();

  constructor(private readonly vocab: Vocab) {}

  encode(text: string, out: number[]): void {
    const unk = this.vocab.special.unk;
    const { tokenToId, maxTokenLength } = this.vocab;
    for (const word of this.preprocess(text)) {
      const w = '\u2581' + word;
      if (!longestMatch(w.length, maxTokenLength, (start, end) => tokenToId.get(w.slice(start, end)), out)) {
        if (unk === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', `word ${JSON.stringify(word)} cannot be tokenized and the vocabulary has no unknown token`);
        out.push(unk);
      }
    }
  }

  private preprocess(text: string): string[] {
    const { stripAccents, lowercase } = this.vocab;
    const words: string[] = [];
    let cur = '';
    for (let cp of codePoints(text)) {
      if (stripAccents) cp = nfdFirst(cp);
      const kind = this.kind(cp);
      if (kind === Kind.Break) {
        if (cur) words.push(cur);
        cur = '';
        continue;
      }
      if (kind === Kind.Skip) continue;
      const s = String.fromCodePoint(lowercase ? lowerFirst(cp) : cp);
      if (kind === Kind.Alone) {
        if (cur) words.push(cur);
        words.push(s);
        cur = '';
      } else {
        cur += s;
      }
    }
    if (cur) words.push(cur);
    return words;
  }

  private kind(cp: number): Kind {
    let k = this.kinds.get(cp);
    if (k === undefined) {
      if (isWhitespace(cp)) k = Kind.Break;
      else if (cp === 0 || cp === 0xfffd || isControl(cp)) k = Kind.Skip;
      else if (this.vocab.stripAccents && isAccentMark(cp)) k = Kind.Skip;
      else if (isPunctuation(cp) || (cp < 0x7f && isSymbol(cp)) || isChineseChar(cp)) k = Kind.Alone;
      else k = Kind.Keep;
      this.kinds.set(cp, k);
    }
    return k;
  }
}

/**
 * WordPiece's greedy longest match over a word of `n` UTF-16 units: from each position take the longest
 * piece `lookup(start, end)` knows (at most `maxLength` units), then go on after it. One position that no
 * piece covers discards the whole word: `out` is left as it was and the result is false.
 */
export function longestMatch(n: number, maxLength: number, lookup: (start: number, end: number) => number | undefined, out: number[]): boolean {
  const mark = out.length;
  for (let i = 0; i < n; ) {
    let end = Math.min(n, i + maxLength);
    let id: number | undefined;
    for (; end > i; end--) {
      id = lookup(i, end);
      if (id !== undefined) break;
    }
    if (id === undefined) {
      out.length = mark;
      return false;
    }
    out.push(id);
    i = end;
  }
  return true;
}
