// llama2.c's tokenizer (run.c encode/decode), rebuilt over a GGUF vocabulary, so a reference
// forward pass can replay llama2.c's runs exactly without depending on src/tokenizer/.
// Test-only: it reproduces llama2.c's choices (dummy space prefix, greedy best-score merges,
// byte fallback at id byte+3, "\n</s>\n" for EOS) rather than full SentencePiece behaviour.
import type { GGUFFile } from '../../src/gguf/reader.js';
import { getNumberArray, getStringArray } from '../../src/gguf/metadata.js';

export interface Llama2cTokenizer {
  encode(text: string): number[];
  /** The bytes llama2.c prints for `token` following `prev`. */
  decode(prev: number, token: number): Uint8Array;
}

const BOS = 1;
const EOS = 2;
const utf8 = new TextEncoder();

export function llama2cTokenizer(gguf: GGUFFile): Llama2cTokenizer {
  const tokens = getStringArray(gguf.metadata, 'tokenizer.ggml.tokens');
  const scores = getNumberArray(gguf.metadata, 'tokenizer.ggml.scores');
  if (!tokens || !scores) throw new Error('GGUF has no tokenizer.ggml.tokens/scores');
  // llama2.c's tok512.bin stores pieces with real spaces where SentencePiece has U+2581.
  const pieces = tokens.map((t, i) => (i === BOS ? '\n<s>\n' : i === EOS ? '\n</s>\n' : t.replaceAll('\u2581', ' ')));
  const lookup = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!lookup.has(p)) lookup.set(p, i);
  });

  return {
    encode(text) {
      const ids: number[] = [BOS];
      if (text.length > 0) ids.push(lookup.get(' ')!); // dummy prefix, as SentencePiece adds
      for (const ch of text) {
        const id = lookup.get(ch);
        if (id !== undefined) ids.push(id);
        else for (const b of utf8.encode(ch)) ids.push(b + 3); // byte fallback: <0x00> is id 3
      }
      // Merge the adjacent pair whose concatenation has the best score, until none is in the vocab.
      for (;;) {
        let best = -1e10, bestAt = -1, bestId = -1;
        for (let i = 0; i + 1 < ids.length; i++) {
          const id = lookup.get(pieces[ids[i]] + pieces[ids[i + 1]]);
          if (id !== undefined && scores[id] > best) {
            best = Number(scores[id]);
            bestAt = i;
            bestId = id;
          }
        }
        if (bestAt < 0) break;
        ids.splice(bestAt, 2, bestId);
      }
      return ids;
    },

    decode(prev, token) {
      let piece = pieces[token];
      if (prev === BOS && piece.startsWith(' ')) piece = piece.slice(1);
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      if (byte) {
        const b = parseInt(byte[1], 16);
        // safe_printf: a lone byte prints only if printable or whitespace
        const printable = (b >= 0x20 && b < 0x7f) || (b >= 0x09 && b <= 0x0d);
        return printable ? new Uint8Array([b]) : new Uint8Array(0);
      }
      return utf8.encode(piece);
    },
  };
}
