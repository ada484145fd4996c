export type ModelErrorCode =
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'MISSING_TENSOR'
  | 'BAD_TENSOR_SHAPE'
  | 'UNSUPPORTED_TENSOR_TYPE'
  | 'TOO_LARGE'
  | 'PROMPT_TOO_LONG'
  | 'DISPOSED';

export class ModelError extends Error {
  override readonly name = 'ModelError';
  constructor(
    readonly code: ModelErrorCode,
    message: string,
  ) {
    super(message);
  }
}
