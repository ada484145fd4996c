// SentencePiece-style BPE as llama.cpp runs it for `tokenizer.ggml.model = llama`: start from single code
// points, repeatedly merge the adjacent pair whose concatenation is the highest-scoring vocabulary entry
// (leftmost on ties), and spell whatever is not a token as <0xXX> byte tokens.
import { BigramQueue, runMerges, sizeChanged, type MergeCandidate } from './bigram-queue.js';
import { TokenizerError } from './errors.js';
import { utf8Encoder } from './unicode.js';
import type { Vocab } from './vocab.js';

const SPACE_MARKER = '\u2581'; // ▁

// Long inputs: the text is cut wherever two neighbouring code points appear together in no vocabulary
// entry. No merge can cross such a cut (every merged symbol is a vocabulary entry), so each chunk can be
// tokenized on its own with exactly the result of one pass over the whole text, from a small heap, and
// chunks (mostly words) are cached. Within a chunk, symbols carry an integer key (the token id, or for a
// code point that is no token, nVocab + code point) and pair lookups are memoized by key.
const CACHE_LIMIT = 1 << 16;
const MEMO_LIMIT = 1 << 20;
const CP_LIMIT = 0x110000;

export class SpmTokenizer {
  private readonly byteTokens: Int32Array;
  private readonly queue = new BigramQueue();
  private readonly top: MergeCandidate = { key: 0, left: 0, right: 0, size: 0 };
  private readonly nVocab: number;
  /** Multiplier that makes left * keys + right unique for any two symbol keys. */
  private readonly keys: number;
  private readonly pairMemo = new Map<number, number>();
  private readonly charMemo = new Map<number, number>();
  private readonly cache = new Map<string, readonly number[]>();
  /** Code point pairs (a * 0x110000 + b) that occur next to each other in some vocabulary entry. */
  private adjacent?: Set<number>;

  constructor(private readonly vocab: Vocab) {
    this.byteTokens = byteTokenTable(vocab);
    this.nVocab = vocab.tokens.length;
    this.keys = this.nVocab + CP_LIMIT;
  }

  /**
   * Tokenize one piece of raw text (no special tokens in it). `spacePrefix` adds the leading space
   * llama.cpp adds at the start of the text and after each special token when add_space_prefix is set.
   */
  encode(raw: string, spacePrefix: boolean, out: number[]): void {
    const text = (spacePrefix ? ' ' + raw : raw).replaceAll(' ', SPACE_MARKER);
    const adjacent = (this.adjacent ??= adjacentPairs(this.vocab.tokens));
    let start = 0;
    let prev = -1;
    for (let i = 0; i < text.length; ) {
      const cp = text.codePointAt(i)!;
      if (prev >= 0 && !adjacent.has(prev * CP_LIMIT + cp)) {
        this.encodeChunk(text.slice(start, i), out);
        start = i;
      }
      prev = cp;
      i += cp > 0xffff ? 2 : 1;
    }
    this.encodeChunk(text.slice(start), out);
  }

  private encodeChunk(text: string, out: number[]): void {
    let ids = this.cache.get(text);
    if (!ids) {
      ids = this.merge(text);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(text, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  /** llama.cpp's SPM merge loop over one chunk. */
  private merge(text: string): number[] {
    const out: number[] = [];
    const n = text.length;
    if (n === 0) return out;
    // one symbol per code point, linked in a list; `len` in UTF-16 units, 0 once merged away
    const key = new Int32Array(n), len = new Int32Array(n), prev = new Int32Array(n), next = new Int32Array(n);
    let count = 0;
    for (let i = 0; i < n; ) {
      const cp = text.codePointAt(i)!;
      const l = cp > 0xffff ? 2 : 1;
      key[count] = this.charKey(cp);
      len[count] = l;
      prev[count] = count - 1;
      next[count] = i + l === n ? -1 : count + 1;
      count++;
      i += l;
    }

    const { scores } = this.vocab;
    const queue = this.queue;
    const tryAdd = (left: number, right: number) => {
      const id = this.pair(key[left], key[right]);
      // max-heap on score: push the negated score into the min-heap
      if (id >= 0) queue.push(-scores[id], left, right, len[left] + len[right]);
    };
    runMerges(queue, this.top, count, len, prev, next, tryAdd, (top) => sizeChanged(len, top), (left, right) => {
      key[left] = this.pair(key[left], key[right]);
    });

    for (let i = 0; i !== -1; i = next[i]) {
      const k = key[i];
      if (k < this.nVocab) {
        out.push(k);
        continue;
      }
      const ch = String.fromCodePoint(k - this.nVocab);
      for (const b of utf8Encoder.encode(ch)) {
        const t = this.byteTokens[b];
        if (t < 0) {
          throw new TokenizerError('NO_BYTE_TOKEN', `byte 0x${b.toString(16).padStart(2, '0')} of ${JSON.stringify(ch)} has no token in this vocabulary`);
        }
        out.push(t);
      }
    }
    return out;
  }

  /** Symbol key of a single code point: its token id, or nVocab + code point when it is no token. */
  private charKey(cp: number): number {
    let k = this.charMemo.get(cp);
    if (k === undefined) {
      k = this.vocab.tokenToId.get(String.fromCodePoint(cp)) ?? this.nVocab + cp;
      this.charMemo.set(cp, k);
    }
    return k;
  }

  /** Token whose text is the two symbols' texts joined, or -1. */
  private pair(a: number, b: number): number {
    const code = a * this.keys + b;
    let id = this.pairMemo.get(code);
    if (id === undefined) {
      id = this.vocab.tokenToId.get(this.symbolText(a) + this.symbolText(b)) ?? -1;
      if (this.pairMemo.size >= MEMO_LIMIT) this.pairMemo.clear();
      this.pairMemo.set(code, id);
    }
    return id;
  }

  private symbolText(k: number): string {
    return k < this.nVocab ? this.vocab.tokens[k] : String.fromCodePoint(k - this.nVocab);
  }
}

function adjacentPairs(tokens: readonly string[]): Set<number> {
  const pairs = new Set<number>();
  for (const t of tokens) {
    let prev = -1;
    for (let i = 0; i < t.length; ) {
      const cp = t.codePointAt(i)!;
      if (prev >= 0) pairs.add(prev * CP_LIMIT + cp);
      prev = cp;
      i += cp > 0xffff ? 2 : 1;
    }
  }
  return pairs;
}

/**
 * Byte → token for byte fallback: the <0xXX> token, else a token that is the byte itself (llama.cpp's
 * second choice), else the unknown token (where llama.cpp would abort), else -1.
 */
function byteTokenTable(vocab: Vocab): Int32Array {
  const table = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    table[b] = vocab.tokenToId.get(hex) ?? (b < 0x80 ? vocab.tokenToId.get(String.fromCharCode(b)) : undefined) ?? vocab.special.unk ?? -1;
  }
  return table;
}
