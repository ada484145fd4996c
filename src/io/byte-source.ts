// A ByteSource is where model bytes come from: a file, a URL, a Blob or an in-memory buffer.
// Readers ask for byte ranges and, for tensor data, hand over the final destination (a view
// into wasm memory) so bytes are copied once, never staged through a whole-file buffer.
import { WasmforgeError } from '../errors.js';

export type ByteSourceErrorCode = 'OUT_OF_RANGE' | 'SHORT_READ' | 'FETCH_FAILED' | 'NO_RANGE_SUPPORT' | 'UNSUPPORTED_INPUT' | 'NOT_FOUND' | 'UNREADABLE' | 'UNREACHABLE';

export class ByteSourceError extends WasmforgeError<ByteSourceErrorCode> {
  override readonly name = 'ByteSourceError';
}

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Human-readable name for messages (path, URL, "buffer"). */
  readonly name: string;
  /** Fill `dest` with the bytes at [offset, offset + dest.length). Throws ByteSourceError when out of range. */
  readInto(offset: number, dest: Uint8Array): Promise<void>;
  /** Release handles (files). Safe to call twice. */
  close(): Promise<void>;
}

/** Read a range into a fresh buffer. */
export async function readRange(source: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await source.readInto(offset, out);
  return out;
}

export function checkRange(source: { size: number; name: string }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > source.size) {
    throw new ByteSourceError(
      'OUT_OF_RANGE',
      `${source.name}: read of ${length} bytes at offset ${offset} is outside the source (size ${source.size})`,
    );
  }
}

/** In-memory bytes (ArrayBuffer, typed array). */
export function bufferSource(data: ArrayBuffer | ArrayBufferView, name = 'buffer'): ByteSource {
  const bytes =
    data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return {
    size: bytes.byteLength,
    name,
    async readInto(offset, dest) {
      checkRange({ size: bytes.byteLength, name }, offset, dest.length);
      dest.set(bytes.subarray(offset, offset + dest.length));
    },
    async close() {},
  };
}

/** A Blob or File (browser file picker, drag-and-drop). */
export function blobSource(blob: Blob, name = (blob as File).name ?? 'blob'): ByteSource {
  return {
    size: blob.size,
    name,
    async readInto(offset, dest) {
      checkRange({ size: blob.size, name }, offset, dest.length);
      const chunk = new Uint8Array(await blob.slice(offset, offset + dest.length).arrayBuffer());
      if (chunk.length !== dest.length) throw new ByteSourceError('SHORT_READ', `${name}: short read at ${offset}`);
      dest.set(chunk);
    },
    async close() {},
  };
}

/** A URL read with HTTP Range requests; the size comes from the first response's headers. */
export async function urlSource(url: string, init: { fetch?: typeof fetch } = {}): Promise<ByteSource> {
  const doFetch = init.fetch ?? fetch;
  let probe: Response;
  try {
    probe = await doFetch(url, { headers: { Range: 'bytes=0-0' } });
  } catch (err) {
    // fetch's own message is just "fetch failed": say where, and the network's reason.
    const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
    throw new ByteSourceError('UNREACHABLE', `${url}: could not connect (${cause?.code ?? cause?.message ?? (err as Error)?.message ?? err})`, { cause: err });
  }
  if (probe.status === 404) throw new ByteSourceError('NOT_FOUND', `${url}: HTTP 404, no such file`);
  if (!probe.ok) throw new ByteSourceError('FETCH_FAILED', `${url}: HTTP ${probe.status}`);
  const contentRange = probe.headers.get('content-range');
  await probe.body?.cancel();
  const total = contentRange ? Number(contentRange.split('/')[1]) : NaN;
  if (probe.status !== 206 || !Number.isSafeInteger(total)) {
    throw new ByteSourceError('NO_RANGE_SUPPORT', `${url}: server does not answer Range requests (status ${probe.status})`);
  }
  return {
    size: total,
    name: url,
    async readInto(offset, dest) {
      checkRange({ size: total, name: url }, offset, dest.length);
      if (dest.length === 0) return;
      const res = await doFetch(url, { headers: { Range: `bytes=${offset}-${offset + dest.length - 1}` } });
      if (res.status !== 206) throw new ByteSourceError('FETCH_FAILED', `${url}: HTTP ${res.status} for a range read`);
      // Stream the body straight into dest: no second full-size buffer.
      const reader = res.body!.getReader();
      let filled = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (filled + value.length > dest.length) throw new ByteSourceError('SHORT_READ', `${url}: range body too long`);
        dest.set(value, filled);
        filled += value.length;
      }
      if (filled !== dest.length) throw new ByteSourceError('SHORT_READ', `${url}: got ${filled} of ${dest.length} bytes at ${offset}`);
    },
    async close() {},
  };
}
