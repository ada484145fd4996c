// llama.cpp's tokenizer conformance vectors (../shared/vocab): every string of every vocabulary must encode
// to exactly the ids llama.cpp's reference produced (add_special = false, parse_special = false).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readGGUF } from '../src/gguf/reader.js';
import { openSource } from '../src/io/open-source.js';
import { Tokenizer } from '../src/tokenizer/index.js';

const VOCAB_DIR = join(import.meta.dirname, '..', '..', 'shared', 'vocab');
const VOCABS = ['llama-spm', 'phi-3', 'gpt-2', 'starcoder', 'deepseek-llm', 'bert-bge'];
const HAVE = VOCABS.every((v) => existsSync(join(VOCAB_DIR, `ggml-vocab-${v}.gguf`)));

interface Vector {
  text: string;
  ids: number[];
}

function readVectors(name: string): Vector[] {
  const base = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
  const texts = readFileSync(base + '.inp', 'utf8').split('\n__ggml_vocab_test__\n');
  const lines = readFileSync(base + '.out', 'utf8').split('\n');
  // both files end with a separator / newline, leaving one empty entry at the end
  texts.pop();
  lines.pop();
  if (texts.length !== lines.length) throw new Error(`${name}: ${texts.length} strings but ${lines.length} expected lines`);
  return texts.map((text, i) => ({ text, ids: lines[i].trim() === '' ? [] : lines[i].trim().split(/\s+/).map(Number) }));
}

describe.skipIf(!HAVE)(`llama.cpp tokenizer vectors${HAVE ? '' : ` (skipped: ${VOCAB_DIR} not found)`}`, () => {
  for (const name of VOCABS) {
    describe(name, () => {
      const vectors = HAVE ? readVectors(name) : [];
      let tokenizer: Tokenizer;
      beforeAll(async () => {
        const source = await openSource(join(VOCAB_DIR, `ggml-vocab-${name}.gguf`));
        try {
          tokenizer = Tokenizer.fromGGUF((await readGGUF(source)).metadata);
        } finally {
          await source.close();
        }
      });

      it('has test vectors', () => {
        expect(vectors.length).toBeGreaterThan(40);
      });

      it.each(vectors.map((v, i) => [i, JSON.stringify(v.text).slice(0, 60), v] as const))('#%i %s', (_i, _label, v) => {
        expect(tokenizer.encode(v.text, { addSpecial: false, parseSpecial: false })).toEqual(v.ids);
      });
    });
  }
});
