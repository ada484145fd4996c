// The architectures beyond llama inside the runtime (their logits against llama.cpp are in
// parity-llamacpp.test.ts): each one's forward pass on the WASM and WebGPU backends against the
// scalar reference backend, the engine's batch invariance on it (a request's tokens and log-probs the same
// alone and beside others), and what its configuration means for the KV cache (gemma2's global
// layers keep every key, so no block is released and a sliding-window context shift is refused).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/errors.js';
import type { EngineRequest } from '../src/engine/types.js';
import { loadModel } from '../src/model/model.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { useSoftwareVulkanUnlessSet } from './helpers/webgpu.js';

useSoftwareVulkanUnlessSet();

const base = { dim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 256, vocab: 300, seed: 11, std: 0.08, contextLength: 256 };
const CASES: [string, Omit<SyntheticLlamaOptions, 'type' | 'vocab' | 'seed'>][] = [
  ['phi3', { ...base, arch: 'phi3' }],
  ['gemma', { ...base, arch: 'gemma', tiedEmbeddings: true }],
  ['gemma2', { ...base, arch: 'gemma2', tiedEmbeddings: true, slidingWindow: 8, attnSoftcap: 2, finalSoftcap: 5 }],
  ['gemma3', { ...base, arch: 'gemma3', tiedEmbeddings: true, slidingWindow: 8, slidingWindowPattern: 2, ropeFreqBase: 1000000 }],
  ['olmo2', { ...base, arch: 'olmo2' }],
  ['granite', { ...base, arch: 'granite', graniteScales: { embedding: 12, residual: 0.22, attention: 1 / 32, logit: 2 } }],
  ['smollm3', { ...base, nLayers: 4, arch: 'smollm3' }],
  ['llama rope_freqs', { ...base, ropeFreqs: true }],
  ['mixtral', { ...base, experts: { count: 4, used: 2, ffnDim: 256 } }],
  ['olmoe', { ...base, nKvHeads: 4, arch: 'olmoe', experts: { count: 4, used: 2, ffnDim: 256 } }],
  ['qwen2moe', { ...base, arch: 'qwen2moe', experts: { count: 4, used: 2, ffnDim: 64, sharedFfnDim: 192 } }],
  ['qwen3moe', { ...base, arch: 'qwen3moe', headDim: 64, experts: { count: 6, used: 3, ffnDim: 64 } }],
];

let dir: string;
/** Per case: F32 weights (compared with the reference backend) and Q8_0 (the engine; the tiled kernels). */
const files = new Map<string, { f32: string; q8: string }>();
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmforge-arch-'));
  for (const [name, shape] of CASES) {
    const path = (t: string) => join(dir, `${name.replace(/ /g, '-')}-${t}.gguf`);
    await writeSyntheticLlama(path('f32'), { ...shape, type: GGMLType.F32, vocab: 300, seed: 11 });
    await writeSyntheticLlama(path('q8'), { ...shape, type: GGMLType.Q8_0, vocab: 300, seed: 11 });
    files.set(name, { f32: path('f32'), q8: path('q8') });
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 37) % 290));

describe('architectures: WASM and WebGPU forward against the reference backend', () => {
  for (const [name] of CASES) for (const backend of ['wasm', 'webgpu'] as const) {
    it(`${name} on ${backend}: every position's logits within rounding of the reference (F32 weights)`, async () => {
      const wasm = await loadModel(files.get(name)!.f32, { threads: 2, kvCacheType: 'f32', backend });
      const ref = await loadModel(files.get(name)!.f32, { backend: 'reference', kvCacheType: 'f32' });
      try {
        const a = await wasm.evaluate(prompt), b = await ref.evaluate(prompt);
        let worst = 0, spread = 0;
        for (let p = 0; p < a.length; p++) {
          for (let i = 0; i < a[p].length; i++) worst = Math.max(worst, Math.abs(a[p][i] - b[p][i]));
          spread = Math.max(spread, Math.max(...b[p]) - Math.min(...b[p]));
        }
        // F32 weights: f32 rounding in another order apart, the same arithmetic (no activation
        // quantization, so no expert choice flips at a near-tie). A wrong op (a missed expert, a
        // window ignored, a soft-cap left out) moves logits by a good part of their spread.
        expect(worst).toBeLessThan(1e-4 * spread);
        expect(spread).toBeGreaterThan(1);
      } finally {
        await wasm.dispose();
        await ref.dispose();
      }
    });
  }
});

describe('architectures in the engine', () => {
  for (const [name] of CASES) {
    it(`${name}: 4 seeded requests give the same tokens and log-probs alone and together`, async () => {
      const model = await loadModel(files.get(name)!.q8, { threads: 2 });
      const engine = await createEngine(model, { kvCacheTokens: 1024, blockSize: 8, prefixCacheEntries: 0 });
      try {
        const requests: EngineRequest[] = Array.from({ length: 4 }, (_, i) => ({
          prompt: prompt.slice(0, 5 + 9 * i), maxTokens: 20, temperature: 1, seed: i, ignoreEos: true, logprobs: true,
        }));
        const alone = [];
        for (const r of requests) alone.push(await engine.generate(r).result);
        const together = await Promise.all(requests.map((r) => engine.generate(r).result));
        together.forEach((r, i) => {
          expect(r.tokens).toEqual(alone[i].tokens);
          expect(r.completions[0].logprobs).toEqual(alone[i].completions[0].logprobs);
        });
      } finally {
        await engine.dispose();
        await model.dispose();
      }
    });
  }

  it('gemma2: global layers keep every key (no block released), and a sliding-window context shift is refused', async () => {
    const model = await loadModel(files.get('gemma2')!.q8, { threads: 1 });
    try {
      expect(model.config.slidingWindow).toBe(8);
      expect(model.config.windowedLayers).toEqual([true, false]);
      await expect(createEngine(model, { contextShift: 'sliding-window' })).rejects.toThrow(EngineError);
      const engine = await createEngine(model, { kvCacheTokens: 256, blockSize: 4 });
      const r = await engine.generate({ prompt, maxTokens: 30, temperature: 0, ignoreEos: true }).result;
      expect(r.tokens.length).toBe(30);
      // 40 + 30 tokens in blocks of 4: all of them held until the sequence ends (a window of 8 alone would hold ~3).
      expect(engine.graph.kv.options.slidingWindow).toBeUndefined();
      await engine.dispose();
    } finally {
      await model.dispose();
    }
  });
});
