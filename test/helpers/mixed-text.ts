// Seeded mixed text for tokenizer comparisons: prose (test/fixtures/story.txt), code, numbers, whitespace runs,
// contractions, special-token texts and characters of many scripts, cut into pieces of a few hundred
// characters to a few kilobytes so that a difference shows where it is.
import { readFileSync } from 'node:fs';
import { rng } from './random-tensors.js';

const STORY = readFileSync(new URL('../fixtures/story.txt', import.meta.url), 'utf8');

const ATOMS = [
  'hello', 'World', ' the', 'THE', "don't", "I'M", "we'Ve", "'ll", "'S", ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\v', '\f',
  '\u00a0', '\u0085', '\ufeff', '\u2028', '\u200b', '0', '12', '123', '1234567', '3.14', '-42', '1,000,000', '١٢٣', '²', 'Ⅻ',
  'function f(x) { return x*2; }', '#include <stdio.h>', 'if (a && b) {\n    x += 1;\n}', 'for i in range(10):\n\tprint(i)',
  '==>', '...', '!!!', '?!', '--', '___', '$$', '<<', '~~', '`code`', '"q"', "''", '()', '[]', '{}', '@user', '#tag', 'a.b.c', 'x=1;y=2',
  '🦙', '😀', '👨‍👩‍👧', '🇫🇷', '✅', '☕️', '日本語', '中文字符', '한국어', 'ひらがな', 'カタカナ', 'Привет', 'мир', 'مرحبا', 'नमस्ते', 'ελληνικά', 'עברית', 'ไทย',
  'ñ', 'é', 'e\u0301', 'Å', 'ß', 'ﬁ', 'ø', 'ö', 'ÿ', 'Ω', '‘', '’', '“', '”', '…', '—', '。', '，', '！', '▁', '\u0001', '\u001f', '\ue000',
  'http://example.com/a?b=c', 'foo_bar_baz', 'camelCaseWord', 'SCREAMING_CASE', 'snake-case', 'v1.2.3', '0x1F', '2026-12-02', '12:30',
];
const SPECIAL_TEXTS = ['<s>', '</s>', '<unk>', '<|endoftext|>', '<|end|>', '<|user|>', '<|assistant|>', '[CLS]', '[SEP]', '[UNK]', '[MASK]', '<fim_prefix>', '<｜end▁of▁sentence｜>'];
// code points from long-assigned blocks only: where Unicode assigned characters after llama.cpp's tables
// or the Rust crates' were made, categories legitimately differ
const BLOCKS: [number, number][] = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0xa1, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x5d0, 0x5ea], [0x621, 0x64a], [0x900, 0x939],
  [0x3041, 0x3096], [0x30a1, 0x30fa], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x1f600, 0x1f64f], [0x2010, 0x2027], [0x2030, 0x205e],
];

export interface MixedTextOptions {
  /** Characters to leave out (a known, documented difference between two tokenizers). */
  exclude?: RegExp;
  /** Put special-token texts in (they matter when special tokens are parsed). Default true. */
  specials?: boolean;
}

/** About `bytes` bytes of UTF-8 as a list of pieces, the same for the same seed. */
export function mixedText(bytes: number, seed: number, opts: MixedTextOptions = {}): string[] {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const encoder = new TextEncoder();
  const pieces: string[] = [];
  let total = 0;
  while (total < bytes) {
    let s = '';
    const kind = r();
    if (kind < 0.3) {
      // a stretch of prose
      const start = Math.floor(r() * STORY.length);
      s = STORY.slice(start, start + 200 + Math.floor(r() * 1500));
    } else {
      const parts = 20 + Math.floor(r() * 200);
      for (let j = 0; j < parts; j++) {
        const x = r();
        if (x < 0.25) {
          const [lo, hi] = pick(BLOCKS);
          s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
        } else if (x < 0.3 && opts.specials !== false) s += pick(SPECIAL_TEXTS);
        else if (x < 0.4) s += String(Math.floor(r() * 10 ** Math.floor(r() * 9)));
        else s += pick(ATOMS);
        if (r() < 0.3) s += ' ';
      }
    }
    if (opts.exclude) s = s.replace(opts.exclude, '');
    if (s === '') continue;
    pieces.push(s);
    total += encoder.encode(s).length;
  }
  return pieces;
}
