import { WasmforgeError } from '../errors.js';

export type KVErrorCode = 'OUT_OF_BLOCKS' | 'CONTEXT_FULL' | 'UNKNOWN_SEQUENCE' | 'INVALID_ARGUMENT';

export class KVCacheError extends WasmforgeError<KVErrorCode> {
  override readonly name = 'KVCacheError';
}
