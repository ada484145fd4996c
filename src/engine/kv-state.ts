// Saved KV state: the keys and values of a token sequence, as bytes that can be stored (a file,
// OPFS, a database) and restored into an engine later, so a long shared prompt (a system prompt, a
// document) is not computed again: llama.cpp's slot save / restore idea. The bytes are untrusted
// on restore: a versioned header, the model's identity (a hash of its architecture, tensor table and
// KV layout) and every length are checked before anything is written.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { KV_CACHE_TYPES, kvRowBytes, type Backend, type KVCacheType, type KVLayer } from '../backend/backend.js';
import type { Model } from '../model/model.js';
import { EngineError } from './errors.js';

const MAGIC = 0x564b4657; // "WFKV" little-endian
const VERSION = 1;
const HASH_BYTES = 32;
/** magic, version, identity hash, KV type, layers, kv dim, token count. */
const HEADER_BYTES = 4 + 4 + HASH_BYTES + 4 + 4 + 4 + 4;

/** What a state must match to be restored: the model's identity and the engine's KV layout. */
export interface StateLayout {
  identity: Uint8Array;
  type: KVCacheType;
  nLayers: number;
  kvDim: number;
}

/** A hash of what decides a model's K/V: its architecture and hyperparameters, its tensor table, its file size. */
export function modelIdentity(model: Model): Uint8Array {
  const c = model.config;
  const table = model.file.tensors.map((t) => `${t.name}:${t.type}:${t.dims.join('x')}:${t.fileOffset}`).join(';');
  const text = JSON.stringify([model.architecture, c.nLayers, c.dim, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, model.file.fileSize, table]);
  return sha256(new TextEncoder().encode(text));
}

/** The header's KV type code: f16 0 and f32 1 (format version 1 had only those), then q8_0 2, q4_0 3. Rows are stored as the cache holds them. */
const TYPE_CODES: readonly KVCacheType[] = ['f16', 'f32', 'q8_0', 'q4_0'];
if (TYPE_CODES.length !== KV_CACHE_TYPES.length) throw new Error('kv-state: every KV cache type needs a code');

/** The K/V of `length` positions of a sequence whose slots are `slots`, with its tokens, as bytes. */
export async function encodeState(backend: Backend, layers: readonly KVLayer[], layout: StateLayout, tokens: readonly number[], slots: readonly number[]): Promise<Uint8Array> {
  const rowBytes = kvRowBytes(layout.type, layout.kvDim);
  const n = tokens.length;
  const out = new Uint8Array(HEADER_BYTES + 4 * n + layers.length * 2 * n * rowBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  out.set(layout.identity, 8);
  let at = 8 + HASH_BYTES;
  view.setUint32(at, TYPE_CODES.indexOf(layout.type), true);
  view.setUint32(at + 4, layout.nLayers, true);
  view.setUint32(at + 8, layout.kvDim, true);
  view.setUint32(at + 12, n, true);
  at += 16;
  tokens.forEach((t, i) => view.setUint32(at + 4 * i, t, true));
  at += 4 * n;
  for (const layer of layers) {
    for (const cache of [layer.k, layer.v]) {
      // Slots run in whole blocks: read runs of consecutive slots at once.
      for (let i = 0; i < n;) {
        let j = i + 1;
        while (j < n && slots[j] === slots[j - 1]! + 1) j++;
        out.set(await backend.read(cache, slots[i]! * rowBytes, (j - i) * rowBytes), at);
        at += (j - i) * rowBytes;
        i = j;
      }
    }
  }
  return out;
}

export interface DecodedState {
  tokens: number[];
  /** Writes the K/V rows into the given slots (one per token). */
  write(backend: Backend, layers: readonly KVLayer[], slots: readonly number[]): void;
}

/** Check saved bytes against the engine's layout; INVALID_STATE for malformed bytes, STATE_MISMATCH for another model or layout. */
export function decodeState(bytes: Uint8Array, layout: StateLayout, vocabSize: number, maxTokens: number): DecodedState {
  const bad = (why: string): never => {
    throw new EngineError('INVALID_STATE', `the saved state is not usable: ${why}`);
  };
  if (!(bytes instanceof Uint8Array)) bad('expected the bytes saveState returned (a Uint8Array)');
  if (bytes.length < HEADER_BYTES) bad(`${bytes.length} bytes is shorter than its header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) bad('it does not start with the wasmforge KV state magic');
  const version = view.getUint32(4, true);
  if (version !== VERSION) bad(`format version ${version}, this build reads ${VERSION}`);
  const identity = bytes.subarray(8, 8 + HASH_BYTES);
  if (bytesToHex(identity) !== bytesToHex(layout.identity)) throw new EngineError('STATE_MISMATCH', 'the saved state was made with another model (its identity hash differs)');
  let at = 8 + HASH_BYTES;
  const type = TYPE_CODES[view.getUint32(at, true)] ?? bad(`unknown KV element type code ${view.getUint32(at, true)}`);
  const nLayers = view.getUint32(at + 4, true), kvDim = view.getUint32(at + 8, true), n = view.getUint32(at + 12, true);
  if (type !== layout.type || nLayers !== layout.nLayers || kvDim !== layout.kvDim) {
    throw new EngineError('STATE_MISMATCH', `the saved state holds ${type} K/V of ${nLayers} layers x ${kvDim}; this engine keeps ${layout.type} K/V of ${layout.nLayers} x ${layout.kvDim}`);
  }
  at += 16;
  if (n === 0 || n > maxTokens) bad(`${n} tokens, expected 1..${maxTokens} (this engine's context)`);
  const rowBytes = kvRowBytes(type, kvDim);
  const want = HEADER_BYTES + 4 * n + nLayers * 2 * n * rowBytes;
  if (bytes.length !== want) bad(`${bytes.length} bytes where ${n} tokens need ${want}`);
  const tokens = Array.from({ length: n }, (_, i) => view.getUint32(at + 4 * i, true));
  const badToken = tokens.find((t) => t >= vocabSize);
  if (badToken !== undefined) bad(`token id ${badToken} is outside the vocabulary`);
  const data = at + 4 * n;
  return {
    tokens,
    write(backend, layers, slots) {
      let off = data;
      for (const layer of layers) {
        for (const cache of [layer.k, layer.v]) {
          for (let i = 0; i < n; i++) {
            backend.upload(cache, bytes.subarray(off, off + rowBytes), slots[i]! * rowBytes);
            off += rowBytes;
          }
        }
      }
    },
  };
}
