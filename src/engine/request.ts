// One submitted request: its stream of pieces, its settled result, and its timings. It knows
// nothing of KV or batches; the scheduler reports tokens and endings to it.
import type { StopReason } from '../model/model.js';
import { Channel } from './channel.js';
import type { Sequence } from './sequence.js';
import type { EngineCompletion, EnginePiece, EngineResult } from './types.js';

export interface RequestParams {
  readonly maxTokens: number;
  readonly ignoreEos: boolean;
  readonly logprobs: boolean;
  /** Alternatives per token with logprobs (0: none). */
  readonly topLogprobs: number;
  readonly priority: number;
}

export class RequestState {
  readonly channel = new Channel<EnginePiece>();
  readonly result: Promise<EngineResult>;
  readonly sequences: Sequence[] = [];
  readonly submittedAt = performance.now();
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  cachedPromptTokens = 0;
  settled = false;
  private readonly reasons: (StopReason | undefined)[] = [];
  private readonly cleanups: (() => void)[] = [];
  private resolve!: (r: EngineResult) => void;
  private reject!: (e: unknown) => void;

  constructor(
    readonly id: number,
    readonly promptLength: number,
    readonly params: RequestParams,
  ) {
    this.result = new Promise<EngineResult>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => {}); // surfaced through the iterator and `result`
  }

  get priority(): number {
    return this.params.priority;
  }

  /** Run when the request settles (timers, abort listeners). */
  onSettle(fn: () => void): void {
    this.cleanups.push(fn);
  }

  emit(piece: EnginePiece): void {
    this.firstTokenAt ??= performance.now();
    this.channel.push(piece);
  }

  /** A completion ended; the request resolves when all have. */
  completionDone(index: number, reason: StopReason): void {
    this.reasons[index] = reason;
    if (this.settled || this.sequences.some((s) => this.reasons[s.index] === undefined)) return;
    this.settle();
    const completions: EngineCompletion[] = this.sequences.map((s) => s.output.result(s.index, this.reasons[s.index]!));
    const completionTokens = completions.reduce((n, c) => n + c.tokens.length, 0);
    const end = performance.now();
    const first = this.firstTokenAt ?? end;
    const afterFirst = Math.max(0, completionTokens - completions.length);
    this.resolve({
      text: completions[0].text, tokens: completions[0].tokens, stopReason: completions[0].stopReason, completions,
      usage: { promptTokens: this.promptLength, cachedPromptTokens: this.cachedPromptTokens, completionTokens, totalTokens: this.promptLength + completionTokens },
      timings: {
        queueMs: (this.admittedAt ?? end) - this.submittedAt,
        timeToFirstTokenMs: first - this.submittedAt,
        totalMs: end - this.submittedAt,
        decodeTokensPerSecond: afterFirst > 0 && end > first ? afterFirst / ((end - first) / 1000) : 0,
        preemptions: this.sequences.reduce((n, s) => n + s.preemptions, 0),
      },
    });
    this.channel.close();
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.settle();
    this.reject(error);
    this.channel.fail(error);
  }

  private settle(): void {
    this.settled = true;
    for (const fn of this.cleanups.splice(0)) fn();
  }
}
