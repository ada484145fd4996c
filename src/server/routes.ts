// The routes that run the model: chat and text completions (whole or streamed as server-sent
// events), embeddings, tokenize / detokenize. Each reads its body with openai-requests.ts, submits
// to the engine, and shapes the answer with openai-responses.ts.
import type { ChatMessage, ChatTemplate } from '../chat/template.js';
import { Channel } from '../engine/channel.js';
import type { Engine } from '../engine/engine.js';
import type { EngineGeneration, EnginePiece, EngineResult } from '../engine/types.js';
import type { Model } from '../model/model.js';
import { HttpError, httpErrorOf, invalidField } from './errors.js';
import { Fields } from './fields.js';
import { jsonResponse } from './http.js';
import type { ServerMetrics } from './metrics.js';
import { readChatRequest, readCompletionRequest, readEmbeddingRequest, type RequestLimits, checkModel } from './openai-requests.js';
import {
  chatChunk, chatLogprobs, chatResponse, completionLogprobs, completionResponse, finishReason, joinLogprobs, newId, promptLogprobs, replyOf, usageOf,
  type CompletionChoice, type ResponseMeta,
} from './openai-responses.js';
import { planToolCalls, toolCallFormatOf, type ToolCallFormat } from '../chat/tool-calls.js';
import { sseResponse } from './sse.js';
import { StopStringMatcher } from '../generation/stop-strings.js';

export interface ServedModel {
  id: string;
  model: Model;
  /** The generation engine; undefined for an embedding (encoder) model. */
  engine: Engine | undefined;
  template: ChatTemplate | undefined;
  limits: RequestLimits;
  contextLength: number;
  maxQueue: number;
  /** Unix seconds the model became ready. */
  created: number;
  systemFingerprint: string;
  requestTimeoutMs: number | undefined;
}

export interface RouteContext {
  request: Request;
  /** Headers every response of this request carries (CORS). */
  headers: Record<string, string>;
  served: ServedModel;
  metrics: ServerMetrics;
  /** Record the response's status (a stream calls it when it ends). */
  finish(status: number): void;
  json(): Promise<unknown>;
}

function generationEngine(served: ServedModel): Engine {
  if (!served.engine) throw new HttpError(400, 'invalid_request_error', 'unsupported', `${served.id} is an embedding model: it does not generate text (use /v1/embeddings)`);
  return served.engine;
}

function metaOf(served: ServedModel, prefix: string): ResponseMeta {
  return { id: newId(prefix), created: Math.floor(Date.now() / 1000), model: served.id, systemFingerprint: served.systemFingerprint };
}

/** An AbortController that fires when the client's request is aborted (it disconnected). */
function linkedAbort(request: Request): AbortController {
  const abort = new AbortController();
  const onAbort = () => abort.abort(request.signal.reason);
  if (request.signal.aborted) onAbort();
  else request.signal.addEventListener('abort', onAbort, { once: true });
  return abort;
}

/** Stream events; errors become the stream's last event, and the request's metrics are recorded at its end. */
function stream(ctx: RouteContext, events: AsyncIterable<unknown>, abort: AbortController): Response {
  return sseResponse(events, abort, {
    headers: ctx.headers,
    errorBody: (err) => httpErrorOf(err).body(),
    onEnd: (err) => ctx.finish(err === undefined ? 200 : abort.signal.aborted ? 499 : httpErrorOf(err).status),
  });
}

async function chat(ctx: RouteContext): Promise<Response> {
  const req = readChatRequest(await ctx.json(), ctx.served.limits);
  const engine = generationEngine(ctx.served);
  let messages = req.messages;
  let variables = req.templateVariables;
  let toolFormat: ToolCallFormat | undefined;
  let toolTrigger: string | undefined;
  if (req.tools) {
    // The template shows the tools; unless tool_choice is "none", a grammar keeps the calls well-formed.
    variables = { ...variables, tools: req.tools.list };
    if (req.tools.choice !== 'none') {
      const plan = planToolCalls(toolCallFormatOf(ctx.served.template!.source), req.tools.list, req.tools.choice, req.tools.parallel);
      toolFormat = plan.format;
      toolTrigger = plan.trigger;
      Object.assign(req.request, { grammar: plan.grammar, grammarTrigger: plan.trigger });
      if (plan.systemPrompt) messages = withSystemPrompt(messages, plan.systemPrompt);
    }
  }
  const abort = linkedAbort(ctx.request);
  const generation = engine.chat(messages, {
    ...req.request, chatTemplate: ctx.served.template, variables, signal: abort.signal, timeoutMs: ctx.served.requestTimeoutMs,
  });
  const meta = metaOf(ctx.served, 'chatcmpl');
  const tok = ctx.served.model.tokenizer;
  if (!req.stream) {
    const result = await generation.result;
    ctx.metrics.generation(result);
    return jsonResponse(chatResponse(meta, result, tok, toolFormat), 200, ctx.headers);
  }
  const n = req.request.n ?? 1;
  const usage = req.includeUsage ? null : undefined; // include_usage: every chunk says usage null but the last
  async function* events() {
    for (let i = 0; i < n; i++) yield chatChunk(meta, [{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], usage);
    if (toolFormat) {
      // With tools, text before the call tag streams as it comes (held back while it could be the tag's start);
      // the calls come in one delta at the end, parsed from the whole reply.
      const live = toolTrigger === undefined ? [] : Array.from({ length: n }, () => ({
        text: tok.createStreamDecoder(), tag: new StopStringMatcher([toolTrigger]), sent: '', calling: false,
      }));
      if (live.length > 0) {
        for await (const p of generation) {
          const s = live[p.index];
          if (!s || s.calling || p.tokenId < 0) continue;
          const { emit, stopped } = s.tag.push(s.text.push(p.tokenId));
          s.calling = stopped;
          if (emit === '') continue;
          s.sent += emit;
          yield chatChunk(meta, [{ index: p.index, delta: { content: emit }, logprobs: null, finish_reason: null }], usage);
        }
      }
      const result = await generation.result;
      ctx.metrics.generation(result);
      for (const c of result.completions) {
        const reply = replyOf(c, toolFormat, tok);
        const sent = live[c.index]?.sent ?? '';
        // What the client has not seen yet: the calls, or the rest of the text.
        const text = reply.content ?? '';
        const rest = reply.toolCalls ? (sent === '' ? text : '') : text.startsWith(sent) ? text.slice(sent.length) : text;
        const delta = { ...(rest !== '' || (!reply.toolCalls && sent === '') ? { content: rest } : {}), ...(reply.toolCalls ? { tool_calls: reply.toolCalls.map((t, index) => ({ index, ...t })) } : {}) };
        if (Object.keys(delta).length > 0) yield chatChunk(meta, [{ index: c.index, delta, logprobs: null, finish_reason: null }], usage);
        yield chatChunk(meta, [{ index: c.index, delta: {}, logprobs: null, finish_reason: reply.finish }], usage);
      }
      if (req.includeUsage) yield chatChunk(meta, [], usageOf([result]));
      return;
    }
    for await (const p of generation) {
      const logprobs = p.logprob !== undefined && p.tokenId >= 0 ? { content: chatLogprobs(tok, [p.tokenId], [p.logprob], p.topLogprobs && [p.topLogprobs]), refusal: null } : null;
      if (p.text === '' && !logprobs) continue; // text held back (a partial character, a possible stop string)
      yield chatChunk(meta, [{ index: p.index, delta: { content: p.text }, logprobs, finish_reason: null }], usage);
    }
    const result = await generation.result;
    ctx.metrics.generation(result);
    for (const c of result.completions) yield chatChunk(meta, [{ index: c.index, delta: {}, logprobs: null, finish_reason: finishReason(c.stopReason) }], usage);
    if (req.includeUsage) yield chatChunk(meta, [], usageOf([result]));
  }
  return stream(ctx, events(), abort);
}

async function completions(ctx: RouteContext): Promise<Response> {
  const req = readCompletionRequest(await ctx.json(), ctx.served.limits);
  const engine = generationEngine(ctx.served);
  const tok = ctx.served.model.tokenizer;
  const abort = linkedAbort(ctx.request);
  const n = req.request.n ?? 1;
  const generations: EngineGeneration[] = [];
  try {
    for (const prompt of req.prompts) generations.push(engine.generate({ ...req.request, prompt, signal: abort.signal, timeoutMs: ctx.served.requestTimeoutMs }));
  } catch (err) {
    abort.abort(err); // one prompt was refused: the ones already submitted go too
    throw err;
  }
  const echoes = req.prompts.map((p) => (req.echo ? (typeof p === 'string' ? p : tok.decode(p)) : ''));
  // echo with logprobs: the prompt's own log-probabilities, from one evaluate() of each prompt.
  const echoed = req.echo && req.request.logprobs ? await Promise.all(req.prompts.map(async (prompt) => {
    const ids = typeof prompt === 'string' ? tok.encode(prompt, { addSpecial: true }) : prompt;
    return promptLogprobs(tok, ids, await engine.evaluate(ids, { signal: abort.signal }), req.request.topLogprobs ?? 0);
  })).catch((err: unknown) => {
    abort.abort(err);
    throw err;
  }) : undefined;
  const meta = metaOf(ctx.served, 'cmpl');
  const logprobsOf = (c: EngineResult['completions'][number], p: number) => {
    if (!c.logprobs) return null;
    const own = completionLogprobs(tok, c.tokens, c.logprobs, c.topLogprobs, echoes[p]!.length);
    return echoed ? joinLogprobs(echoed[p]!, own) : own;
  };
  if (!req.stream) {
    const results = await Promise.all(generations.map((g) => g.result)).catch((err: unknown) => {
      abort.abort(err); // one failed: the others stop too
      throw err;
    });
    results.forEach((r) => ctx.metrics.generation(r));
    const choices: CompletionChoice[] = results.flatMap((r, p) => r.completions.map((c) => ({
      text: echoes[p] + c.text, index: p * n + c.index, logprobs: logprobsOf(c, p), finish_reason: finishReason(c.stopReason),
    })));
    return jsonResponse(completionResponse(meta, choices, usageOf(results)), 200, ctx.headers);
  }
  const usage = req.includeUsage ? null : undefined;
  async function* events() {
    for (const [p, echo] of echoes.entries()) {
      if (echo) for (let i = 0; i < n; i++) yield completionResponse(meta, [{ text: echo, index: p * n + i, logprobs: echoed?.[p] ?? null, finish_reason: null }], usage);
    }
    const offsets = new Array<number>(echoes.length * n).fill(0);
    for await (const { p, piece } of merge(generations)) {
      const index = p * n + piece.index;
      const logprobs = piece.logprob !== undefined && piece.tokenId >= 0
        ? completionLogprobs(tok, [piece.tokenId], [piece.logprob], piece.topLogprobs && [piece.topLogprobs], echoes[p]!.length + offsets[index]!) : null;
      offsets[index]! += logprobs ? logprobs.tokens[0]!.length : 0;
      if (piece.text === '' && !logprobs) continue;
      yield completionResponse(meta, [{ text: piece.text, index, logprobs, finish_reason: null }], usage);
    }
    const results = await Promise.all(generations.map((g) => g.result));
    results.forEach((r) => ctx.metrics.generation(r));
    for (const [p, r] of results.entries()) {
      for (const c of r.completions) yield completionResponse(meta, [{ text: '', index: p * n + c.index, logprobs: null, finish_reason: finishReason(c.stopReason) }], usage);
    }
    if (req.includeUsage) yield completionResponse(meta, [], usageOf(results));
  }
  return stream(ctx, events(), abort);
}

/** The messages with instructions added to their system message (or a system message put first). */
function withSystemPrompt(messages: ChatMessage[], prompt: string): ChatMessage[] {
  if (messages[0]?.role === 'system') return [{ ...messages[0], content: `${messages[0].content}\n\n${prompt}` }, ...messages.slice(1)];
  return [{ role: 'system', content: prompt }, ...messages];
}

/** The pieces of several generations as they come, tagged with which one (by position). */
function merge(generations: readonly EngineGeneration[]): AsyncIterable<{ p: number; piece: EnginePiece }> {
  if (generations.length === 1) {
    const g = generations[0]!;
    return (async function* () {
      for await (const piece of g) yield { p: 0, piece };
    })();
  }
  const out = new Channel<{ p: number; piece: EnginePiece }>();
  let open = generations.length;
  generations.forEach(async (g, p) => {
    try {
      for await (const piece of g) out.push({ p, piece });
      if (--open === 0) out.close();
    } catch (err) {
      out.fail(err);
    }
  });
  return out;
}

async function embeddings(ctx: RouteContext): Promise<Response> {
  const s = ctx.served;
  const req = readEmbeddingRequest(await ctx.json(), { ...s.limits, dimensions: s.model.config.dim });
  if (s.engine && !s.model.config.pooling) throw new HttpError(400, 'invalid_request_error', 'unsupported', `${s.id} generates text and declares no pooling; /v1/embeddings needs an embedding model (BERT, nomic-bert, jina-bert-v2, or a decoder with {arch}.pooling_type such as Qwen3-Embedding)`, 'model');
  const tok = s.model.tokenizer;
  const data: { object: 'embedding'; index: number; embedding: number[] | string }[] = [];
  let tokens = 0;
  for (const [index, input] of req.inputs.entries()) {
    if (ctx.request.signal.aborted) throw new HttpError(499, 'invalid_request_error', 'client_closed', 'the client went away');
    const ids = typeof input === 'string' ? tok.encode(input, { addSpecial: true }) : input;
    const vector = await s.model.embed(ids);
    tokens += ids.length;
    data.push({ object: 'embedding', index, embedding: req.encoding === 'base64' ? base64Floats(vector) : Array.from(vector) });
  }
  ctx.metrics.embedded(tokens);
  return jsonResponse({ object: 'list', data, model: s.id, usage: { prompt_tokens: tokens, total_tokens: tokens } }, 200, ctx.headers);
}

/** Little-endian f32 bytes in base64, as OpenAI's encoding_format "base64". */
function base64Floats(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  v.forEach((x, i) => view.setFloat32(i * 4, x, true));
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** llama.cpp server's POST /tokenize: {content, add_special = false, parse_special = true, with_pieces = false}. */
async function tokenize(ctx: RouteContext): Promise<Response> {
  const f = new Fields(await ctx.json());
  checkModel(f, ctx.served.limits);
  const content = f.required('content', (k) => f.string(k), 'the text to tokenize');
  const tok = ctx.served.model.tokenizer;
  const ids = tok.encode(content, { addSpecial: f.boolean('add_special') ?? false, parseSpecial: f.boolean('parse_special') ?? true });
  if (!(f.boolean('with_pieces') ?? false)) return jsonResponse({ tokens: ids }, 200, ctx.headers);
  const strict = new TextDecoder('utf-8', { fatal: true });
  const tokens = ids.map((id) => {
    const bytes = tok.tokenToPiece(id);
    try {
      return { id, piece: strict.decode(bytes) };
    } catch {
      return { id, piece: Array.from(bytes) }; // part of a character: its bytes, as llama.cpp gives them
    }
  });
  return jsonResponse({ tokens }, 200, ctx.headers);
}

/** llama.cpp server's POST /detokenize: {tokens} → {content}. */
async function detokenize(ctx: RouteContext): Promise<Response> {
  const f = new Fields(await ctx.json());
  checkModel(f, ctx.served.limits);
  const ids = f.required('tokens', (k) => f.array(k), 'the token ids');
  const vocab = ctx.served.limits.vocabSize;
  ids.forEach((t, i) => {
    if (!Number.isInteger(t) || (t as number) < 0 || (t as number) >= vocab) throw invalidField(`tokens[${i}]`, `\`tokens[${i}]\` must be a token id in 0..${vocab - 1}, got ${JSON.stringify(t)}`);
  });
  return jsonResponse({ content: ctx.served.model.tokenizer.decode(ids as number[]) }, 200, ctx.headers);
}

export const GENERATION_ROUTES: Record<string, (ctx: RouteContext) => Promise<Response>> = {
  'POST /v1/chat/completions': chat,
  'POST /v1/completions': completions,
  'POST /v1/embeddings': embeddings,
  'POST /tokenize': tokenize,
  'POST /detokenize': detokenize,
};
