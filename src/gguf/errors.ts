import { WasmforgeError } from '../errors.js';

export type GGUFErrorCode =
  | 'BAD_MAGIC'
  | 'BIG_ENDIAN'
  | 'UNSUPPORTED_VERSION'
  | 'TRUNCATED'
  | 'STRING_TOO_LONG'
  | 'COUNT_TOO_LARGE'
  | 'UNKNOWN_VALUE_TYPE'
  | 'NESTING_TOO_DEEP'
  | 'DUPLICATE_KEY'
  | 'BAD_ALIGNMENT'
  | 'TOO_MANY_DIMS'
  | 'BAD_DIMENSION'
  | 'ELEMENT_OVERFLOW'
  | 'UNKNOWN_TENSOR_TYPE'
  | 'BAD_ROW_SIZE'
  | 'NAME_TOO_LONG'
  | 'DUPLICATE_TENSOR'
  | 'MISALIGNED_TENSOR'
  | 'TENSOR_OUT_OF_BOUNDS'
  | 'TENSORS_OVERLAP'
  | 'MISSING_KEY'
  | 'WRONG_TYPE'
  | 'INVALID_VALUE'
  | 'MISSING_TENSOR'
  | 'WRITE_ERROR'
  /** A part of a split model could not be opened (the message names it). */
  | 'MISSING_SPLIT_PART'
  /** The parts of a split model do not form one set. */
  | 'SPLIT_MISMATCH';

/** Every problem with a GGUF file surfaces as this one typed error: a code plus a message naming the field and values. */
export class GGUFError extends WasmforgeError<GGUFErrorCode> {
  override readonly name = 'GGUFError';
}
