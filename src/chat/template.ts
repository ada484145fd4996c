// Chat templates: the model's own Jinja template from GGUF metadata (tokenizer.chat_template),
// rendered with @huggingface/jinja the way transformers' apply_chat_template does: messages,
// add_generation_prompt, bos_token and eos_token in scope.
import { Template } from '@huggingface/jinja';
import type { GGUFFile } from '../gguf/reader.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { ChatTemplateError } from './errors.js';

export interface ChatMessage {
  role: string;
  content: string;
  /** An assistant's tool calls ({ id, type: 'function', function: { name, arguments: object } }), as templates read them. */
  tool_calls?: unknown[];
  /** A tool message: which call it answers. */
  tool_call_id?: string;
  name?: string;
}

export interface ChatRenderOptions {
  /** End with the assistant turn's opening, so the model writes the reply (default true). */
  addGenerationPrompt?: boolean;
  /** Extra variables for the template. */
  variables?: Record<string, unknown>;
}

export const CHAT_TEMPLATE_KEY = 'tokenizer.chat_template';

/** ChatML, the template llama.cpp's server falls back to for a model without one. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    readonly bosToken = '',
    readonly eosToken = '',
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ChatTemplateError('BAD_TEMPLATE', `the chat template does not parse: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The template in a model's metadata, with its BOS/EOS token text. */
  static fromMetadata(metadata: GGUFFile['metadata'], tokenizer?: Tokenizer): ChatTemplate {
    const source = ChatTemplate.sourceIn(metadata);
    if (source === undefined) {
      throw new ChatTemplateError('NO_TEMPLATE', `the model has no ${CHAT_TEMPLATE_KEY} in its metadata; pass a template explicitly`);
    }
    return ChatTemplate.forTokenizer(source, tokenizer);
  }

  /** A template's source with the BOS/EOS token text of a tokenizer. */
  static forTokenizer(source: string, tokenizer?: Tokenizer): ChatTemplate {
    return new ChatTemplate(source, tokenText(tokenizer, tokenizer?.bosId), tokenText(tokenizer, tokenizer?.eosId));
  }

  /** The model's own template source, if its metadata has one. */
  static sourceIn(metadata: GGUFFile['metadata']): string | undefined {
    const entry = metadata.get(CHAT_TEMPLATE_KEY);
    return entry && typeof entry.value === 'string' && entry.value.length > 0 ? entry.value : undefined;
  }

  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): string {
    if (!Array.isArray(messages) || messages.length === 0) throw new ChatTemplateError('BAD_MESSAGES', 'give at least one message');
    for (const m of messages) {
      if (typeof m?.role !== 'string' || typeof m.content !== 'string') {
        throw new ChatTemplateError('BAD_MESSAGES', `a message needs a string role and content, got ${JSON.stringify(m)}`);
      }
    }
    try {
      return this.template.render({
        ...options.variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.bosToken,
        eos_token: this.eosToken,
      });
    } catch (err) {
      throw new ChatTemplateError('RENDER_FAILED', `the chat template failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

function tokenText(tokenizer: Tokenizer | undefined, id: number | undefined): string {
  return tokenizer && id !== undefined ? tokenizer.tokenText(id) : '';
}
