// Tool calls (function calling) for chat models: which format a model writes its calls in (read
// from its chat template), the grammar that makes its calls well-formed with arguments valid under
// each tool's JSON schema, and the parser that turns the generated text back into calls. Formats:
// Hermes / Qwen (`<tool_call>{"name", "arguments"}</tool_call>`), Llama 3.x (`{"name", "parameters"}`),
// Mistral (`[TOOL_CALLS][{"name", "arguments", "id"}]`), and a generic JSON reply for templates that
// know no tools (llama.cpp's fallback: `{"tool_calls": [...]}` or `{"response": "..."}`).
import { GrammarRules, literal } from '../generation/constrained/json-schema.js';
import { ChatTemplateError } from './errors.js';

export interface ToolFunction {
  name: string;
  description?: string;
  /** A JSON schema of the arguments object (default: any object). */
  parameters?: Record<string, unknown>;
}

export interface Tool {
  type: 'function';
  function: ToolFunction;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export type ToolCallFormat = 'hermes' | 'llama3' | 'mistral' | 'generic';

export interface ParsedToolCall {
  name: string;
  /** The arguments object. */
  arguments: Record<string, unknown>;
  /** The call's id when the format carries one (Mistral). */
  id?: string;
}

/** How a chat template has a model write tool calls. */
export function toolCallFormatOf(templateSource: string): ToolCallFormat {
  if (templateSource.includes('<tool_call>')) return 'hermes';
  if (templateSource.includes('[TOOL_CALLS]')) return 'mistral';
  if (templateSource.includes('<|start_header_id|>') && /"parameters"/.test(templateSource)) return 'llama3';
  return 'generic';
}

export interface ToolCallPlan {
  format: ToolCallFormat;
  /** GBNF of the calls (or, generic and auto, of a call or a plain reply). */
  grammar: string;
  /** Constrain only from this text on (the model may answer in prose instead); undefined: from the start. */
  trigger?: string;
  /** Instructions for templates that do not render tools (generic), as a system message. */
  systemPrompt?: string;
}

/** The grammar (and trigger) that makes a model's tool calls valid, for tool_choice auto / required / a named function. */
export function planToolCalls(format: ToolCallFormat, tools: readonly Tool[], choice: Exclude<ToolChoice, 'none'>, parallel: boolean): ToolCallPlan {
  let allowed = tools;
  if (typeof choice === 'object') {
    allowed = tools.filter((t) => t.function.name === choice.function.name);
    if (allowed.length === 0) throw new ChatTemplateError('BAD_MESSAGES', `tool_choice names "${choice.function.name}", which is not among the tools`);
  }
  const rules = new GrammarRules();
  // One alternative per tool: its name, then arguments valid under its schema.
  const call = (nameKey: string, argsKey: string, extra = '') => rules.add('call', allowed.map((t, i) => {
    const args = rules.schema(t.function.parameters ?? { type: 'object' }, `${t.function.name}-args-${i}`);
    return `"{" space ${literal(`"${nameKey}"`)} space ":" space ${literal(JSON.stringify(t.function.name))} space "," space ${literal(`"${argsKey}"`)} space ":" space ${args}${extra} space "}"`;
  }).join(' | '));
  const required = choice !== 'auto';
  switch (format) {
    case 'hermes': {
      const one = rules.add('tool-call', `"<tool_call>" space ${call('name', 'arguments')} space "</tool_call>"`);
      rules.set('root', parallel ? `${one} ( space ${one} )*` : one);
      return { format, grammar: rules.text(), trigger: required ? undefined : '<tool_call>' };
    }
    case 'llama3': {
      const one = call('name', 'parameters');
      // Llama 3.x writes one call (its template refuses several in a message).
      rules.set('root', one);
      return { format, grammar: rules.text(), trigger: required ? undefined : '{"name"' };
    }
    case 'mistral': {
      const one = call('name', 'arguments', ' space "," space "\\"id\\"" space ":" space "\\"" [a-zA-Z0-9]{9} "\\""');
      rules.set('root', `"[TOOL_CALLS]" space "[" space ${one} ${parallel ? `( space "," space ${one} )*` : ''} space "]"`);
      return { format, grammar: rules.text(), trigger: required ? undefined : '[TOOL_CALLS]' };
    }
    case 'generic': {
      const one = call('name', 'arguments');
      const calls = `"{" space "\\"tool_calls\\"" space ":" space "[" space ${one} ${parallel ? `( space "," space ${one} )*` : ''} space "]" space "}"`;
      const reply = `"{" space "\\"response\\"" space ":" space ${rules.schema({ type: 'string' }, 'response')} space "}"`;
      rules.set('root', required ? calls : `${calls} | ${reply}`);
      const list = allowed.map((t) => JSON.stringify(t.function)).join('\n');
      return {
        format, grammar: rules.text(),
        systemPrompt: `You can call these tools:\n${list}\n\nAnswer with JSON only: {"tool_calls": [{"name": <tool name>, "arguments": {...}}]} to call tools${required ? '' : ', or {"response": "<your answer>"} to answer directly'}.`,
      };
    }
  }
}

/** The calls in a generated reply, and the text beside them (null when there is none). Text that does not parse is content. */
export function parseToolCalls(format: ToolCallFormat, text: string): { content: string | null; calls: ParsedToolCall[] } {
  const none = { content: text, calls: [] };
  const json = (s: string): unknown => {
    try {
      return JSON.parse(s);
    } catch {
      return undefined;
    }
  };
  const asCall = (v: unknown, argsKey: string): ParsedToolCall | undefined => {
    if (typeof v !== 'object' || v === null) return undefined;
    const o = v as Record<string, unknown>;
    const args = o[argsKey];
    if (typeof o.name !== 'string' || typeof args !== 'object' || args === null || Array.isArray(args)) return undefined;
    return { name: o.name, arguments: args as Record<string, unknown>, ...(typeof o.id === 'string' ? { id: o.id } : {}) };
  };
  const before = (at: number) => (text.slice(0, at).trim() === '' ? null : text.slice(0, at).trim());
  switch (format) {
    case 'hermes': {
      const calls: ParsedToolCall[] = [];
      const first = text.indexOf('<tool_call>');
      if (first < 0) return none;
      for (const m of text.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>/g)) {
        const c = asCall(json(m[1]!), 'arguments');
        if (!c) return none;
        calls.push(c);
      }
      return calls.length ? { content: before(first), calls } : none;
    }
    case 'llama3': {
      const at = text.search(/\{\s*"name"/);
      const c = at < 0 ? undefined : asCall(json(text.slice(at).trim()), 'parameters');
      return c ? { content: before(at), calls: [c] } : none;
    }
    case 'mistral': {
      const at = text.indexOf('[TOOL_CALLS]');
      const list = at < 0 ? undefined : json(text.slice(at + '[TOOL_CALLS]'.length).trim());
      const calls = Array.isArray(list) ? list.map((v) => asCall(v, 'arguments')) : [];
      return calls.length && calls.every(Boolean) ? { content: before(at), calls: calls as ParsedToolCall[] } : none;
    }
    case 'generic': {
      const v = json(text.trim()) as Record<string, unknown> | undefined;
      if (v && typeof v.response === 'string') return { content: v.response, calls: [] };
      const calls = Array.isArray(v?.tool_calls) ? v!.tool_calls.map((c) => asCall(c, 'arguments')) : [];
      return calls.length && calls.every(Boolean) ? { content: null, calls: calls as ParsedToolCall[] } : none;
    }
  }
}
