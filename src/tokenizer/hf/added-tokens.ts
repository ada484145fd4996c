// tokenizer.json added tokens and how the tokenizers library finds them in a text before anything else runs:
// tokens with normalized = false are found in the raw text, then each remaining piece is normalized and the
// tokens with normalized = true are found in that (as their own normalized form). Matches are leftmost-
// longest and never overlap; lstrip / rstrip take the whitespace beside a match into it, single_word refuses
// a match inside a word. Special tokens are only found when special tokens are parsed (else the library's
// encode_special_tokens: their matches are skipped).
import { asArray, asInt, asObject, asString, get, invalid, optBool } from './json.js';
import { MAX_TOKEN_ID } from './models.js';
import type { Normalize } from './normalizers.js';
import type { Piece } from './pre-tokenizers.js';

export interface AddedToken {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export function readAddedTokens(v: unknown, path: string): AddedToken[] {
  if (v === undefined) return [];
  return asArray(v, path).map((entry, i) => {
    const at = `${path}[${i}]`;
    const o = asObject(entry, at);
    const special = optBool(o, 'special', at, false);
    const content = asString(get(o, 'content'), `${at}.content`);
    return {
      id: asInt(get(o, 'id'), `${at}.id`, 0, MAX_TOKEN_ID),
      content,
      singleWord: optBool(o, 'single_word', at, false),
      lstrip: optBool(o, 'lstrip', at, false),
      rstrip: optBool(o, 'rstrip', at, false),
      normalized: optBool(o, 'normalized', at, !special),
      special,
    };
  });
}

interface TrieNode {
  next: Map<number, TrieNode>;
  token?: AddedToken;
}

// the regex crate's \w and \s, which the library uses for single_word, lstrip and rstrip
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const WHITE_SPACE = /\p{White_Space}/u;

function lastChar(s: string): string {
  const cp = s.codePointAt(s.length - 1 - (s.length > 1 && /[\uDC00-\uDFFF]/.test(s[s.length - 1]) ? 1 : 0));
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

export class AddedVocabulary {
  private readonly raw: TrieNode = { next: new Map() };
  private readonly normalized: TrieNode = { next: new Map() };

  constructor(tokens: readonly AddedToken[], normalize: Normalize | undefined) {
    for (const t of tokens) {
      const pattern = t.normalized && normalize ? normalize(t.content) : t.content;
      if (pattern === '') continue;
      let node = t.normalized ? this.normalized : this.raw;
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = { next: new Map() }));
        node = child;
      }
      node.token = t;
    }
  }

  /** The text cut into added tokens (ids) and normalized pieces of text. */
  extract(text: string, normalize: Normalize | undefined, parseSpecial: boolean): (Piece | number)[] {
    const out: (Piece | number)[] = [];
    for (const part of this.split(text, this.raw, parseSpecial)) {
      if (typeof part === 'number') {
        out.push(part);
        continue;
      }
      const [start, end] = part;
      const normalized = normalize ? normalize(text.slice(start, end)) : text.slice(start, end);
      for (const sub of this.split(normalized, this.normalized, parseSpecial)) {
        if (typeof sub === 'number') out.push(sub);
        else if (sub[1] > sub[0]) out.push({ text: normalized.slice(sub[0], sub[1]), atStart: start === 0 && sub[0] === 0 });
      }
    }
    return out;
  }

  /** The library's find_matches: [start, end] of text between matches, ids of accepted matches. */
  private split(text: string, root: TrieNode, parseSpecial: boolean): ([number, number] | number)[] {
    if (root.next.size === 0 || text === '') return text === '' ? [] : [[0, text.length]];
    const out: ([number, number] | number)[] = [];
    let offset = 0;
    for (let i = 0; i < text.length; ) {
      const match = this.longestAt(text, i, root);
      if (!match) {
        i++;
        continue;
      }
      let start = i;
      const [token, end] = match;
      let stop = end;
      i = end; // matches never overlap, accepted or not
      if (token.special && !parseSpecial) continue;
      if (token.singleWord) {
        const before = text.slice(0, start), after = text.slice(stop);
        const startOk = start === 0 || !WORD_CHAR.test(lastChar(before));
        const stopOk = stop === text.length || !WORD_CHAR.test(String.fromCodePoint(after.codePointAt(0)!));
        if (!startOk || !stopOk) continue;
      }
      if (token.lstrip) {
        let s = start;
        while (s > 0 && WHITE_SPACE.test(text[s - 1])) s--;
        start = Math.max(s, offset);
      }
      if (token.rstrip) while (stop < text.length && WHITE_SPACE.test(text[stop])) stop++;
      if (start < offset) continue; // inside whitespace a previous match took: cannot split there
      if (offset < start) out.push([offset, start]);
      out.push(token.id);
      offset = stop;
    }
    if (offset < text.length) out.push([offset, text.length]);
    return out;
  }

  /** The longest token starting at i: [token, end], or undefined. */
  private longestAt(text: string, i: number, root: TrieNode): [AddedToken, number] | undefined {
    let node: TrieNode | undefined = root;
    let found: [AddedToken, number] | undefined;
    for (let j = i; node && j < text.length; ) {
      node = node.next.get(text.charCodeAt(j++));
      if (node?.token) found = [node.token, j];
    }
    return found;
  }
}
