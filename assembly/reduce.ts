// Reductions over rows: argmax, so greedy decoding reads back a token id instead of the vocabulary.
import { ARGMAX_N, ARGMAX_OUT, ARGMAX_ROWS, ARGMAX_X } from './abi';
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
