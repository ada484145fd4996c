// tokenizer.json normalizers: each becomes a function on the text, with the tokenizers library's semantics
// (offsets are not tracked: ids do not depend on them).
import { byteEncode, isChineseChar } from '../unicode.js';
import { precompiled, readCharsmap } from './precompiled.js';
import { asArray, asObject, asString, get, invalid, MAX_NESTING, optBool, reqString, unsupported, type JsonObject } from './json.js';
import { literalRegex, translateRegex } from './regex.js';
import { regexPattern, replaceMatches, type Pattern } from './pattern.js';

export type Normalize = (text: string) => string;

const WHITE_SPACE = /\p{White_Space}/u;
// Rust's char::is_other as the library's Unicode tables have it: unassigned code points are not "other"
const OTHER = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}]/u;
const MARK_NONSPACING = /\p{Mn}/gu;
const MARK = /\p{M}/gu;

/** Rust's char::to_lowercase, one character at a time (no final-sigma rule, unlike String.toLowerCase). */
export function lowercaseChars(text: string): string {
  if (!text.includes('\u03A3')) return text.toLowerCase();
  let out = '';
  for (const ch of text) out += ch === '\u03A3' ? '\u03C3' : ch.toLowerCase();
  return out;
}

function trimWhiteSpace(text: string, left: boolean, right: boolean): string {
  const chars = [...text];
  let a = 0, b = chars.length;
  if (left) while (a < b && WHITE_SPACE.test(chars[a])) a++;
  if (right) while (b > a && WHITE_SPACE.test(chars[b - 1])) b--;
  return chars.slice(a, b).join('');
}

/** BertNormalizer: clean control characters and whitespace, pad CJK ideographs, strip accents, lowercase. */
function bertNormalizer(cleanText: boolean, handleChinese: boolean, stripAccents: boolean, lowercase: boolean): Normalize {
  return (text) => {
    let out = text;
    if (cleanText || handleChinese) {
      let s = '';
      for (const ch of out) {
        const cp = ch.codePointAt(0)!;
        if (cleanText) {
          // removal comes first: U+0085, \v and \f are control characters before they are whitespace
          const tabOrNewline = cp === 9 || cp === 10 || cp === 13;
          if (cp === 0 || cp === 0xfffd || (!tabOrNewline && OTHER.test(ch))) continue;
          if (tabOrNewline || WHITE_SPACE.test(ch)) {
            s += ' ';
            continue;
          }
        }
        s += handleChinese && isChineseChar(cp) ? ` ${ch} ` : ch;
      }
      out = s;
    }
    if (stripAccents) out = out.normalize('NFD').replace(MARK_NONSPACING, '');
    if (lowercase) out = lowercaseChars(out);
    return out;
  };
}

function nmt(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if ((cp >= 1 && cp <= 8) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) || cp === 0x7f || cp === 0x8f || cp === 0x9f) continue;
    const toSpace = cp === 9 || cp === 10 || cp === 12 || cp === 13 || cp === 0x1680 || (cp >= 0x200b && cp <= 0x200f) ||
      cp === 0x2028 || cp === 0x2029 || cp === 0x2581 || cp === 0xfeff || cp === 0xfffd;
    out += toSpace ? ' ' : ch;
  }
  return out;
}

/** A Replace / Split pattern object: {"String": "..."} or {"Regex": "..."}. */
export function readPattern(v: unknown, path: string): { pattern: Pattern; source: string } {
  const o = asObject(v, path);
  const keys = Object.keys(o);
  if (keys.length !== 1 || (keys[0] !== 'String' && keys[0] !== 'Regex')) throw invalid(path, 'should be {"String": ...} or {"Regex": ...}');
  const text = reqString(o, keys[0], path);
  const re = keys[0] === 'String' ? literalRegex(text) : translateRegex(text, `${path}.Regex`);
  return { pattern: regexPattern(re), source: text };
}

export function readNormalizer(v: unknown, path: string, depth = 0): Normalize {
  if (depth > MAX_NESTING) throw invalid(path, `nested more than ${MAX_NESTING} levels`);
  const o = asObject(v, path);
  const type = reqString(o, 'type', path);
  switch (type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return (t) => t.normalize(type);
    case 'Lowercase':
      return lowercaseChars;
    case 'StripAccents':
      return (t) => t.replace(MARK, '');
    case 'Strip': {
      const left = optBool(o, 'strip_left', path, true);
      const right = optBool(o, 'strip_right', path, true);
      return (t) => trimWhiteSpace(t, left, right);
    }
    case 'Prepend': {
      const prefix = reqString(o, 'prepend', path);
      return (t) => (t === '' ? t : prefix + t);
    }
    case 'Replace': {
      const { pattern } = readPattern(get(o, 'pattern'), `${path}.pattern`);
      const content = reqString(o, 'content', path);
      return (t) => replaceMatches(t, pattern, content);
    }
    case 'BertNormalizer': {
      const lowercase = optBool(o, 'lowercase', path, true);
      const strip = get(o, 'strip_accents');
      const stripAccents = strip === undefined ? lowercase : optBool(o, 'strip_accents', path, lowercase);
      return bertNormalizer(optBool(o, 'clean_text', path, true), optBool(o, 'handle_chinese_chars', path, true), stripAccents, lowercase);
    }
    case 'Nmt':
      return nmt;
    case 'ByteLevel':
      return (t) => byteEncode(t);
    case 'Sequence': {
      const list = asArray(get(o, 'normalizers'), `${path}.normalizers`).map((n, i) => readNormalizer(n, `${path}.normalizers[${i}]`, depth + 1));
      return (t) => list.reduce((s, n) => n(s), t);
    }
    case 'Precompiled': {
      const charsmap = get(o, 'precompiled_charsmap');
      // an empty map (some converted files have it) changes nothing
      if (charsmap === undefined) return (t) => t;
      return precompiled(readCharsmap(asString(charsmap, `${path}.precompiled_charsmap`), `${path}.precompiled_charsmap`));
    }
    default:
      throw unsupported(path, `unknown normalizer type ${JSON.stringify(type)}`);
  }
}

export type { JsonObject };
