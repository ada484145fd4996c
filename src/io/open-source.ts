import { blobSource, bufferSource, ByteSourceError, urlSource, type ByteSource } from './byte-source.js';

export type ModelInput = string | URL | Blob | ArrayBuffer | ArrayBufferView | ByteSource;

function isByteSource(x: unknown): x is ByteSource {
  return typeof x === 'object' && x !== null && typeof (x as ByteSource).readInto === 'function' && 'size' in x;
}

/** Pick the byte-source adapter for whatever the caller gave us. */
export async function openSource(input: ModelInput): Promise<ByteSource> {
  if (isByteSource(input)) return input;
  if (input instanceof URL || (typeof input === 'string' && /^(https?|blob|data):/i.test(input))) {
    return urlSource(String(input));
  }
  if (typeof input === 'string') {
    const { fileSource } = await import('../runtime/file-source.js');
    return fileSource(input);
  }
  if (typeof Blob !== 'undefined' && input instanceof Blob) return blobSource(input);
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) return bufferSource(input);
  throw new ByteSourceError('UNSUPPORTED_INPUT', `cannot read a model from ${Object.prototype.toString.call(input)}`);
}
