// OpenAI request bodies → engine requests. Every field the server honours is checked here (type,
// range, combination), with a 400 naming it; a field it cannot honour yet is a 400 saying so,
// never silently dropped; fields it has no use for (user, metadata, store, ...) are ignored as
// OpenAI ignores unknown ones.
import type { SpeculativeSettings } from '../generation/speculative.js';
import type { ChatMessage } from '../chat/template.js';
import type { Tool, ToolChoice } from '../chat/tool-calls.js';
import type { ActiveAdapter } from '../model/lora.js';
import { MAX_TOP_LOGPROBS } from '../engine/engine.js';
import type { EngineRequest } from '../engine/types.js';
import { HttpError, invalidField } from './errors.js';
import { Fields, show } from './fields.js';

export interface RequestLimits {
  /** The id the server answers to (requests naming another model get a 404). */
  modelId: string;
  /** Most tokens one request may ask for (max_tokens). */
  maxTokens: number;
  /** Most completions per request (n). */
  maxN: number;
  vocabSize: number;
  /** LoRA adapters the server loaded (--lora), by id: a request's `lora` field picks among them. */
  adapters: readonly ActiveAdapter[];
  /** Speculative decoding for every generation (the server's --lookup / --draft); none when absent. */
  speculative?: SpeculativeSettings;
}

/** What chat and completion requests share: sampling, length, stop, n, streaming. */
export interface GenerationFields {
  request: Omit<EngineRequest, 'prompt'>;
  stream: boolean;
  includeUsage: boolean;
}

export interface ChatRequest extends GenerationFields {
  messages: ChatMessage[];
  /** Extra template variables (llama.cpp's chat_template_kwargs). */
  templateVariables: Record<string, unknown>;
  /** Tools the model may call, and how (absent or choice 'none': no tool calling). */
  tools?: { list: Tool[]; choice: ToolChoice; parallel: boolean };
}

export interface CompletionRequest extends GenerationFields {
  /** One or more prompts (text or token ids); each gets n choices. */
  prompts: (string | number[])[];
  echo: boolean;
}

export interface EmbeddingRequest {
  inputs: (string | number[])[];
  encoding: 'float' | 'base64';
}

/** The model field: absent is fine (curl users), another model's id is a 404 as OpenAI answers. */
export function checkModel(f: Fields, limits: RequestLimits): void {
  const model = f.string('model');
  if (model !== undefined && model !== limits.modelId) {
    throw new HttpError(404, 'invalid_request_error', 'model_not_found', `The model \`${model}\` does not exist: this server serves \`${limits.modelId}\``, 'model');
  }
}

function readGeneration(f: Fields, limits: RequestLimits): GenerationFields {
  checkModel(f, limits);
  const r: Omit<EngineRequest, 'prompt'> = {};
  r.temperature = f.number('temperature', { min: 0, max: 2 });
  const topP = f.number('top_p', { min: 0, max: 1 });
  // top_p 0 keeps only the most likely token: greedy.
  if (topP === 0) r.temperature = 0;
  else r.topP = topP;
  r.topK = f.integer('top_k', { min: 0 });
  r.minP = f.number('min_p', { min: 0, max: 0.999999 });
  r.repeatPenalty = f.number('repeat_penalty', { min: 0, exclusiveMin: true, max: 10 });
  r.frequencyPenalty = f.number('frequency_penalty', { min: -2, max: 2 });
  r.presencePenalty = f.number('presence_penalty', { min: -2, max: 2 });
  const seed = f.integer('seed', { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });
  r.seed = seed === undefined ? undefined : seed >>> 0;
  const bias = f.object('logit_bias');
  if (bias) {
    const map = new Map<number, number>();
    for (const key of Object.keys(f.raw('logit_bias') as object)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || id >= limits.vocabSize) {
        throw invalidField('logit_bias', `\`logit_bias\` keys must be token ids in 0..${limits.vocabSize - 1}, got ${show(key)}`);
      }
      const v = bias.number(key, { min: -100, max: 100 });
      if (v !== undefined) map.set(id, v);
    }
    r.logitBias = map;
  }
  const maxTokens = f.integer('max_completion_tokens', { min: 1 }) ?? f.integer('max_tokens', { min: 1 });
  if (maxTokens !== undefined && maxTokens > limits.maxTokens) {
    const name = f.has('max_completion_tokens') ? 'max_completion_tokens' : 'max_tokens';
    throw invalidField(name, `\`${name}\` is ${maxTokens}; this server allows at most ${limits.maxTokens} tokens per request`);
  }
  r.maxTokens = maxTokens ?? limits.maxTokens;
  const stop = f.raw('stop');
  if (stop !== undefined) {
    const list = typeof stop === 'string' ? [stop] : f.array('stop', { max: 16 })!;
    if (!list.every((s) => typeof s === 'string' && s !== '')) f.fail('stop', 'a non-empty string or an array of up to 16 non-empty strings');
    r.stop = list as string[];
  }
  r.n = f.integer('n', { min: 1, max: limits.maxN });
  if (limits.speculative) r.speculative = limits.speculative;
  r.ignoreEos = f.boolean('ignore_eos'); // llama.cpp's extension
  // llama.cpp's per-request adapter scales: [{ id, scale }] over the adapters the server loaded (others 0).
  const lora = f.array('lora');
  if (lora) {
    const scales = new Map<number, number>();
    lora.forEach((raw, i) => {
      const l = new Fields(raw, `lora[${i}].`);
      const id = l.required('id', (k) => l.integer(k, { min: 0, max: limits.adapters.length - 1 }), `the index of a loaded adapter (0..${limits.adapters.length - 1})`);
      scales.set(id, l.required('scale', (k) => l.number(k, { min: -100, max: 100 }), 'the adapter scale'));
    });
    r.adapters = limits.adapters.flatMap((a, id) => (scales.has(id) && scales.get(id) !== 0 ? [{ adapter: a.adapter, scale: scales.get(id)! }] : []));
  }
  // llama.cpp's extensions: a GBNF grammar or a JSON schema constraining the output.
  const grammar = f.string('grammar', { nonEmpty: true });
  const schema = f.raw('json_schema');
  if (schema !== undefined && (typeof schema !== 'object' || Array.isArray(schema)) && typeof schema !== 'boolean') f.fail('json_schema', 'a JSON schema (an object)');
  if (grammar !== undefined && schema !== undefined) throw invalidField('grammar', 'give `grammar` or `json_schema`, not both');
  if (grammar !== undefined) r.grammar = grammar;
  if (schema !== undefined) r.jsonSchema = schema as Record<string, unknown>;
  const stream = f.boolean('stream') ?? false;
  const options = f.object('stream_options');
  if (options && !stream) throw invalidField('stream_options', '`stream_options` is only allowed when `stream` is true');
  const includeUsage = options?.boolean('include_usage') ?? false;
  return { request: r, stream, includeUsage };
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;

/** POST /v1/chat/completions */
export function readChatRequest(body: unknown, limits: RequestLimits): ChatRequest {
  const f = new Fields(body);
  const messages = f.required('messages', (k) => f.array(k, { min: 1 }), 'an array of at least one message').map((m, i) => readMessage(m, i));
  const gen = readGeneration(f, limits);
  const logprobs = f.boolean('logprobs') ?? false;
  const top = f.integer('top_logprobs', { min: 0, max: MAX_TOP_LOGPROBS });
  if (top !== undefined && top > 0 && !logprobs) throw invalidField('top_logprobs', '`top_logprobs` needs `logprobs: true`');
  if (logprobs) Object.assign(gen.request, { logprobs: true, topLogprobs: top ?? 0 });
  const format = f.object('response_format');
  if (format) {
    const type = format.required('type', (k) => format.oneOf(k, ['text', 'json_object', 'json_schema']), 'text, json_object or json_schema');
    if (type !== 'text' && (gen.request.grammar !== undefined || gen.request.jsonSchema !== undefined)) {
      throw invalidField('response_format', '`response_format` and `grammar` / `json_schema` each constrain the output: give one');
    }
    if (type === 'json_object') {
      // Any JSON object, or the schema llama.cpp's server accepts beside the type.
      const schema = format.object('schema');
      gen.request.jsonSchema = schema ? (format.raw('schema') as Record<string, unknown>) : { type: 'object' };
    } else if (type === 'json_schema') {
      const spec = format.required('json_schema', (k) => format.object(k), 'the name and schema of the output');
      gen.request.jsonSchema = spec.required('schema', (k) => {
        const v = spec.raw(k);
        if (typeof v !== 'object' || Array.isArray(v)) spec.fail(k, 'a JSON schema (an object)');
        return v as Record<string, unknown>;
      }, 'the JSON schema the output must follow');
    }
  }
  const tools = readTools(f);
  if (tools && tools.choice !== 'none' && (gen.request.grammar !== undefined || gen.request.jsonSchema !== undefined)) {
    throw invalidField('tools', '`tools` and `response_format` / `grammar` / `json_schema` each constrain the output: give one');
  }
  f.unsupported('functions', 'is deprecated and not supported: send `tools`');
  f.unsupported('function_call', 'is deprecated and not supported: send `tool_choice`', (v) => v === 'none');
  f.unsupported('modalities', 'may only be ["text"]: this server generates text', (v) => Array.isArray(v) && v.every((m) => m === 'text'));
  f.unsupported('audio', 'is not supported: this server generates text');
  f.unsupported('prediction', 'is not supported');
  f.unsupported('reasoning_effort', 'is not supported: the model is not a reasoning model');
  const kwargs = f.object('chat_template_kwargs');
  return { ...gen, messages, templateVariables: kwargs ? { ...(f.raw('chat_template_kwargs') as object) } : {}, ...(tools ? { tools } : {}) };
}

/** tools, tool_choice and parallel_tool_calls. */
function readTools(f: Fields): ChatRequest['tools'] {
  const list = f.array('tools', { max: 128 });
  const rawChoice = f.raw('tool_choice');
  const parallel = f.boolean('parallel_tool_calls') ?? true;
  if (list === undefined || list.length === 0) {
    if (rawChoice !== undefined && rawChoice !== 'none' && rawChoice !== 'auto') throw invalidField('tool_choice', '`tool_choice` needs `tools`');
    return undefined;
  }
  const tools = list.map((raw, i): Tool => {
    const t = new Fields(raw, `tools[${i}].`);
    t.required('type', (k) => t.oneOf(k, ['function'] as const), 'the kind of tool ("function")');
    const fn = t.required('function', (k) => t.object(k), 'the function: name, description, parameters');
    const name = fn.required('name', (k) => fn.string(k), 'the function name');
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(name)) fn.fail('name', 'a name of 1 to 64 letters, digits, _ or -');
    const description = fn.string('description');
    const parameters = fn.object('parameters') ? (fn.raw('parameters') as Record<string, unknown>) : undefined;
    return { type: 'function', function: { name, ...(description !== undefined ? { description } : {}), ...(parameters ? { parameters } : {}) } };
  });
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw invalidField(`tools[${i}].function.name`, `two tools are named ${show(t.function.name)}`);
    names.add(t.function.name);
  });
  let choice: ToolChoice = 'auto';
  if (typeof rawChoice === 'string') choice = f.oneOf('tool_choice', ['none', 'auto', 'required'] as const)!;
  else if (rawChoice !== undefined) {
    const c = f.object('tool_choice')!;
    c.required('type', (k) => c.oneOf(k, ['function'] as const), '"function"');
    const fn = c.required('function', (k) => c.object(k), 'the function to call');
    const name = fn.required('name', (k) => fn.string(k), 'the name of one of the tools');
    if (!names.has(name)) fn.fail('name', `the name of one of the tools (${[...names].join(', ')})`);
    choice = { type: 'function', function: { name } };
  }
  return { list: tools, choice, parallel };
}

function readMessage(raw: unknown, i: number): ChatMessage {
  const m = new Fields(raw, `messages[${i}].`);
  const role = m.required('role', (k) => m.string(k), 'the author of the message');
  if (role === 'function') throw invalidField(m.name('role'), `\`${m.name('role')}\` "function" is deprecated and not supported: use "tool"`, 'unsupported_parameter');
  if (!(ROLES as readonly string[]).includes(role)) m.fail('role', `one of ${ROLES.map((r) => JSON.stringify(r)).join(', ')}`);
  const extra: Partial<ChatMessage> = {};
  if (role === 'tool') extra.tool_call_id = m.required('tool_call_id', (k) => m.string(k), 'the id of the call this answers');
  if (m.has('tool_calls')) {
    if (role !== 'assistant') throw invalidField(m.name('tool_calls'), `\`${m.name('tool_calls')}\` belongs to assistant messages`);
    // Templates read arguments as objects (Hugging Face's convention); OpenAI sends them as JSON text.
    extra.tool_calls = m.array('tool_calls')!.map((raw, j) => {
      const c = new Fields(raw, `${m.name('tool_calls')}[${j}].`);
      const id = c.required('id', (k) => c.string(k), 'the call id');
      const fn = c.required('function', (k) => c.object(k), 'the function called');
      const name = fn.required('name', (k) => fn.string(k), 'the function name');
      const text = fn.required('arguments', (k) => fn.string(k), 'the arguments as JSON text');
      let args: unknown;
      try {
        args = JSON.parse(text);
      } catch {
        fn.fail('arguments', 'a JSON object as text');
      }
      return { id, type: 'function', function: { name, arguments: args } };
    });
  }
  const content = m.raw('content');
  let text: string;
  if (typeof content === 'string') text = content;
  else if (content === undefined && role === 'assistant') text = ''; // (undefined also covers null)
  else if (Array.isArray(content)) {
    text = content.map((part, j) => {
      const p = new Fields(part, `${m.name('content')}[${j}].`);
      const type = p.required('type', (k) => p.string(k), 'the kind of content part');
      if (type !== 'text') throw invalidField(p.name('type'), `\`${p.name('type')}\` ${show(type)} is not supported: this server reads text parts only`, 'unsupported_parameter');
      return p.required('text', (k) => p.string(k), 'the text of the part');
    }).join('');
  } else {
    text = m.fail('content', 'a string or an array of text parts');
  }
  // "developer" is OpenAI's newer name for the system role; chat templates know "system".
  return { role: role === 'developer' ? 'system' : role, content: text, ...extra };
}

/** POST /v1/completions */
export function readCompletionRequest(body: unknown, limits: RequestLimits): CompletionRequest {
  const f = new Fields(body);
  const raw = f.required('prompt', (k) => f.raw(k), 'text, token ids, or a list of them');
  const prompts = readInputs(f, 'prompt', raw, limits.vocabSize);
  const gen = readGeneration(f, limits);
  const echo = f.boolean('echo') ?? false;
  const top = f.integer('logprobs', { min: 0, max: 5 });
  if (top !== undefined) Object.assign(gen.request, { logprobs: true, topLogprobs: top });
  f.unsupported('suffix', 'is not supported: the models served here do not fill in the middle');
  const bestOf = f.integer('best_of', { min: 1 });
  if (bestOf !== undefined && bestOf !== (gen.request.n ?? 1)) throw invalidField('best_of', '`best_of` other than `n` is not supported: every completion generated is returned', 'unsupported_parameter');
  if (prompts.length * (gen.request.n ?? 1) > limits.maxN) {
    throw invalidField('n', `${prompts.length} prompts × n ${gen.request.n ?? 1} is more than the ${limits.maxN} completions one request may make`);
  }
  return { ...gen, prompts, echo };
}

/** POST /v1/embeddings */
export function readEmbeddingRequest(body: unknown, limits: RequestLimits & { dimensions: number }): EmbeddingRequest {
  const f = new Fields(body);
  checkModel(f, limits);
  const raw = f.required('input', (k) => f.raw(k), 'text, token ids, or a list of them');
  const inputs = readInputs(f, 'input', raw, limits.vocabSize);
  const encoding = f.oneOf('encoding_format', ['float', 'base64'] as const) ?? 'float';
  const dims = f.integer('dimensions', { min: 1 });
  if (dims !== undefined && dims !== limits.dimensions) {
    throw invalidField('dimensions', `\`dimensions\` ${dims} is not supported: this model's embeddings have ${limits.dimensions}`, 'unsupported_parameter');
  }
  return { inputs, encoding };
}

/** Most inputs one prompt/input field may hold (OpenAI's limit for embeddings). */
const MAX_INPUTS = 2048;

/** text | text[] | ids | ids[]: OpenAI's four shapes of a prompt or embedding input. */
function readInputs(f: Fields, field: string, raw: unknown, vocabSize: number): (string | number[])[] {
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t));
  const shape = 'a non-empty string, an array of them, an array of token ids, or an array of such arrays';
  let list: (string | number[])[];
  if (typeof raw === 'string') list = [raw];
  else if (isIds(raw)) list = [raw];
  else if (Array.isArray(raw) && raw.length > 0 && raw.length <= MAX_INPUTS && (raw.every((v) => typeof v === 'string') || raw.every(isIds))) list = raw as (string | number[])[];
  else list = f.fail(field, shape);
  list.forEach((item, i) => {
    const where = list.length > 1 || Array.isArray(raw) && !isIds(raw) ? `${field}[${i}]` : field;
    if (item === '') throw invalidField(where, `\`${where}\` is empty: give at least one character`);
    if (typeof item !== 'string') {
      const bad = item.find((t) => t < 0 || t >= vocabSize);
      if (bad !== undefined) throw invalidField(where, `\`${where}\` has token id ${bad}, outside the vocabulary (0..${vocabSize - 1})`);
    }
  });
  return list;
}
