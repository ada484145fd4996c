import { WasmforgeError } from '../errors.js';

export type ChatTemplateErrorCode = 'NO_TEMPLATE' | 'BAD_TEMPLATE' | 'RENDER_FAILED' | 'BAD_MESSAGES';

export class ChatTemplateError extends WasmforgeError<ChatTemplateErrorCode> {
  override readonly name = 'ChatTemplateError';
}
