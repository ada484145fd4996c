// Engine results → OpenAI's response objects, in their exact shapes: chat.completion and its
// chunks, text_completion (the legacy completions API), usage with cached prompt tokens, and the
// two log-probability formats (chat's per-token objects, completions' parallel arrays).
import type { EngineResult, TokenLogprob } from '../engine/types.js';
import type { StopReason } from '../model/model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { parseToolCalls, type ToolCallFormat } from '../chat/tool-calls.js';
import { logprobsOf } from '../engine/completion.js';

/** What every response of one request carries. */
export interface ResponseMeta {
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
  systemFingerprint: string;
}

export function newId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export function finishReason(reason: StopReason): 'stop' | 'length' {
  return reason === 'max_tokens' || reason === 'context_full' ? 'length' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** Usage summed over the engine requests one HTTP request made (one per prompt). */
export function usageOf(results: readonly EngineResult[]): Usage {
  let prompt = 0, cached = 0, completion = 0;
  for (const r of results) {
    prompt += r.usage.promptTokens;
    cached += r.usage.cachedPromptTokens;
    completion += r.usage.completionTokens;
  }
  return {
    prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached }, completion_tokens_details: { reasoning_tokens: 0 },
  };
}

const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** A token as OpenAI shows it: its text (lossy where it is part of a character) and its bytes. */
function tokenView(tokenizer: Tokenizer, id: number): { token: string; bytes: number[] } {
  const bytes = tokenizer.tokenToPiece(id);
  return { token: lossy.decode(bytes), bytes: Array.from(bytes) };
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Chat's logprobs.content entries for generated tokens. */
export function chatLogprobs(tokenizer: Tokenizer, ids: readonly number[], logprobs: readonly number[], tops: readonly (readonly TokenLogprob[])[] | undefined): ChatTokenLogprob[] {
  return ids.map((id, i) => ({
    ...tokenView(tokenizer, id),
    logprob: logprobs[i]!,
    top_logprobs: (tops?.[i] ?? []).map((t) => ({ ...tokenView(tokenizer, t.tokenId), logprob: t.logprob })),
  }));
}

export interface CompletionLogprobs {
  tokens: string[];
  /** null for the first prompt token (nothing predicts it). */
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[] | null;
  text_offset: number[];
}

/** The completions API's logprobs of an echoed prompt: each token's log-probability given the ones before (rows[i]: the logits after token i). */
export function promptLogprobs(tokenizer: Tokenizer, ids: readonly number[], rows: readonly Float32Array[], top: number): CompletionLogprobs {
  const each = ids.map((id, i) => (i === 0 ? undefined : logprobsOf(rows[i - 1]!, id, top)));
  const tokens = ids.map((id) => tokenView(tokenizer, id).token);
  let at = 0;
  return {
    tokens,
    token_logprobs: each.map((e) => (e === undefined ? null : e.logprob)),
    top_logprobs: top > 0 ? each.map((e) => (e?.top ? Object.fromEntries(e.top.map((t) => [tokenView(tokenizer, t.tokenId).token, t.logprob])) : null)) : null,
    text_offset: tokens.map((t) => ((at += t.length), at - t.length)),
  };
}

/** Prompt logprobs followed by a completion's. */
export function joinLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: a.top_logprobs && b.top_logprobs ? [...a.top_logprobs, ...b.top_logprobs] : null,
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/** The completions API's logprobs: parallel arrays; text_offset counts characters from `offset` (the echoed prompt's length). */
export function completionLogprobs(tokenizer: Tokenizer, ids: readonly number[], logprobs: readonly number[], tops: readonly (readonly TokenLogprob[])[] | undefined, offset: number): CompletionLogprobs {
  const tokens = ids.map((id) => tokenView(tokenizer, id).token);
  const textOffset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    textOffset.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: [...logprobs],
    top_logprobs: tops ? tops.map((top) => Object.fromEntries(top.map((t) => [tokenView(tokenizer, t.tokenId).token, t.logprob]))) : null,
    text_offset: textOffset,
  };
}

function envelope(meta: ResponseMeta, object: string) {
  return { id: meta.id, object, created: meta.created, model: meta.model, system_fingerprint: meta.systemFingerprint };
}

export interface ToolCallOut {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A completion's reply as OpenAI shapes it: text, or (when the model called tools) the calls and any text beside them. */
export function replyOf(c: EngineResult['completions'][number], format: ToolCallFormat | undefined, tokenizer?: Tokenizer): { content: string | null; toolCalls?: ToolCallOut[]; finish: 'stop' | 'length' | 'tool_calls' } {
  // Calls are read from the text with special tokens kept: a template's call tag may be one (Qwen's <tool_call>).
  const parsed = format === undefined ? undefined : parseToolCalls(format, tokenizer && c.stopReason !== 'stop_string' ? tokenizer.decode(c.tokens) : c.text);
  // No calls: the text as generated (the generic format's {"response": ...} unwrapped).
  if (!parsed || parsed.calls.length === 0) return { content: format === 'generic' && parsed ? parsed.content : c.text, finish: finishReason(c.stopReason) };
  return {
    content: parsed.content,
    toolCalls: parsed.calls.map((call) => ({ id: call.id ?? newId('call'), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } })),
    finish: 'tool_calls',
  };
}

/** A whole chat.completion; `toolFormat` when the request had tools to call. */
export function chatResponse(meta: ResponseMeta, result: EngineResult, tokenizer: Tokenizer, toolFormat?: ToolCallFormat) {
  return {
    ...envelope(meta, 'chat.completion'),
    choices: result.completions.map((c) => {
      const reply = replyOf(c, toolFormat, tokenizer);
      return {
        index: c.index,
        message: { role: 'assistant', content: reply.content, refusal: null, ...(reply.toolCalls ? { tool_calls: reply.toolCalls } : {}) },
        logprobs: c.logprobs ? { content: chatLogprobs(tokenizer, c.tokens, c.logprobs, c.topLogprobs), refusal: null } : null,
        finish_reason: reply.finish,
      };
    }),
    usage: usageOf([result]),
  };
}

export interface ChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string | null; tool_calls?: (ToolCallOut & { index: number })[] };
  logprobs: { content: ChatTokenLogprob[]; refusal: null } | null;
  finish_reason: 'stop' | 'length' | 'tool_calls' | null;
}

/** One chat.completion.chunk; the usage chunk (stream_options.include_usage) has no choices. */
export function chatChunk(meta: ResponseMeta, choices: ChunkChoice[], usage?: Usage | null) {
  return { ...envelope(meta, 'chat.completion.chunk'), choices, ...(usage !== undefined ? { usage } : {}) };
}

export interface CompletionChoice {
  text: string;
  index: number;
  logprobs: CompletionLogprobs | null;
  finish_reason: 'stop' | 'length' | null;
}

/** A text_completion: whole, or one streamed chunk of it. */
export function completionResponse(meta: ResponseMeta, choices: CompletionChoice[], usage?: Usage | null) {
  return { ...envelope(meta, 'text_completion'), choices, ...(usage !== undefined ? { usage } : {}) };
}
