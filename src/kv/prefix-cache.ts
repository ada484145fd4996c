// Finished sequences kept for their KV: a later prompt that starts with the same tokens shares
// their blocks instead of recomputing them. Entries are KV sequences of their own (forks of the
// finished ones), so a block stays alive while an entry or any live sequence holds it. Least
// recently used entries go first when blocks are needed.
//
// Sliding-window models release the blocks of keys that fell out of the window (see kv-cache.ts),
// so a sequence can only give a prefix long enough that its window starts in blocks it still
// holds (KVCache.canShorten); matches and coverage between entries take that into account.
import type { KVCache } from './kv-cache.js';

/** A sequence whose first `length` tokens are in the KV cache. */
export interface PrefixSource {
  readonly seqId: number;
  readonly tokens: ArrayLike<number>;
  readonly length: number;
}

export interface PrefixMatch {
  readonly seqId: number;
  /** Leading tokens shared with the query. */
  readonly length: number;
}

interface Entry {
  readonly seqId: number;
  readonly tokens: readonly number[];
  /** What else the KV depends on (the LoRA adapters it was computed with): only equal keys share. */
  readonly key: string;
}

export class PrefixCache {
  /** Least recently used first. */
  private entries: Entry[] = [];

  constructor(
    private readonly kv: KVCache,
    private readonly newSequenceId: () => number,
    readonly maxEntries: number,
  ) {}

  get size(): number {
    return this.entries.length;
  }

  /** Keep the KV of `tokens` (the first tokens.length positions of sequence seqId) for later prompts. */
  insert(seqId: number, tokens: readonly number[], key = ''): void {
    if (this.maxEntries < 1 || tokens.length === 0) return;
    for (const e of this.entries) {
      if (e.key !== key) continue;
      // Already covered by a longer entry (that can still give this prefix): just mark it used.
      if (e.tokens.length >= tokens.length && commonPrefix(e.tokens, tokens, tokens.length) === tokens.length && this.kv.canShorten(e.seqId, tokens.length)) {
        this.touch(e);
        return;
      }
    }
    const id = this.newSequenceId();
    this.kv.fork(seqId, id, tokens.length);
    const added: Entry = { seqId: id, tokens: [...tokens], key };
    // Entries the new one covers are redundant.
    for (const e of [...this.entries]) {
      if (e.key === key && commonPrefix(e.tokens, tokens, e.tokens.length) === e.tokens.length && this.kv.canShorten(id, e.tokens.length)) this.remove(e);
    }
    this.entries.push(added);
    while (this.entries.length > this.maxEntries) this.remove(this.entries[0]);
  }

  /**
   * The longest run of leading `tokens` (at most maxLength) already in the KV cache and usable as
   * a prefix (KVCache.canShorten), among the entries and the given live sequences. A matched entry
   * counts as used.
   */
  match(tokens: ArrayLike<number>, maxLength: number, live: Iterable<PrefixSource> = [], key = ''): PrefixMatch | undefined {
    let best: PrefixMatch | undefined;
    let bestEntry: Entry | undefined;
    const consider = (src: PrefixSource, entry?: Entry) => {
      const n = commonPrefix(src.tokens, tokens, Math.min(maxLength, src.length));
      // A shorter prefix of src would not help: it needs keys from even earlier positions.
      if (n > (best?.length ?? 0) && this.kv.canShorten(src.seqId, n)) {
        best = { seqId: src.seqId, length: n };
        bestEntry = entry;
      }
    };
    for (const s of live) consider(s);
    for (const e of this.entries) if (e.key === key) consider({ seqId: e.seqId, tokens: e.tokens, length: e.tokens.length }, e);
    if (bestEntry) this.touch(bestEntry);
    return best;
  }

  /** Drop the least recently used entry; false when there is none. */
  evictOne(): boolean {
    if (this.entries.length === 0) return false;
    this.remove(this.entries[0]);
    return true;
  }

  clear(): void {
    while (this.evictOne());
  }

  private touch(e: Entry): void {
    this.entries.splice(this.entries.indexOf(e), 1);
    this.entries.push(e);
  }

  private remove(e: Entry): void {
    this.entries.splice(this.entries.indexOf(e), 1);
    this.kv.removeSequence(e.seqId);
  }
}

function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>, limit: number): number {
  const n = Math.min(limit, a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
