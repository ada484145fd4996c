import { WasmforgeError } from '../errors.js';

export type ModelErrorCode =
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'MISSING_TENSOR'
  | 'BAD_TENSOR_SHAPE'
  | 'UNSUPPORTED_TENSOR_TYPE'
  | 'TOO_LARGE'
  /** A loadModel option that is not one of its allowed values (e.g. an unknown kvCacheType). */
  | 'INVALID_OPTION'
  /** An option this model or backend cannot honour (e.g. a q8_0 KV cache over heads that are not whole 32-value blocks). */
  | 'UNSUPPORTED_OPTION'
  | 'PROMPT_TOO_LONG'
  | 'DISPOSED'
  /** What was asked does not apply to this model (embedding with a text generator, generating with an encoder). */
  | 'UNSUPPORTED_OPERATION'
  /** A LoRA adapter that is not one, or not for this model (architecture, tensor names, shapes, types). */
  | 'ADAPTER_MISMATCH';

export class ModelError extends WasmforgeError<ModelErrorCode> {
  override readonly name = 'ModelError';
}
