// tokenizer.json decoders: token texts → text, a chain of steps over the list of tokens as the tokenizers
// library runs them. Two uses:
//  - decode (whole text): exactly the library's result, lossy UTF-8 included;
//  - a token's piece (one token inside a running text): the same steps on bytes, so a token that is half a
//    UTF-8 character gives its byte, and without the steps that only apply at the start of the text
//    (Strip's leading cut, Metaspace's and WordPiece's first-token rules).
import { CHAR_TO_BYTE, utf8Decoder, utf8Encoder } from '../unicode.js';
import { asArray, asInt, asObject, get, invalid, MAX_NESTING, optBool, optString, reqChar, reqString, unsupported } from './json.js';
import { readPattern } from './normalizers.js';
import { replaceMatches, type Pattern } from './pattern.js';

/** A token's text, or raw bytes once a step has turned it into bytes (pieces only). */
export type Part = string | Uint8Array;

export interface DecodeContext {
  /** Work on bytes (pieces) rather than the library's lossy strings (decode). */
  bytes: boolean;
  /** The first part starts the text. */
  atStart: boolean;
  /** The last part ends the text. */
  atEnd: boolean;
}

export type DecodeStep = (parts: Part[], ctx: DecodeContext) => Part[];

const asText = (p: Part): string => (typeof p === 'string' ? p : utf8Decoder.decode(p));
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function concatBytes(parts: Part[]): Uint8Array {
  const chunks = parts.map((p) => (typeof p === 'string' ? utf8Encoder.encode(p) : p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** "<0xXX>" → the byte, else undefined (the library checks length 6, the prefix and the closing >). */
function byteOfToken(t: string): number | undefined {
  if (t.length !== 6 || !t.startsWith('<0x') || !t.endsWith('>')) return undefined;
  const hex = t.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : undefined;
}

const byteFallback: DecodeStep = (parts, ctx) => {
  const out: Part[] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length === 0) return;
    const bytes = Uint8Array.from(run);
    if (ctx.bytes) out.push(bytes);
    else {
      try {
        out.push(strictDecoder.decode(bytes));
      } catch {
        for (let i = 0; i < run.length; i++) out.push('\uFFFD');
      }
    }
    run = [];
  };
  for (const p of parts) {
    const b = typeof p === 'string' ? byteOfToken(p) : undefined;
    if (b !== undefined) run.push(b);
    else {
      flush();
      out.push(p);
    }
  }
  flush();
  return out;
};

const byteLevel: DecodeStep = (parts, ctx) => {
  const bytes: number[] = [];
  for (const p of parts) {
    if (typeof p !== 'string') {
      bytes.push(...p);
      continue;
    }
    // a token with any character outside the byte alphabet goes through as its UTF-8
    const mapped: number[] = [];
    let all = true;
    for (let i = 0; i < p.length && all; i++) {
      const b = CHAR_TO_BYTE.get(p.charCodeAt(i));
      if (b === undefined) all = false;
      else mapped.push(b);
    }
    bytes.push(...(all ? mapped : utf8Encoder.encode(p)));
  }
  const joined = Uint8Array.from(bytes);
  return [ctx.bytes ? joined : utf8Decoder.decode(joined)];
};

const fuse: DecodeStep = (parts) => (parts.every((p) => typeof p === 'string') ? [parts.join('')] : [concatBytes(parts)]);

function strip(content: string, start: number, stop: number): DecodeStep {
  const code = content.codePointAt(0)!;
  return (parts, ctx) =>
    parts.map((p, i) => {
      // inside a running text only the end cut applies to a piece; the leading cut belongs to the text's start
      const cutStart = ctx.bytes && !(ctx.atStart && i === 0) ? 0 : start;
      if (typeof p !== 'string' && code >= 0x80) p = asText(p);
      if (typeof p === 'string') {
        const chars = [...p];
        let a = 0, b = chars.length;
        while (a < Math.min(cutStart, chars.length) && chars[a] === content) a++;
        for (let k = 0; k < stop && b > a && chars[b - 1] === content; k++) b--;
        return chars.slice(a, b).join('');
      }
      let a = 0, b = p.length;
      while (a < Math.min(cutStart, p.length) && p[a] === code) a++;
      for (let k = 0; k < stop && b > a && p[b - 1] === code; k++) b--;
      return p.subarray(a, b);
    });
}

function replace(pattern: Pattern): (content: string) => DecodeStep {
  return (content) => (parts) => parts.map((p) => replaceMatches(asText(p), pattern, content));
}

function wordPiece(prefix: string, cleanup: boolean): DecodeStep {
  return (parts, ctx) =>
    parts.map((p, i) => {
      let t = asText(p);
      if (i !== 0 || !ctx.atStart) t = t.startsWith(prefix) ? t.slice(prefix.length) : ' ' + t;
      return cleanup ? cleanupSpaces(t, false) : t;
    });
}

function metaspace(replacement: string, prependScheme: string): DecodeStep {
  return (parts, ctx) =>
    parts.map((p, i) => {
      const dropFirst = i === 0 && ctx.atStart && prependScheme !== 'never';
      let out = '';
      for (const ch of asText(p)) out += ch === replacement ? (dropFirst ? '' : ' ') : ch;
      return out;
    });
}

function bpeSuffix(suffix: string): DecodeStep {
  return (parts, ctx) => parts.map((p, i) => asText(p).replaceAll(suffix, i === parts.length - 1 && ctx.atEnd ? '' : ' '));
}

function ctc(pad: string, delimiter: string, cleanup: boolean): DecodeStep {
  return (parts) => {
    const out: Part[] = [];
    let previous: string | undefined;
    for (const p of parts) {
      const t = asText(p);
      if (t === previous) continue; // consecutive duplicates collapse
      previous = t;
      let r = t.replaceAll(pad, '');
      if (cleanup) r = cleanupSpaces(r, false).replaceAll(delimiter, ' ');
      if (r !== '') out.push(r);
    }
    return out;
  };
}

/**
 * The WordPiece decoder's clean-up of spaces before punctuation and contractions; `forTransformers` gives
 * transformers' clean_up_tokenization_spaces instead, which is the same without " do not" → " don't".
 */
export function cleanupSpaces(t: string, forTransformers: boolean): string {
  let s = t.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',').replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't").replaceAll(" 'm", "'m");
  if (!forTransformers) s = s.replaceAll(' do not', " don't");
  return s.replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

export function readDecoder(v: unknown, path: string, depth = 0): DecodeStep {
  if (depth > MAX_NESTING) throw invalid(path, `nested more than ${MAX_NESTING} levels`);
  const o = asObject(v, path);
  const type = reqString(o, 'type', path);
  switch (type) {
    case 'ByteFallback':
      return byteFallback;
    case 'ByteLevel':
      return byteLevel;
    case 'Fuse':
      return fuse;
    case 'Strip': {
      const start = asInt(get(o, 'start') ?? 0, `${path}.start`, 0, Number.MAX_SAFE_INTEGER);
      const stop = asInt(get(o, 'stop') ?? 0, `${path}.stop`, 0, Number.MAX_SAFE_INTEGER);
      return strip(reqChar(o, 'content', path), start, stop);
    }
    case 'Replace': {
      const { pattern } = readPattern(get(o, 'pattern'), `${path}.pattern`);
      return replace(pattern)(reqString(o, 'content', path));
    }
    case 'WordPiece':
      return wordPiece(optString(o, 'prefix', path) ?? '##', optBool(o, 'cleanup', path, true));
    case 'Metaspace': {
      const replacement = reqChar(o, 'replacement', path);
      let scheme = optString(o, 'prepend_scheme', path) ?? 'always';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') throw invalid(`${path}.prepend_scheme`, 'should be "always", "first" or "never"');
      if (get(o, 'add_prefix_space') !== undefined && !optBool(o, 'add_prefix_space', path, true)) scheme = 'never';
      return metaspace(replacement, scheme);
    }
    case 'BPEDecoder':
      return bpeSuffix(optString(o, 'suffix', path) ?? '</w>');
    case 'CTC':
      return ctc(optString(o, 'pad_token', path) ?? '<pad>', optString(o, 'word_delimiter_token', path) ?? '|', optBool(o, 'cleanup', path, true));
    case 'Sequence': {
      const list = asArray(get(o, 'decoders'), `${path}.decoders`).map((d, i) => readDecoder(d, `${path}.decoders[${i}]`, depth + 1));
      return (parts, ctx) => list.reduce((ps, step) => step(ps, ctx), parts);
    }
    default:
      throw unsupported(path, `unknown decoder type ${JSON.stringify(type)}`);
  }
}

/** Run the chain and join what comes out (bytes for pieces, the text for decode). */
export function runDecoder(step: DecodeStep | undefined, tokens: string[], ctx: DecodeContext): Part {
  if (!step) {
    // no decoder: the library joins the tokens with spaces
    const text = (ctx.atStart ? '' : ' ') + tokens.join(' ');
    return ctx.bytes ? utf8Encoder.encode(text) : text;
  }
  const parts = step(tokens, ctx);
  return ctx.bytes ? concatBytes(parts) : parts.map(asText).join('');
}
