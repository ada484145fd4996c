// Quantized KV caches (q8_0, q4_0: llama.cpp's -ctk/-ctv): what enters as a kvCacheType is checked
// at every door with a typed error naming the bad value and the allowed ones; a block cache takes
// its real bytes (34 / 18 bytes per 32 values: 0.53x / 0.28x of f16); a saved state round-trips in
// its own type and is refused by an engine of another. The numbers themselves are held to the op
// conformance suite (test/backend-ops.test.ts) and to llama.cpp (test/parity-llamacpp.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../src/backend/registry.js';
import { createEngine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import { KVCacheError } from '../src/kv/errors.js';
import { KVCache } from '../src/kv/kv-cache.js';
import { ModelError } from '../src/model/errors.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { writeSyntheticLlama } from './helpers/synthetic.js';

let dir: string;
let hd64: string;
let model: Model;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmforge-kvq-'));
  hd64 = join(dir, 'hd64.gguf');
  // head dim 64: whole blocks per head, and llama.cpp's 64-wide rotation of the cache
  await writeSyntheticLlama(hd64, { dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 256, type: GGMLType.Q8_0, vocab: 300, seed: 5, std: 0.08 });
  model = await loadModel(hd64, { threads: 1, kvCacheType: 'q8_0', contextLength: 256 });
});
afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('kvCacheType is checked where it enters', () => {
  it('loadModel: an unknown type is ModelError INVALID_OPTION naming it and the allowed ones, before any backend is made', async () => {
    for (const bad of ['q8', 'Q8_0', 'q5_k', '', 8]) {
      const err = await loadModel(hd64, { kvCacheType: bad as never }).catch((e: unknown) => e);
      expect(err, String(bad)).toBeInstanceOf(ModelError);
      expect((err as ModelError).code).toBe('INVALID_OPTION');
      expect((err as Error).message).toMatch(/f32, f16, q8_0, q4_0/);
      if (typeof bad === 'string') expect((err as Error).message).toContain(JSON.stringify(bad));
    }
  });

  it('a block cache over heads that are not whole 32-value blocks (stories260K: head dim 8) is UNSUPPORTED_OPTION / UNSUPPORTED', async () => {
    const stories = await bundledModelPath();
    await expect(loadModel(stories, { kvCacheType: 'q8_0' })).rejects.toMatchObject({ name: 'ModelError', code: 'UNSUPPORTED_OPTION', message: expect.stringMatching(/head dim 8/) });
    const m = await loadModel(stories, { threads: 1 });
    try {
      await expect(createEngine(m, { kvCacheType: 'q4_0' })).rejects.toMatchObject({ name: 'EngineError', code: 'UNSUPPORTED' });
    } finally {
      await m.dispose();
    }
  });

  it('createEngine: an unknown type is EngineError INVALID_OPTION; the KV cache itself refuses one too', async () => {
    const err = await createEngine(model, { kvCacheType: 'int8' as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringContaining('one of f32, f16, q8_0, q4_0, got "int8"') });
    const be = await createBackend('reference');
    try {
      expect(() => new KVCache(be, { nLayers: 1, kvDim: 64, blockSize: 16, nBlocks: 1, type: 'bf16' as never, maxSequenceLength: 16 })).toThrow(KVCacheError);
      expect(() => new KVCache(be, { nLayers: 1, kvDim: 48, headDim: 48, blockSize: 16, nBlocks: 1, type: 'q8_0', maxSequenceLength: 16 })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    } finally {
      await be.dispose();
    }
  });

  it('an engine defaults to its model\'s kvCacheType', async () => {
    const engine = await createEngine(model);
    try {
      expect(engine.graph.kv.options.type).toBe('q8_0');
    } finally {
      await engine.dispose();
    }
  });
});

describe('memory', () => {
  it('a block cache takes its real bytes: q8_0 34 and q4_0 18 per 32 values, against f16\'s 64', () => {
    const shape = { nLayers: 30, kvDim: 192, blockSize: 16, nBlocks: 256 };
    const f16 = KVCache.bytesNeeded({ ...shape, type: 'f16' });
    expect(KVCache.bytesNeeded({ ...shape, type: 'f32' })).toBe(2 * f16);
    expect(KVCache.bytesNeeded({ ...shape, type: 'q8_0' }) / f16).toBe(34 / 64);
    expect(KVCache.bytesNeeded({ ...shape, type: 'q4_0' }) / f16).toBe(18 / 64);
    // a byte budget buys correspondingly more blocks
    expect(KVCache.blocksForBudget({ ...shape, type: 'q8_0' }, { bytes: f16 })).toBe(Math.floor(64 / 34 * 256));
  });
});

describe('saved state of a quantized cache', () => {
  it('round-trips in its own type (generation continues bit for bit) and is STATE_MISMATCH for an f16 engine', async () => {
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 37) % 290));
    const request = { prompt: [...prompt, 7], maxTokens: 12, temperature: 0 };
    const first = await createEngine(model);
    const state = await first.saveState(prompt);
    const uninterrupted = await first.generate(request).result;
    await first.dispose();
    const fresh = await createEngine(model, { kvCacheType: 'q8_0' });
    try {
      expect(fresh.restoreState(state)).toEqual(prompt);
      const restored = await fresh.generate(request).result;
      expect(restored.usage.cachedPromptTokens).toBeGreaterThan(0);
      expect(restored.tokens).toEqual(uninterrupted.tokens);
    } finally {
      await fresh.dispose();
    }
    const f16 = await createEngine(model, { kvCacheType: 'f16' });
    try {
      expect(() => f16.restoreState(state)).toThrow(expect.objectContaining({ code: 'STATE_MISMATCH', message: expect.stringMatching(/q8_0/) }));
    } finally {
      await f16.dispose();
    }
  });
});
