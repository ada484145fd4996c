// Continuous batching. Each step: admit waiting sequences while the KV pool can take them, pack one
// decode token per running sequence plus chunks of pending prompts (chunked prefill) into one
// forward pass of at most maxBatchTokens, then sample every sequence that got logits. Finished
// sequences leave at once (their KV goes to the prefix cache); when blocks run out, least recently
// used prefix-cache entries go first, then the newest lowest-priority running sequence is
// preempted: its KV is freed and it waits to be recomputed. Nothing is dropped.
//
// Outputs do not depend on the batch: the kernels compute each token's row on its own in a fixed
// order, so a sequence's logits (and with greedy or seeded sampling its tokens) are the same alone,
// beside seven others, chunked differently, or recomputed after preemption.
import type { BatchToken, Graph, PositionLogits } from '../model/graph.js';
import type { StopReason } from '../model/model.js';
import { PrefixCache } from '../kv/prefix-cache.js';
import type { KVCache } from '../kv/kv-cache.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { logprobsOf } from './completion.js';
import type { ActiveAdapter } from '../model/lora.js';
import { BackendError } from '../backend/errors.js';
import { PassCost } from '../generation/draft-length.js';
import type { Draft } from '../generation/speculative.js';
import { log } from '../log.js';
import type { TokenDistribution } from '../sampling/sampler.js';
import { EngineError } from './errors.js';
import type { RequestState } from './request.js';
import { Sequence } from './sequence.js';

export interface SchedulerConfig {
  readonly maxBatchTokens: number;
  readonly maxSequences: number;
  /** Tokens a sequence may reach: the context, capped so that a sequence alone always fits the pool. */
  readonly contextLength: number;
  readonly prefixCacheEntries: number;
}

export interface SchedulerStats {
  steps: number;
  computedTokens: number;
  generatedTokens: number;
  admittedPromptTokens: number;
  reusedPromptTokens: number;
  preemptions: number;
  /** Draft tokens evaluated, and those kept (speculative decoding). */
  draftedTokens: number;
  acceptedDraftTokens: number;
  busyMs: number;
}

interface Slice {
  readonly seq: Sequence;
  /** Tokens of seq.tokens from kvLen on. */
  readonly count: number;
  /** Draft tokens evaluated after them (speculative decoding). */
  draft: number[];
  /** Sampled drafts: the distribution each draft token was drawn from (Draft.q). */
  q?: readonly TokenDistribution[];
}

export class Scheduler {
  readonly prefixCache: PrefixCache;
  /** What a decode step's forward pass costs per token here: what draft lengths are chosen from. */
  private readonly passCost = new PassCost();
  readonly stats: SchedulerStats = { steps: 0, computedTokens: 0, generatedTokens: 0, admittedPromptTokens: 0, reusedPromptTokens: 0, preemptions: 0, draftedTokens: 0, acceptedDraftTokens: 0, busyMs: 0 };
  private readonly waiting: Sequence[] = [];
  /** In admission order. */
  private readonly running: Sequence[] = [];
  private nextKvId = 0;
  /** The adapter set the graph is configured with. */
  private adapterKey = '';
  /** While a step's forward pass runs, cancellations wait here and land when it ends. */
  private deferredCancels: [RequestState, unknown][] | undefined;

  constructor(
    private readonly graph: Graph,
    private readonly tokenizer: Tokenizer,
    readonly config: SchedulerConfig,
  ) {
    this.prefixCache = new PrefixCache(graph.kv, () => this.nextKvId++, config.prefixCacheEntries);
  }

  /** A KV sequence id no sequence of this scheduler uses (a draft model's sequences for another engine's requests). */
  newSequenceId(): number {
    return this.nextKvId++;
  }

  get kv(): KVCache {
    return this.graph.kv;
  }

  /** Configure the graph's LoRA adapters for the next forward pass (nothing to do when they are already these). */
  useAdapters(adapters: readonly ActiveAdapter[], key: string): void {
    if (key === this.adapterKey) return;
    this.graph.setAdapters(adapters);
    this.adapterKey = key;
  }

  /**
   * A sequence of its own holding the KV of all of `tokens`, taken from the prefix cache (its blocks
   * shared, so they stay while it is read even if the entry is evicted); undefined if the cache does
   * not hold them all. The caller removes it (kv.removeSequence) when done.
   */
  pinPrefix(tokens: readonly number[], key = ''): number | undefined {
    const match = this.prefixCache.match(tokens, tokens.length, [], key);
    if (!match || match.length < tokens.length) return undefined;
    const id = this.nextKvId++;
    this.kv.fork(match.seqId, id, tokens.length);
    return id;
  }

  /** Put KV computed elsewhere into the prefix cache: `fill` writes the K/V of tokens' positions into the slots reserved for them. */
  adoptPrefix(tokens: readonly number[], fill: (slots: readonly number[]) => void, key = ''): void {
    const id = this.nextKvId++;
    this.kv.createSequence(id);
    try {
      fill(this.kv.reserve(id, tokens.length).slots);
      this.prefixCache.insert(id, tokens, key);
    } finally {
      this.kv.removeSequence(id);
    }
  }

  get runningCount(): number {
    return this.running.length;
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Queue a request: its first completion waits for admission, the others fork from it after the prompt. */
  submit(request: RequestState): void {
    const [first, ...rest] = request.sequences;
    for (const s of rest) {
      s.state = 'follower';
      first.followers.push(s);
    }
    this.enqueue(first);
  }

  /** Take a request out (cancelled, timed out, failed): its KV blocks are freed now, not cached. */
  cancel(request: RequestState, error: unknown): void {
    if (this.deferredCancels) {
      this.deferredCancels.push([request, error]);
      return;
    }
    for (const s of request.sequences) {
      if (s.state === 'waiting') this.waiting.splice(this.waiting.indexOf(s), 1);
      if (s.state === 'running') this.dropKV(s, false);
      s.followers.length = 0;
      s.state = 'done';
    }
    request.fail(error);
  }

  /**
   * One continuous-batching step. Cancellations that arrive while its forward pass runs land
   * right after it, so the step goes on with the sequences it planned with.
   */
  async step(): Promise<void> {
    const t0 = performance.now();
    this.admit();
    let plan = this.plan();
    if (plan.length === 0) return;
    if (plan.some((s) => s.seq.drafter)) {
      // A draft model's proposals are forward passes of their own: cancellations wait for them too,
      // then land before the plan is committed, which keeps only the sequences still running.
      this.deferredCancels = [];
      try {
        await this.addDrafts(plan);
      } finally {
        this.landDeferredCancels();
      }
      plan = plan.filter((s) => s.seq.state === 'running');
      if (plan.length === 0) return this.step(); // everything planned was cancelled: plan again (newcomers may fit now)
    }
    this.makeRoom(plan);
    this.useAdapters(plan[0]!.seq.adapters, plan[0]!.seq.adapterKey);
    for (const { seq } of plan) seq.lastStep = this.stats.steps;

    const batch: BatchToken[] = [];
    for (const { seq, count, draft } of plan) {
      for (let i = 0; i < count; i++) {
        const p = seq.kvLen + i;
        batch.push({ token: seq.tokens[p], seqId: seq.kvId, logits: seq.wantsLogits(p) && seq.logitsRequest });
      }
      for (const token of draft) batch.push({ token, seqId: seq.kvId, logits: seq.logitsRequest });
    }
    // A row of logits, or for a sequence that needs only the argmax or the top k, what the backend picked.
    let logits: PositionLogits[];
    this.deferredCancels = [];
    const tPass = performance.now();
    try {
      logits = await this.graph.forward(batch);
    } catch (err) {
      this.landDeferredCancels();
      // The graph left the KV as it was; fail only the requests in this batch.
      const lost = err instanceof BackendError && err.code === 'DEVICE_LOST';
      for (const r of new Set(plan.map((s) => s.seq.request))) {
        this.cancel(r, new EngineError(lost ? 'DEVICE_LOST' : 'INTERNAL', `forward pass failed: ${(err as Error)?.message ?? err}`, { cause: err }));
      }
      return;
    }
    this.stats.steps++;
    this.stats.computedTokens += batch.length;

    let row = 0;
    const sampled: [Sequence, PositionLogits[], number[], readonly TokenDistribution[] | undefined][] = [];
    for (const { seq, count, draft, q } of plan) {
      let last: PositionLogits | undefined;
      for (let p = seq.kvLen; p < seq.kvLen + count; p++) {
        if (!seq.wantsLogits(p)) continue;
        last = logits[row++];
        // A recomputation after preemption computes the same rows again: they replace themselves.
        if (seq.logitsFrom !== undefined && p >= seq.logitsFrom) seq.positionLogits[p - seq.logitsFrom] = last as Float32Array;
      }
      // The drafts' K/V stay in the cache past kvLen until verification keeps or drops them.
      seq.kvLen += count;
      const draftLogits = logits.slice(row, row + draft.length);
      row += draft.length;
      if (seq.kvLen === seq.tokens.length) sampled.push([seq, [last!, ...draftLogits], draft, q]);
    }
    this.landDeferredCancels(); // after the KV bookkeeping, as if they had come between steps
    for (const [seq, rows, draft, q] of sampled) if (seq.state === 'running') this.onLogits(seq, rows, draft, q);
    // Decode steps (no prompt chunks) are the passes drafts are added to: their time, checking the drafts included.
    if (plan.every((s) => s.count === 1)) this.passCost.observe(batch.length, performance.now() - tPass);
    this.stats.busyMs += performance.now() - t0;
  }

  private landDeferredCancels(): void {
    const cancels = this.deferredCancels ?? [];
    this.deferredCancels = undefined;
    for (const [request, error] of cancels) this.cancel(request, error);
  }

  private enqueue(seq: Sequence): void {
    seq.state = 'waiting';
    let i = this.waiting.length;
    while (i > 0 && Sequence.before(seq, this.waiting[i - 1])) i--;
    this.waiting.splice(i, 0, seq);
  }

  /**
   * Admit waiting sequences in order while they fit: their whole remaining tokens (or, under a
   * sliding window, the most they hold at once), plus a block of headroom per running sequence.
   */
  private admit(): void {
    while (this.waiting.length > 0) {
      const seq = this.waiting[0];
      if (this.running.length + 1 + seq.followers.length > this.config.maxSequences) return;
      const live = this.running.filter((s) => s.adapterKey === seq.adapterKey).map((s) => ({ seqId: s.kvId, tokens: s.tokens, length: s.kvLen }));
      // The last token is always evaluated (its logits are needed), and so is every position whose logits are collected.
      const match = this.prefixCache.match(seq.tokens, Math.min(seq.tokens.length - 1, seq.logitsFrom ?? Infinity), live, seq.adapterKey);
      // Alone, a shared tail block's copy could tip a pool-sized sequence over: then try without sharing.
      const tries = match && this.running.length === 0 ? [match, undefined] : [match];
      let admitted = false;
      for (const m of tries) {
        const id = this.nextKvId++;
        if (m) this.kv.fork(m.seqId, id, m.length);
        else this.kv.createSequence(id);
        const reused = m?.length ?? 0;
        // Under a sliding window the prompt's chunks release what falls out of it as they go.
        const need = this.kv.peakBlocksNeeded(id, seq.tokens.length - reused, this.config.maxBatchTokens) + this.running.length;
        while (need > this.kv.pool.freeCount && this.prefixCache.evictOne());
        if (need > this.kv.pool.freeCount) {
          this.kv.removeSequence(id);
          continue;
        }
        this.waiting.shift();
        this.start(seq, id, reused);
        admitted = true;
        break;
      }
      if (!admitted) return; // strict order: later requests wait behind the head
    }
  }

  private start(seq: Sequence, kvId: number, reused: number): void {
    seq.kvId = kvId;
    seq.kvLen = reused;
    seq.state = 'running';
    this.running.push(seq);
    const r = seq.request;
    r.admittedAt ??= performance.now();
    if (!seq.started) {
      seq.started = true;
      this.stats.admittedPromptTokens += seq.tokens.length;
      this.stats.reusedPromptTokens += reused;
      r.cachedPromptTokens += reused;
    }
  }

  /**
   * Decode tokens first (one per sequence), then prompt chunks, oldest first, then draft tokens
   * for sequences that speculate, all within the token budget.
   */
  private plan(): Slice[] {
    let budget = this.config.maxBatchTokens;
    const plan: Slice[] = [];
    // One step runs one set of LoRA adapters: the one whose sequences waited longest.
    let key = '', oldest = Infinity;
    for (const seq of this.running) {
      if (seq.pending > 0 && seq.lastStep < oldest) [key, oldest] = [seq.adapterKey, seq.lastStep];
    }
    const running = this.running.filter((s) => s.adapterKey === key);
    for (const seq of running) {
      if (budget > 0 && seq.pending === 1) {
        plan.push({ seq, count: 1, draft: [] });
        budget--;
      }
    }
    for (const seq of running) {
      if (budget > 0 && seq.pending > 1) {
        const count = Math.min(seq.pending, budget);
        plan.push({ seq, count, draft: [] });
        budget -= count;
      }
    }
    return plan;
  }

  /**
   * Draft tokens for the planned slices that speculate, one sequence after another, within the
   * step's token budget; each sequence's draft length is chosen given the tokens planned so far.
   */
  private async addDrafts(plan: Slice[]): Promise<void> {
    let tokens = 0;
    for (const { count } of plan) tokens += count;
    for (const slice of plan) {
      const budget = this.config.maxBatchTokens - tokens;
      if (budget <= 0) return;
      if (slice.seq.state !== 'running') continue; // cancelled while an earlier slice drafted
      await this.proposeDraft(slice, Math.min(budget, slice.seq.draftLength?.choose(tokens, this.passCost) ?? budget));
      tokens += slice.draft.length;
    }
  }

  /**
   * Draft tokens to evaluate after a slice that ends the sequence's tokens: at most `limit`, and no
   * more than could be kept (the request's token limit, the context). None under a sliding window, whose KV cannot
   * roll back over blocks the drafts' positions let go. A drafter that fails (a draft model's
   * forward pass) is dropped: the sequence goes on without drafts.
   */
  private async proposeDraft(slice: Slice, limit: number): Promise<void> {
    const { seq, count } = slice;
    const drafter = seq.drafter;
    if (!drafter || seq.kvLen + count !== seq.tokens.length || seq.followers.length > 0) return;
    if (this.kv.options.slidingWindow !== undefined) return;
    const keepable = Math.min(seq.request.params.maxTokens - seq.generated - 1, this.config.contextLength - seq.tokens.length, limit);
    if (keepable < 1) return;
    let proposal: number[] | Draft;
    const t0 = performance.now();
    try {
      proposal = await drafter.propose(seq.tokens, keepable);
    } catch (err) {
      log.warn(`speculative decoding: request ${seq.request.id} goes on without drafts, its drafter failed: ${(err as Error)?.message ?? err}`);
      drafter.release?.();
      seq.drafter = undefined;
      return;
    }
    const draft = Array.isArray(proposal) ? { tokens: proposal } : proposal;
    slice.draft = draft.tokens.slice(0, keepable);
    seq.draftLength?.proposed(slice.draft.length, performance.now() - t0);
    if (draft.q) slice.q = draft.q;
    this.stats.draftedTokens += slice.draft.length;
  }

  /** Free blocks until the plan fits: drafts first, then prefix-cache entries, then preempt running sequences. */
  private makeRoom(plan: Slice[]): void {
    for (;;) {
      let need = 0;
      for (const { seq, count, draft } of plan) need += this.kv.blocksNeeded(seq.kvId, count + draft.length);
      if (need <= this.kv.pool.freeCount) return;
      const drafted = plan.find((s) => s.draft.length > 0);
      if (drafted) {
        this.stats.draftedTokens -= drafted.draft.length;
        drafted.draft = [];
        drafted.q = undefined;
        continue;
      }
      if (this.prefixCache.evictOne()) continue;
      const victim = this.victim();
      // A lone sequence always fits: config.contextLength keeps what it holds within the pool.
      if (!victim) throw new EngineError('INTERNAL', `KV pool of ${this.kv.options.nBlocks} blocks cannot hold the batch`);
      this.preempt(victim);
      const at = plan.findIndex((s) => s.seq === victim);
      if (at >= 0) plan.splice(at, 1);
    }
  }

  /** Lowest priority, then the newest. Never the last running sequence. */
  private victim(): Sequence | undefined {
    if (this.running.length < 2) return undefined;
    let v = this.running[0];
    for (const s of this.running) if (Sequence.before(v, s)) v = s;
    return v;
  }

  private preempt(seq: Sequence): void {
    this.dropKV(seq, false);
    seq.preemptions++;
    this.stats.preemptions++;
    this.enqueue(seq);
  }

  /** Release a running sequence's KV, into the prefix cache when its content is worth keeping. */
  private dropKV(seq: Sequence, keep: boolean): void {
    if (keep) this.prefixCache.insert(seq.kvId, seq.tokens.slice(0, seq.kvLen), seq.adapterKey);
    seq.drafter?.release?.(); // a draft model's KV goes with the target's (drafting again recomputes it)
    this.kv.removeSequence(seq.kvId);
    this.running.splice(this.running.indexOf(seq), 1);
    seq.kvId = -1;
    seq.kvLen = 0;
  }

  /**
   * rows[0]: logits after the sequence's last token; rows[i]: after draft token i (its K/V are in
   * the cache beyond kvLen). Sample from each in turn while the sampled token is the draft's: the
   * tokens are what plain decoding would sample, one forward pass fewer for each draft kept. Then
   * the KV rolls back past the first draft that was not. Sampled drafts (q given) are verified by
   * speculative sampling instead, which keeps the target's distribution, not its draws.
   */
  private onLogits(seq: Sequence, rows: PositionLogits[], draft: readonly number[], q?: readonly TokenDistribution[]): void {
    // The prompt is in: the other completions share its blocks and sample from the same logits.
    const followers = seq.followers.splice(0);
    for (const f of followers) {
      const id = this.nextKvId++;
      this.kv.fork(seq.kvId, id, seq.kvLen);
      f.started = true;
      f.kvId = id;
      f.kvLen = seq.kvLen;
      f.state = 'running';
      this.running.push(f);
    }
    let kept = 0;
    for (let i = 0; ; i++) {
      const token = this.sample(seq, rows[i], q && i < draft.length ? [draft[i], q[i]] : undefined);
      if (seq.state !== 'running' || i === draft.length || token !== draft[i]) break;
      seq.kvLen++; // the draft's K/V are the sampled token's
      kept++;
    }
    this.stats.acceptedDraftTokens += kept;
    seq.draftLength?.verified(draft.length, kept);
    if (seq.state === 'running' && this.kv.sequenceLength(seq.kvId) > seq.kvLen) this.kv.truncate(seq.kvId, seq.kvLen);
    for (const f of followers) if (f.state === 'running') this.sample(f, rows[0]);
  }

  /**
   * Sample the sequence's next token from a logits row or its top k (or take the backend's argmax for it) and
   * emit it, or finish the sequence; returns the token (undefined when it finished first). With
   * `draft`, a sampled draft token and its distribution: speculative sampling's choice.
   */
  private sample(seq: Sequence, logits: PositionLogits, draft?: [number, TokenDistribution]): number | undefined {
    const r = seq.request;
    if (seq.generated >= r.params.maxTokens) return void this.finish(seq, 'max_tokens');
    let token: number;
    try {
      token = typeof logits === 'number' ? seq.sampler.takeArgmax(logits)
        : draft ? seq.sampler.speculate(logits, seq.tokens, draft[0], draft[1])
        : seq.sampler.sample(logits, seq.tokens);
    } catch (err) {
      return void this.cancel(r, err);
    }
    if (!r.params.ignoreEos && this.tokenizer.isEog(token)) return void this.finish(seq, 'eos');
    const lp = r.params.logprobs && logits instanceof Float32Array ? logprobsOf(logits, token, r.params.topLogprobs) : undefined;
    const { text, stopped } = seq.output.push(token, lp);
    seq.tokens.push(token);
    this.stats.generatedTokens++;
    r.emit(lp === undefined ? { index: seq.index, text, tokenId: token } : { index: seq.index, text, tokenId: token, logprob: lp.logprob, ...(lp.top ? { topLogprobs: lp.top } : {}) });
    if (stopped) this.finish(seq, 'stop_string');
    else if (seq.generated >= r.params.maxTokens) this.finish(seq, 'max_tokens');
    // The new token would take position tokens.length - 1.
    else if (seq.tokens.length - 1 >= this.config.contextLength) this.finish(seq, 'context_full');
    return token;
  }

  private finish(seq: Sequence, reason: StopReason): void {
    const rest = seq.output.finish(reason);
    if (rest) seq.request.emit({ index: seq.index, text: rest, tokenId: -1 });
    this.dropKV(seq, true);
    seq.state = 'done';
    seq.request.completionDone(seq.index, reason);
  }
}
