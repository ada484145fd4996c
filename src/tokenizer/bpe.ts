// Byte-level BPE as llama.cpp runs it for `tokenizer.ggml.model = gpt2`: pre-tokenize with the regexes of
// `tokenizer.ggml.pre`, spell each word's UTF-8 bytes with GPT-2's byte characters, then apply merges by
// rank (lowest first, leftmost on ties). Words repeat a lot in real text, so their ids are cached.
import { BigramQueue, runMerges, sizeChanged, type MergeCandidate } from './bigram-queue.js';
import { preTokenize } from './pre-tokenizers.js';
import { byteEncode } from './unicode.js';
import type { Vocab } from './vocab.js';

const CACHE_LIMIT = 1 << 16;

export class BpeTokenizer {
  private readonly cache = new Map<string, readonly number[]>();
  private readonly queue = new BigramQueue();
  private readonly top: MergeCandidate = { key: 0, left: 0, right: 0, size: 0 };
  private readonly regexes: readonly RegExp[];
  private readonly merges: ReadonlyMap<string, number>;

  constructor(private readonly vocab: Vocab) {
    this.regexes = vocab.pre!.regexes;
    this.merges = vocab.merges!;
  }

  /** Tokenize one piece of raw text (no special tokens in it). */
  encode(text: string, out: number[]): void {
    for (const word of preTokenize(text, this.regexes)) {
      let ids = this.cache.get(word);
      if (!ids) {
        ids = this.encodeWord(byteEncode(word));
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  private encodeWord(word: string): number[] {
    const { tokenToId, ignoreMerges } = this.vocab;
    if (ignoreMerges) {
      const id = tokenToId.get(word);
      if (id !== undefined) return [id];
    }
    const n = word.length;
    if (n === 0) return [];
    // byte characters are all in the BMP: one symbol per UTF-16 unit
    const len = new Int32Array(n).fill(1), prev = new Int32Array(n), next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 === n ? -1 : i + 1;
    }
    const merges = this.merges;
    const queue = this.queue;
    const tryAdd = (left: number, right: number) => {
      const rank = merges.get(word.substr(left, len[left]) + ' ' + word.substr(right, len[right]));
      if (rank !== undefined) queue.push(rank, left, right, len[left] + len[right]);
    };
    // stale entries are found by length, as llama.cpp compares the texts
    runMerges(queue, this.top, n, len, prev, next, tryAdd, (top) => sizeChanged(len, top));

    const ids: number[] = [];
    for (let i = 0; i !== -1; i = next[i]) {
      const piece = word.substr(i, len[i]);
      const id = tokenToId.get(piece);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      // A merge result missing from the vocabulary: llama.cpp looks each UTF-8 byte of the piece up as a
      // one-byte token text. Only ASCII characters are single bytes that can match; the bytes of the other
      // characters are dropped.
      for (let j = 0; j < piece.length; j++) {
        const c = piece.charCodeAt(j);
        const t = c < 0x80 ? tokenToId.get(piece[j]) : undefined;
        if (t !== undefined) ids.push(t);
      }
    }
    return ids;
  }
}
