export type KVErrorCode = 'OUT_OF_BLOCKS' | 'CONTEXT_FULL' | 'UNKNOWN_SEQUENCE' | 'INVALID_ARGUMENT';

export class KVCacheError extends Error {
  override readonly name = 'KVCacheError';
  constructor(
    readonly code: KVErrorCode,
    message: string,
  ) {
    super(message);
  }
}
