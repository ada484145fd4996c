import { describe, expect, it } from 'vitest';
import { StopStringMatcher } from '../src/generation/stop-strings.js';
import { Sampler, SamplingError } from '../src/sampling/sampler.js';
import { SeededRandom } from '../src/sampling/rng.js';
import type { Candidates, LogitsProcessor, TopLogits } from '../src/generation/logits-processor.js';

function randomLogits(n: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 10);
}

describe('Sampler', () => {
  it('greedy picks the arg max, lowest id on ties', () => {
    const s = new Sampler({ temperature: 0 });
    expect(s.sample(Float32Array.from([1, 5, 3, 5]), [])).toBe(1);
  });

  it('same seed, same tokens; another seed, other tokens', () => {
    const logits = randomLogits(1000, 1);
    const draw = (seed: number) => {
      const s = new Sampler({ temperature: 1.5, topK: 0, topP: 1, minP: 0, seed });
      return Array.from({ length: 50 }, () => s.sample(logits, []));
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
  });

  it('top-k keeps only the k best tokens', () => {
    const logits = randomLogits(500, 2);
    const best = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 3);
    const s = new Sampler({ temperature: 5, topK: 3, topP: 1, minP: 0, seed: 9 });
    for (let i = 0; i < 200; i++) expect(best).toContain(s.sample(logits, []));
  });

  it('top-p keeps the smallest set reaching p', () => {
    // probabilities 0.5, 0.3, 0.2: p = 0.7 keeps two tokens
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    const s = new Sampler({ temperature: 1, topK: 0, topP: 0.7, minP: 0, seed: 3 });
    const seen = new Set(Array.from({ length: 300 }, () => s.sample(logits, [])));
    expect([...seen].sort()).toEqual([0, 1]);
  });

  it('min-p drops tokens below minP * p(max)', () => {
    const logits = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)]);
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0.2, seed: 3 });
    const seen = new Set(Array.from({ length: 300 }, () => s.sample(logits, [])));
    expect([...seen].sort()).toEqual([0, 1]);
  });

  it('draws in proportion to softmax(logits / T)', () => {
    const logits = Float32Array.from([0, Math.log(3)]); // p = 1/4, 3/4 at T = 1
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: 11 });
    let ones = 0;
    for (let i = 0; i < 20000; i++) ones += s.sample(logits, []);
    expect(ones / 20000).toBeCloseTo(0.75, 1);
  });

  it('repetition, frequency and presence penalties act on the window only', () => {
    const logits = Float32Array.from([2, 1.9, -1]);
    expect(new Sampler({ temperature: 0, repeatPenalty: 1.1 }).sample(logits, [0])).toBe(1);
    expect(new Sampler({ temperature: 0, repeatPenalty: 1.1, penaltyWindow: 1 }).sample(logits, [0, 2])).toBe(0);
    expect(new Sampler({ temperature: 0, frequencyPenalty: 0.06 }).sample(logits, [0, 0])).toBe(1);
    expect(new Sampler({ temperature: 0, frequencyPenalty: 0.06 }).sample(logits, [0])).toBe(0);
    expect(new Sampler({ temperature: 0, presencePenalty: 0.2 }).sample(logits, [0, 0, 0])).toBe(1);
  });

  it('logit bias can ban tokens; banning everything is a typed error', () => {
    const logits = Float32Array.from([3, 2, 1]);
    expect(new Sampler({ temperature: 0, logitBias: { 0: -Infinity } }).sample(logits, [])).toBe(1);
    expect(new Sampler({ temperature: 0.7, seed: 1, logitBias: new Map([[0, -Infinity], [1, -Infinity]]) }).sample(logits, [])).toBe(2);
    const all = { 0: -Infinity, 1: -Infinity, 2: -Infinity };
    expect(() => new Sampler({ temperature: 0, logitBias: all }).sample(logits, [])).toThrow(SamplingError);
  });

  it('rejects invalid options with a typed error', () => {
    expect(() => new Sampler({ topP: 0 })).toThrow(SamplingError);
    expect(() => new Sampler({ topK: -1 })).toThrow(SamplingError);
    expect(() => new Sampler({ temperature: NaN })).toThrow(SamplingError);
    expect(() => new Sampler({ repeatPenalty: 0 })).toThrow(SamplingError);
  });
});

describe('Sampler from top-k candidates (what the backend topK gives back)', () => {
  /** The row's k largest logits, by a sort: larger first, equal ones by the lower id. */
  const topOf = (row: Float32Array, k: number): TopLogits => {
    const order = Array.from(row.keys()).sort((a, b) => (row[a] === row[b] ? a - b : row[b] - row[a])).slice(0, k);
    return { ids: Int32Array.from(order), logits: Float32Array.from(order, (i) => row[i]) };
  };
  /** Rows of 300 logits: spread out, rounded (ties across the k-th place), peaked, with banned tokens. */
  const rows = (seed: number): Float32Array[] => {
    const a = randomLogits(300, seed), b = a.map((v) => Math.round(v / 2)), c = a.map((v, i) => (i === seed % 300 ? 20 : v));
    const d = a.slice();
    for (let i = 0; i < 300; i += 3) d[i] = -Infinity;
    return [a, b, c, d];
  };
  const settings = [
    { temperature: 0.8, topK: 40 }, // the defaults' top-p and min-p
    { temperature: 1.5, topK: 5, topP: 1, minP: 0 },
    { temperature: 0.3, topK: 1 },
    { temperature: 2, topK: 120, topP: 0.5, minP: 0.02 },
    { temperature: 1, topK: 1000, topP: 1, minP: 0 }, // k past the vocabulary: every token
    { temperature: 1, topK: 7, penaltyWindow: 0, repeatPenalty: 1.3 }, // no window: no penalty
  ];

  it('for 200 seeds, each option set and row: the same tokens, distributions and speculative choices as from the whole row', () => {
    for (const [si, options] of settings.entries()) {
      for (let seed = 0; seed < 200; seed++) {
        const whole = new Sampler({ ...options, seed }), top = new Sampler({ ...options, seed });
        const k = top.candidatesNeeded!;
        expect(k, JSON.stringify(options)).toBe(options.topK);
        for (const row of rows(seed * 7 + si)) {
          const cands = topOf(row, k);
          const label = `${JSON.stringify(options)} seed ${seed}`;
          expect(top.sample(cands, [1, 2]), label).toBe(whole.sample(row, [1, 2]));
          expect(top.distribution(cands, []), label).toEqual(whole.distribution(row, []));
          const a = top.sampleWithDistribution(cands, []), b = whole.sampleWithDistribution(row, []);
          expect(a, label).toEqual(b);
          expect(top.speculate(cands, [], a.token ^ 1, a.distribution), label).toBe(whole.speculate(row, [], a.token ^ 1, b.distribution));
        }
      }
    }
  });

  it('only a sampler whose first step over the row is top-k takes candidates', () => {
    expect(new Sampler({ temperature: 0.7, topK: 12 }).candidatesNeeded).toBe(12);
    expect(new Sampler({}).candidatesNeeded).toBe(40);
    for (const options of [
      { temperature: 0 }, { temperature: 0.7, topK: 0 }, { temperature: 0.7, logitBias: { 3: 1 } }, { temperature: 0.7, repeatPenalty: 1.1 },
      { temperature: 0.7, frequencyPenalty: 0.5 }, { temperature: 0.7, presencePenalty: 0.5 }, { temperature: 0.7, logitsProcessors: () => [{ process() {} }] },
    ]) {
      const s = new Sampler(options);
      expect(s.candidatesNeeded, JSON.stringify(options)).toBeUndefined();
      expect(() => s.sample(topOf(randomLogits(50, 1), 10), []), JSON.stringify(options)).toThrow(SamplingError);
    }
  });
});

describe('StopStringMatcher', () => {
  it('finds stop strings that span pushes and holds back possible prefixes', () => {
    const m = new StopStringMatcher(['</end>']);
    expect(m.push('hello </')).toEqual({ emit: 'hello ', stopped: false });
    expect(m.push('en')).toEqual({ emit: '', stopped: false });
    expect(m.push('d> more')).toEqual({ emit: '', stopped: true });
  });

  it('releases held text when the stop string does not complete', () => {
    const m = new StopStringMatcher(['STOP']);
    expect(m.push('a ST')).toEqual({ emit: 'a ', stopped: false });
    expect(m.push('x')).toEqual({ emit: 'STx', stopped: false });
    expect(m.push('ST')).toEqual({ emit: '', stopped: false });
    expect(m.flush()).toBe('ST');
  });

  it('cuts at the earliest of several stop strings', () => {
    const m = new StopStringMatcher(['bb', 'a']);
    expect(m.push('xxbbya')).toEqual({ emit: 'xx', stopped: true });
  });
});

describe('logits processors', () => {
  /** Bans every token but the allowed ones; records what it was told. */
  class Allow implements LogitsProcessor {
    accepted: number[] = [];
    constructor(private readonly allowed: Set<number>) {}
    process(c: Candidates): void {
      for (let i = 0; i < c.size; i++) if (!this.allowed.has(c.ids[i])) c.logits[i] = -Infinity;
    }
    accept(token: number): void {
      this.accepted.push(token);
    }
  }

  it('a mask in the chain decides among the tokens it allows, greedy and sampled, and is told each choice', () => {
    const logits = randomLogits(300, 11);
    const allowed = new Set([7, 42, 199]);
    for (const temperature of [0, 1.2]) {
      const made: Allow[] = [];
      const s = new Sampler({ temperature, seed: 5, topK: 40, topP: 1, minP: 0, logitsProcessors: () => [made[made.length] = new Allow(allowed)] });
      const picks = Array.from({ length: 40 }, () => s.sample(logits, []));
      expect(made.length).toBe(1);
      expect(picks.every((t) => allowed.has(t))).toBe(true);
      expect(made[0].accepted).toEqual(picks);
      if (temperature === 0) expect(picks[0]).toBe([...allowed].sort((a, b) => logits[b] - logits[a])[0]);
      else expect(new Set(picks).size).toBeGreaterThan(1);
    }
  });

  it('a mask that allows nothing is a typed error', () => {
    const s = new Sampler({ temperature: 0, logitsProcessors: () => [new Allow(new Set())] });
    expect(() => s.sample(randomLogits(10, 1), [])).toThrow(SamplingError);
  });

  it('distribution() is what sample() draws from: one-hot when greedy, the truncated softmax otherwise', () => {
    const logits = randomLogits(200, 3);
    expect(new Sampler({ temperature: 0 }).distribution(logits, [])).toEqual({ ids: Int32Array.of(logits.indexOf(Math.max(...logits))), probs: Float64Array.of(1) });
    const opts = { temperature: 0.9, topK: 5, topP: 1, minP: 0 };
    const { ids, probs } = new Sampler(opts).distribution(logits, []);
    expect(ids.length).toBe(5);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    // the math done another way: softmax of the 5 best logits / temperature
    const best = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 5);
    const z = best.reduce((a, t) => a + Math.exp((logits[t] - logits[best[0]]) / 0.9), 0);
    best.forEach((t, i) => {
      expect(ids[i]).toBe(t);
      expect(probs[i]).toBeCloseTo(Math.exp((Math.fround(logits[t] / 0.9) - Math.fround(logits[best[0]] / 0.9))) / z, 6);
    });
    // and the draws follow it
    const s = new Sampler({ ...opts, seed: 1 });
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) { const t = s.sample(logits, []); counts.set(t, (counts.get(t) ?? 0) + 1); }
    ids.forEach((t, i) => expect(Math.abs((counts.get(t) ?? 0) / 4000 - probs[i])).toBeLessThan(0.03));
  });

  it('refuses processors that are not made by a function', () => {
    expect(() => new Sampler({ logitsProcessors: [new Allow(new Set([1]))] as never })).toThrow(SamplingError);
    expect(() => new Sampler({ logitsProcessors: () => [{}] as never })).toThrow(SamplingError);
  });
});

describe('Sampler.speculate (speculative sampling)', () => {
  // p: the target's distribution (top 6: tokens 0..5); q: a draft's, far from it: its favourite is
  // p's fifth, it gives token 6 (impossible under p) mass and token 5 none, so p's token 5 comes
  // only from rejections' residual draws. Draws of x ~ q verified by speculate() must be
  // distributed as p: one Sampler per draw (each seed its own stream), 100000 draws.
  const target = Float32Array.from([2, 1.5, 1, 0.5, 0, -0.5, -3, -3]);
  const draftLogits = Float32Array.from([0, 0.5, 0, 0, 1.5, -3, 1, -3]);
  const options = { temperature: 0.9, topK: 6, topP: 1, minP: 0 };

  it('keeps the target distribution whatever the draft proposes (chi-square, alpha 1e-3), and keeps the draft where it can', () => {
    const N = 100_000;
    const p = new Sampler(options).distribution(target, []);
    const counts = new Map<number, number>();
    let kept = 0;
    for (let seed = 0; seed < N; seed++) {
      const { token: x, distribution: q } = new Sampler({ ...options, seed: seed ^ 0x5f3759df }).sampleWithDistribution(draftLogits, []);
      const t = new Sampler({ ...options, seed }).speculate(target, [], x, q);
      if (t === x) kept++;
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    let chi = 0;
    for (let i = 0; i < p.ids.length; i++) chi += ((counts.get(p.ids[i]) ?? 0) - N * p.probs[i]) ** 2 / (N * p.probs[i]);
    expect([...counts.keys()].every((t) => p.ids.includes(t))).toBe(true);
    expect(chi).toBeLessThan(20.5); // chi-square, 5 df, upper 1e-3 quantile
    // The chance of keeping the draft is sum over x of min(p(x), q(x)) = 1 - TV(p, q).
    const q = new Sampler(options).distribution(draftLogits, []);
    let overlap = 0;
    for (let i = 0; i < p.ids.length; i++) overlap += Math.min(p.probs[i], q.probs[q.ids.indexOf(p.ids[i])] ?? 0);
    expect(Math.abs(kept / N - overlap)).toBeLessThan(5 * Math.sqrt(overlap * (1 - overlap) / N));
  });

  it('greedy: the argmax; the same draft, distribution and seed: the same choice', () => {
    expect(new Sampler({ temperature: 0 }).speculate(target, [], 3, { ids: Int32Array.of(3), probs: Float64Array.of(1) })).toBe(0);
    const q = new Sampler(options).distribution(draftLogits, []);
    const picks = (seed: number) => Array.from({ length: 20 }, (_, i) => new Sampler({ ...options, seed: seed + i }).speculate(target, [], 4, q));
    expect(picks(7)).toEqual(picks(7));
  });
});
