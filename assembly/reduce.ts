// Reductions over rows: argmax and top-k, so greedy and top-k decoding read back a token id or k
// candidates instead of the vocabulary.
import { ARGMAX_N, ARGMAX_OUT, ARGMAX_ROWS, ARGMAX_X, TOPK_IDS, TOPK_K, TOPK_N, TOPK_ROWS, TOPK_VALUES, TOPK_X } from './abi';
import { arg, splitAt } from './common';

/**
 * ARGMAX_* args: the first index of each row's largest value, as a greedy sampler scanning in id
 * order with a strict comparison picks it (a NaN after the first place never wins). Split by rows.
 */
export function argmax(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, ARGMAX_OUT);
  const x = <usize>arg(args, ARGMAX_X);
  const n = arg(args, ARGMAX_N);
  const rows = arg(args, ARGMAX_ROWS);
  const r1 = splitAt(rows, ith + 1, nth);
  for (let r = splitAt(rows, ith, nth); r < r1; r++) {
    const row = x + <usize>r * <usize>n * 4;
    let best = 0;
    let bestValue = load<f32>(row);
    for (let i = 1; i < n; i++) {
      const v = load<f32>(row + (<usize>i << 2));
      if (v > bestValue) {
        best = i;
        bestValue = v;
      }
    }
    store<i32>(out + (<usize>r << 2), best);
  }
}

/**
 * A value's place in top-k's order as an unsigned key, larger first: NaN above every number, -0 as
 * 0, the rest by value (positive floats order as their bits, negative ones reversed).
 */
@inline function rankKey(bits: u32): u32 {
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return 0xffffffff;
  if (a == 0) return 0x80000000;
  return (bits & 0x80000000) != 0 ? ~bits : bits | 0x80000000;
}

@inline function keyAt(row: usize, i: i32): u32 {
  return rankKey(load<u32>(row + (<usize>i << 2)));
}

/** Index a ranks below index b: a smaller key, or an equal one at a higher index. */
@inline function worse(row: usize, a: i32, b: i32): bool {
  const ka = keyAt(row, a), kb = keyAt(row, b);
  return ka < kb || (ka == kb && a > b);
}

@inline function heapAt(heap: usize, i: i32): i32 {
  return load<i32>(heap + (<usize>i << 2));
}

@inline function heapSet(heap: usize, i: i32, v: i32): void {
  store<i32>(heap + (<usize>i << 2), v);
}

/** Restore the min-heap (the worst kept at the root) of `size` indices below position i. */
function siftDown(row: usize, heap: usize, i: i32, size: i32): void {
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let m = i;
    if (l < size && worse(row, heapAt(heap, l), heapAt(heap, m))) m = l;
    if (r < size && worse(row, heapAt(heap, r), heapAt(heap, m))) m = r;
    if (m == i) return;
    const t = heapAt(heap, i);
    heapSet(heap, i, heapAt(heap, m));
    heapSet(heap, m, t);
    i = m;
  }
}

/**
 * TOPK_* args: each row's k largest values and their indices, largest first, equal values by the
 * lower index (the sampler's top-k order). A min-heap of the k best indices lives in the row's ids
 * (O(n log k), most values fail one comparison with the root), then a heap sort puts it best first.
 * Split by rows.
 */
export function topK(args: usize, ith: i32, nth: i32): void {
  const ids = <usize>arg(args, TOPK_IDS);
  const values = <usize>arg(args, TOPK_VALUES);
  const x = <usize>arg(args, TOPK_X);
  const n = arg(args, TOPK_N);
  const rows = arg(args, TOPK_ROWS);
  const k = arg(args, TOPK_K);
  const r1 = splitAt(rows, ith + 1, nth);
  for (let r = splitAt(rows, ith, nth); r < r1; r++) {
    const row = x + <usize>r * <usize>n * 4;
    const heap = ids + <usize>r * <usize>k * 4;
    for (let i = 0; i < k; i++) {
      let j = i;
      heapSet(heap, j, i);
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (!worse(row, heapAt(heap, j), heapAt(heap, parent))) break;
        const t = heapAt(heap, j);
        heapSet(heap, j, heapAt(heap, parent));
        heapSet(heap, parent, t);
        j = parent;
      }
    }
    // every kept index is lower than i: only a strictly larger key displaces the root
    let rootKey = keyAt(row, heapAt(heap, 0));
    for (let i = k; i < n; i++) {
      if (keyAt(row, i) > rootKey) {
        heapSet(heap, 0, i);
        siftDown(row, heap, 0, k);
        rootKey = keyAt(row, heapAt(heap, 0));
      }
    }
    // heap sort: the worst to the back, so the row ends best first
    for (let end = k - 1; end > 0; end--) {
      const t = heapAt(heap, 0);
      heapSet(heap, 0, heapAt(heap, end));
      heapSet(heap, end, t);
      siftDown(row, heap, 0, end);
    }
    const out = values + <usize>r * <usize>k * 4;
    for (let j = 0; j < k; j++) store<u32>(out + (<usize>j << 2), load<u32>(row + (<usize>heapAt(heap, j) << 2)));
  }
}
