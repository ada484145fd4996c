import { WasmforgeError } from '../errors.js';

export type ModelErrorCode =
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'MISSING_TENSOR'
  | 'BAD_TENSOR_SHAPE'
  | 'UNSUPPORTED_TENSOR_TYPE'
  | 'TOO_LARGE'
  | 'PROMPT_TOO_LONG'
  | 'DISPOSED'
  /** What was asked does not apply to this model (embedding with a text generator, generating with an encoder). */
  | 'UNSUPPORTED_OPERATION'
  /** A LoRA adapter that is not one, or not for this model (architecture, tensor names, shapes, types). */
  | 'ADAPTER_MISMATCH';

export class ModelError extends WasmforgeError<ModelErrorCode> {
  override readonly name = 'ModelError';
}
