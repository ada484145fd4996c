// Perplexity as llama.cpp's perplexity tool computes it (windows of ctx tokens, BOS first, second half
// scored): our figure, and the same windows scored from llama.cpp's own logits, agree to 0.1%.
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/model/model.js';
import { perplexity } from '../src/model/perplexity.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppNextTokenLogits, logSoftmax } from './oracle/llama-cpp.js';

const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveLlamaCpp) console.warn('perplexity: node-llama-cpp cannot load here, skipping the llama.cpp comparison');
const TEXT = readFileSync(new URL('./fixtures/story.txt', import.meta.url), 'utf8');
const MODELS = ['models/stories260K.gguf', '../shared/models/stories260K-q8_0.gguf', '../shared/models/stories260K-q4_0.gguf'].filter(existsSync);

describe.skipIf(!haveLlamaCpp)('perplexity matches llama.cpp', () => {
  afterAll(disposeLlamaCpp);
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
      expect(Math.abs(ours.perplexity - theirs) / theirs).toBeLessThan(0.001);
    });
  }
});
