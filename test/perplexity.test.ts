// Perplexity as llama.cpp's perplexity tool computes it (windows of ctx tokens, BOS first, second half
// scored): our figure against the same windows scored from llama.cpp's own logits.
//
// The bound is llama.cpp's own noise, measured in the same run on this CPU (test/oracle/noise.ts):
// how far its perplexity moves when the windows are evaluated a token at a time, or on copies of
// the model whose norm weights move by a float32-rounding-sized amount. Our figure may differ from
// llama.cpp's by NOISE_FACTOR times that. (Fixed bounds measured on one CPU did not hold: llama.cpp's
// AVX2 kernels put Q8_0 at 0.19% and Q4_0 at 0.09% from ours, against 0.2% and 0.1% bounds set on
// an AVX-512 machine.) Ours is also held to the exact math (f64, dequantized weights, unquantized
// activations), which is the same on every CPU.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/model/model.js';
import { perplexity } from '../src/model/perplexity.js';
import { loadLlamaReference } from './reference/llama-reference.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppNextTokenLogits, logSoftmax } from './oracle/llama-cpp.js';
import { perturbationNoise } from './oracle/noise.js';

const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveLlamaCpp) console.warn('perplexity: node-llama-cpp cannot load here, skipping the llama.cpp comparison');
const TEXT = readFileSync(new URL('./fixtures/story.txt', import.meta.url), 'utf8');
const MODELS = ['models/stories260K.gguf', '../shared/models/stories260K-q8_0.gguf', '../shared/models/stories260K-q4_0.gguf'].filter(existsSync);

/** Our perplexity may differ from llama.cpp's by this many times llama.cpp's own noise. */
const NOISE_FACTOR = 4;

/** llama.cpp's perplexity over the windows: second half of each scored, as its perplexity tool does. */
async function llamaCppPerplexity(path: string, windows: number[][], ctx: number, batchSize?: number): Promise<{ perplexity: number; count: number }> {
  let nll = 0, count = 0;
  for (const w of windows) {
    const rows = await llamaCppNextTokenLogits(path, w, batchSize ? { batchSize } : {});
    for (let j = ctx / 2; j < ctx - 1; j++) {
      nll -= logSoftmax(rows[j])[w[j + 1]];
      count++;
    }
  }
  return { perplexity: Math.exp(nll / count), count };
}

describe.skipIf(!haveLlamaCpp)('perplexity matches llama.cpp', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmforge-ppl-'));
  afterAll(async () => {
    await disposeLlamaCpp();
    rmSync(dir, { recursive: true, force: true });
  });
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
      const { perplexity: theirs, count } = await llamaCppPerplexity(path, windows, ctx);
      const relative = (x: number) => Math.abs(x - theirs) / theirs;
      const oneByOne = relative((await llamaCppPerplexity(path, windows, ctx, 1)).perplexity);
      const perturbed = await perturbationNoise(path, dir, async (copy) => relative((await llamaCppPerplexity(copy, windows, ctx)).perplexity));
      const noise = Math.max(oneByOne, perturbed.max);
      const exact = await exactPerplexity(path, windows, ctx);
      expect(ours.chunks).toBe(windows.length);
      expect(ours.chunks).toBeGreaterThanOrEqual(3);
      expect(ours.scoredTokens).toBe(count);
      console.log(`${path}: perplexity ours ${ours.perplexity.toFixed(4)}, llama.cpp ${theirs.toFixed(4)}, exact ${exact.toFixed(4)} over ${ours.chunks} windows of ${ctx}; ` +
        `ours vs llama.cpp ${(100 * relative(ours.perplexity)).toFixed(4)}%, llama.cpp's noise ${(100 * noise).toFixed(4)}% (ratio ${(relative(ours.perplexity) / noise).toFixed(2)})`);
      expect(relative(ours.perplexity)).toBeLessThan(NOISE_FACTOR * noise);
      // Against the exact math, 0.1%, where 8-bit activations on 8-bit (or float) weights are all
      // that separates the two (on Q4_0 llama.cpp's and our activation rounding itself moves the
      // figure 0.1%). On the Q8_0 file this is the tighter check: ours is 0.02% from exact, while
      // llama.cpp's FMA order puts it 0.1-0.2% away on this trained model.
      if (!path.includes('q4_0')) expect(Math.abs(ours.perplexity - exact) / exact).toBeLessThan(0.001);
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
