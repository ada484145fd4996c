// Tool calls: the format a chat template uses (read from real templates of Qwen 2.5, Hermes 3, Llama
// 3.2 and Mistral Nemo, test/fixtures/chat-templates/), the grammar that keeps a model's calls
// well-formed, the parser, lazy grammars that switch on at a trigger, and the server's `tools` with
// the openai client. The model is random-weight (Llama 2 vocabulary): its calls are made by the
// grammar alone, and every one must parse and carry arguments valid under its tool's schema (ajv).
import Ajv2020 from 'ajv/dist/2020.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, CHATML_TEMPLATE } from '../src/chat/template.js';
import { parseToolCalls, planToolCalls, toolCallFormatOf, type Tool, type ToolCallFormat } from '../src/chat/tool-calls.js';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { CompiledGrammar, LazyGrammarMatcher } from '../src/generation/constrained/matcher.js';
import { loadModel, type Model } from '../src/model/model.js';
import { createServerHandler, type ServerHandler } from '../src/server/handler.js';
import { listen, type Listener } from '../src/server/listen.js';

const TEMPLATES = join(import.meta.dirname, 'fixtures/chat-templates');
const template = (f: string) => readFileSync(join(TEMPLATES, f), 'utf8');
const RANDOM = '../shared/models/llama-2-tiny-random.gguf';
const haveRandom = existsSync(RANDOM);

const TOOLS: Tool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer', minimum: -99, maximum: 99 }, b: { type: 'integer', minimum: -99, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false } } },
];
const ajv = new Ajv2020();
const validators = new Map(TOOLS.map((t) => [t.function.name, ajv.compile(t.function.parameters!)]));

describe('tool-call formats', () => {
  it('are read from the chat templates', () => {
    expect(toolCallFormatOf(template('Qwen-Qwen2.5-7B-Instruct.jinja'))).toBe('hermes');
    expect(toolCallFormatOf(template('NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja'))).toBe('hermes');
    expect(toolCallFormatOf(template('meta-llama-Llama-3.2-3B-Instruct.jinja'))).toBe('llama3');
    expect(toolCallFormatOf(template('mistralai-Mistral-Nemo-Instruct-2407.jinja'))).toBe('mistral');
    expect(toolCallFormatOf(CHATML_TEMPLATE)).toBe('generic');
  });

  it('parse: calls and the text beside them; text that does not parse stays text', () => {
    expect(parseToolCalls('hermes', 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}</tool_call>')).toEqual({
      content: 'Sure.', calls: [{ name: 'add', arguments: { a: 1, b: 2 } }, { name: 'get_weather', arguments: { city: 'Oslo', unit: 'c' } }],
    });
    expect(parseToolCalls('llama3', '{"name": "add", "parameters": {"a": 1, "b": 2}}')).toEqual({ content: null, calls: [{ name: 'add', arguments: { a: 1, b: 2 } }] });
    expect(parseToolCalls('mistral', '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "abcDEF123"}]')).toEqual({ content: null, calls: [{ name: 'add', arguments: { a: 1, b: 2 }, id: 'abcDEF123' }] });
    expect(parseToolCalls('generic', '{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}')).toEqual({ content: null, calls: [{ name: 'add', arguments: { a: 1, b: 2 } }] });
    expect(parseToolCalls('generic', '{"response": "hello"}')).toEqual({ content: 'hello', calls: [] });
    expect(parseToolCalls('hermes', 'Just text.')).toEqual({ content: 'Just text.', calls: [] });
    expect(parseToolCalls('hermes', '<tool_call>{"name": "add", "arguments": {"a": 1')).toEqual({ content: '<tool_call>{"name": "add", "arguments": {"a": 1', calls: [] });
  });

  it('the Qwen template renders the tools, the calls (arguments as objects) and the tool answers', () => {
    const t = new ChatTemplate(template('Qwen-Qwen2.5-7B-Instruct.jinja'));
    const text = t.render([
      { role: 'user', content: 'Add 1 and 2' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'add', arguments: { a: 1, b: 2 } } }] },
      { role: 'tool', content: '3', tool_call_id: 'call_1' },
    ], { variables: { tools: TOOLS } });
    expect(text).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather"');
    expect(text).toContain('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>');
    expect(text).toContain('<tool_response>\n3\n</tool_response>');
  });
});

describe.skipIf(!haveRandom)('tool calls generated under their grammar (random-weight model)', () => {
  let model: Model;
  let engine: Engine;
  beforeAll(async () => {
    model = await loadModel(RANDOM, { threads: 1 });
    engine = await createEngine(model, { kvCacheTokens: 16384 });
  });
  afterAll(async () => {
    await engine?.dispose();
    await model?.dispose();
  });

  // One call each (parallel calls: a random model keeps adding them; the last case allows several with room to finish).
  const FORMATS: [ToolCallFormat, boolean, number][] = [['hermes', false, 300], ['llama3', false, 300], ['mistral', false, 300], ['generic', false, 300], ['hermes', true, 2000]];
  it.each(FORMATS)('%s (parallel %s): 20 seeded replies with tool_choice required are calls with valid arguments', async (format, parallel, maxTokens) => {
    const plan = planToolCalls(format, TOOLS, 'required', parallel);
    expect(plan.trigger).toBeUndefined();
    const r = await engine.generate({ prompt: 'Call a tool:', grammar: plan.grammar, n: 20, seed: 7, temperature: 1, maxTokens }).result;
    for (const c of r.completions) {
      expect(c.stopReason, c.text).toBe('eos');
      const parsed = parseToolCalls(format, c.text);
      expect(parsed.calls.length, c.text).toBeGreaterThan(0);
      if (!parallel) expect(parsed.calls).toHaveLength(1);
      for (const call of parsed.calls) {
        const validate = validators.get(call.name)!;
        expect(validate, call.name).toBeDefined();
        expect(validate(call.arguments), `${c.text}: ${JSON.stringify(validate.errors)}`).toBe(true);
        if (format === 'mistral') expect(call.id).toMatch(/^[a-zA-Z0-9]{9}$/);
      }
    }
  });

  it('a named tool_choice allows that tool only', async () => {
    const plan = planToolCalls('hermes', TOOLS, { type: 'function', function: { name: 'add' } }, false);
    const r = await engine.generate({ prompt: 'x', grammar: plan.grammar, n: 5, seed: 3, temperature: 1, maxTokens: 200 }).result;
    for (const c of r.completions) expect(parseToolCalls('hermes', c.text).calls.map((k) => k.name)).toEqual(['add']);
    expect(() => planToolCalls('hermes', TOOLS, { type: 'function', function: { name: 'nope' } }, false)).toThrow(/not among the tools/);
  });

  it('a lazy grammar leaves the text free until its trigger, found across token boundaries, and constrains it from there', () => {
    const plan = planToolCalls('hermes', TOOLS, 'auto', false);
    expect(plan.trigger).toBe('<tool_call>');
    const g = CompiledGrammar.fromGBNF(plan.grammar, model.tokenizer);
    const tok = model.tokenizer;
    const ids = (text: string) => {
      // Token by token, the longest piece that spells the rest (so "<tool_call>" is split over several tokens).
      const out: number[] = [];
      const pieces = Array.from({ length: tok.vocabSize }, (_, i) => new TextDecoder().decode(tok.tokenToPiece(i)));
      for (let rest = text; rest.length > 0;) {
        let best = -1;
        for (let i = 0; i < tok.vocabSize; i++) if (!tok.isEog(i) && pieces[i]!.length > 0 && rest.startsWith(pieces[i]!) && (best < 0 || pieces[i]!.length > pieces[best]!.length)) best = i;
        out.push(best);
        rest = rest.slice(pieces[best]!.length);
      }
      return out;
    };
    const m = new LazyGrammarMatcher(g, plan.trigger!);
    const free = { ids: Int32Array.from([0, 1, 2]), logits: Float32Array.from([1, 2, 3]), size: 3, sorted: false };
    for (const id of ids('Let me check. <tool_')) {
      m.process(free);
      m.accept(id);
    }
    expect(m.active).toBe(false);
    expect(Array.from(free.logits)).toEqual([1, 2, 3]); // nothing masked before the trigger
    for (const id of ids('call>\n{"name": "add", "arguments": {"a": 5, "b": ')) m.accept(id);
    expect(m.active).toBe(true);
    // Now only what continues the arguments: an integer for b.
    const all = Int32Array.from({ length: tok.vocabSize }, (_, i) => i);
    const c = { ids: all.slice(), logits: new Float32Array(tok.vocabSize), size: tok.vocabSize, sorted: false };
    m.process(c);
    const allowed = [...all].filter((i) => c.logits[i] === 0).map((i) => new TextDecoder().decode(tok.tokenToPiece(i)));
    expect(allowed.length).toBeGreaterThan(0);
    for (const p of allowed) expect(p, p).toMatch(/^(-|-?[1-9]|-?[1-9][0-9]|0|[ \n\t]+)$/);
  });
});

describe.skipIf(!haveRandom)('server: tools through the openai client (Qwen 2.5 template)', () => {
  let model: Model;
  let handler: ServerHandler;
  let listener: Listener;
  let client: OpenAI;
  beforeAll(async () => {
    model = await loadModel(RANDOM, { threads: 1 });
    handler = createServerHandler(model, { modelId: 'tiny', chatTemplate: template('Qwen-Qwen2.5-7B-Instruct.jinja'), maxTokens: 400 });
    await handler.ready;
    listener = await listen(handler, { port: 0 });
    client = new OpenAI({ baseURL: `${listener.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  afterAll(async () => {
    await listener?.close();
    await handler?.close();
    await model?.dispose();
  });

  it('tool_choice required: tool_calls with valid arguments and finish_reason tool_calls, whole and streamed alike; the calls go back in history', async () => {
    const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'Weather in Oslo?' }], tools: TOOLS, tool_choice: 'required' as const, parallel_tool_calls: false, seed: 5, temperature: 1, max_tokens: 300 };
    const r = await client.chat.completions.create(body);
    const choice = r.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const calls = choice.message.tool_calls!;
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) {
      expect(call.type).toBe('function');
      expect(call.id).toMatch(/^call-/);
      const fn = (call as OpenAI.ChatCompletionMessageFunctionToolCall).function;
      expect(validators.get(fn.name)!(JSON.parse(fn.arguments))).toBe(true);
    }
    // Streamed: the client accumulates the same calls.
    const streamed: Record<number, { name: string; arguments: string }> = {};
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      for (const ch of chunk.choices) {
        for (const t of ch.delta.tool_calls ?? []) {
          streamed[t.index] ??= { name: '', arguments: '' };
          streamed[t.index]!.name += t.function?.name ?? '';
          streamed[t.index]!.arguments += t.function?.arguments ?? '';
        }
        finish = ch.finish_reason ?? finish;
      }
    }
    expect(finish).toBe('tool_calls');
    expect(Object.values(streamed)).toEqual(calls.map((c) => ({ name: (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, arguments: (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments })));
    // The calls and a tool's answer go back as history (the template renders them) and the chat goes on.
    const next = await client.chat.completions.create({
      model: 'tiny', max_tokens: 5, tools: TOOLS, tool_choice: 'none',
      messages: [...body.messages, { role: 'assistant', content: null, tool_calls: calls }, { role: 'tool', tool_call_id: calls[0]!.id, content: '{"temp": 4}' }],
    });
    expect(next.choices[0]!.finish_reason).not.toBe('tool_calls');
  });

  it('tool_choice auto: text before any call tag streams as it comes, and whole and streamed replies agree', async () => {
    const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'Hi' }], tools: TOOLS, tool_choice: 'auto' as const, seed: 9, temperature: 1, max_tokens: 30 };
    const whole = await client.chat.completions.create(body);
    let text = '', chunks = 0, finish: string | null = null;
    const calls: string[] = [];
    for await (const c of await client.chat.completions.create({ ...body, stream: true })) {
      for (const ch of c.choices) {
        if (ch.delta.content) {
          text += ch.delta.content;
          chunks++;
        }
        for (const t of ch.delta.tool_calls ?? []) calls.push(t.function?.name ?? '');
        finish = ch.finish_reason ?? finish;
      }
    }
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(text).toBe(whole.choices[0]!.message.content ?? '');
    expect(calls).toEqual((whole.choices[0]!.message.tool_calls ?? []).map((t) => (t as OpenAI.ChatCompletionMessageFunctionToolCall).function.name));
    if (!whole.choices[0]!.message.tool_calls) expect(chunks).toBeGreaterThan(3); // streamed piece by piece, not at the end
  });

  it('bad tools are 400s naming the field', async () => {
    const bad = (extra: object) => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
    expect(await bad({ tools: [{ type: 'function', function: { name: 'bad name!' } }] })).toMatchObject({ status: 400, param: 'tools[0].function.name' });
    expect(await bad({ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } })).toMatchObject({ status: 400, param: 'tool_choice.function.name' });
    expect(await bad({ tools: [TOOLS[0], TOOLS[0]] })).toMatchObject({ status: 400, param: 'tools[1].function.name' });
    expect(await bad({ tool_choice: 'required' })).toMatchObject({ status: 400, param: 'tool_choice' });
    expect(await bad({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { e: { type: 'string', format: 'email' } } } } }], tool_choice: 'required' })).toMatchObject({ status: 400, code: 'unsupported_schema' });
    expect(await bad({ tools: TOOLS, response_format: { type: 'json_object' } })).toMatchObject({ status: 400, param: 'tools' });
  });
});
