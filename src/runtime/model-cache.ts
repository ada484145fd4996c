// Runtime adapter (browsers): a model cache in the origin private file system (OPFS). A GGUF is
// downloaded once, written to disk as it arrives (never held whole in memory), resumed with an
// HTTP Range request after an interruption, and verified by size and SHA-256 before use. The File
// it returns goes straight to loadModel(), which reads it by slices.
//
// On disk, per URL: <key>.gguf (the bytes so far) and <key>.json (url, size, etag, downloaded,
// complete, sha256). Progress is committed every `checkpointBytes`, and on abort or error, so a
// closed tab loses at most that much.
import { sha256 as sha256Hash } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { WasmforgeError } from '../errors.js';
import { NO_OPFS, opfsDirectory, type OPFSDirectory } from './opfs.js';

export type ModelCacheErrorCode = 'UNAVAILABLE' | 'FETCH_FAILED' | 'SIZE_MISMATCH' | 'HASH_MISMATCH' | 'ABORTED';

export class ModelCacheError extends WasmforgeError<ModelCacheErrorCode> {
  override readonly name = 'ModelCacheError';
}

export interface CachedModelInfo {
  url: string;
  /** Total size in bytes (NaN while unknown). */
  size: number;
  /** Bytes stored so far. */
  downloaded: number;
  complete: boolean;
  /** Lowercase hex SHA-256 of the complete file. */
  sha256?: string;
  /** The server's validator, sent as If-Range when resuming. */
  validator?: string;
  storedAt: number;
}

export interface FetchModelOptions {
  /** Expected SHA-256 (hex): a mismatch deletes the download and throws HASH_MISMATCH. */
  sha256?: string;
  /** Expected size in bytes: a mismatch throws SIZE_MISMATCH. */
  size?: number;
  /** Bytes stored so far and the total (NaN while unknown), as they arrive. */
  onProgress?: (loaded: number, total: number) => void;
  /** Aborting keeps what has arrived; the next call resumes from there. */
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** Bytes written between commits to storage (default 8 MiB). */
  checkpointBytes?: number;
}

const DIR = 'wasmforge-models';
const HASH_SLICE = 8 << 20;

type Dir = OPFSDirectory;

async function cacheDir(): Promise<Dir> {
  const dir = await opfsDirectory(DIR);
  if (!dir) throw new ModelCacheError('UNAVAILABLE', NO_OPFS);
  return dir;
}

const keyOf = (url: string) => bytesToHex(sha256Hash(new TextEncoder().encode(url))).slice(0, 40);

async function readInfo(dir: Dir, key: string): Promise<CachedModelInfo | undefined> {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(`${key}.json`)).getFile()).text());
  } catch {
    return undefined;
  }
}

async function writeInfo(dir: Dir, key: string, info: CachedModelInfo): Promise<void> {
  const w = await (await dir.getFileHandle(`${key}.json`, { create: true })).createWritable();
  await w.write(JSON.stringify(info));
  await w.close();
}

async function remove(dir: Dir, key: string): Promise<boolean> {
  let found = false;
  for (const name of [`${key}.gguf`, `${key}.json`]) {
    try {
      await dir.removeEntry(name);
      found = true;
    } catch {
      // absent
    }
  }
  return found;
}

async function sha256OfFile(file: Blob): Promise<string> {
  // Incremental (@noble/hashes): WebCrypto's digest() would need the whole multi-GB file in one buffer.
  const h = sha256Hash.create();
  for (let at = 0; at < file.size; at += HASH_SLICE) h.update(new Uint8Array(await file.slice(at, at + HASH_SLICE).arrayBuffer()));
  return bytesToHex(h.digest());
}

/** A strong ETag, else Last-Modified: what If-Range accepts to resume only an unchanged file. */
function validatorOf(res: Response): string | undefined {
  const etag = res.headers.get('etag');
  if (etag && !etag.startsWith('W/')) return etag;
  return res.headers.get('last-modified') ?? undefined;
}

const inFlight = new Map<string, Promise<File>>();

/**
 * The model at `url` as a File from the cache: downloaded (or resumed) first when it is not
 * complete there. One download per URL at a time: concurrent calls share it.
 */
export function fetchModel(url: string, opts: FetchModelOptions = {}): Promise<File> {
  const key = keyOf(url);
  let p = inFlight.get(key);
  if (!p) {
    p = download(url, key, opts).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
  }
  return p;
}

async function download(url: string, key: string, opts: FetchModelOptions): Promise<File> {
  const dir = await cacheDir();
  const wantSha = opts.sha256?.toLowerCase();
  const handle = await dir.getFileHandle(`${key}.gguf`, { create: true });
  let info = await readInfo(dir, key);
  if (info?.complete) {
    const file = await handle.getFile();
    const matches = file.size === info.size && (opts.size === undefined || opts.size === info.size) && (!wantSha || wantSha === info.sha256);
    if (matches) {
      opts.onProgress?.(file.size, file.size);
      return file;
    }
    info = undefined; // not what the caller expects (or damaged): download again
  }

  // Resume only from bytes we know are committed, and only if the file did not change since.
  const have = info ? Math.min(info.downloaded, (await handle.getFile()).size) : 0;
  // Every byte is there already (stopped before verification): nothing to fetch.
  const total = info && have === info.size ? info.size : await receive(url, dir, key, handle, have, info, opts);
  const file = await handle.getFile();
  if (Number.isFinite(total) && file.size !== total) {
    throw new ModelCacheError('FETCH_FAILED', `${url}: the connection ended at ${file.size} of ${total} bytes (call again to resume)`);
  }
  if (opts.size !== undefined && file.size !== opts.size) {
    await remove(dir, key);
    throw new ModelCacheError('SIZE_MISMATCH', `${url}: downloaded ${file.size} bytes, expected ${opts.size}`);
  }
  const sha256 = await sha256OfFile(file);
  if (wantSha && sha256 !== wantSha) {
    await remove(dir, key);
    throw new ModelCacheError('HASH_MISMATCH', `${url}: SHA-256 ${sha256}, expected ${wantSha}; the download was deleted`);
  }
  const stored = (await readInfo(dir, key))!;
  await writeInfo(dir, key, { ...stored, size: file.size, downloaded: file.size, complete: true, sha256 });
  return file;
}

/** Download from `have` (a Range request) or from zero into `handle`; returns the total size. */
async function receive(url: string, dir: Dir, key: string, handle: FileSystemFileHandle, have: number, previous: CachedModelInfo | undefined, opts: FetchModelOptions): Promise<number> {
  const doFetch = opts.fetch ?? fetch;
  const headers: Record<string, string> = {};
  if (have > 0) {
    headers.Range = `bytes=${have}-`;
    if (previous?.validator) headers['If-Range'] = previous.validator;
  }
  let res: Response;
  try {
    res = await doFetch(url, { headers, signal: opts.signal });
  } catch (e) {
    throw opts.signal?.aborted ? new ModelCacheError('ABORTED', `${url}: download aborted`) : new ModelCacheError('FETCH_FAILED', `${url}: ${(e as Error).message}`);
  }
  if (!res.ok || !res.body) throw new ModelCacheError('FETCH_FAILED', `${url}: HTTP ${res.status}`);
  let offset: number;
  let total: number;
  if (res.status === 206) {
    const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== have) {
      await res.body.cancel();
      throw new ModelCacheError('FETCH_FAILED', `${url}: asked for bytes from ${have}, got Content-Range ${res.headers.get('content-range')}`);
    }
    offset = have;
    total = Number(m[2]);
  } else {
    // The whole file: a first download, a server without Range support, or a changed file.
    offset = 0;
    total = Number(res.headers.get('content-length') ?? NaN);
  }
  if (opts.size !== undefined && Number.isFinite(total) && total !== opts.size) {
    await res.body.cancel();
    throw new ModelCacheError('SIZE_MISMATCH', `${url}: the server has ${total} bytes, expected ${opts.size}`);
  }
  const info: CachedModelInfo = { url, size: total, downloaded: offset, complete: false, validator: validatorOf(res) ?? previous?.validator, storedAt: Date.now() };
  await writeInfo(dir, key, info);

  const checkpoint = opts.checkpointBytes ?? 8 << 20;
  const open = async () => {
    const w = await handle.createWritable({ keepExistingData: offset > 0 });
    if (offset > 0) {
      await w.truncate(offset); // drop anything past the committed point
      await w.seek(offset);
    }
    return w;
  };
  let writable = await open();
  const commit = async () => {
    await writable.close();
    info.downloaded = offset;
    await writeInfo(dir, key, info);
  };
  const reader = res.body.getReader();
  let uncommitted = 0;
  try {
    for (;;) {
      // Checked here too: a body already buffered would otherwise still be read to the end.
      if (opts.signal?.aborted) throw new Error('aborted');
      const { done, value } = await reader.read();
      if (done) break;
      await writable.write(value);
      offset += value.length;
      uncommitted += value.length;
      if (uncommitted >= checkpoint) {
        await commit();
        writable = await open();
        uncommitted = 0;
      }
      opts.onProgress?.(offset, total);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    await commit(); // keep what arrived for the next call
    if (opts.signal?.aborted) throw new ModelCacheError('ABORTED', `${url}: download aborted at ${offset} of ${total} bytes`);
    throw new ModelCacheError('FETCH_FAILED', `${url}: download failed at ${offset} bytes: ${(e as Error).message}`);
  }
  await commit();
  return total;
}

/** Every cached model, complete or partial. */
export async function listCachedModels(): Promise<CachedModelInfo[]> {
  const dir = await cacheDir();
  const out: CachedModelInfo[] = [];
  for await (const entry of dir.values()) {
    if (entry.kind !== 'file' || !entry.name.endsWith('.json')) continue;
    const info = await readInfo(dir, entry.name.slice(0, -'.json'.length));
    if (info) out.push(info);
  }
  return out.sort((a, b) => a.url.localeCompare(b.url));
}

/** Delete a cached model (complete or partial). Returns whether there was one. */
export async function deleteCachedModel(url: string): Promise<boolean> {
  return remove(await cacheDir(), keyOf(url));
}
