// Graph-level checks for the two bugs the seeds had (RoPE never applied; KV appended twice), the
// batched multi-sequence forward pass, and the up-front memory budget.
import { describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/model/model.js';
import { ModelError } from '../src/model/errors.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';

async function withModel<T>(fn: (m: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(await bundledModelPath(), { threads: 2 });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('llama graph', () => {
  it('applies RoPE: swapping two earlier tokens changes the last logits (attention alone is order-blind)', () => withModel(async (m) => {
    const [bos, x, y, z] = [m.tokenizer.bosId!, ...m.tokenizer.encode(' cat dog ran')];
    const a = await m.evaluate([bos, x, y, z]);
    const b = await m.evaluate([bos, y, x, z]);
    expect(maxAbsDiff(a[3], b[3])).toBeGreaterThan(1e-2);
  }));

  it('advances KV positions exactly once per token, in one batch or token by token', () => withModel(async (m) => {
    const tokens = m.tokenizer.encode('Once upon a time there was a cat', { addSpecial: true });
    const kv = m.graph.kv;
    kv.createSequence(1000);
    try {
      const batched = m.graph.forward(tokens.map((token) => ({ token, seqId: 1000, logits: true })));
      expect(kv.sequenceLength(1000)).toBe(tokens.length);
      kv.createSequence(1001);
      const stepwise = tokens.map((token) => m.graph.forward([{ token, seqId: 1001, logits: true }])[0]);
      expect(kv.sequenceLength(1001)).toBe(tokens.length);
      // Same positions, same keys: same logits whichever way the tokens went in.
      for (let i = 0; i < tokens.length; i++) expect(maxAbsDiff(batched[i], stepwise[i])).toBeLessThan(1e-4);
      kv.removeSequence(1001);
    } finally {
      kv.removeSequence(1000);
    }
    expect(kv.pool.usedCount).toBe(0);
  }));

  it('evaluates several sequences in one pass as if each ran alone', () => withModel(async (m) => {
    const p1 = m.tokenizer.encode('The cat sat', { addSpecial: true });
    const p2 = m.tokenizer.encode('Lily and Tom went to the park', { addSpecial: true });
    const alone1 = await m.evaluate(p1), alone2 = await m.evaluate(p2);
    const kv = m.graph.kv;
    kv.createSequence(7);
    kv.createSequence(8);
    try {
      // Interleave the two prompts in one batch.
      const batch = [...p2.map((token) => ({ token, seqId: 8, logits: true })), ...p1.map((token) => ({ token, seqId: 7, logits: true }))];
      const out = m.graph.forward(batch);
      p2.forEach((_, i) => expect(maxAbsDiff(out[i], alone2[i])).toBeLessThan(1e-4));
      p1.forEach((_, i) => expect(maxAbsDiff(out[p2.length + i], alone1[i])).toBeLessThan(1e-4));
    } finally {
      kv.removeSequence(7);
      kv.removeSequence(8);
    }
  }));

  it('refuses a model that cannot fit in wasm32 memory before allocating, naming the sizes', async () => {
    const err = await loadModel(await bundledModelPath(), { kvCacheTokens: 2 ** 31, contextLength: 2048 }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(err.code).toBe('TOO_LARGE');
    expect(err.message).toMatch(/KV cache \d+ MiB/);
  });
});
