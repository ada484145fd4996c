// Graph-level checks for the two bugs the seeds had (RoPE never applied; KV appended twice), the
// batched multi-sequence forward pass, the up-front memory budget, and sliding-window attention
// against the plain reference forward with a window mask.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MAX_TOP_K, subTensor, type Backend } from '../src/backend/backend.js';
import { createBackend } from '../src/backend/registry.js';
import { createEngine } from '../src/engine/engine.js';
import { KVCacheError } from '../src/kv/errors.js';
import { KVCache, RELEASED_BLOCK } from '../src/kv/kv-cache.js';
import type { BatchToken } from '../src/model/graph.js';
import { loadModel, type Model } from '../src/model/model.js';
import { ModelError } from '../src/model/errors.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { Sampler } from '../src/sampling/sampler.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { swaModels, type SwaModels } from './helpers/swa-model.js';
import { loadLlamaReference } from './reference/llama-reference.js';

async function withModel<T>(fn: (m: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(await bundledModelPath(), { threads: 2 });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/** The backend, reporting a smaller largest tensor (as a GPU's binding limit would). */
function withTensorLimit(be: Backend, maxTensorBytes: number): Backend {
  const capabilities = { ...be.capabilities, maxTensorBytes };
  return new Proxy(be, {
    get: (target, key) => {
      if (key === 'capabilities') return capabilities;
      const v = Reflect.get(target, key);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
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
      const batched = await m.graph.forward(tokens.map((token) => ({ token, seqId: 1000, logits: true })));
      expect(kv.sequenceLength(1000)).toBe(tokens.length);
      kv.createSequence(1001);
      const stepwise: Float32Array[] = [];
      for (const token of tokens) stepwise.push((await m.graph.forward([{ token, seqId: 1001, logits: true }]))[0]);
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
      const out = await m.graph.forward(batch);
      p2.forEach((_, i) => expect(maxAbsDiff(out[i], alone2[i])).toBeLessThan(1e-4));
      p1.forEach((_, i) => expect(maxAbsDiff(out[p2.length + i], alone1[i])).toBeLessThan(1e-4));
    } finally {
      kv.removeSequence(7);
      kv.removeSequence(8);
    }
  }));

  it("positions asking for 'argmax' get the token id a greedy sampler picks from the row; the others their rows", () => withModel(async (m) => {
    const tokens = m.tokenizer.encode('Lily and Tom went to the park. They saw a big dog', { addSpecial: true });
    const rows = await m.evaluate(tokens);
    const kv = m.graph.kv;
    kv.createSequence(9);
    try {
      // Every other position asks for the argmax only, the rest for rows; then all argmax (ids alone come back).
      const mixed = await m.graph.forward(tokens.map((token, i) => ({ token, seqId: 9, logits: i % 2 ? 'argmax' : true }) as BatchToken));
      kv.truncate(9, 0);
      const ids = await m.graph.forward(tokens.map((token) => ({ token, seqId: 9, logits: 'argmax' }) as BatchToken));
      const greedy = new Sampler({ temperature: 0 });
      expect(greedy.picksArgmax).toBe(true);
      rows.forEach((row, i) => {
        const want = greedy.sample(row, []);
        expect(ids[i]).toBe(want);
        if (i % 2) expect(mixed[i]).toBe(want);
        else expect(Array.from(mixed[i] as Float32Array)).toEqual(Array.from(row));
      });
      // Ties and NaN: the first of equal maxima wins, a NaN after the first place never does (as the sampler's strict scan).
      const be = m.backend;
      const x = be.allocate(GGMLType.F32, [4, 3]), out = be.allocate(GGMLType.I32, [3]);
      be.upload(x, Float32Array.of(1, 5, 5, 2, 2, NaN, 3, 1, -Infinity, -Infinity, -Infinity, -Infinity));
      be.argmax(out, x, 4, 3);
      const got = await be.read(out);
      expect(Array.from(new Int32Array(got.buffer, got.byteOffset, 3))).toEqual([1, 2, 0]);
      expect(new Sampler({ temperature: 0, repeatPenalty: 1.1 }).picksArgmax).toBe(false);
      expect(new Sampler({ temperature: 0, logitBias: { 3: 1 } }).picksArgmax).toBe(false);
      expect(new Sampler({ temperature: 0.5 }).picksArgmax).toBe(false);
    } finally {
      kv.removeSequence(9);
    }
  }));

  it("positions asking for { topK: k } get the row's k largest logits with their ids (a sort of the row); a row holding a NaN comes back whole", () => withModel(async (m) => {
    const tokens = m.tokenizer.encode('Lily and Tom went to the park. They saw a big dog', { addSpecial: true });
    const rows = await m.evaluate(tokens);
    const kv = m.graph.kv;
    kv.createSequence(10);
    try {
      const asks = tokens.map((_, i) => ([true, 'argmax', { topK: 1 }, { topK: 40 }, { topK: MAX_TOP_K }] as const)[i % 5]);
      const out = await m.graph.forward(tokens.map((token, i) => ({ token, seqId: 10, logits: asks[i] })));
      rows.forEach((row, i) => {
        const a = asks[i];
        if (typeof a === 'object') {
          const order = Array.from(row.keys()).sort((x, y) => (row[x] === row[y] ? x - y : row[y] - row[x])).slice(0, a.topK);
          expect(out[i], `position ${i}`).toEqual({ ids: Int32Array.from(order), logits: Float32Array.from(order, (t) => row[t]) });
        } else if (a === 'argmax') expect(out[i]).toBe(new Sampler({ temperature: 0 }).sample(row, []));
        else expect(Array.from(out[i] as Float32Array)).toEqual(Array.from(row));
      });
      await expect(m.graph.forward([{ token: tokens[0], seqId: 10, logits: { topK: MAX_TOP_K + 1 } }])).rejects.toThrow(RangeError);
      expect(kv.sequenceLength(10)).toBe(tokens.length); // refused before it took a position

      // A NaN in the second row (written just before the op): that row comes back whole, NaN and all.
      const be = m.backend, topK = be.topK.bind(be);
      const spy = vi.spyOn(be, 'topK').mockImplementation((ids, values, x, n, nRows, k) => {
        be.upload(subTensor(x, 4 * (n + 7), GGMLType.F32, [1]), Float32Array.of(NaN));
        topK(ids, values, x, n, nRows, k);
      });
      try {
        const got = await m.graph.forward(tokens.slice(0, 3).map((token) => ({ token, seqId: 10, logits: { topK: 8 } })));
        expect(spy).toHaveBeenCalledTimes(1);
        expect(got[0]).not.toBeInstanceOf(Float32Array);
        expect(got[2]).not.toBeInstanceOf(Float32Array);
        expect(got[1]).toBeInstanceOf(Float32Array);
        expect(Number.isNaN((got[1] as Float32Array)[7])).toBe(true);
      } finally {
        spy.mockRestore();
      }
    } finally {
      kv.removeSequence(10);
    }
  }));

  it('a batch asking for more rows than one pass of the output head holds runs it in passes: the same rows, argmax and top k', async () => {
    const be = await createBackend('wasm', { threads: 2 });
    // 5 rows of the 512-token vocabulary per pass (the KV pool of 128 tokens still fits the limit)
    const limited = await loadModel(await bundledModelPath(), { backend: withTensorLimit(be, 5 * 4 * 512), contextLength: 128 });
    const plain = await loadModel(await bundledModelPath(), { threads: 2, contextLength: 128 });
    try {
      expect(limited.graph.logitsRows).toBe(5);
      expect(plain.graph.logitsRows).toBe(plain.graph.maxBatchTokens);
      const tokens = plain.tokenizer.encode('Lily and Tom went to the park. They saw a big dog', { addSpecial: true });
      expect(tokens.length).toBeGreaterThan(10); // three passes at least
      const asks = tokens.map((_, i) => ([true, 'argmax', { topK: 3 }, true, { topK: 40 }, 'argmax', true] as const)[i % 7]);
      const got = [];
      for (const m of [plain, limited]) {
        m.graph.kv.createSequence(11);
        const matmul = vi.spyOn(m.backend, 'matmul');
        try {
          got.push(await m.graph.forward(tokens.map((token, i) => ({ token, seqId: 11, logits: asks[i] }))));
          expect(matmul.mock.calls.filter(([, w]) => w === m.weights.output).length).toBe(m === plain ? 1 : Math.ceil(tokens.length / 5));
        } finally {
          matmul.mockRestore();
          m.graph.kv.removeSequence(11);
        }
      }
      expect(got[1]).toEqual(got[0]);
      expect(got[0][0]).toBeInstanceOf(Float32Array);
    } finally {
      await limited.dispose();
      await plain.dispose();
      await be.dispose();
    }
  });

  it("a KV cache whose layers are over the backend's largest tensor: loadModel refuses it before loading weights; the engine's default pool shrinks to fit, one asked for is refused", async () => {
    const be = await createBackend('wasm', { threads: 1 });
    try {
      // an f16 row of the 32-value kv dim is 64 bytes: a 4096-byte limit holds 64 tokens per layer
      const uploads = vi.spyOn(be, 'uploadFrom');
      const err = await loadModel(await bundledModelPath(), { backend: withTensorLimit(be, 4096), contextLength: 256 }).catch((e) => e);
      expect(err).toBeInstanceOf(ModelError);
      expect(err.code).toBe('TOO_LARGE');
      expect(err.message).toMatch(/at most 64\b/);
      expect(uploads).not.toHaveBeenCalled();
      uploads.mockRestore();

      const model = await loadModel(await bundledModelPath(), { backend: withTensorLimit(be, 4096), contextLength: 64 });
      try {
        const engine = await createEngine(model, { prefixCacheEntries: 0 }); // four sequences by default: 256 tokens
        expect(engine.contextLength).toBe(64);
        const out = await engine.generate({ prompt: 'Once upon a time', maxTokens: 8, temperature: 0 }).result;
        expect(out.tokens.length).toBe(8);
        await engine.dispose();
        const asked = await createEngine(model, { kvCacheTokens: 256 }).catch((e) => e);
        expect(asked).toBeInstanceOf(KVCacheError);
        expect(asked.code).toBe('TOO_LARGE');
      } finally {
        await model.dispose();
      }
    } finally {
      await be.dispose();
    }
  });

  it('refuses a model that cannot fit in wasm32 memory before allocating, naming the sizes', async () => {
    const err = await loadModel(await bundledModelPath(), { kvCacheTokens: 2 ** 31, contextLength: 2048 }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(err.code).toBe('TOO_LARGE');
    expect(err.message).toMatch(/KV cache \d+ MiB/);
  });
});

describe('sliding-window attention (window 12, KV blocks of 4)', () => {
  let models: SwaModels;
  beforeAll(async () => {
    models = await swaModels();
  });
  afterAll(() => models?.dispose());

  const W = 12, BS = 4;
  /** Fixed token streams inside the 512-token vocab. */
  const stream = (seed: number, n: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 97 + seed * 31 + ((i * i) % 13)) % 500));
  const nmse = (a: Float32Array, b: Float32Array) => {
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
    return num / den;
  };
  /** Logits of the plain reference forward (its own full cache, window as a mask) for every position. */
  async function referenceLogits(path: string, tokens: number[], window?: number): Promise<Float32Array[]> {
    const ref = await loadLlamaReference(path, { maxSeq: tokens.length, window });
    return tokens.map((t, p) => ref.forward(t, p));
  }

  it('takes the window from the file and keeps the model\'s context', async () => {
    const m = await loadModel(await models.path(W), { threads: 1, contextLength: 200 });
    try {
      expect(m.config.slidingWindow).toBe(W);
      expect(m.config.contextLength).toBe(256);
      expect(m.contextLength).toBe(200);
      expect(m.graph.kv.options.slidingWindow).toBe(W);
    } finally {
      await m.dispose();
    }
    const whole = await loadModel(await models.path(256), { threads: 1 }); // a window covering the context is none
    try {
      expect(whole.config.slidingWindow).toBeUndefined();
    } finally {
      await whole.dispose();
    }
  });

  for (const kvCacheType of ['f32', 'f16'] as const) {
    it(`two sequences 60 tokens past the window, batched prefill and decode, ${kvCacheType} cache: every step matches the reference forward; blocks stay bounded and all return`, async () => {
      const path = await models.path(W);
      const a = stream(1, 60), b = stream(2, 45);
      const wantA = await referenceLogits(path, a), wantB = await referenceLogits(path, b);
      // the test can tell: without the mask the reference differs well past the window
      const unmasked = await referenceLogits(path, a, 10_000);
      expect(nmse(unmasked[59], wantA[59])).toBeGreaterThan(1e-3);
      expect(nmse(unmasked[W - 1], wantA[W - 1])).toBe(0);

      // 12 blocks (48 tokens): less than one sequence without releases
      const m = await loadModel(path, { threads: 2, kvBlockSize: BS, kvCacheType, kvCacheTokens: 48, maxBatchTokens: 32 });
      // worst per-position logit NMSE: f32 rounding only (measured 1e-12); K/V rounded to f16 (measured 4e-7)
      const bound = kvCacheType === 'f32' ? 1e-10 : 2e-6;
      try {
        const kv = m.graph.kv;
        kv.createSequence(1);
        kv.createSequence(2);
        const got: [Float32Array[], Float32Array[]] = [[], []];
        let held = 0;
        const step = async (batch: BatchToken[]) => {
          const out = await m.graph.forward(batch);
          batch.forEach((t, i) => got[t.seqId - 1].push(out[i]));
          for (const id of [1, 2]) {
            // released after the pass: what the next token's window needs, no whole block more
            expect(kv.heldBlocks(id)).toBeLessThanOrEqual(KVCache.windowBlocks(W, BS, 0));
            expect(kv.releasedBlocks(id)).toBe(Math.floor(kv.firstKey(kv.sequenceLength(id)) / BS));
          }
          held = Math.max(held, kv.pool.usedCount);
        };
        const tok = (seqId: number, token: number): BatchToken => ({ token, seqId, logits: true });
        await step(a.slice(0, 20).map((t) => tok(1, t))); // prefill past the window in one pass
        for (let p = 20; p < 60; p++) {
          const batch = [tok(1, a[p])];
          if (p === 25) batch.push(...b.slice(0, 10).map((t) => tok(2, t))); // b's prompt beside a's decode
          else if (p > 25 && p - 16 < 45) batch.push(tok(2, b[p - 16]));
          await step(batch);
        }
        expect(got[0].length).toBe(60);
        expect(got[1].length).toBe(44);
        got[0].forEach((g, p) => expect(nmse(g, wantA[p]), `a at ${p}`).toBeLessThanOrEqual(bound));
        got[1].forEach((g, p) => expect(nmse(g, wantB[p]), `b at ${p}`).toBeLessThanOrEqual(bound));
        expect(held).toBeLessThanOrEqual(12);
        expect(kv.blockTable(1).slice(0, kv.releasedBlocks(1)).every((e) => e === RELEASED_BLOCK)).toBe(true);
        expect(kv.releasedBlocks(1)).toBe(12); // next at 60 attends to 49..: positions 0..47 released
        kv.removeSequence(1);
        kv.removeSequence(2);
        expect(kv.pool.usedCount).toBe(0);
      } finally {
        await m.dispose();
      }
    });
  }

  it('generate runs far past the window in a pool of one window, token for token as evaluate', async () => {
    const m = await loadModel(await models.path(W), { threads: 2, kvBlockSize: BS, maxBatchTokens: 8 });
    try {
      expect(m.graph.kv.capacityTokens).toBeLessThan(40); // the default pool: a window and a batch
      const prompt = stream(3, 10);
      const r = await m.generate(prompt, { maxTokens: 80, temperature: 0, ignoreEos: true }).result;
      expect(r.tokens.length).toBe(80);
      const logits = await m.evaluate([...prompt, ...r.tokens.slice(0, -1)]);
      r.tokens.forEach((t, i) => {
        const row = logits[prompt.length - 1 + i];
        expect(row.indexOf(Math.max(...row))).toBe(t);
      });
      // Finished sequences stay in the prefix cache; dropping it returns every block.
      m.engine().clearPrefixCache();
      expect(m.graph.kv.pool.usedCount).toBe(0);
    } finally {
      await m.dispose();
    }
  });

  it('a window no shorter than the sequence gives the logits of no window, bit for bit', async () => {
    const tokens = stream(4, 60);
    const run = async (window: number | undefined) => {
      const m = await loadModel(await models.path(window), { threads: 2, kvBlockSize: BS, maxBatchTokens: 16 });
      try {
        expect(m.config.slidingWindow).toBe(window);
        return await m.evaluate(tokens);
      } finally {
        await m.dispose();
      }
    };
    const plain = await run(undefined);
    for (const window of [60, 64]) {
      const windowed = await run(window);
      windowed.forEach((row, p) => expect(new Uint32Array(row.buffer), `window ${window}, position ${p}`).toEqual(new Uint32Array(plain[p].buffer)));
    }
  });
});
