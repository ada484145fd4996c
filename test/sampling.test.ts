import { describe, expect, it } from 'vitest';
import { StopStringMatcher } from '../src/generation/stop-strings.js';
import { Sampler, SamplingError } from '../src/sampling/sampler.js';
import { SeededRandom } from '../src/sampling/rng.js';

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
