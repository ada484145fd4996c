import { WasmforgeError } from '../errors.js';

export type KVErrorCode =
  | 'OUT_OF_BLOCKS'
  | 'CONTEXT_FULL'
  | 'UNKNOWN_SEQUENCE'
  | 'INVALID_ARGUMENT'
  /** One layer's K (or V) would be larger than the backend's largest tensor (a GPU's binding limit). */
  | 'TOO_LARGE'
  /** A KV cache type the model's head dim or the backend cannot take (q8_0 / q4_0 over heads that are not whole 32-value blocks). */
  | 'UNSUPPORTED'
  /** The operation needs positions whose blocks were released (they fell out of the sliding window). */
  | 'OUTSIDE_WINDOW';

export class KVCacheError extends WasmforgeError<KVErrorCode> {
  override readonly name = 'KVCacheError';
}
