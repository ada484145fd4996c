// Binary min-heap of candidate merges ("bigrams") and the merge loop that the SPM, byte-level BPE and Hugging
// Face BPE tokenizers share. Entries are ordered by key, then by left symbol index, which is the tie-break
// llama.cpp's tokenizers and Hugging Face's BPE all use (leftmost first). Stored in growable typed arrays:
// a 1 MB prompt pushes about a million entries.

/** A popped queue entry. */
export interface MergeCandidate {
  key: number;
  left: number;
  right: number;
  size: number;
}

function before(aKey: number, aLeft: number, bKey: number, bLeft: number): boolean {
  return aKey < bKey || (aKey === bKey && aLeft < bLeft);
}

export class BigramQueue {
  private key = new Float64Array(64);
  private left = new Int32Array(64);
  private right = new Int32Array(64);
  private size = new Int32Array(64);
  private n = 0;

  get length(): number {
    return this.n;
  }

  clear(): void {
    this.n = 0;
  }

  push(key: number, left: number, right: number, size: number): void {
    if (this.n === this.key.length) this.grow();
    let i = this.n++;
    // sift up
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(key, left, this.key[p], this.left[p])) break;
      this.key[i] = this.key[p];
      this.left[i] = this.left[p];
      this.right[i] = this.right[p];
      this.size[i] = this.size[p];
      i = p;
    }
    this.key[i] = key;
    this.left[i] = left;
    this.right[i] = right;
    this.size[i] = size;
  }

  /** Remove the top entry; its fields are left in `top`. Returns false when empty. */
  pop(top: MergeCandidate): boolean {
    if (this.n === 0) return false;
    top.key = this.key[0];
    top.left = this.left[0];
    top.right = this.right[0];
    top.size = this.size[0];
    const last = --this.n;
    if (last === 0) return true;
    const key = this.key[last], left = this.left[last], right = this.right[last], size = this.size[last];
    let i = 0;
    // sift down
    for (;;) {
      let c = 2 * i + 1;
      if (c >= last) break;
      if (c + 1 < last && before(this.key[c + 1], this.left[c + 1], this.key[c], this.left[c])) c++;
      if (!before(this.key[c], this.left[c], key, left)) break;
      this.key[i] = this.key[c];
      this.left[i] = this.left[c];
      this.right[i] = this.right[c];
      this.size[i] = this.size[c];
      i = c;
    }
    this.key[i] = key;
    this.left[i] = left;
    this.right[i] = right;
    this.size[i] = size;
    return true;
  }

  private grow(): void {
    const cap = this.key.length * 2;
    const k = new Float64Array(cap), l = new Int32Array(cap), r = new Int32Array(cap), s = new Int32Array(cap);
    k.set(this.key);
    l.set(this.left);
    r.set(this.right);
    s.set(this.size);
    this.key = k;
    this.left = l;
    this.right = r;
    this.size = s;
  }
}

/**
 * Merge symbol `right` into `left` in the doubly linked symbol list both tokenizers keep (len 0
 * marks a merged-away symbol); `size` is the merged length.
 */
export function joinSymbols(len: Int32Array, prev: Int32Array, next: Int32Array, left: number, right: number, size: number): void {
  len[left] = size;
  len[right] = 0;
  next[left] = next[right]!;
  if (next[right]! >= 0) prev[next[right]!] = left;
}

/**
 * The merge loop: queue every adjacent pair (`tryPair` pushes the ones that merge), then take the best
 * pair again and again, skipping entries `isStale` rejects, joining the two symbols (`onJoin` first sees
 * them apart) and queueing the two new pairs around the result. Symbols are a linked list in `len`,
 * `prev`, `next` (len 0 once merged away).
 */
export function runMerges(
  queue: BigramQueue,
  top: MergeCandidate,
  count: number,
  len: Int32Array,
  prev: Int32Array,
  next: Int32Array,
  tryPair: (left: number, right: number) => void,
  isStale: (top: MergeCandidate) => boolean,
  onJoin?: (left: number, right: number) => void,
): void {
  queue.clear();
  for (let i = 1; i < count; i++) tryPair(i - 1, i);
  while (queue.pop(top)) {
    if (isStale(top)) continue;
    const { left, right, size } = top;
    onJoin?.(left, right);
    joinSymbols(len, prev, next, left, right, size);
    if (prev[left] >= 0) tryPair(prev[left], left);
    if (next[left] >= 0) tryPair(left, next[left]);
  }
}

/** The stale test llama.cpp uses: one side was merged away or grew since the pair was queued. */
export function sizeChanged(len: Int32Array, top: MergeCandidate): boolean {
  return len[top.left] === 0 || len[top.right] === 0 || len[top.left] + len[top.right] !== top.size;
}
