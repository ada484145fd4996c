// The draft length of speculative decoding: the pass-cost line fitted to decode steps, and the
// length chosen from it and a sequence's acceptance record (src/generation/draft-length.ts).
import { describe, expect, it } from 'vitest';
import { DraftLength, PassCost } from '../src/generation/draft-length.js';

/** A cost line observed without noise: passes of the given sizes, `rounds` times each. */
function costOf(fixedMs: number, perTokenMs: number, sizes: number[], rounds = 20): PassCost {
  const c = new PassCost();
  for (let r = 0; r < rounds; r++) for (const n of sizes) c.observe(n, fixedMs + perTokenMs * n);
  return c;
}

/** The length chosen after `steps` verifications of `drafted` draft tokens of which `kept` were kept. */
function after(steps: number, drafted: number, kept: number, max = 8): DraftLength {
  const d = new DraftLength(max, true);
  for (let i = 0; i < steps; i++) d.verified(drafted, kept);
  return d;
}

describe('PassCost', () => {
  it('fits the line of decode steps of several sizes', () => {
    const { fixedMs, perTokenMs } = costOf(8, 2, [1, 3, 9]).estimate();
    expect(fixedMs).toBeCloseTo(8, 6);
    expect(perTokenMs).toBeCloseTo(2, 6);
  });

  it('with one pass size only: a pass of n tokens costs (n + 1) / 2 passes of one', () => {
    const { fixedMs, perTokenMs } = costOf(7, 3, [1]).estimate();
    expect(fixedMs).toBeCloseTo(5, 6);
    expect(perTokenMs).toBeCloseTo(5, 6);
    const e = new PassCost().estimate(); // nothing observed: the same shape
    expect(e.fixedMs).toBe(e.perTokenMs);
  });

  it('noise that tilts the line is clamped: a token costs something, a pass no less than its tokens', () => {
    const falling = costOf(0, 0, []);
    for (let r = 0; r < 10; r++) [[1, 10], [9, 5]].forEach(([n, ms]) => falling.observe(n, ms));
    const f = falling.estimate();
    expect(f.perTokenMs).toBeGreaterThan(0);
    expect(f.fixedMs).toBeGreaterThan(0);
    const steep = costOf(0, 0, []);
    for (let r = 0; r < 10; r++) [[1, 1], [9, 30]].forEach(([n, ms]) => steep.observe(n, ms));
    expect(steep.estimate().fixedMs).toBeGreaterThanOrEqual(0);
    // non-finite or empty observations are ignored
    steep.observe(0, 5);
    steep.observe(3, Number.NaN);
    steep.observe(3, Infinity);
    expect(Number.isFinite(steep.estimate().perTokenMs)).toBe(true);
  });
});

describe('DraftLength', () => {
  const gpu = costOf(10, 0.05, [1, 5, 9]); // a pass of 9 costs about one
  const cpu = costOf(5, 5, [1, 3, 5]); // each token nearly its own

  it('not adaptive: always the most', () => {
    const d = new DraftLength(6, false);
    for (let i = 0; i < 5; i++) d.verified(6, 0);
    expect(d.choose(1, cpu)).toBe(6);
  });

  it('where a pass costs about the same for more tokens, drafts long even when most are rejected', () => {
    expect(new DraftLength(8, true).choose(1, gpu)).toBe(8);
    const d = after(10, 8, 1); // one of eight kept, each step
    expect(d.acceptance).toBeLessThan(0.6);
    expect(d.choose(1, gpu)).toBeGreaterThanOrEqual(6); // the last few would be kept too rarely to pay even here
  });

  it('where each token costs its own, drafts while drafts are kept and stops when they are not', () => {
    const fresh = new DraftLength(8, true);
    expect(fresh.choose(1, cpu)).toBeGreaterThan(0); // the prior: 4 of 5 kept
    expect(after(10, 4, 0).choose(1, cpu)).toBe(0); // every draft rejected at once
    const copying = after(10, 4, 4); // every draft kept
    expect(copying.acceptance).toBeGreaterThan(0.95);
    expect(copying.choose(1, cpu)).toBeGreaterThanOrEqual(5);
    // The longer the record of keeping, the longer the draft.
    expect(copying.choose(1, cpu)).toBeGreaterThan(fresh.choose(1, cpu));
  });

  it('the record fades: after a stretch of rejections and steps without drafts it tries again', () => {
    const d = after(10, 4, 0);
    expect(d.choose(1, cpu)).toBe(0);
    let steps = 0;
    while (d.choose(1, cpu) === 0 && steps < 100) {
      d.verified(0, 0);
      steps++;
    }
    expect(steps).toBeGreaterThan(3);
    expect(steps).toBeLessThan(40);
  });

  it('in a batch of other sequences a draft must be kept more often to pay', () => {
    const d = after(3, 4, 3); // acceptance ~0.8
    expect(d.choose(1, cpu)).toBeGreaterThan(0);
    expect(d.choose(8, cpu)).toBe(0);
    expect(after(10, 4, 4).choose(8, cpu)).toBeGreaterThan(0);
  });

  it('a draft that costs time to propose (a draft model) must save more than it costs', () => {
    const d = after(10, 4, 4);
    expect(d.choose(1, cpu)).toBeGreaterThan(0);
    d.proposed(4, 4 * 12); // a draft step costs more than a target pass
    expect(d.choose(1, cpu)).toBe(0);
    const cheap = after(10, 4, 4);
    cheap.proposed(4, 4 * 0.5); // a tenth of a target pass
    expect(cheap.choose(1, cpu)).toBeGreaterThan(0);
    expect(cheap.choose(1, cpu)).toBeLessThanOrEqual(d.max);
  });
});
