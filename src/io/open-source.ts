import { hasNodeFs } from '../backend/wasm/runtime.js';
import { blobSource, bufferSource, ByteSourceError, urlSource, type ByteSource } from './byte-source.js';

export type ModelInput = string | URL | Blob | ArrayBuffer | ArrayBufferView | ByteSource;

function isByteSource(x: unknown): x is ByteSource {
  return typeof x === 'object' && x !== null && typeof (x as ByteSource).readInto === 'function' && 'size' in x;
}

/**
 * Pick the byte-source adapter for whatever the caller gave us. A string without a scheme is a
 * file path where node:fs exists (Node, Deno, Bun) and a URL relative to the page elsewhere
 * (browsers, workers); file: URLs are read as files (fetch has no Range support for them).
 */
export async function openSource(input: ModelInput): Promise<ByteSource> {
  if (isByteSource(input)) return input;
  if (typeof Blob !== 'undefined' && input instanceof Blob) return blobSource(input);
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) return bufferSource(input);
  if (typeof input !== 'string' && !(input instanceof URL)) {
    throw new ByteSourceError('UNSUPPORTED_INPUT', `cannot read a model from ${Object.prototype.toString.call(input)}`);
  }
  const text = String(input);
  const fs = hasNodeFs();
  if (/^file:/i.test(text) && fs) {
    const { fileURLToPath } = await import(/* @vite-ignore */ 'node:url');
    return (await import('../runtime/file-source.js')).fileSource(fileURLToPath(text));
  }
  if (input instanceof URL || /^(https?|blob|data):/i.test(text)) return urlSource(text);
  if (fs) return (await import('../runtime/file-source.js')).fileSource(text);
  const base = (globalThis as { location?: { href: string } }).location?.href;
  if (base) return urlSource(new URL(text, base).href);
  throw new ByteSourceError('UNSUPPORTED_INPUT', `${text}: a file path, but this runtime has no file system; pass a URL, Blob or ArrayBuffer`);
}
