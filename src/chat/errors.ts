export type ChatTemplateErrorCode = 'NO_TEMPLATE' | 'BAD_TEMPLATE' | 'RENDER_FAILED' | 'BAD_MESSAGES';

export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
  constructor(
    readonly code: ChatTemplateErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
