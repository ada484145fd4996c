// Speculative decoding with a draft model: a second, smaller model of the same vocabulary guesses
// the next k tokens by k cheap decode steps of its own, and the target checks them all in one
// forward pass (the scheduler's verification). The draft keeps its own KV per sequence, in its own
// engine's pool; each proposal first rolls it back to what the target kept (the tokens it holds
// that are still the sequence's) and feeds what the target added since, then drafts.
import { logitsRequestFor, type Graph, type PositionLogits } from '../model/graph.js';
import type { Sampler, TokenDistribution } from '../sampling/sampler.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { Draft, Drafter } from './speculative.js';

/** What a draft model's engine lends a drafter: its forward pass and KV pool, and turns at them. */
export interface DraftHost {
  readonly graph: Graph;
  /** Tokens a sequence of the draft's engine may reach. */
  readonly contextLength: number;
  /** A KV sequence id none of the draft engine's own sequences uses. */
  newSequenceId(): number;
  /** Run f when no other forward pass of the draft's engine is in flight (rejects with EngineError DISPOSED once it is disposed). */
  run<T>(f: () => Promise<T>): Promise<T>;
  /** Evict the draft engine's prefix-cache entries until `blocks` blocks are free; whether they are. */
  makeRoom(blocks: number): boolean;
}

const NONE: Draft = { tokens: [] };

export class DraftModelDrafter implements Drafter {
  /** The draft's KV sequence, or -1 before the first proposal and after release. */
  private kvId = -1;
  /** The tokens whose K/V that sequence holds, in order. */
  private cached: number[] = [];

  /**
   * `sampler`: the request's sampler settings without its own processors (a grammar's state would
   * have to roll back with the drafts; a draft it forbids is simply rejected). Greedy: the draft
   * proposes its most likely tokens; else it samples them and returns what each was drawn from.
   */
  constructor(
    private readonly host: DraftHost,
    private readonly sampler: Sampler,
    private readonly draftTokens: number,
  ) {}

  propose(tokens: readonly number[], limit: number): Promise<Draft> {
    return this.host.run(() => this.draft(tokens, limit));
  }

  release(): void {
    if (this.kvId < 0) return;
    const kv = this.host.graph.kv;
    // At once, without a turn: no forward pass reads this sequence but this drafter's own, and the
    // scheduler never releases a sequence while its draft is being made.
    if (kv.hasSequence(this.kvId)) kv.removeSequence(this.kvId);
    this.kvId = -1;
    this.cached = [];
  }

  private async draft(tokens: readonly number[], limit: number): Promise<Draft> {
    const { graph } = this.host, kv = graph.kv;
    // Draft token i goes in at position tokens.length + i - 1 (the last is never fed): within the draft's context.
    const max = Math.min(limit, this.draftTokens, this.host.contextLength + 1 - tokens.length);
    if (max < 1) return NONE;
    if (this.kvId < 0) {
      this.kvId = this.host.newSequenceId();
      kv.createSequence(this.kvId);
      this.cached = [];
    }
    // Roll back to the cached tokens the sequence still has; the last token is fed again when
    // cached (a draft the target kept as its final token), since its logits were not kept.
    let keep = 0;
    const shared = Math.min(this.cached.length, tokens.length - 1);
    while (keep < shared && this.cached[keep] === tokens[keep]) keep++;
    if (keep < this.cached.length) {
      kv.truncate(this.kvId, keep);
      this.cached.length = keep;
    }
    const feed = tokens.slice(keep);
    if (!this.host.makeRoom(kv.blocksNeeded(this.kvId, feed.length + max - 1))) return NONE;
    // A greedy draft needs only each row's argmax, a top-k one its top k (when nothing before changes the logits): the backend computes them.
    const want = logitsRequestFor(this.sampler);
    let row: PositionLogits | undefined;
    for (let at = 0; at < feed.length; at += graph.maxBatchTokens) {
      const chunk = feed.slice(at, at + graph.maxBatchTokens);
      const last = at + chunk.length === feed.length;
      const out = await graph.forward(chunk.map((token, i) => ({ token, seqId: this.kvId, logits: last && i === chunk.length - 1 ? want : false })));
      this.cached.push(...chunk);
      if (last) row = out[0];
    }
    const history = [...tokens], out: number[] = [], q: TokenDistribution[] = [];
    for (let i = 0; ; i++) {
      let token: number;
      if (typeof row === 'number') token = this.sampler.takeArgmax(row);
      else if (this.sampler.isGreedy) token = this.sampler.sample(row!, history);
      else {
        const s = this.sampler.sampleWithDistribution(row!, history);
        token = s.token;
        q.push(s.distribution);
      }
      out.push(token);
      history.push(token);
      if (i === max - 1) break;
      row = (await graph.forward([{ token, seqId: this.kvId, logits: want }]))[0];
      this.cached.push(token);
    }
    return this.sampler.isGreedy ? { tokens: out } : { tokens: out, q };
  }
}

/** Tokenizers already compared: target → draft → the mismatch (undefined: they agree). */
const compared = new WeakMap<Tokenizer, WeakMap<Tokenizer, string | undefined>>();

/**
 * Why a draft model cannot draft for a target, or undefined when it can: the same logits width
 * and the same token at every id (compared once per pair of tokenizers, then remembered).
 */
export function vocabularyMismatch(target: { tokenizer: Tokenizer; config: { vocabSize: number } }, draft: { tokenizer: Tokenizer; config: { vocabSize: number } }): string | undefined {
  if (target.config.vocabSize !== draft.config.vocabSize) return `the target's logits cover ${target.config.vocabSize} tokens and the draft's ${draft.config.vocabSize}`;
  const a = target.tokenizer, b = draft.tokenizer;
  if (a === b) return undefined;
  let byDraft = compared.get(a);
  if (!byDraft) compared.set(a, (byDraft = new WeakMap()));
  if (byDraft.has(b)) return byDraft.get(b);
  let why: string | undefined;
  if (a.vocabSize !== b.vocabSize) why = `the target's vocabulary has ${a.vocabSize} tokens and the draft's ${b.vocabSize}`;
  else {
    for (let id = 0; id < a.vocabSize && !why; id++) {
      if (a.tokenText(id) !== b.tokenText(id)) why = `token ${id} is ${JSON.stringify(a.tokenText(id))} in the target's vocabulary and ${JSON.stringify(b.tokenText(id))} in the draft's`;
    }
  }
  byDraft.set(b, why);
  return why;
}
