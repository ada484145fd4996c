// The output side of one completion: generated tokens become visible text through the stream
// decoder (whole UTF-8 characters only) and the stop-string matcher (text that may start a stop
// string is held back; a completed one ends the completion and is cut).
import type { StopReason } from '../model/model.js';
import type { StreamDecoder, Tokenizer } from '../tokenizer/index.js';
import { StopStringMatcher } from '../generation/stop-strings.js';
import type { EngineCompletion, TokenLogprob } from './types.js';

export class CompletionOutput {
  text = '';
  readonly tokens: number[] = [];
  readonly logprobs: number[] | undefined;
  readonly topLogprobs: TokenLogprob[][] | undefined;
  private readonly decoder: StreamDecoder;
  private readonly stops: StopStringMatcher;

  constructor(tokenizer: Tokenizer, stop: readonly string[], logprobs: boolean, topLogprobs = 0) {
    this.decoder = tokenizer.createStreamDecoder({ skipSpecial: true });
    this.stops = new StopStringMatcher(stop);
    this.logprobs = logprobs ? [] : undefined;
    this.topLogprobs = logprobs && topLogprobs > 0 ? [] : undefined;
  }

  /** Take one generated token; returns the text it makes visible and whether a stop string completed. */
  push(token: number, logprob?: TokenLogprobs): { text: string; stopped: boolean } {
    this.tokens.push(token);
    if (this.logprobs && logprob !== undefined) this.logprobs.push(logprob.logprob);
    if (this.topLogprobs && logprob?.top !== undefined) this.topLogprobs.push(logprob.top);
    const { emit, stopped } = this.stops.push(this.decoder.push(token));
    this.text += emit;
    return { text: emit, stopped };
  }

  /** Release what was held back (nothing after a stop string). */
  finish(reason: StopReason): string {
    if (reason === 'stop_string') return '';
    const rest = this.stops.push(this.decoder.flush()).emit + this.stops.flush();
    this.text += rest;
    return rest;
  }

  result(index: number, stopReason: StopReason): EngineCompletion {
    return {
      index, text: this.text, tokens: [...this.tokens], stopReason,
      ...(this.logprobs ? { logprobs: [...this.logprobs] } : {}),
      ...(this.topLogprobs ? { topLogprobs: [...this.topLogprobs] } : {}),
    };
  }
}

export interface TokenLogprobs {
  logprob: number;
  /** The `top` most likely tokens, when asked for. */
  top?: TokenLogprob[];
}

/** log softmax(logits)[token] in f64, and with top > 0 the top most likely tokens (ties: lower id first). */
export function logprobsOf(logits: Float32Array, token: number, top = 0): TokenLogprobs {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  if (top <= 0) return { logprob: logits[token] - lse };
  // Keep the best `top` ids in a small sorted list: one pass, top <= 20.
  const best: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (best.length === top && v <= logits[best[top - 1]]) continue;
    let at = best.length;
    while (at > 0 && logits[best[at - 1]] < v) at--;
    best.splice(at, 0, i);
    if (best.length > top) best.pop();
  }
  return { logprob: logits[token] - lse, top: best.map((id) => ({ tokenId: id, logprob: logits[id] - lse })) };
}
