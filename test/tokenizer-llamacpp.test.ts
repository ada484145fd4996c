// Cross-check against llama.cpp itself (through node-llama-cpp's prebuilt binary): a few hundred seeded,
// varied strings per vocabulary must tokenize to the same ids (with and without special-token parsing)
// and detokenize to the same text.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGGUF } from '../src/gguf/reader.js';
import { openSource } from '../src/io/open-source.js';
import { Tokenizer } from '../src/tokenizer/index.js';

const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const FILES = [
  ...['llama-spm', 'phi-3', 'gpt-2', 'starcoder', 'deepseek-llm', 'bert-bge'].map((v) => join(SHARED, 'vocab', `ggml-vocab-${v}.gguf`)),
  join(import.meta.dirname, '..', 'models', 'stories260K.gguf'),
].filter((f) => existsSync(f));
const STRINGS_PER_FILE = 300;

type LlamaModule = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<LlamaModule['getLlama']>>;

async function tryLlama(): Promise<{ llama?: Llama; why?: string }> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({
      gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, logLevel: LlamaLogLevel.error,
      // vocab-only files have no tensors: llama.cpp's complaints about that are expected
      logger: (level, message) => {
        if (!/missing tensor|failed to load model|Failed simulating/.test(message)) process.stderr.write(`[llama.cpp ${level}] ${message}\n`);
      },
    });
    return { llama };
  } catch (e) {
    return { why: (e as Error).message };
  }
}
const { llama, why } = await tryLlama();
afterAll(async () => {
  await llama?.dispose();
});

// mulberry32: a small seeded generator so every run checks the same strings
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ATOMS = [
  'hello', 'World', ' the', 'THE', "don't", "I'M", "we'Ve", "'ll", "'S", ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\v', '\f',
  '\u00a0', '\u3000', '\u0085', '\ufeff', '\u2028', '\u200b', '0', '12', '123', '1234567', '3.14', '١٢٣', '²', 'Ⅻ',
  'function f(x) { return x*2; }', '#include <stdio.h>', '==>', '...', '!!!', '?!', '--', '___', '$$', '<<', '~~', '`code`', '"q"', "''",
  '🦙', '😀', '👨‍👩‍👧', '🇫🇷', '✅', '☕️', '日本語', '中文字符', '한국어', 'ひらがな', 'Привет', 'мир', 'مرحبا', 'नमस्ते',
  'ñ', 'é', 'e\u0301', 'Å', 'ß', 'İ', 'ﬁ', 'Ǆ', 'ø', 'ö', 'ÿ', 'Ω', 'K', 'ǅ', '‘', '…', '。', '，', '！', '▁', '\u0000', '\u0001', '\u001f', '\ue000',
  '<s>', '</s>', '<unk>', '<|endoftext|>', '<|end|>', '<|user|>', '[CLS]', '[SEP]', '[UNK]', '<fim_prefix>', '<｜end▁of▁sentence｜>',
];
// Random code points only from long-assigned blocks: where Unicode assigned characters after llama.cpp's
// tables were made, categories legitimately differ.
const BLOCKS: [number, number][] = [[0x20, 0x7e], [0x00, 0x1f], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x600, 0x6ff], [0x900, 0x97f], [0x3040, 0x30ff], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x1f600, 0x1f64f], [0x2000, 0x206f]];

function makeStrings(n: number, seed: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let s = r() < 0.2 ? ' ' : '';
    const parts = 1 + Math.floor(r() * 12);
    for (let j = 0; j < parts; j++) {
      if (r() < 0.25) {
        const [lo, hi] = BLOCKS[Math.floor(r() * BLOCKS.length)];
        s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
      } else {
        s += ATOMS[Math.floor(r() * ATOMS.length)];
      }
      if (r() < 0.3) s += ' ';
    }
    out.push(s);
  }
  return out;
}

describe.skipIf(!llama || FILES.length === 0)(
  `agreement with llama.cpp${!llama ? ` (skipped: node-llama-cpp cannot load: ${why})` : FILES.length === 0 ? ' (skipped: no vocab files found)' : ''}`,
  () => {
    for (const file of FILES) {
      it(file.split('/').pop()!, async () => {
        const source = await openSource(file);
        const tokenizer = Tokenizer.fromGGUF((await readGGUF(source)).metadata);
        await source.close();
        const model = await llama!.loadModel({ modelPath: file, vocabOnly: true });
        try {
          const mismatches: string[] = [];
          const strings = makeStrings(STRINGS_PER_FILE, 42);
          // all of them as one long text too: long inputs take the chunked / cached paths
          const long = strings.join('');
          const longWant = Array.from(model.tokenize(long, false), Number);
          if (tokenizer.encode(long).join() !== longWant.join()) mismatches.push(`encode of the ${long.length}-character concatenation differs`);
          for (const s of strings) {
            for (const parseSpecial of [false, true]) {
              const want = Array.from(model.tokenize(s, parseSpecial), Number);
              const got = tokenizer.encode(s, { parseSpecial });
              if (got.join() !== want.join()) mismatches.push(`encode${parseSpecial ? ' (parse special)' : ''} ${JSON.stringify(s)}: llama.cpp [${want}] ours [${got}]`);
              for (const special of [false, true]) {
                const text = model.detokenize(want as never, special);
                const ours = tokenizer.decode(want, { skipSpecial: !special });
                if (ours !== text) mismatches.push(`decode ${JSON.stringify(want)}: llama.cpp ${JSON.stringify(text)} ours ${JSON.stringify(ours)}`);
              }
            }
          }
          expect(mismatches.slice(0, 10)).toEqual([]);
        } finally {
          await model.dispose();
        }
      });
    }
  },
);
