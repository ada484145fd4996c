// Perplexity as llama.cpp's perplexity tool computes it: the text is tokenized once (with BOS when
// the model adds it), cut into non-overlapping windows of ctx tokens, each window's first token
// replaced by BOS, and only the second half of each window scored.
import { ModelError } from './errors.js';
import type { Model } from './model.js';

export interface PerplexityResult {
  perplexity: number;
  chunks: number;
  scoredTokens: number;
  negativeLogLikelihood: number;
}

export async function perplexity(
  model: Model,
  text: string,
  ctx: number,
  onChunk?: (done: number, total: number, runningPerplexity: number) => void,
): Promise<PerplexityResult> {
  const tok = model.tokenizer;
  const tokens = tok.encode(text, { addSpecial: true });
  const nChunks = Math.floor(tokens.length / ctx);
  if (nChunks < 1) throw new ModelError('PROMPT_TOO_LONG', `the text has ${tokens.length} tokens, fewer than one window of ${ctx}`);
  const first = Math.floor(ctx / 2);
  let nll = 0, count = 0;
  for (let c = 0; c < nChunks; c++) {
    const window = tokens.slice(c * ctx, (c + 1) * ctx);
    if (tok.addBos && tok.bosId !== undefined) window[0] = tok.bosId;
    const logits = await model.evaluate(window);
    for (let j = first; j < ctx - 1; j++) {
      nll -= logSoftmaxAt(logits[j], window[j + 1]);
      count++;
    }
    onChunk?.(c + 1, nChunks, Math.exp(nll / count));
  }
  return { perplexity: Math.exp(nll / count), chunks: nChunks, scoredTokens: count, negativeLogLikelihood: nll };
}

function logSoftmaxAt(logits: Float32Array, index: number): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[index] - max - Math.log(sum);
}
