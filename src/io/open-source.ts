import { hasNodeFs } from '../backend/wasm/runtime.js';
import { GGUFError } from '../gguf/errors.js';
import type { GGUFFile } from '../gguf/reader.js';
import { readGGUFSet, splitPartName } from '../gguf/split.js';
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

/**
 * A GGUF model from one input, or from the parts of a split model: a list of inputs in order, or the
 * path or URL of the first part (named -00001-of-0000N.gguf as gguf-split names them: the others
 * are found by name). Returns the file (a split set read as one) and the source its offsets use.
 */
export async function openGGUF(input: ModelInput | readonly ModelInput[]): Promise<{ file: GGUFFile; source: ByteSource }> {
  const list = Array.isArray(input) ? (input as readonly ModelInput[]) : undefined;
  if (list && list.length === 0) throw new ByteSourceError('UNSUPPORTED_INPUT', 'an empty list of model parts');
  const first = await openSource(list ? list[0]! : (input as ModelInput));
  try {
    return await readGGUFSet(first, async (no, count) => {
      if (list) {
        if (list.length !== count) throw new GGUFError('SPLIT_MISMATCH', `the model has ${count} parts, ${list.length} were given`);
        return openSource(list[no]!);
      }
      const named = typeof input === 'string' || input instanceof URL ? splitPartName(String(input), no, count) : undefined;
      if (named === undefined) {
        throw new GGUFError('MISSING_SPLIT_PART', `${first.name} is the first of ${count} parts and its name does not end in -00001-of-${String(count).padStart(5, '0')}.gguf: pass all the parts, in order`);
      }
      return openSource(named);
    });
  } catch (err) {
    await first.close();
    throw err;
  }
}
