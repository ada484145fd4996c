import { WasmforgeError } from '../errors.js';

export type SafetensorsErrorCode =
  /** Shorter than the 8-byte header length, or than the header it announces. */
  | 'TRUNCATED'
  /** The announced header length is absurd (past the file, or over the 100 MB the format allows). */
  | 'BAD_HEADER_LENGTH'
  /** The header is not UTF-8 JSON, or not an object of tensor entries. */
  | 'BAD_HEADER'
  /** A tensor's dtype is not one of the format's. */
  | 'UNKNOWN_DTYPE'
  /** A shape that is not a list of non-negative integers, or whose element count overflows. */
  | 'BAD_SHAPE'
  /** data_offsets that are not [begin, end] inside the data, or that do not hold exactly the tensor. */
  | 'BAD_OFFSETS'
  /** Two tensors share bytes. */
  | 'OVERLAP'
  /** __metadata__ that is not a map of strings. */
  | 'BAD_METADATA';

/** Every problem with a safetensors file: a code and a message naming the tensor and values. */
export class SafetensorsError extends WasmforgeError<SafetensorsErrorCode> {
  override readonly name = 'SafetensorsError';
}
