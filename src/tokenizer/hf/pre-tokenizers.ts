// tokenizer.json pre-tokenizers: each cuts the pieces of normalized text into smaller pieces (words) with the
// tokenizers library's semantics. A piece remembers whether it starts the whole input, which Metaspace's
// "first" prepend scheme asks.
import { byteEncode } from '../unicode.js';
import { asArray, asInt, asObject, get, invalid, MAX_NESTING, optBool, optString, reqChar, reqString, unsupported } from './json.js';
import { readPattern } from './normalizers.js';
import { charPattern, invert, regexPattern, SPLIT_BEHAVIORS, splitSegments, type Pattern, type SplitBehavior } from './pattern.js';
import { translateRegex } from './regex.js';

export interface Piece {
  text: string;
  /** The piece begins at offset 0 of the text given to encode. */
  atStart: boolean;
}

export type PreTokenize = (pieces: Piece[]) => Piece[];

/** The ByteLevel pre-tokenizer's own regex (GPT-2's), in the library's Oniguruma syntax. */
export const BYTE_LEVEL_REGEX = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

const WHITE_SPACE = /^\p{White_Space}$/u;
const NUMERIC = /^\p{N}$/u;
const PUNCTUATION = /^[\p{P}!-/:-@[-`{-~]$/u;
// the regex crate's \w (Whitespace pre-tokenizer)
const RUST_WORD = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;

const whitespace = charPattern((ch) => WHITE_SPACE.test(ch));
const numeric = charPattern((ch) => NUMERIC.test(ch));
const punctuation = charPattern((ch) => PUNCTUATION.test(ch));
const wordsAndSymbols = regexPattern(new RegExp(`[${RUST_WORD}]+|[^${RUST_WORD}\\p{White_Space}]+`, 'gu'));
let byteLevelPattern: Pattern | undefined;

export function splitPieces(pieces: Piece[], pattern: Pattern, behavior: SplitBehavior): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    for (const [s, e] of splitSegments(pattern(p.text), behavior)) {
      if (e > s) out.push({ text: p.text.slice(s, e), atStart: p.atStart && s === 0 });
    }
  }
  return out;
}

function readBehavior(v: unknown, path: string, fallback?: SplitBehavior): SplitBehavior {
  if (v === undefined && fallback) return fallback;
  if (typeof v !== 'string' || !(SPLIT_BEHAVIORS as readonly string[]).includes(v)) throw invalid(path, `should be one of ${SPLIT_BEHAVIORS.join(', ')}`);
  return v as SplitBehavior;
}

export function readPreTokenizer(v: unknown, path: string, depth = 0): PreTokenize {
  if (depth > MAX_NESTING) throw invalid(path, `nested more than ${MAX_NESTING} levels`);
  const o = asObject(v, path);
  const type = reqString(o, 'type', path);
  switch (type) {
    case 'ByteLevel': {
      const addPrefixSpace = optBool(o, 'add_prefix_space', path, true);
      optBool(o, 'trim_offsets', path, true); // offsets only
      const useRegex = optBool(o, 'use_regex', path, true);
      return (pieces) => {
        let out = addPrefixSpace ? pieces.map((p) => (p.text.startsWith(' ') ? p : { text: ' ' + p.text, atStart: p.atStart })) : pieces;
        if (useRegex) out = splitPieces(out, (byteLevelPattern ??= regexPattern(translateRegex(BYTE_LEVEL_REGEX, 'ByteLevel'))), 'Isolated');
        return out.map((p) => ({ text: byteEncode(p.text), atStart: p.atStart }));
      };
    }
    case 'Split': {
      const { pattern } = readPattern(get(o, 'pattern'), `${path}.pattern`);
      const behavior = readBehavior(get(o, 'behavior'), `${path}.behavior`);
      const inverted = optBool(o, 'invert', path, false);
      const p = inverted ? invert(pattern) : pattern;
      return (pieces) => splitPieces(pieces, p, behavior);
    }
    case 'Metaspace': {
      const replacement = reqChar(o, 'replacement', path);
      const addPrefixSpace = get(o, 'add_prefix_space');
      let scheme = optString(o, 'prepend_scheme', path) ?? 'always';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') throw invalid(`${path}.prepend_scheme`, 'should be "always", "first" or "never"');
      if (addPrefixSpace !== undefined && !optBool(o, 'add_prefix_space', path, true)) {
        if (scheme !== 'never' && get(o, 'prepend_scheme') !== undefined) throw invalid(path, 'add_prefix_space does not match prepend_scheme');
        scheme = 'never';
      }
      const split = optBool(o, 'split', path, true);
      const onReplacement = charPattern((ch) => ch === replacement);
      return (pieces) => {
        const out = pieces.map((p) => {
          let text = p.text.replaceAll(' ', replacement);
          if ((scheme === 'always' || (scheme === 'first' && p.atStart)) && !text.startsWith(replacement)) text = replacement + text;
          return { text, atStart: p.atStart };
        });
        return split ? splitPieces(out, onReplacement, 'MergedWithNext') : out;
      };
    }
    case 'Whitespace':
      return (pieces) => splitPieces(pieces, invert(wordsAndSymbols), 'Removed');
    case 'WhitespaceSplit':
      return (pieces) => splitPieces(pieces, whitespace, 'Removed');
    case 'BertPreTokenizer':
      return (pieces) => splitPieces(splitPieces(pieces, whitespace, 'Removed'), punctuation, 'Isolated');
    case 'Digits': {
      const individual = optBool(o, 'individual_digits', path, false);
      return (pieces) => splitPieces(pieces, numeric, individual ? 'Isolated' : 'Contiguous');
    }
    case 'Punctuation': {
      const behavior = readBehavior(get(o, 'behavior'), `${path}.behavior`, 'Isolated');
      return (pieces) => splitPieces(pieces, punctuation, behavior);
    }
    case 'CharDelimiterSplit': {
      const delimiter = reqChar(o, 'delimiter', path);
      const p = charPattern((ch) => ch === delimiter);
      return (pieces) => splitPieces(pieces, p, 'Removed');
    }
    case 'Sequence': {
      const list = asArray(get(o, 'pretokenizers'), `${path}.pretokenizers`).map((p, i) => readPreTokenizer(p, `${path}.pretokenizers[${i}]`, depth + 1));
      return (pieces) => list.reduce((ps, pre) => pre(ps), pieces);
    }
    case 'UnicodeScripts':
      // the library's own script table (Unicode 10) decides where it cuts; JS's current Unicode data would
      // cut differently around characters assigned since
      throw unsupported(path, 'the UnicodeScripts pre-tokenizer is not supported');
    case 'FixedLength': {
      const length = get(o, 'length') === undefined ? 5 : asInt(get(o, 'length'), `${path}.length`, 1, Number.MAX_SAFE_INTEGER);
      return (pieces) => pieces.flatMap((p) => {
        const chars = [...p.text];
        const out: Piece[] = [];
        for (let i = 0, at = 0; i < chars.length; i += length) {
          const text = chars.slice(i, i + length).join('');
          out.push({ text, atStart: p.atStart && at === 0 });
          at += text.length;
        }
        return out;
      });
    }
    default:
      throw unsupported(path, `unknown pre-tokenizer type ${JSON.stringify(type)}`);
  }
}
