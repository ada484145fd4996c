// The output side of one completion: generated tokens become visible text through the stream
// decoder (whole UTF-8 characters only) and the stop-string matcher (text that may start a stop
// string is held back; a completed one ends the completion and is cut).
import type { StopReason } from '../model/model.js';
import type { StreamDecoder, Tokenizer } from '../tokenizer/index.js';
import { StopStringMatcher } from '../generation/stop-strings.js';
import type { EngineCompletion } from './types.js';

export class CompletionOutput {
  text = '';
  readonly tokens: number[] = [];
  readonly logprobs: number[] | undefined;
  private readonly decoder: StreamDecoder;
  private readonly stops: StopStringMatcher;

  constructor(tokenizer: Tokenizer, stop: readonly string[], logprobs: boolean) {
    this.decoder = tokenizer.createStreamDecoder({ skipSpecial: true });
    this.stops = new StopStringMatcher(stop);
    this.logprobs = logprobs ? [] : undefined;
  }

  /** Take one generated token; returns the text it makes visible and whether a stop string completed. */
  push(token: number, logprob?: number): { text: string; stopped: boolean } {
    this.tokens.push(token);
    if (this.logprobs && logprob !== undefined) this.logprobs.push(logprob);
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
    return { index, text: this.text, tokens: [...this.tokens], stopReason, ...(this.logprobs ? { logprobs: [...this.logprobs] } : {}) };
  }
}

/** log softmax(logits)[token], in f64. */
export function logprobOf(logits: Float32Array, token: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return logits[token] - max - Math.log(sum);
}
