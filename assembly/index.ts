// Module exports: exec (all ops), the heap base for the host's allocator, and the known-answer
// probe the host runs before trusting the relaxed build.
import { rdot } from './common';

export { exec } from './exec';

/** First byte the host may allocate: everything below holds the module's static data. */
export function heapBase(): usize {
  return __heap_base;
}

/**
 * Known-answer probe: for i in 0..n, stores at out + 16i the i32x4 rdot(a_i, w_i, 0) where a_i is
 * 16 i8 at a + 16i and w_i 16 values (0..127) at w + 16i. The host compares the lane totals with
 * exact integer math; a runtime that mis-executes the relaxed instruction fails here.
 */
export function probeDot(a: usize, w: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 4;
    v128.store(out + o, rdot(v128.load(a + o), v128.load(w + o), i32x4.splat(0)));
  }
}
