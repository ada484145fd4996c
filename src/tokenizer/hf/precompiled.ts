// The Precompiled normalizer: SentencePiece's normalization rules (T5, ALBERT, XLM-R, mBART and other Unigram
// models) as a `precompiled_charsmap`: base64 of [u32 LE trie size in bytes][darts-clone double array of u32
// units][NUL-terminated replacement strings]. The trie maps a UTF-8 key to the offset of its replacement.
// As the tokenizers library applies it: each grapheme shorter than 6 bytes is looked up whole, else each of its
// characters; the shortest rule matching a prefix of the chunk replaces the whole chunk.
import { invalid } from './json.js';
import type { Normalize } from './normalizers.js';

export interface Charsmap {
  units: Uint32Array;
  pool: Uint8Array;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

export function readCharsmap(base64: string, path: string): Charsmap {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  } catch {
    throw invalid(path, 'is not base64');
  }
  if (bytes.length < 4) throw invalid(path, `has ${bytes.length} bytes, fewer than its header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const trieBytes = view.getUint32(0, true);
  if (trieBytes % 4 !== 0 || trieBytes > bytes.length - 4 || trieBytes === 0) throw invalid(path, `trie size ${trieBytes} does not fit its ${bytes.length} bytes`);
  const units = new Uint32Array(trieBytes / 4);
  for (let i = 0; i < units.length; i++) units[i] = view.getUint32(4 + 4 * i, true);
  const pool = bytes.subarray(4 + trieBytes);
  try {
    strictUtf8.decode(pool);
  } catch {
    throw invalid(path, 'replacement strings are not UTF-8');
  }
  return { units, pool };
}

// darts-clone unit fields
const offsetOf = (unit: number) => (unit >>> 10) << ((unit & 0x200) >>> 6);
const labelOf = (unit: number) => unit & 0x800000ff;
const hasLeaf = (unit: number) => ((unit >>> 8) & 1) === 1;

/** The replacement of the shortest key that is a prefix of `key`, or undefined (also for a damaged map). */
export function firstPrefixReplacement(map: Charsmap, key: Uint8Array): string | undefined {
  const { units, pool } = map;
  let node = offsetOf(units[0]);
  for (const c of key) {
    if (c === 0) return undefined;
    node ^= c;
    if (node >= units.length) return undefined;
    const unit = units[node];
    if (labelOf(unit) !== c) return undefined;
    node ^= offsetOf(unit);
    if (hasLeaf(unit)) {
      if (node >= units.length) return undefined;
      const start = units[node] & 0x7fffffff;
      if (start > pool.length) return undefined;
      let end = start;
      while (end < pool.length && pool[end] !== 0) end++;
      try {
        return strictUtf8.decode(pool.subarray(start, end));
      } catch {
        return undefined; // a replacement cut inside a character
      }
    }
  }
  return undefined;
}

let segmenter: Intl.Segmenter | undefined;

export function precompiled(map: Charsmap): Normalize {
  const cache = new Map<string, string | undefined>();
  const transform = (chunk: string): string | undefined => {
    if (cache.has(chunk)) return cache.get(chunk);
    const out = firstPrefixReplacement(map, encoder.encode(chunk));
    if (cache.size < 1 << 16) cache.set(chunk, out);
    return out;
  };
  return (text) => {
    segmenter ??= new Intl.Segmenter('und', { granularity: 'grapheme' });
    let out = '';
    for (const { segment } of segmenter.segment(text)) {
      if (encoder.encode(segment).length < 6) {
        const whole = transform(segment);
        if (whole !== undefined) {
          out += whole;
          continue;
        }
      }
      for (const ch of segment) out += transform(ch) ?? ch;
    }
    return out;
  };
}
