import { WasmforgeError } from '../errors.js';

export type KVErrorCode =
  | 'OUT_OF_BLOCKS'
  | 'CONTEXT_FULL'
  | 'UNKNOWN_SEQUENCE'
  | 'INVALID_ARGUMENT'
  /** The operation needs positions whose blocks were released (they fell out of the sliding window). */
  | 'OUTSIDE_WINDOW';

export class KVCacheError extends WasmforgeError<KVErrorCode> {
  override readonly name = 'KVCacheError';
}
