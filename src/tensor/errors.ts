import { WasmforgeError } from '../errors.js';

export type TensorTypeErrorCode =
  /** The type has no (de)quantizer here. */
  | 'UNSUPPORTED_TYPE'
  /** An element count or row length that is not a whole number of blocks (or rows). */
  | 'BAD_LENGTH'
  /** The source holds fewer bytes (or elements) than the request needs. */
  | 'SHORT_INPUT'
  /** The destination is too small for the result. */
  | 'SHORT_OUTPUT'
  /** NaN or infinity handed to a block quantizer, whose scales cannot represent it. */
  | 'NON_FINITE';

/** Every problem converting tensor data between ggml types surfaces as this typed error. */
export class TensorTypeError extends WasmforgeError<TensorTypeErrorCode> {
  override readonly name = 'TensorTypeError';
}
