// The OpenAI-compatible server (src/server/) driven by the official `openai` npm client, on Node
// (node:http) and, from dist/wasmforge.js, on Deno (Deno.serve) and Bun (Bun.serve). What the
// server answers is checked against the engine and tokenizer run directly on the same prompt (the
// generation itself is checked against llama.cpp elsewhere): the chat template path, streaming,
// n, seeds, log-probs, completions' four prompt shapes, echo, stop strings, abort and disconnect
// (the engine's request is cancelled and its KV blocks return), and every kind of bad request
// with its status and OpenAI error object.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHATML_TEMPLATE, ChatTemplate } from '../src/chat/template.js';
import { readGGUF } from '../src/gguf/reader.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { fileSource } from '../src/runtime/file-source.js';
import { createServerHandler, type ServerHandler, type ServerOptions } from '../src/server/handler.js';
import { listen, type Listener } from '../src/server/listen.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { VERSION } from '../src/version.js';
import { executable } from './helpers/runtimes.js';
import { swaModels } from './helpers/swa-model.js';
import { writeSyntheticLlama } from './helpers/synthetic.js';
import pkg from '../package.json' with { type: 'json' };

const MODEL_ID = 'stories';
let model: Model;
let handler: ServerHandler;
let listener: Listener;
let client: OpenAI;

async function serve(m: Model | Promise<Model>, options: ServerOptions = {}): Promise<{ handler: ServerHandler; listener: Listener; client: OpenAI }> {
  const h = createServerHandler(m, { modelId: MODEL_ID, engine: { maxSequences: 8 }, ...options });
  const l = await listen(h, { port: 0 });
  return { handler: h, listener: l, client: new OpenAI({ baseURL: `${l.url}/v1`, apiKey: options.apiKeys?.[0] ?? 'none', maxRetries: 0 }) };
}

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 1 });
  ({ handler, listener, client } = await serve(model));
  await handler.ready;
});

afterAll(async () => {
  await listener?.close();
  await handler?.close();
  await model?.dispose();
});

const chatml = () => ChatTemplate.forTokenizer(CHATML_TEMPLATE, model.tokenizer);
const MESSAGES = [{ role: 'system' as const, content: 'You tell short stories.' }, { role: 'user' as const, content: 'Once upon a time' }];

/** The same generation run on the model directly: the chat template rendered here, tokens by the tokenizer. */
async function direct(prompt: string | number[], options: Parameters<Model['generate']>[1] = {}) {
  return model.generate(prompt, { temperature: 0, ...options }).result;
}

async function post(path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${listener.url}${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'Content-Type': 'application/json' }, ...init });
}

describe('server: the openai client on Node', () => {
  it('lists the model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL_ID]);
    expect((await client.models.retrieve(MODEL_ID)).id).toBe(MODEL_ID);
  });

  it('chat: the reply is the greedy continuation of the chat-templated prompt, with usage and finish_reason', async () => {
    const r = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 24, temperature: 0 });
    const ref = await direct(chatml().render(MESSAGES), { maxTokens: 24, parseSpecial: true });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe(MODEL_ID);
    expect(r.system_fingerprint).toBe(`wasmforge-${VERSION}-${model.backend.name}`);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: ref.text });
    expect(r.choices[0]!.finish_reason).toBe(ref.stopReason === 'max_tokens' ? 'length' : 'stop');
    expect(r.usage).toMatchObject({ prompt_tokens: ref.promptTokens, completion_tokens: ref.tokens.length, total_tokens: ref.promptTokens + ref.tokens.length });
  });

  it('chat streamed: the deltas add up to the whole reply; include_usage sends usage last', async () => {
    const whole = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 30, temperature: 0 });
    const stream = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    expect(text).toBe(whole.choices[0]!.message.content);
    const finishes = chunks.flatMap((c) => c.choices.filter((ch) => ch.finish_reason !== null));
    expect(finishes.map((f) => f.finish_reason)).toEqual([whole.choices[0]!.finish_reason]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: whole.usage!.prompt_tokens, completion_tokens: whole.usage!.completion_tokens });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('n seeded choices are each what a lone request with seed + i gives', async () => {
    const body = { model: MODEL_ID, messages: MESSAGES, max_tokens: 16, temperature: 0.9, seed: 40 };
    const r = await client.chat.completions.create({ ...body, n: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      const alone = await client.chat.completions.create({ ...body, seed: 40 + i });
      expect(r.choices[i]!.message.content).toBe(alone.choices[0]!.message.content);
    }
    expect(new Set(r.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
  });

  it('logprobs with top_logprobs: the model\'s log-softmax, the chosen token first under greedy, text and bytes consistent', async () => {
    const r = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0]!.logprobs!.content!;
    const ref = await model.engine().chat(MESSAGES, { chatTemplate: chatml(), maxTokens: 12, temperature: 0, logprobs: true }).result;
    expect(content).toHaveLength(ref.tokens.length);
    content.forEach((t, i) => {
      expect(t.logprob).toBeCloseTo(ref.completions[0]!.logprobs![i]!, 10);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]).toEqual({ token: t.token, logprob: t.logprob, bytes: t.bytes });
      expect(t.top_logprobs[1]!.logprob).toBeLessThanOrEqual(t.top_logprobs[0]!.logprob);
      expect(Buffer.from(t.bytes!).toString('utf8')).toBe(t.token);
    });
    expect(content.map((t) => t.token).join('')).toBe(r.choices[0]!.message.content);
    const streamed: number[] = [];
    for await (const c of await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, stream: true })) {
      for (const ch of c.choices) streamed.push(...(ch.logprobs?.content ?? []).map((t) => t.logprob));
    }
    expect(streamed).toEqual(content.map((t) => t.logprob));
  });

  it('stop strings cut the reply', async () => {
    const whole = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 40, temperature: 0 });
    const text = whole.choices[0]!.message.content!;
    const stop = text.slice(10, 14);
    const r = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 40, temperature: 0, stop: ['never-there', stop] });
    expect(r.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  it('completions: text and token-id prompts agree; echo; several prompts × n; logprobs as parallel arrays', async () => {
    const prompt = 'Once upon a time, there was';
    const ids = model.tokenizer.encode(prompt, { addSpecial: true });
    const ref = await direct(prompt, { maxTokens: 10 });
    const byText = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 10, temperature: 0 });
    const byIds = await client.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 10, temperature: 0 });
    expect(byText.object).toBe('text_completion');
    expect(byText.choices[0]!.text).toBe(ref.text);
    expect(byIds.choices[0]!.text).toBe(ref.text);
    expect(byText.usage!.prompt_tokens).toBe(ids.length);
    const echoed = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 10, temperature: 0, echo: true });
    expect(echoed.choices[0]!.text).toBe(prompt + ref.text);

    const prompts = ['The cat', 'A big dog'];
    const many = await client.completions.create({ model: MODEL_ID, prompt: prompts, n: 2, max_tokens: 8, temperature: 0.8, seed: 9 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    for (const [p, text] of prompts.entries()) {
      for (let i = 0; i < 2; i++) {
        const alone = await client.completions.create({ model: MODEL_ID, prompt: text, max_tokens: 8, temperature: 0.8, seed: 9 + i });
        expect(many.choices[p * 2 + i]!.text).toBe(alone.choices[0]!.text);
      }
    }

    const lp = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 6, temperature: 0, logprobs: 2 });
    const l = lp.choices[0]!.logprobs!;
    expect(l.tokens!.join('')).toBe(lp.choices[0]!.text);
    expect(l.token_logprobs).toHaveLength(l.tokens!.length);
    expect(l.top_logprobs!.map((t) => Object.keys(t).length)).toEqual(l.tokens!.map(() => 2));
    l.tokens!.forEach((tok, i) => expect(l.top_logprobs![i]![tok]).toBe(l.token_logprobs![i]));
    expect(l.text_offset).toEqual(l.tokens!.map((_, i) => l.tokens!.slice(0, i).join('').length));
  });

  it('completions with echo and logprobs: the prompt\'s own log-probabilities first (none for its first token), then the completion\'s', async () => {
    const prompt = 'Once upon a time';
    const ids = model.tokenizer.encode(prompt, { addSpecial: true });
    const r = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 5, temperature: 0, echo: true, logprobs: 2 });
    const plain = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 5, temperature: 0, logprobs: 2 });
    const l = r.choices[0]!.logprobs!;
    expect(r.choices[0]!.text).toBe(prompt + plain.choices[0]!.text);
    expect(l.tokens).toHaveLength(ids.length + 5);
    expect(l.token_logprobs![0]).toBeNull();
    expect(l.top_logprobs![0]).toBeNull();
    const rows = await model.evaluate(ids);
    for (let i = 1; i < ids.length; i++) {
      const row = rows[i - 1]!, max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
      expect(l.token_logprobs![i]).toBeCloseTo(row[ids[i]!]! - lse, 8);
      expect(Object.keys(l.top_logprobs![i]!)).toHaveLength(2);
    }
    expect(l.token_logprobs!.slice(ids.length)).toEqual(plain.choices[0]!.logprobs!.token_logprobs);
  });

  it('completions streamed: chunks add up per choice, finish reasons and usage at the end', async () => {
    const body = { model: MODEL_ID, prompt: ['The cat', 'A big dog'], max_tokens: 12, temperature: 0 };
    const whole = await client.completions.create(body);
    const texts = ['', ''];
    const finishes: (string | null)[] = [null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of await client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.text;
        if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
      }
      if (c.usage) usage = c.usage;
    }
    expect(texts).toEqual(whole.choices.map((c) => c.text));
    expect(finishes).toEqual(whole.choices.map((c) => c.finish_reason));
    expect(usage!.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('an aborted stream cancels its request at once and every KV block comes back', async () => {
    const engine = model.engine();
    const abort = new AbortController();
    const stream = await client.chat.completions.create(
      { model: MODEL_ID, messages: MESSAGES, max_tokens: 1500, temperature: 0.8, stream: true, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsStreaming,
      { signal: abort.signal },
    );
    let n = 0;
    // The client ends the iteration (or throws, by version) once aborted.
    await (async () => {
      for await (const _ of stream) if (++n === 5) abort.abort();
    })().catch(() => {});
    expect(n).toBeGreaterThanOrEqual(5); // a chunk already buffered may still come
    await waitFor(() => engine.metrics().runningRequests === 0, 'the request to be cancelled');
    engine.clearPrefixCache();
    expect(engine.metrics().kvBlocksUsed).toBe(0);
  });

  it('a client that disconnects from a whole (non-streamed) request cancels it too', async () => {
    const engine = model.engine();
    const abort = new AbortController();
    const pending = post('/v1/completions', { model: MODEL_ID, prompt: 'Once', max_tokens: 1500, ignore_eos: true, temperature: 0.8 }, { signal: abort.signal });
    await waitFor(() => engine.metrics().runningRequests === 1, 'the request to start');
    abort.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => engine.metrics().runningRequests === 0, 'the request to be cancelled');
    engine.clearPrefixCache();
    expect(engine.metrics().kvBlocksUsed).toBe(0);
  });

  it('errors come back as OpenAI error objects the client understands', async () => {
    const bad = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, temperature: 3 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad).toMatchObject({ status: 400, param: 'temperature', code: 'invalid_value', type: 'invalid_request_error' });
    expect((bad as Error).message).toMatch(/temperature.*\[0, 2\].*3/);
    const missing = await client.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
    const tools = await client.chat.completions.create({
      model: MODEL_ID, messages: MESSAGES, tools: [{ type: 'function', function: { name: 'f f', parameters: {} } }],
    }).catch((e: unknown) => e);
    expect(tools).toMatchObject({ status: 400, param: 'tools[0].function.name', code: 'invalid_value' });
    const badSchema = await client.chat.completions.create({
      model: MODEL_ID, messages: MESSAGES, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'email' } } },
    }).catch((e: unknown) => e);
    expect(badSchema).toMatchObject({ status: 400, code: 'unsupported_schema' });
    expect((badSchema as Error).message).toMatch(/format: "email" is not supported/);
  });

  it('response_format json_schema and json_object, and llama.cpp\'s grammar field, constrain the output', async () => {
    const schema = { type: 'object', properties: { hero: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 1, maximum: 99 } }, required: ['hero', 'age'], additionalProperties: false };
    const ajv = new Ajv2020();
    const validate = ajv.compile(schema);
    const r = await client.chat.completions.create({
      model: MODEL_ID, messages: MESSAGES, max_tokens: 200, temperature: 1, seed: 3, n: 4,
      response_format: { type: 'json_schema', json_schema: { name: 'hero', schema, strict: true } },
    });
    for (const c of r.choices) {
      expect(c.finish_reason).toBe('stop');
      expect(validate(JSON.parse(c.message.content!)), c.message.content!).toBe(true);
    }
    const obj = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 300, temperature: 0.7, seed: 1, response_format: { type: 'json_object' } });
    const text = obj.choices[0]!.message.content!;
    if (obj.choices[0]!.finish_reason === 'stop') expect(typeof JSON.parse(text)).toBe('object');
    else expect(text.startsWith('{')).toBe(true); // ran out of tokens inside the object
    const yesNo = await client.completions.create({ model: MODEL_ID, prompt: 'Is it so?', max_tokens: 5, seed: 2, n: 3, grammar: 'root ::= "yes" | "no"' } as OpenAI.CompletionCreateParamsNonStreaming);
    for (const c of yesNo.choices) expect(['yes', 'no']).toContain(c.text);
  });

  it('malformed JSON, bodies past the limit, unknown routes and methods; unknown fields are ignored', async () => {
    const malformed = await post('/v1/chat/completions', '{"messages": [');
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).error).toMatchObject({ code: 'invalid_json', type: 'invalid_request_error' });
    const huge = await post('/v1/completions', { prompt: 'x'.repeat(5 * 2 ** 20) });
    expect(huge.status).toBe(413);
    expect((await huge.json()).error.code).toBe('request_too_large');
    expect((await fetch(`${listener.url}/v2/nothing`)).status).toBe(404);
    const put = await fetch(`${listener.url}/v1/completions`, { method: 'PUT' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('POST');
    const extra = await post('/v1/completions', { model: MODEL_ID, prompt: 'Hi', max_tokens: 2, some_future_field: { a: 1 }, user: 'u1' });
    expect(extra.status).toBe(200);
  });
});

async function waitFor(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One request straight to the handler (no network): status, body, headers. */
async function call(h: ServerHandler, path: string, body?: unknown, init: RequestInit = {}) {
  const r = await h.fetch(new Request(`http://local${path}`, body === undefined ? init : { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), ...init }));
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text, headers: r.headers };
}

describe('server: request validation (every field a 400 naming it)', () => {
  const chat = (extra: Record<string, unknown>) => ({ model: MODEL_ID, messages: MESSAGES, max_tokens: 1, ...extra });
  const cases: [string, string, unknown, string, RegExp?][] = [
    ['/v1/chat/completions', 'not an object', [1, 2], 'body'],
    ['/v1/chat/completions', 'no messages', { model: MODEL_ID }, 'messages'],
    ['/v1/chat/completions', 'empty messages', { messages: [] }, 'messages'],
    ['/v1/chat/completions', 'message not an object', { messages: ['hi'] }, 'messages[0]'],
    ['/v1/chat/completions', 'message without role', { messages: [{ content: 'x' }] }, 'messages[0].role'],
    ['/v1/chat/completions', 'unknown role', { messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role', /"system", "developer", "user", "assistant"/],
    ['/v1/chat/completions', 'tool message without its call id', { messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    ['/v1/chat/completions', 'tool_calls of a user', { messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages[0].tool_calls'],
    ['/v1/chat/completions', 'call arguments not JSON', { messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{nope' } }] }] }, 'messages[0].tool_calls[0].function.arguments'],
    ['/v1/chat/completions', 'function role', { messages: [{ role: 'function', content: 'x', name: 'f' }] }, 'messages[0].role', /deprecated/],
    ['/v1/chat/completions', 'numeric content', { messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    ['/v1/chat/completions', 'image part', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type', /text parts only/],
    ['/v1/chat/completions', 'temperature string', chat({ temperature: 'hot' }), 'temperature'],
    ['/v1/chat/completions', 'temperature < 0', chat({ temperature: -0.1 }), 'temperature'],
    ['/v1/chat/completions', 'top_p > 1', chat({ top_p: 1.5 }), 'top_p'],
    ['/v1/chat/completions', 'top_k fraction', chat({ top_k: 2.5 }), 'top_k'],
    ['/v1/chat/completions', 'min_p 1', chat({ min_p: 1 }), 'min_p'],
    ['/v1/chat/completions', 'frequency_penalty 3', chat({ frequency_penalty: 3 }), 'frequency_penalty'],
    ['/v1/chat/completions', 'presence_penalty -3', chat({ presence_penalty: -3 }), 'presence_penalty'],
    ['/v1/chat/completions', 'seed fraction', chat({ seed: 1.5 }), 'seed'],
    ['/v1/chat/completions', 'max_tokens 0', chat({ max_tokens: 0 }), 'max_tokens'],
    ['/v1/chat/completions', 'max_tokens past the cap', chat({ max_tokens: 10 ** 6 }), 'max_tokens', /at most/],
    ['/v1/chat/completions', 'max_completion_tokens string', chat({ max_completion_tokens: '5' }), 'max_completion_tokens'],
    ['/v1/chat/completions', 'n 0', chat({ n: 0 }), 'n'],
    ['/v1/chat/completions', 'n too many', chat({ n: 1000 }), 'n'],
    ['/v1/chat/completions', 'stop empty', chat({ stop: [''] }), 'stop'],
    ['/v1/chat/completions', 'stop number', chat({ stop: 5 }), 'stop'],
    ['/v1/chat/completions', 'logit_bias key', chat({ logit_bias: { abc: 1 } }), 'logit_bias'],
    ['/v1/chat/completions', 'logit_bias id past vocab', chat({ logit_bias: { 99999: 1 } }), 'logit_bias'],
    ['/v1/chat/completions', 'logit_bias value', chat({ logit_bias: { 5: 101 } }), 'logit_bias.5'],
    ['/v1/chat/completions', 'top_logprobs without logprobs', chat({ top_logprobs: 2 }), 'top_logprobs'],
    ['/v1/chat/completions', 'top_logprobs 21', chat({ logprobs: true, top_logprobs: 21 }), 'top_logprobs'],
    ['/v1/chat/completions', 'stream not boolean', chat({ stream: 'yes' }), 'stream'],
    ['/v1/chat/completions', 'stream_options without stream', chat({ stream_options: { include_usage: true } }), 'stream_options'],
    ['/v1/chat/completions', 'include_usage not boolean', chat({ stream: true, stream_options: { include_usage: 1 } }), 'stream_options.include_usage'],
    ['/v1/chat/completions', 'response_format type', chat({ response_format: { type: 'yaml' } }), 'response_format.type'],
    ['/v1/chat/completions', 'json_schema without a schema', chat({ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }), 'response_format.json_schema.schema'],
    ['/v1/chat/completions', 'response_format beside grammar', chat({ grammar: 'root ::= "a"', response_format: { type: 'json_object' } }), 'response_format'],
    ['/v1/chat/completions', 'grammar and json_schema', chat({ grammar: 'root ::= "a"', json_schema: {} }), 'grammar'],
    ['/v1/completions', 'grammar not a string', { prompt: 'a', grammar: 5 }, 'grammar'],
    ['/v1/chat/completions', 'tool_choice required', chat({ tool_choice: 'required' }), 'tool_choice'],
    ['/v1/chat/completions', 'audio', chat({ modalities: ['text', 'audio'] }), 'modalities'],
    ['/v1/chat/completions', 'model not a string', chat({ model: 7 }), 'model'],
    ['/v1/completions', 'no prompt', { model: MODEL_ID }, 'prompt'],
    ['/v1/completions', 'empty prompt', { prompt: '' }, 'prompt'],
    ['/v1/completions', 'prompt object', { prompt: { text: 'x' } }, 'prompt'],
    ['/v1/completions', 'mixed prompt list', { prompt: ['a', [1, 2]] }, 'prompt'],
    ['/v1/completions', 'token id past vocab', { prompt: [1, 2, 100000] }, 'prompt', /outside the vocabulary/],
    ['/v1/completions', 'empty prompt in a list', { prompt: ['a', ''] }, 'prompt[1]'],
    ['/v1/completions', 'logprobs 6', { prompt: 'a', logprobs: 6 }, 'logprobs'],
    ['/v1/completions', 'suffix', { prompt: 'a', suffix: 'b' }, 'suffix'],
    ['/v1/completions', 'best_of > n', { prompt: 'a', best_of: 3 }, 'best_of'],
    ['/v1/embeddings', 'decoder model', { input: 'hello' }, 'model', /embedding model/],
    ['/tokenize', 'no content', {}, 'content'],
    ['/detokenize', 'bad id', { tokens: [1, -4] }, 'tokens[1]'],
  ];
  it.each(cases)('%s: %s', async (path, _what, body, param, message) => {
    const r = await call(handler, path, body);
    expect(r.status, r.text).toBe(400);
    expect(r.json.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(typeof r.json.error.code).toBe('string');
    if (message) expect(r.json.error.message).toMatch(message);
  });

  it('a prompt longer than the context is 400 context_length_exceeded', async () => {
    const r = await call(handler, '/v1/completions', { prompt: Array(model.contextLength + 5).fill(5) });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('context_length_exceeded');
  });

  it('never a 500 for a random mutation of a valid request', async () => {
    // Seeded: values of every JSON type put into every field of a valid request.
    const valid = { model: MODEL_ID, messages: MESSAGES, max_tokens: 2, temperature: 0.5, top_p: 0.9, n: 1, stop: ['x'], seed: 1, logprobs: false, stream: false };
    const values: unknown[] = [null, true, false, 0, -1, 1e300, 0.5, NaN, '', 'x', [], [1], ['a'], {}, { a: 1 }, [{}], [{ role: 'user' }], [{ role: 'user', content: [] }]];
    const statuses = new Set<number>();
    for (const key of [...Object.keys(valid), 'logit_bias', 'top_logprobs', 'stream_options', 'response_format', 'tools', 'tool_choice', 'chat_template_kwargs']) {
      for (const v of values) {
        const r = await call(handler, '/v1/chat/completions', JSON.stringify({ ...valid, [key]: v }));
        statuses.add(r.status);
        expect(r.status, `${key}: ${JSON.stringify(v)} → ${r.text}`).toBeLessThan(500);
        if (r.status >= 400) expect(r.json.error.message.length).toBeGreaterThan(0);
      }
    }
    expect(statuses).toContain(200);
    expect(statuses).toContain(400);
  });
});

describe('server: health, auth, CORS, limits, metrics', () => {
  it('health: 503 loading while the model loads, then ok; other routes 503 with Retry-After meanwhile', async () => {
    let resolve!: (m: Model) => void;
    const h = createServerHandler(new Promise<Model>((r) => (resolve = r)), { modelId: MODEL_ID });
    const loading = await call(h, '/health');
    expect(loading.status).toBe(503);
    expect(loading.json.status).toBe('loading');
    const early = await call(h, '/v1/completions', { prompt: 'x' });
    expect(early.status).toBe(503);
    expect(early.headers.get('retry-after')).toBe('1');
    const m = await loadModel(await bundledModelPath(), { threads: 1 });
    resolve(m);
    await h.ready;
    expect((await call(h, '/health')).json).toEqual({ status: 'ok' });
    await h.close();
    await m.dispose();
  });

  it('health says why when the model failed to load', async () => {
    const h = createServerHandler(Promise.reject(new Error('no such file')), { modelId: MODEL_ID });
    await h.ready.catch(() => {});
    const r = await call(h, '/health');
    expect(r.status).toBe(500);
    expect(r.json.message).toMatch(/no such file/);
    expect((await call(h, '/v1/models')).status).toBe(503);
  });

  it('a full queue is 503 with Retry-After, and health says overloaded', async () => {
    const m = await loadModel(await bundledModelPath(), { threads: 1 });
    const h = createServerHandler(m, { modelId: MODEL_ID, engine: { maxQueue: 0 } });
    await h.ready;
    const r = await call(h, '/v1/completions', { prompt: 'x', max_tokens: 2 });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.json.error.code).toBe('overloaded');
    expect((await call(h, '/health')).json.status).toBe('overloaded');
    await h.close();
    await m.dispose();
  });

  it('API keys: missing or wrong is 401 (health stays open); the right one passes', async () => {
    const s = await serve(model, { apiKeys: ['k-one', 'k-two'], engine: undefined });
    try {
      const noKey = await fetch(`${s.listener.url}/v1/models`);
      expect(noKey.status).toBe(401);
      expect((await noKey.json()).error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
      const wrong = new OpenAI({ baseURL: `${s.listener.url}/v1`, apiKey: 'k-onf', maxRetries: 0 });
      await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      expect((await fetch(`${s.listener.url}/health`)).status).toBe(200);
      expect((await s.client.models.list()).data[0]!.id).toBe(MODEL_ID);
      const second = new OpenAI({ baseURL: `${s.listener.url}/v1`, apiKey: 'k-two', maxRetries: 0 });
      expect((await second.models.list()).data).toHaveLength(1);
    } finally {
      await s.listener.close();
    }
  });

  it('CORS: off by default; an allowed origin gets the headers and its preflight', async () => {
    const origin = { headers: { Origin: 'https://app.example' } };
    expect((await call(handler, '/v1/models', undefined, origin)).headers.get('access-control-allow-origin')).toBeNull();
    const m = await loadModel(await bundledModelPath(), { threads: 1 });
    const h = createServerHandler(m, { modelId: MODEL_ID, corsOrigins: ['https://app.example'] });
    await h.ready;
    expect((await call(h, '/v1/models', undefined, origin)).headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect((await call(h, '/v1/models', undefined, { headers: { Origin: 'https://evil.example' } })).headers.get('access-control-allow-origin')).toBeNull();
    const pre = await call(h, '/v1/chat/completions', undefined, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect(pre.headers.get('access-control-allow-headers')).toContain('Authorization');
    await h.close();
    await m.dispose();
  });

  it('a body that does not arrive in time is 408 (a slow client cannot hold a request)', async () => {
    const s = await serve(model, { bodyTimeoutMs: 300 });
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(s.listener.port, '127.0.0.1', () => {
          socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":`);
        });
        let data = '';
        socket.on('data', (d) => (data += d));
        socket.on('error', reject);
        socket.on('close', () => resolve(data));
        setTimeout(() => reject(new Error(`the server kept the connection open; it sent: ${data}`)), 5000);
      });
      expect(reply).toMatch(/^HTTP\/1\.1 408/);
      expect(reply).toContain('body_timeout');
    } finally {
      await s.listener.close();
    }
  });

  it('tokenize and detokenize are the tokenizer\'s', async () => {
    const text = 'Once upon a time, Lily saw a cat.';
    const r = await call(handler, '/tokenize', { content: text, with_pieces: true });
    const ids = model.tokenizer.encode(text, { addSpecial: false, parseSpecial: true });
    expect(r.json.tokens.map((t: { id: number }) => t.id)).toEqual(ids);
    expect(r.json.tokens.map((t: { piece: string }) => t.piece)).toEqual(ids.map((id) => Buffer.from(model.tokenizer.tokenToPiece(id)).toString('utf8')));
    expect((await call(handler, '/tokenize', { content: text, add_special: true })).json.tokens).toEqual(model.tokenizer.encode(text, { addSpecial: true }));
    expect((await call(handler, '/detokenize', { tokens: ids })).json.content).toBe(model.tokenizer.decode(ids));
  });

  it('metrics: Prometheus text counting requests by route and status, tokens, TTFT, queue and KV gauges', async () => {
    const before = (await call(handler, '/metrics')).text;
    const count = (text: string, line: string) => Number(new RegExp(`^${line.replace(/[{}"/.]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    const key = 'wasmforge_requests_total{route="/v1/completions",status="200"}';
    await client.completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 3, temperature: 0 });
    await call(handler, '/v1/completions', { prompt: '' });
    const after = (await call(handler, '/metrics')).text;
    expect(count(after, key)).toBe(count(before, key) + 1);
    expect(count(after, 'wasmforge_requests_total{route="/v1/completions",status="400"}')).toBe(count(before, 'wasmforge_requests_total{route="/v1/completions",status="400"}') + 1);
    expect(count(after, 'wasmforge_generated_tokens_total')).toBeGreaterThanOrEqual(count(before, 'wasmforge_generated_tokens_total') + 1);
    expect(count(after, 'wasmforge_time_to_first_token_seconds_count')).toBe(count(before, 'wasmforge_time_to_first_token_seconds_count') + 1);
    for (const name of ['queue_depth', 'requests_running', 'kv_blocks_used', 'kv_blocks_total', 'prefix_cache_hit_ratio']) expect(after).toMatch(new RegExp(`^wasmforge_${name} `, 'm'));
    // Every line is a comment or "name{labels} value".
    for (const line of after.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[\d.e+-]+|\w+(\{[^}]*\})? (NaN|\+Inf))$/);
  });

  it('props and the version', async () => {
    const p = (await call(handler, '/props')).json;
    expect(p).toMatchObject({ model: MODEL_ID, n_ctx: model.contextLength, build_info: `wasmforge ${VERSION}` });
    expect(p.chat_template).toBe(CHATML_TEMPLATE);
    expect(VERSION).toBe(pkg.version);
  });
});

describe('server: speculative decoding for every request (--lookup, --draft)', () => {
  /** A greedy story, then its first words again: the model copies, and drafts are kept. */
  async function repeatingPrompt(): Promise<number[]> {
    const story = (await direct('Once upon a time', { maxTokens: 80, ignoreEos: true })).tokens;
    return [model.tokenizer.bosId!, ...story, model.tokenizer.bosId!, ...story.slice(0, 8)];
  }

  it('prompt lookup and a draft model: the same replies as without; drafts counted in /metrics, named in /props', async () => {
    const prompt = await repeatingPrompt();
    const body = { model: MODEL_ID, prompt, max_tokens: 40, temperature: 0 };
    const plain = (await post('/v1/completions', body).then((r) => r.json())).choices[0].text;
    for (const speculative of [{ method: 'prompt-lookup', draftTokens: 6, adaptive: false }, { method: 'draft-model', draft: model, draftTokens: 3 }] as const) {
      const s = await serve(model, { speculative });
      try {
        await s.handler.ready;
        const r = await fetch(`${s.listener.url}/v1/completions`, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
        expect((await r.json()).choices[0].text).toBe(plain);
        const chat = await s.client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 20, temperature: 0 });
        expect(chat.choices[0]!.message.content).toBe((await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_tokens: 20, temperature: 0 })).choices[0]!.message.content);
        const metrics = (await call(s.handler, '/metrics')).text;
        const drafted = Number(/^wasmforge_draft_tokens_total (\d+)$/m.exec(metrics)?.[1]);
        expect(drafted).toBeGreaterThan(0);
        expect(Number(/^wasmforge_draft_tokens_accepted_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
        expect((await call(s.handler, '/props')).json.speculative).toEqual({ method: speculative.method, draft_tokens: speculative.draftTokens, adaptive: speculative.method === 'draft-model' });
      } finally {
        await s.listener.close();
        await s.handler.close();
      }
    }
    expect((await call(handler, '/props')).json.speculative).toBeNull();
  });

  it('bad options fail loading with the reason: a draft of another vocabulary, a bad draft length', async () => {
    const files = await swaModels(); // a made-up 512-token vocabulary: stories260K's size, other tokens
    const other = await loadModel(await files.path(undefined), { threads: 1 });
    try {
      for (const [speculative, why] of [
        [{ method: 'draft-model', draft: other }, /the draft model has another vocabulary than the model: token \d+ is/],
        [{ method: 'prompt-lookup', draftTokens: 0 }, /speculative\.draftTokens must be an integer in 1\.\.64, got 0/],
      ] as const) {
        const h = createServerHandler(model, { modelId: MODEL_ID, speculative });
        await expect(h.ready).rejects.toThrow(why);
        expect(h.status).toBe('failed');
        await h.close();
      }
    } finally {
      await other.dispose();
      await files.dispose();
    }
  });
});

const BGE_VOCAB = '../shared/vocab/ggml-vocab-bert-bge.gguf';
if (!existsSync(BGE_VOCAB)) console.warn(`server: ${BGE_VOCAB} is absent, skipping the embeddings cases`);

describe.skipIf(!existsSync(BGE_VOCAB))('server: embeddings with an encoder model', () => {
  let dir: string;
  let bert: Model;
  let h: ServerHandler;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wasmforge-serve-'));
    const src = await fileSource(BGE_VOCAB);
    const vocab = await readGGUF(src);
    await src.close();
    const path = join(dir, 'bert.gguf');
    await writeSyntheticLlama(path, { arch: 'bert', dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 4, ffnDim: 128, type: GGMLType.F32, vocab: { metadataFrom: vocab }, seed: 3, std: 0.08, contextLength: 128, pooling: 1 });
    bert = await loadModel(path, { threads: 1 });
    h = createServerHandler(bert, { modelId: 'bert' });
    await h.ready;
  });
  afterAll(async () => {
    await h?.close();
    await bert?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('float and base64 vectors are the model\'s embeddings, in order, with usage', async () => {
    const texts = ['the cat sat on the mat', 'a dog ran'];
    const r = await call(h, '/v1/embeddings', { model: 'bert', input: texts });
    expect(r.status, r.text).toBe(200);
    expect(r.json.object).toBe('list');
    for (const [i, t] of texts.entries()) {
      expect(r.json.data[i]).toMatchObject({ object: 'embedding', index: i });
      expect(r.json.data[i].embedding).toEqual(Array.from(await bert.embed(t)));
    }
    const tokens = texts.reduce((n, t) => n + bert.tokenizer.encode(t, { addSpecial: true }).length, 0);
    expect(r.json.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
    const b64 = await call(h, '/v1/embeddings', { input: texts[0], encoding_format: 'base64' });
    const bytes = Buffer.from(b64.json.data[0].embedding, 'base64');
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4))).toEqual(r.json.data[0].embedding);
    const ids = await call(h, '/v1/embeddings', { input: bert.tokenizer.encode(texts[1]!, { addSpecial: true }) });
    expect(ids.json.data[0].embedding).toEqual(r.json.data[1].embedding);
  });

  it('generation routes on an encoder and bad dimensions are 400s', async () => {
    expect((await call(h, '/v1/chat/completions', { messages: MESSAGES })).json.error.message).toMatch(/embedding model/);
    expect((await call(h, '/v1/embeddings', { input: 'x', dimensions: 3 })).json.error).toMatchObject({ param: 'dimensions', code: 'unsupported_parameter' });
    expect((await call(h, '/health')).json.status).toBe('ok');
  });
});

describe('server: Deno.serve and Bun.serve (dist/wasmforge.js) with the openai client', () => {
  for (const name of ['deno', 'bun'] as const) {
    const exe = executable(name);
    if (!exe.path) console.warn(`server: skipping ${name}: ${exe.reason}`);
    it.skipIf(!exe.path)(`${name}: chat whole and streamed, n with logprobs as on Node, completions, abort mid-stream, error objects`, { timeout: 120_000 }, async () => {
      const args = name === 'deno' ? ['run', '-A', 'test/portable/serve.js'] : ['test/portable/serve.js'];
      const child = spawn(exe.path!, [...args, await bundledModelPath()], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const url = await listening(child);
        const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
        const body = { model: 'served', messages: MESSAGES, max_tokens: 20, temperature: 0 };
        const whole = await c.chat.completions.create(body);
        const ref = await direct(chatml().render(MESSAGES), { maxTokens: 20, parseSpecial: true });
        expect(whole.choices[0]!.message.content).toBe(ref.text);
        let streamed = '';
        for await (const chunk of await c.chat.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.delta.content ?? '';
        expect(streamed).toBe(ref.text);
        // n seeded choices with log-probs: the same tokens and numbers as Node's server gives.
        const sampled = { messages: MESSAGES, max_tokens: 10, temperature: 0.9, seed: 5, n: 2, logprobs: true, top_logprobs: 2 };
        const there = await c.chat.completions.create({ ...sampled, model: 'served' });
        const here = await client.chat.completions.create({ ...sampled, model: MODEL_ID });
        expect(there.choices).toHaveLength(2);
        expect(there.choices.map((ch) => [ch.message.content, ch.logprobs])).toEqual(here.choices.map((ch) => [ch.message.content, ch.logprobs]));
        const completion = await c.completions.create({ model: 'served', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
        expect(completion.choices[0]!.text).toBe((await direct('Once upon a time', { maxTokens: 8 })).text);
        const abort = new AbortController();
        const long = await c.chat.completions.create({ ...body, max_tokens: 1500, ignore_eos: true, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming, { signal: abort.signal });
        let n = 0;
        await (async () => {
          for await (const _ of long) if (++n === 3) abort.abort();
        })().catch(() => {});
        expect(n).toBeGreaterThanOrEqual(3); // a chunk already buffered may still come
        // The aborted request is gone: the server's queue and running gauges return to 0.
        const gauges = async () => (await (await fetch(`${url}/metrics`)).text()).match(/^wasmforge_requests_running (\d+)$/m)?.[1];
        const end = Date.now() + 10_000;
        while ((await gauges()) !== '0' && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
        expect(await gauges()).toBe('0');
        await expect(c.chat.completions.create({ ...body, top_p: 2 })).rejects.toMatchObject({ status: 400, param: 'top_p' });
      } finally {
        child.kill('SIGKILL');
      }
    });
  }
});

/** The URL a serve.js child prints once it listens. */
function listening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    const timer = setTimeout(() => reject(new Error(`no LISTENING line within 60 s; stdout: ${out}; stderr: ${err}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /LISTENING (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code) => reject(new Error(`exited with ${code}; stdout: ${out}; stderr: ${err}`)));
  });
}
