// tokenizer.json models: BPE (byte-level or with byte fallback), WordPiece, Unigram and WordLevel, each turning
// one pre-tokenized word into ids exactly as the tokenizers library does. BPE runs the shared merge loop of
// the GGUF tokenizers and WordPiece their longest match; Unigram is the Viterbi search over piece scores.
import { BigramQueue, runMerges, type MergeCandidate } from '../bigram-queue.js';
import { TokenizerError } from '../errors.js';
import { utf8Encoder } from '../unicode.js';
import { longestMatch } from '../wpm.js';
import { asArray, asBool, asInt, asNumber, asObject, asString, get, invalid, optBool, optString, reqString, unsupported, type JsonObject } from './json.js';

/** Ids are kept below 2^26 so that a pair of ids packs exactly into one number (left * bound + right). */
export const MAX_TOKEN_ID = (1 << 26) - 1;
const CACHE_LIMIT = 1 << 16;

export interface HFModel {
  readonly type: 'BPE' | 'WordPiece' | 'Unigram' | 'WordLevel';
  /** Model vocabulary: text → id. */
  readonly vocab: ReadonlyMap<string, number>;
  /** The id tokenize falls back on for what it cannot cover, if any. */
  readonly unkId?: number;
  /** Unknown characters become <0xXX> byte tokens. */
  readonly byteFallback: boolean;
  tokenize(word: string, out: number[]): void;
}

function readVocabObject(v: unknown, path: string): Map<string, number> {
  const o = asObject(v, path);
  const vocab = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const key of Object.keys(o)) {
    const text = asString(key, `${path} key`);
    const id = asInt(o[key], `${path}[${JSON.stringify(key)}]`, 0, MAX_TOKEN_ID);
    const other = byId.get(id);
    if (other !== undefined) throw new TokenizerError('DUPLICATE_TOKEN', `${path}: ${JSON.stringify(other)} and ${JSON.stringify(text)} both have id ${id}`);
    byId.set(id, text);
    vocab.set(text, id);
  }
  return vocab;
}

function unkIdOf(vocab: ReadonlyMap<string, number>, unk: string | undefined, path: string): number | undefined {
  if (unk === undefined) return undefined;
  const id = vocab.get(unk);
  if (id === undefined) throw invalid(`${path}.unk_token`, `${JSON.stringify(unk)} is not in the vocabulary`);
  return id;
}

const byteTokenText = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

function byteTokens(vocab: ReadonlyMap<string, number>): Int32Array {
  const table = new Int32Array(256).fill(-1);
  for (let b = 0; b < 256; b++) table[b] = vocab.get(byteTokenText(b)) ?? -1;
  return table;
}

/** The <0xXX> tokens of each UTF-8 byte of `s`, or undefined when one is missing. */
function byteFallbackIds(s: string, table: Int32Array): number[] | undefined {
  const ids: number[] = [];
  for (const b of utf8Encoder.encode(s)) {
    if (table[b] < 0) return undefined;
    ids.push(table[b]);
  }
  return ids;
}

class BpeModel implements HFModel {
  readonly type = 'BPE';
  readonly unkId?: number;
  private readonly ranks = new Map<number, number>();
  private readonly results: Int32Array;
  private readonly bound: number;
  private readonly bytes: Int32Array;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly queue = new BigramQueue();
  private readonly top: MergeCandidate = { key: 0, left: 0, right: 0, size: 0 };

  constructor(
    readonly vocab: ReadonlyMap<string, number>,
    merges: [string, string][],
    unk: string | undefined,
    private readonly prefix: string | undefined,
    private readonly suffix: string | undefined,
    private readonly fuseUnk: boolean,
    readonly byteFallback: boolean,
    private readonly ignoreMerges: boolean,
    path: string,
  ) {
    this.unkId = unkIdOf(vocab, unk, path);
    let bound = 0;
    for (const id of vocab.values()) bound = Math.max(bound, id + 1);
    this.bound = bound;
    this.bytes = byteTokens(vocab);
    this.results = new Int32Array(merges.length);
    const prefixLength = prefix?.length ?? 0;
    for (let rank = 0; rank < merges.length; rank++) {
      const [a, b] = merges[rank];
      const at = `${path}.merges[${rank}]`;
      const left = vocab.get(a), right = vocab.get(b);
      if (left === undefined || right === undefined) throw invalid(at, `${JSON.stringify(left === undefined ? a : b)} is not in the vocabulary`);
      const merged = vocab.get(a + b.slice(prefixLength));
      if (merged === undefined) throw invalid(at, `the merge result ${JSON.stringify(a + b.slice(prefixLength))} is not in the vocabulary`);
      // a pair listed twice keeps its last rank, as the library's map does
      this.ranks.set(left * bound + right, rank);
      this.results[rank] = merged;
    }
  }

  tokenize(word: string, out: number[]): void {
    if (word === '') return;
    if (this.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    let ids = this.cache.get(word);
    if (!ids) {
      ids = this.merge(word);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private merge(word: string): number[] {
    const initial: number[] = [];
    let pendingUnk = false;
    const chars = [...word];
    for (let i = 0; i < chars.length; i++) {
      let s = chars[i];
      if (i > 0 && this.prefix !== undefined) s = this.prefix + s;
      if (i === chars.length - 1 && this.suffix !== undefined) s = s + this.suffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (pendingUnk) initial.push(this.unkId!);
        pendingUnk = false;
        initial.push(id);
        continue;
      }
      if (this.byteFallback) {
        const fallback = byteFallbackIds(s, this.bytes);
        if (fallback) {
          // the library adds byte tokens without first flushing a pending unknown
          initial.push(...fallback);
          continue;
        }
      }
      if (this.unkId === undefined) continue; // no unknown token: the character is dropped, as in the library
      if (pendingUnk && !this.fuseUnk) initial.push(this.unkId);
      pendingUnk = true;
    }
    if (pendingUnk) initial.push(this.unkId!);

    const n = initial.length;
    const sym = Int32Array.from(initial);
    const len = new Int32Array(n).fill(1), prev = new Int32Array(n), next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 === n ? -1 : i + 1;
    }
    const { ranks, results, bound, queue } = this;
    let joined = 0;
    const tryPair = (left: number, right: number) => {
      const rank = ranks.get(sym[left] * bound + sym[right]);
      if (rank !== undefined) queue.push(rank, left, right, 0);
    };
    // the library's test: the pair now at this position still merges into the same token
    const isStale = (top: MergeCandidate) => {
      const right = next[top.left];
      if (len[top.left] === 0 || right < 0) return true;
      const rank = ranks.get(sym[top.left] * bound + sym[right]);
      if (rank === undefined || results[rank] !== results[top.key]) return true;
      top.right = right;
      top.size = len[top.left] + len[right];
      joined = results[top.key];
      return false;
    };
    runMerges(queue, this.top, n, len, prev, next, tryPair, isStale, (left) => {
      sym[left] = joined;
    });
    const ids: number[] = [];
    for (let i = 0; i !== -1 && n > 0; i = next[i]) ids.push(sym[i]);
    return ids;
  }
}

class WordPieceModel implements HFModel {
  readonly type = 'WordPiece';
  readonly byteFallback = false;
  readonly unkId: number;
  private readonly maxLength: number;

  constructor(
    readonly vocab: ReadonlyMap<string, number>,
    unk: string,
    private readonly prefix: string,
    private readonly maxChars: number,
    path: string,
  ) {
    this.unkId = unkIdOf(vocab, unk, path)!;
    let max = 0;
    for (const t of vocab.keys()) max = Math.max(max, t.length);
    this.maxLength = max;
  }

  tokenize(word: string, out: number[]): void {
    if (word === '') return;
    let chars = 0;
    for (const _ of word) if (++chars > this.maxChars) break;
    const { vocab, prefix } = this;
    const covered = chars <= this.maxChars &&
      longestMatch(word.length, this.maxLength, (start, end) => vocab.get(start === 0 ? word.slice(0, end) : prefix + word.slice(start, end)), out);
    if (!covered) out.push(this.unkId);
  }
}

class WordLevelModel implements HFModel {
  readonly type = 'WordLevel';
  readonly byteFallback = false;
  readonly unkId: number;

  constructor(readonly vocab: ReadonlyMap<string, number>, unk: string, path: string) {
    this.unkId = unkIdOf(vocab, unk, path)!;
  }

  tokenize(word: string, out: number[]): void {
    if (word !== '') out.push(this.vocab.get(word) ?? this.unkId);
  }
}

interface TrieNode {
  next: Map<number, TrieNode>;
  id: number;
}

class UnigramModel implements HFModel {
  readonly type = 'Unigram';
  readonly vocab = new Map<string, number>();
  readonly unkId?: number;
  private readonly root: TrieNode = { next: new Map(), id: -1 };
  private readonly unkScore: number;
  private readonly bytes: Int32Array;
  private readonly cache = new Map<string, readonly number[]>();

  constructor(
    pieces: [string, number][],
    unkId: number | undefined,
    readonly byteFallback: boolean,
    private readonly scores: Float64Array,
    path: string,
  ) {
    let min = Infinity;
    pieces.forEach(([text, score], id) => {
      if (this.vocab.has(text)) throw new TokenizerError('DUPLICATE_TOKEN', `${path}.vocab: ${JSON.stringify(text)} is listed twice (ids ${this.vocab.get(text)} and ${id})`);
      this.vocab.set(text, id);
      min = Math.min(min, score);
      let node = this.root;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = { next: new Map(), id: -1 }));
        node = child;
      }
      node.id = id;
    });
    this.unkId = unkId;
    this.unkScore = min - 10; // the library's kUnkPenalty
    this.bytes = byteTokens(this.vocab);
  }

  tokenize(word: string, out: number[]): void {
    if (word === '') return;
    let ids = this.cache.get(word);
    if (!ids) {
      ids = this.encode(word);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  /** Best segmentation by total score (the library's encode_optimized), unknown runs fused into one piece. */
  private encode(text: string): number[] {
    const n = text.length;
    const best = new Float64Array(n + 1);
    const from = new Int32Array(n + 1).fill(-1);
    const tokenAt = new Int32Array(n + 1).fill(-1);
    for (let start = 0; start < n; ) {
      const charLength = text.codePointAt(start)! > 0xffff ? 2 : 1;
      const base = best[start];
      let hasSingle = false;
      let node: TrieNode | undefined = this.root;
      for (let end = start; node && end < n; ) {
        node = node.next.get(text.charCodeAt(end++));
        if (!node || node.id < 0) continue;
        const score = base + this.scores[node.id];
        if (from[end] < 0 || score > best[end]) {
          best[end] = score;
          from[end] = start;
          tokenAt[end] = node.id;
        }
        if (end - start === charLength) hasSingle = true;
      }
      if (!hasSingle) {
        const end = start + charLength;
        const score = base + this.unkScore;
        if (from[end] < 0 || score > best[end]) {
          if (this.unkId === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', `Unigram: ${JSON.stringify(text.slice(start, end))} is not in the vocabulary and the model has no unk_id`);
          best[end] = score;
          from[end] = start;
          tokenAt[end] = this.unkId;
        }
      }
      start += charLength;
    }
    // walk back, fusing neighbouring unknown pieces into one
    const pieces: [number, number, number][] = [];
    for (let end = n; end > 0; end = from[end]) {
      const id = tokenAt[end];
      const last = pieces[pieces.length - 1];
      if (id === this.unkId && last && last[2] === this.unkId) last[0] = from[end];
      else pieces.push([from[end], end, id]);
    }
    const ids: number[] = [];
    for (let i = pieces.length - 1; i >= 0; i--) {
      const [s, e, id] = pieces[i];
      const piece = text.slice(s, e);
      const known = this.vocab.get(piece);
      if (known !== undefined) {
        ids.push(known);
        continue;
      }
      const fallback = this.byteFallback ? byteFallbackIds(piece, this.bytes) : undefined;
      if (fallback) ids.push(...fallback);
      else ids.push(id);
    }
    return ids;
  }
}

export function readMerges(v: unknown, path: string): [string, string][] {
  const list = asArray(v, path);
  const out: [string, string][] = [];
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    const at = `${path}[${i}]`;
    if (typeof m === 'string') {
      if (m.startsWith('#version')) continue;
      const parts = asString(m, at).split(' ');
      if (parts.length !== 2) throw invalid(at, `${JSON.stringify(m)} is not two tokens separated by one space`);
      out.push([parts[0], parts[1]]);
    } else {
      const pair = asArray(m, at);
      if (pair.length !== 2) throw invalid(at, 'should be a pair of token texts');
      out.push([asString(pair[0], `${at}[0]`), asString(pair[1], `${at}[1]`)]);
    }
  }
  return out;
}

/** The model's type as the library infers it when "type" is absent (files from before it was written). */
function inferType(o: JsonObject): string {
  if (get(o, 'merges') !== undefined) return 'BPE';
  if (Array.isArray(get(o, 'vocab'))) return 'Unigram';
  if (get(o, 'continuing_subword_prefix') !== undefined || get(o, 'max_input_chars_per_word') !== undefined) return 'WordPiece';
  return 'WordLevel';
}

export function readModel(v: unknown, path: string): HFModel {
  const o = asObject(v, path);
  const type = optString(o, 'type', path) ?? inferType(o);
  switch (type) {
    case 'BPE': {
      const dropout = get(o, 'dropout');
      if (dropout !== undefined) {
        const p = asNumber(dropout, `${path}.dropout`);
        if (p < 0 || p > 1) throw invalid(`${path}.dropout`, `${p} is outside 0..1`);
        if (p > 0) throw unsupported(`${path}.dropout`, 'BPE dropout is random; only null or 0 is supported');
      }
      const vocab = readVocabObject(get(o, 'vocab'), `${path}.vocab`);
      return new BpeModel(
        vocab, readMerges(get(o, 'merges'), `${path}.merges`), optString(o, 'unk_token', path),
        optString(o, 'continuing_subword_prefix', path), optString(o, 'end_of_word_suffix', path),
        optBool(o, 'fuse_unk', path, false), optBool(o, 'byte_fallback', path, false), optBool(o, 'ignore_merges', path, false), path,
      );
    }
    case 'WordPiece': {
      const vocab = readVocabObject(get(o, 'vocab'), `${path}.vocab`);
      const maxChars = get(o, 'max_input_chars_per_word');
      return new WordPieceModel(
        vocab, optString(o, 'unk_token', path) ?? '[UNK]', optString(o, 'continuing_subword_prefix', path) ?? '##',
        maxChars === undefined ? 100 : asInt(maxChars, `${path}.max_input_chars_per_word`, 0, Number.MAX_SAFE_INTEGER), path,
      );
    }
    case 'WordLevel':
      return new WordLevelModel(readVocabObject(get(o, 'vocab'), `${path}.vocab`), reqString(o, 'unk_token', path), path);
    case 'Unigram': {
      const list = asArray(get(o, 'vocab'), `${path}.vocab`);
      if (list.length > MAX_TOKEN_ID) throw invalid(`${path}.vocab`, `has ${list.length} entries (at most ${MAX_TOKEN_ID})`);
      const scores = new Float64Array(list.length);
      const pieces = list.map((entry, i): [string, number] => {
        const pair = asArray(entry, `${path}.vocab[${i}]`);
        if (pair.length !== 2) throw invalid(`${path}.vocab[${i}]`, 'should be [piece, score]');
        scores[i] = asNumber(pair[1], `${path}.vocab[${i}][1]`);
        return [asString(pair[0], `${path}.vocab[${i}][0]`), scores[i]];
      });
      const unk = get(o, 'unk_id');
      const unkId = unk === undefined ? undefined : asInt(unk, `${path}.unk_id`, 0, pieces.length - 1);
      const byteFallback = get(o, 'byte_fallback') === undefined ? false : asBool(get(o, 'byte_fallback'), `${path}.byte_fallback`);
      if (pieces.length === 0 && unkId === undefined) throw invalid(`${path}.vocab`, 'is empty');
      return new UnigramModel(pieces, unkId, byteFallback, scores, path);
    }
    default:
      throw unsupported(path, `unknown model type ${JSON.stringify(type)}`);
  }
}
