// Unicode and UTF-8 helpers shared by the tokenizers. Browser-safe: only TextEncoder/TextDecoder and
// the regex engine's Unicode property escapes, no category tables of our own.

export const utf8Encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF: it is text here, not a byte-order mark
export const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * llama.cpp sees text as UTF-8 bytes; a lone UTF-16 surrogate reaches it as EF BF BD (U+FFFD).
 * Replacing lone surrogates up front keeps every later step (lookups, regexes) in step with that.
 */
export function toWellFormed(text: string): string {
  const native = (text as { toWellFormed?: () => string }).toWellFormed;
  if (native) return native.call(text);
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** UTF-8 length of a well-formed string without allocating. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

// GPT-2's reversible byte <-> printable-character mapping: printable Latin-1 bytes stand for themselves,
// the other 68 bytes are moved to U+0100.. in byte order.
function buildByteMaps(): { toChar: string[]; toByte: Map<number, number> } {
  const toChar: string[] = new Array(256);
  const toByte = new Map<number, number>();
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const cp = printable(b) ? b : 256 + n++;
    toChar[b] = String.fromCharCode(cp);
    toByte.set(cp, b);
  }
  return { toChar, toByte };
}

const byteMaps = buildByteMaps();
/** Byte value → the character byte-level BPE vocabularies use for it. */
export const BYTE_TO_CHAR: readonly string[] = byteMaps.toChar;
/** Inverse of BYTE_TO_CHAR, keyed by code point. */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = byteMaps.toByte;

/** A word's UTF-8 bytes spelled in BYTE_TO_CHAR characters (what byte-level BPE merges operate on). */
export function byteEncode(word: string): string {
  let out = '';
  for (let i = 0; i < word.length; i++) {
    let c = word.charCodeAt(i);
    if (c < 0x80) {
      out += BYTE_TO_CHAR[c];
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < word.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (word.charCodeAt(++i) - 0xdc00);
    }
    if (c < 0x800) {
      out += BYTE_TO_CHAR[0xc0 | (c >> 6)] + BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    } else if (c < 0x10000) {
      out += BYTE_TO_CHAR[0xe0 | (c >> 12)] + BYTE_TO_CHAR[0x80 | ((c >> 6) & 0x3f)] + BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    } else {
      out += BYTE_TO_CHAR[0xf0 | (c >> 18)] + BYTE_TO_CHAR[0x80 | ((c >> 12) & 0x3f)] +
        BYTE_TO_CHAR[0x80 | ((c >> 6) & 0x3f)] + BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    }
  }
  return out;
}

/** Code points of a string (lone surrogates come out as themselves; callers pass well-formed text). */
export function codePoints(text: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out.push(0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00));
        i++;
        continue;
      }
    }
    out.push(c);
  }
  return out;
}

const firstCodePoint = (s: string, fallback: number): number => s.codePointAt(0) ?? fallback;

// llama.cpp's tables keep one code point per mapping: the first of the full lowercase / NFD form
// (so 'İ' lowers to plain 'i' and 'é' decomposes to plain 'e').
const lowerCache = new Map<number, number>();
export function lowerFirst(cp: number): number {
  if (cp < 0x80) return cp >= 0x41 && cp <= 0x5a ? cp + 32 : cp;
  let v = lowerCache.get(cp);
  if (v === undefined) {
    v = firstCodePoint(String.fromCodePoint(cp).toLowerCase(), cp);
    lowerCache.set(cp, v);
  }
  return v;
}

const nfdCache = new Map<number, number>();
export function nfdFirst(cp: number): number {
  if (cp < 0xc0) return cp;
  let v = nfdCache.get(cp);
  if (v === undefined) {
    v = firstCodePoint(String.fromCodePoint(cp).normalize('NFD'), cp);
    nfdCache.set(cp, v);
  }
  return v;
}

const WHITESPACE = /^\p{White_Space}$/u;
const CONTROL = /^[\p{Cc}\p{Cf}\p{Co}\p{Cs}]$/u;
const PUNCTUATION = /^\p{P}$/u;
const SYMBOL = /^\p{S}$/u;
const MARK = /^\p{M}$/u;

/** llama.cpp's whitespace set is exactly Unicode White_Space (U+0085 yes, U+FEFF no). */
export const isWhitespace = (cp: number): boolean => WHITESPACE.test(String.fromCodePoint(cp));
/** llama.cpp's "control" flag: \p{C} without unassigned code points (those have their own flag). */
export const isControl = (cp: number): boolean => CONTROL.test(String.fromCodePoint(cp));
export const isPunctuation = (cp: number): boolean => PUNCTUATION.test(String.fromCodePoint(cp));
export const isSymbol = (cp: number): boolean => SYMBOL.test(String.fromCodePoint(cp));
export const isAccentMark = (cp: number): boolean => MARK.test(String.fromCodePoint(cp));

/** CJK ideograph blocks as BERT's BasicTokenizer (and llama.cpp's WPM) define them. */
export function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    // 0x2B920, not 0x2B820: HF's Rust code has it this way and llama.cpp follows it
    (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}
