// Hugging Face tokenizer.json tokenizers.
//  1. Token for token equal to our GGUF tokenizers: a tokenizer.json laid out as the real files of each family
//     is built from every vocabulary in ../shared/vocab (test/helpers/hf-tokenizer-json.ts); it must give every
//     llama.cpp vector and the GGUF tokenizer's ids on ~1 MB of mixed text (with and without special-token
//     parsing and added special tokens), the same pieces and the same decoded text.
//  2. Equal to the tokenizers library itself (npm `tokenizers`, Hugging Face's Rust code): the same files, and
//     files made to exercise the components the converted ones do not use (Unigram, WordLevel, Metaspace,
//     Split behaviours, added-token options, every decoder).
//  3. Hostile files: seeded mutations of a valid tokenizer.json load or fail with a TokenizerError, never
//     anything else and never slowly.
//
// Where llama.cpp and the tokenizers library differ on purpose-free details, the mixed text for the GGUF
// comparison leaves those characters out and says why (the comparison with the library keeps them):
//  - phi-3: llama.cpp's rstrip of special tokens takes ASCII whitespace only, the library's any White_Space.
//  - bert-bge: llama.cpp keeps the first code point of NFD and of lowercase and drops all marks; the library
//    decomposes fully (Hangul syllables) and drops only nonspacing marks (Mc, Me stay); llama.cpp treats
//    \v, \f and U+0085 as whitespace where BertNormalizer deletes them as control characters; and llama.cpp's
//    WPM vocabulary marks word starts with ▁, so a ▁ in the text joins words there.
//  - qwen2: llama.cpp does not apply the file's NFC normalizer, so the text compared is in NFC already.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { openSource } from '../src/io/open-source.js';
import { readTokenizerConfig, Tokenizer, TokenizerError } from '../src/tokenizer/index.js';
import { cleanupSpaces } from '../src/tokenizer/hf/decoders.js';
import { CHAR_TO_BYTE } from '../src/tokenizer/unicode.js';
import { TokenAttr } from '../src/tokenizer/vocab.js';
import { buildCharsmap } from './helpers/charsmap.js';
import { hfFilesFromGGUF, type HFFiles } from './helpers/hf-tokenizer-json.js';
import { mixedText } from './helpers/mixed-text.js';
import { llamaCppVocab } from './helpers/llama-cpp-vocab.js';
import { rng } from './helpers/random-tensors.js';

const MIB = 1 << 20;

interface VocabCase {
  name: string;
  /** Characters left out of the mixed text for the GGUF comparison (see the header). */
  exclude?: RegExp;
  /** Merges written as "a b" strings (older files). */
  stringMerges?: boolean;
  /** Compare on text already in NFC: llama.cpp does not apply the file's NFC normalizer. */
  nfc?: boolean;
  /** llama.cpp's WPM detokenizer is not the WordPiece decoder: compare decoding with the library only. */
  decodeLikeLlamaCpp: boolean;
}
// ../shared/vocab has the first six; llama-bpe (Llama 3: Split with (?i:...), ignore_merges, BOS template) and
// qwen2 (NFC normalizer) come from the llama.cpp source node-llama-cpp ships (test/helpers/llama-cpp-vocab.ts)
const VOCABS: VocabCase[] = [
  { name: 'llama-spm', decodeLikeLlamaCpp: true },
  { name: 'phi-3', exclude: /[\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/gu, stringMerges: true, decodeLikeLlamaCpp: true },
  { name: 'gpt-2', stringMerges: true, decodeLikeLlamaCpp: true },
  { name: 'starcoder', decodeLikeLlamaCpp: true },
  { name: 'deepseek-llm', decodeLikeLlamaCpp: true },
  { name: 'bert-bge', exclude: /[\v\f\u0085\u2581\uAC00-\uD7A3\p{Mc}\p{Me}]/gu, decodeLikeLlamaCpp: false },
  { name: 'llama-bpe', decodeLikeLlamaCpp: true },
  { name: 'qwen2', nfc: true, decodeLikeLlamaCpp: true },
];
const FILES = new Map(VOCABS.map((v) => [v.name, llamaCppVocab(v.name)]));

type Library = typeof import('tokenizers');
async function loadLibrary(): Promise<{ lib?: Library; why?: string }> {
  try {
    return { lib: await import('tokenizers') };
  } catch (e) {
    return { why: (e as Error).message };
  }
}
const { lib, why } = await loadLibrary();

async function readMeta(path: string): Promise<GGUFFile['metadata']> {
  const source = await openSource(path);
  try {
    return (await readGGUF(source)).metadata;
  } finally {
    await source.close();
  }
}

function readVectors(base: string): { text: string; ids: number[] }[] {
  const texts = readFileSync(base + '.inp', 'utf8').split('\n__ggml_vocab_test__\n');
  const lines = readFileSync(base + '.out', 'utf8').split('\n');
  texts.pop();
  lines.pop();
  return texts.map((text, i) => ({ text, ids: lines[i].trim() === '' ? [] : lines[i].trim().split(/\s+/).map(Number) }));
}

const utf8Bytes = (pieces: string[]) => pieces.reduce((n, p) => n + Buffer.byteLength(p), 0);

/** Where two id lists part, with the tokens around it, for a readable failure. */
function firstDifference(tok: Tokenizer, text: string, want: number[], got: number[]): string {
  let i = 0;
  while (i < want.length && want[i] === got[i]) i++;
  const around = (ids: number[]) => ids.slice(Math.max(0, i - 2), i + 3).map((id) => `${id}:${JSON.stringify(tok.tokenText(id))}`).join(' ');
  return `${JSON.stringify(text.slice(0, 80))}… at token ${i}: want ${around(want)} got ${around(got)}`;
}

/** Token ids whose pieces llama.cpp and the library render differently: byte-level user tokens written in the byte alphabet. */
function byteAlphabetUserTokens(tok: Tokenizer): Set<number> {
  const out = new Set<number>();
  if (tok.type !== 'bpe') return out;
  for (let id = 0; id < tok.vocabSize; id++) {
    if (!(tok.tokenAttr(id) & TokenAttr.USER_DEFINED)) continue;
    if ([...tok.tokenText(id)].some((ch) => CHAR_TO_BYTE.has(ch.codePointAt(0)!) && ch.codePointAt(0)! >= 0x80)) out.add(id);
  }
  return out;
}

describe('tokenizer.json built from llama.cpp\'s GGUF vocabularies', () => {
  for (const v of VOCABS) {
    const file = FILES.get(v.name)!;
    describe.skipIf(!file.path)(`${v.name}${file.path ? '' : ` (skipped: ${file.why})`}`, () => {
      let gguf: Tokenizer;
      let hf: Tokenizer;
      let files: HFFiles;
      let json: string;
      beforeAll(async () => {
        const meta = await readMeta(file.path!);
        gguf = Tokenizer.fromGGUF(meta);
        files = hfFilesFromGGUF(meta, { stringMerges: v.stringMerges });
        json = JSON.stringify(files.tokenizer);
        hf = Tokenizer.fromHuggingFace(json, JSON.stringify(files.config));
      });

      it('gives every llama.cpp vector', () => {
        const vectors = readVectors(file.path!);
        expect(vectors.length).toBeGreaterThan(40);
        const wrong = vectors.filter((x) => hf.encode(x.text).join() !== x.ids.join()).map((x) => firstDifference(hf, x.text, x.ids, hf.encode(x.text)));
        expect(wrong).toEqual([]);
      });

      it('has the GGUF tokenizer\'s vocabulary, special tokens and end-of-generation set', () => {
        expect(hf.vocabSize).toBe(gguf.vocabSize);
        expect([hf.bosId, hf.eosId, hf.unkId, hf.addBos, hf.addEos]).toEqual([gguf.bosId, gguf.eosId, gguf.unkId, gguf.addBos, gguf.addEos]);
        const eog = (t: Tokenizer) => Array.from({ length: t.vocabSize }, (_, id) => id).filter((id) => t.isEog(id));
        expect(eog(hf)).toEqual(eog(gguf));
      });

      it('encodes ~1 MB of mixed text to the GGUF tokenizer\'s ids, with and without special tokens', () => {
        const pieces = mixedText(MIB * 1.05, 7, { exclude: v.exclude }).map((p) => (v.nfc ? p.normalize('NFC') : p));
        expect(utf8Bytes(pieces)).toBeGreaterThanOrEqual(MIB);
        const wrong: string[] = [];
        pieces.forEach((p, k) => {
          for (const parseSpecial of [false, true]) {
            const opts = { parseSpecial, addSpecial: k % 2 === 0 };
            const want = gguf.encode(p, opts), got = hf.encode(p, opts);
            if (want.join() !== got.join()) wrong.push(`${JSON.stringify(opts)} ${firstDifference(gguf, p, want, got)}`);
          }
        });
        expect(wrong.slice(0, 5)).toEqual([]);
        // all of it as one text: long inputs and the word caches
        const all = pieces.join('');
        expect(hf.encode(all).join()).toBe(gguf.encode(all).join());
      });

      const decodeTitle = `decodes to the GGUF tokenizer's text and has its pieces${v.decodeLikeLlamaCpp ? '' : " (skipped: llama.cpp's WPM detokenizer is not the WordPiece decoder; decoding is held to the library below)"}`;
      it.skipIf(!v.decodeLikeLlamaCpp)(decodeTitle, () => {
        const quirks = byteAlphabetUserTokens(gguf);
        const quirkChars = [...quirks].map((id) => gguf.tokenText(id)).join('');
        const exclude = quirkChars ? new RegExp(`[${quirkChars.replace(/[\]\\^-]/g, '\\$&')}]`, 'gu') : v.exclude;
        const pieces = mixedText(MIB / 4, 11, { exclude }).map((p) => (v.nfc ? p.normalize('NFC') : p));
        const wrong: string[] = [];
        for (const p of pieces) {
          const ids = gguf.encode(p, { parseSpecial: true });
          expect(ids.some((id) => quirks.has(id))).toBe(false);
          const want = gguf.decode(ids), got = hf.decode(ids);
          if (want !== got) wrong.push(`${JSON.stringify(want.slice(0, 60))} vs ${JSON.stringify(got.slice(0, 60))}`);
          // streaming: what generation prints
          const a = gguf.createStreamDecoder(), b = hf.createStreamDecoder();
          const sa = ids.map((id) => a.push(id)).join('') + a.flush();
          const sb = ids.map((id) => b.push(id)).join('') + b.flush();
          if (sa !== sb) wrong.push(`stream ${JSON.stringify(sa.slice(0, 60))} vs ${JSON.stringify(sb.slice(0, 60))}`);
        }
        expect(wrong.slice(0, 5)).toEqual([]);
        const pieceDiffs: number[] = [];
        for (let id = 0; id < gguf.vocabSize; id++) {
          if (quirks.has(id)) continue;
          if (Buffer.compare(gguf.tokenToPiece(id), hf.tokenToPiece(id)) !== 0) pieceDiffs.push(id);
        }
        expect(pieceDiffs.slice(0, 10)).toEqual([]);
      });

      it.skipIf(!lib)(`agrees with the tokenizers library on the same file, ~1 MB${lib ? '' : ` (skipped: ${why})`}`, async () => {
        const ref = lib!.Tokenizer.fromString(json);
        const cleanUp = files.config.clean_up_tokenization_spaces === true;
        const pieces = mixedText(MIB, 7);
        const wrong: string[] = [];
        for (const [k, p] of pieces.entries()) {
          const addSpecial = k % 2 === 0;
          const want = (await ref.encode(p, null, { addSpecialTokens: addSpecial })).getIds();
          const got = hf.encode(p, { parseSpecial: true, addSpecial });
          if (want.join() !== got.join()) wrong.push(firstDifference(hf, p, want, got));
          for (const skip of [false, true]) {
            const text = await ref.decode(want, skip);
            // transformers' decode adds clean_up_tokenization_spaces on top of the library's
            const expected = cleanUp ? cleanupSpaces(text, true) : text;
            const ours = hf.decode(want, { skipSpecial: skip });
            if (ours !== expected) wrong.push(`decode ${JSON.stringify(expected.slice(0, 60))} vs ${JSON.stringify(ours.slice(0, 60))}`);
          }
          if (wrong.length > 5) break;
        }
        expect(wrong.slice(0, 5)).toEqual([]);
      });
    });
  }
});

type Json = Record<string, unknown>;
const clone = <T>(x: T): T => structuredClone(x);

/** `words` put at seeded places in the pieces (added tokens, regex edge cases). */
function sprinkle(pieces: string[], words: string[], seed: number): string[] {
  const r = rng(seed);
  return pieces.map((p) => {
    let out = p;
    for (let k = 0; k < 3; k++) {
      const at = Math.floor(r() * (out.length + 1));
      out = out.slice(0, at) + words[Math.floor(r() * words.length)] + out.slice(at);
    }
    return out;
  });
}

/** Our tokenizer and the library's on one file: the same ids (special tokens parsed, as the library does) and text. */
async function expectLibraryAgreement(json: Json, texts: string[], config?: Json): Promise<void> {
  const text = JSON.stringify(json);
  const ours = Tokenizer.fromHuggingFace(text, config);
  const ref = lib!.Tokenizer.fromString(text);
  const wrong: string[] = [];
  for (const [k, t] of texts.entries()) {
    const addSpecial = k % 2 === 1;
    const want = (await ref.encode(t, null, { addSpecialTokens: addSpecial })).getIds();
    const got = ours.encode(t, { parseSpecial: true, addSpecial });
    if (want.join() !== got.join()) wrong.push(firstDifference(ours, t, want, got));
    for (const skip of [false, true]) {
      const expected = await ref.decode(want, skip);
      const decoded = ours.decode(want, { skipSpecial: skip });
      if (decoded !== expected) wrong.push(`decode ${JSON.stringify(expected.slice(0, 80))} vs ${JSON.stringify(decoded.slice(0, 80))}`);
    }
    if (wrong.length > 5) break;
  }
  expect(wrong.slice(0, 5)).toEqual([]);
}

/** Decoding only: random id sequences through a WordLevel model of `tokens` and the given decoder. */
async function expectDecoderAgreement(tokens: readonly string[], decoder: unknown, seed: number): Promise<void> {
  const vocab: Json = {};
  tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  const json = {
    version: '1.0', truncation: null, padding: null, normalizer: null, pre_tokenizer: null, post_processor: null, decoder,
    added_tokens: [{ id: 1, content: tokens[1], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    model: { type: 'WordLevel', vocab, unk_token: tokens[0] },
  };
  const text = JSON.stringify(json);
  const ours = Tokenizer.fromHuggingFace(text);
  const ref = lib!.Tokenizer.fromString(text);
  const r = rng(seed);
  const wrong: string[] = [];
  for (let k = 0; k < 300; k++) {
    // at least one token that is not special: the library's BPEDecoder panics on an empty list
    const ids = [2 + Math.floor(r() * (tokens.length - 2)), ...Array.from({ length: Math.floor(r() * 40) }, () => (r() < 0.3 ? 3 + Math.floor(r() * 256) : Math.floor(r() * tokens.length)))];
    ids.reverse();
    for (const skip of [false, true]) {
      const expected = await ref.decode(ids, skip);
      const got = ours.decode(ids, { skipSpecial: skip });
      if (got !== expected) wrong.push(`${JSON.stringify(ids.map((id) => tokens[id]))}: ${JSON.stringify(expected)} vs ${JSON.stringify(got)}`);
    }
  }
  expect(wrong.slice(0, 3)).toEqual([]);
}

describe.skipIf(!lib || !FILES.get('llama-spm')!.path || !FILES.get('bert-bge')!.path || !FILES.get('gpt-2')!.path)(
  `components against the tokenizers library${lib ? '' : ` (skipped: ${why})`}`,
  () => {
    let llama: HFFiles, bert: HFFiles, gpt2: HFFiles;
    let llamaTokens: string[], llamaScores: number[];
    const texts = mixedText(MIB / 8, 23);
    beforeAll(async () => {
      const llamaMeta = await readMeta(FILES.get('llama-spm')!.path!);
      llama = hfFilesFromGGUF(llamaMeta);
      llamaTokens = (llamaMeta.get('tokenizer.ggml.tokens')!.value as { values: string[] }).values;
      llamaScores = Array.from((llamaMeta.get('tokenizer.ggml.scores')!.value as { values: Float32Array }).values);
      bert = hfFilesFromGGUF(await readMeta(FILES.get('bert-bge')!.path!));
      gpt2 = hfFilesFromGGUF(await readMeta(FILES.get('gpt-2')!.path!));
    });

    const unigram = (byteFallback: boolean, pre: unknown, decoder: unknown, normalizer: unknown = null): Json => ({
      ...clone(llama.tokenizer), normalizer, pre_tokenizer: pre, decoder,
      model: { type: 'Unigram', unk_id: 0, byte_fallback: byteFallback, vocab: llamaTokens.map((t, i) => [t, llamaScores[i]]) },
    });

    it('Unigram with byte fallback, Metaspace (prepend "first", split), Metaspace + ByteFallback + Fuse decoder', async () => {
      const meta = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true };
      await expectLibraryAgreement(unigram(true, meta, { type: 'Sequence', decoders: [meta, { type: 'ByteFallback' }, { type: 'Fuse' }] }), texts);
    });

    it('Unigram without byte fallback, NFKC + Lowercase, Metaspace (always, no split), Replace + Strip decoder', async () => {
      const meta = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: false };
      const decoder = { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
      await expectLibraryAgreement(unigram(false, meta, decoder, { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] }), texts);
    });

    it('SentencePiece BPE with ignore_merges, Metaspace (always), and added tokens with lstrip, rstrip, single_word, normalized', async () => {
      const json = clone(llama.tokenizer);
      const n = llamaTokens.length;
      const added = (id: number, content: string, o: Json) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false, ...o });
      json.added_tokens = [
        ...(json.added_tokens as Json[]),
        added(n, '<|im_start|>', { special: true, lstrip: true }),
        added(n + 1, '<|im_end|>', { special: true, rstrip: true }),
        added(n + 2, 'xyzzy', { single_word: true }),
        added(n + 3, 'hello world', { normalized: true }),
        added(n + 4, '<tool>', { lstrip: true, rstrip: true, single_word: true }),
      ];
      json.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s{3,}' }, content: '  ' }] };
      json.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
      json.decoder = { type: 'Sequence', decoders: [{ type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, { type: 'ByteFallback' }, { type: 'Fuse' }] };
      (json.model as Json).ignore_merges = true;
      for (const t of json.added_tokens as Json[]) if ((t.id as number) >= n) expect(llamaTokens.includes(t.content as string)).toBe(false);
      const words = ['<|im_start|>', '  <|im_start|>', '<|im_end|>  \n', 'xyzzy', ' xyzzy ', 'axyzzy', 'xyzzy_', 'hello world', 'Hello world', '<tool>', ' <tool> ', 'a<tool>b'];
      await expectLibraryAgreement(json, sprinkle(texts, words, 5));
    });

    it('Unigram after a Precompiled normalizer (SentencePiece rules: whole graphemes, shortest rule first), T5 style', async () => {
      const rules: [string, string][] = [
        ['！', '!'], ['，', ','], ['。', '.'], ['ﬁ', 'fi'], ['²', '2'], ['Ⅻ', 'XII'], ['e\u0301', 'é'], ['\u3000', ' '], ['\u00a0', ' '], ['…', '...'],
        ['\u200b', ''], ['\ufeff', ''], ['x', 'ks'], ['xy', 'Q'], ['ß', 'ss'], ['👨‍👩‍👧', '<family>'], ['Å', 'Å'], ['\t', ' '],
      ];
      const json = unigram(false, { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
        { type: 'Sequence', normalizers: [{ type: 'Precompiled', precompiled_charsmap: buildCharsmap(rules) }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] });
      await expectLibraryAgreement(json, sprinkle(texts, ['e\u0301\u0302', 'xy', 'xxy', '👨‍👩‍👧👍🏽'], 3));
    });

    it('WordLevel with a BertNormalizer keeping case and accents, the Whitespace pre-tokenizer and BertProcessing', async () => {
      const json = clone(bert.tokenizer);
      const vocab = (json.model as Json).vocab as Json;
      json.model = { type: 'WordLevel', unk_token: '[UNK]', vocab: Object.fromEntries(Object.entries(vocab).filter(([t]) => !t.startsWith('##'))) };
      json.normalizer = { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: false, strip_accents: false, lowercase: false };
      json.pre_tokenizer = { type: 'Whitespace' };
      json.post_processor = { type: 'BertProcessing', sep: ['[SEP]', 102], cls: ['[CLS]', 101] };
      json.decoder = null;
      await expectLibraryAgreement(json, texts);
    });

    it('WordPiece with max_input_chars_per_word 8, accents stripped without lowercasing, WordPiece decoder without clean-up', async () => {
      const json = clone(bert.tokenizer);
      (json.model as Json).max_input_chars_per_word = 8;
      json.normalizer = { type: 'BertNormalizer', clean_text: false, handle_chinese_chars: true, strip_accents: true, lowercase: false };
      json.decoder = { type: 'WordPiece', prefix: '##', cleanup: false };
      await expectLibraryAgreement(json, texts);
    });

    const byteLevelWith = (pre: unknown[], normalizer: unknown = null, post: unknown = undefined): Json => ({
      ...clone(gpt2.tokenizer), normalizer,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [...pre, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
      ...(post === undefined ? {} : { post_processor: post }),
    });

    it('byte-level BPE after WhitespaceSplit and Punctuation (merged with previous), with NFD, StripAccents, Lowercase and Strip', async () => {
      const normalizer = { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'StripAccents' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true }] };
      await expectLibraryAgreement(byteLevelWith([{ type: 'WhitespaceSplit' }, { type: 'Punctuation', behavior: 'MergedWithPrevious' }], normalizer), texts);
    });

    it('byte-level BPE after Whitespace and contiguous Digits, RobertaProcessing', async () => {
      const post = { type: 'RobertaProcessing', sep: ['<|endoftext|>', 50256], cls: ['<|endoftext|>', 50256], trim_offsets: true, add_prefix_space: false };
      await expectLibraryAgreement(byteLevelWith([{ type: 'Whitespace' }, { type: 'Digits', individual_digits: false }], null, post), texts);
    });

    it('byte-level BPE after CharDelimiterSplit and Split regexes merged with the next piece, inverted and contiguous', async () => {
      const pre = [
        { type: 'CharDelimiterSplit', delimiter: '\n' },
        { type: 'Split', pattern: { Regex: '\\p{P}+' }, behavior: 'MergedWithNext', invert: false },
        { type: 'Split', pattern: { String: ' ' }, behavior: 'Contiguous', invert: true },
        { type: 'Punctuation', behavior: 'Removed' },
      ];
      await expectLibraryAgreement(byteLevelWith(pre, { type: 'Prepend', prepend: '¡' }), texts);
    });

    it('byte-level BPE after WhitespaceSplit and FixedLength', async () => {
      await expectLibraryAgreement(byteLevelWith([{ type: 'WhitespaceSplit' }, { type: 'FixedLength', length: 3 }]), texts);
    });

    it('Oniguruma regexes: (?i:...), ^ and $ at line ends, . short of a newline, \\d, \\w (with ²), \\h, \\b, {,n}', async () => {
      const regexes = ['(?i:the|and|hello)', '^\\s+|\\s+$', 'a.b', '\\d{2,}', '\\w{4}', '\\h+', '\\bin\\b', 'x{,2}y', "(?i)[a-c]+'S"];
      const pre = regexes.map((re, i) => ({ type: 'Split', pattern: { Regex: re }, behavior: ['Isolated', 'MergedWithPrevious', 'Removed'][i % 3], invert: i === 4 }));
      const words = ['The AND hello', '  \n  x  \n', 'a\nb', 'axb', 'in win in', 'xxxy xy y', "ABC'S", 'ff00 deadbeef'];
      await expectLibraryAgreement(byteLevelWith(pre), sprinkle(texts, words, 9));
    });

    it('every decoder, alone and in sequences', async () => {
      const tokens = llamaTokens;
      const decoders: unknown[] = [
        null,
        { type: 'Fuse' },
        { type: 'ByteFallback' },
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false },
        { type: 'WordPiece', prefix: '▁', cleanup: true },
        { type: 'BPEDecoder', suffix: '▁' },
        { type: 'CTC', pad_token: '<unk>', word_delimiter_token: '▁', cleanup: true },
        // (stop beyond a token's length makes the library panic)
        { type: 'Strip', content: '▁', start: 2, stop: 1 },
        { type: 'Replace', pattern: { Regex: '(▁)+' }, content: ' ' },
        { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 1 }] },
        { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, { type: 'Fuse' }] },
      ];
      for (const [i, d] of decoders.entries()) await expectDecoderAgreement(tokens, d, 100 + i);
    });
  },
);

/** A small file with one of every kind of component, the base of the hostile-input tests. */
function smallTokenizerJson(): Json {
  const vocab: Json = {};
  const chars = [...'abcdefghijklmnopqrstuvwxyz ', 'Ġ', 'Ċ', ...'0123456789.,!?'];
  chars.forEach((c, i) => {
    vocab[c] = i;
  });
  const merges: [string, string][] = [['t', 'h'], ['th', 'e'], ['Ġ', 'the'], ['i', 'n'], ['in', 'g'], ['Ġ', 'a']];
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  for (let b = 0; b < 4; b++) vocab[`<0x0${b}>`] = Object.keys(vocab).length;
  const n = Object.keys(vocab).length;
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      { id: n, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: n + 1, content: '</s>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
      { id: n + 2, content: 'hey', single_word: true, lstrip: false, rstrip: false, normalized: true, special: false },
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: "(?i:'s)|\\p{L}+|\\p{N}{1,3}|\\s+" }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: false }] },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [n], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }] },
    model: { type: 'BPE', dropout: null, unk_token: 'a', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
}

function smallUnigramJson(): Json {
  return {
    version: '1.0', added_tokens: [{ id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Precompiled', precompiled_charsmap: buildCharsmap([['Ａ', 'A'], ['ﬁ', 'fi'], ['e\u0301', 'é']]) },
      { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    ] },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    post_processor: { type: 'BertProcessing', sep: ['<unk>', 0], cls: ['<unk>', 0] },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    model: { type: 'Unigram', unk_id: 0, byte_fallback: false, vocab: [['<unk>', 0], ['▁the', -1], ['▁', -2], ['t', -3], ['h', -3], ['e', -3], ['he', -2.5], ['▁a', -2]] },
  };
}

const HOSTILE_VALUES: unknown[] = [
  null, true, false, 0, -1, 1.5, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, '', 'x', '\ud800', 'Sequence', 'BPE', 'Precompiled', 'Split', [], {}, [[]], [null],
  { type: 'Nope' }, { type: 'Sequence' }, { Regex: '(?<=a' }, { Regex: '(?>a)' }, { Regex: '(a+)+$' }, { String: '' }, ['a', 'b', 'c'], { '': 0 },
];

/** One seeded change somewhere in the tree: a value replaced, a key dropped, an array element repeated or dropped, a key added. */
function mutate(base: Json, r: () => number): unknown {
  const copy = clone(base);
  const slots: [Record<string, unknown> | unknown[], string | number][] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 8 || typeof v !== 'object' || v === null) return;
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
    // vocabularies are big: sample them rather than list every slot
    for (const [k, x] of entries.length > 64 ? entries.filter(() => r() < 64 / entries.length) : entries) {
      slots.push([v as Record<string, unknown>, k]);
      walk(x, depth + 1);
    }
  };
  walk(copy, 0);
  const [parent, key] = slots[Math.floor(r() * slots.length)];
  const current = (parent as Record<string | number, unknown>)[key];
  const op = Math.floor(r() * 6);
  const set = (v: unknown) => {
    (parent as Record<string | number, unknown>)[key] = v;
  };
  if (op === 0) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else if (op === 1 && typeof current === 'number') set([current + 1, current - 1, -current, current * 1000, current + 0.5][Math.floor(r() * 5)]);
  else if (op === 2 && Array.isArray(current) && current.length > 0) current.push(clone(current[Math.floor(r() * current.length)]));
  else if (op === 3 && typeof current === 'object' && current !== null && !Array.isArray(current)) {
    const keys = Object.keys(current);
    // a second entry with an existing value: duplicate ids in a vocabulary, a duplicated component
    if (keys.length > 0) (current as Json)[`dup${Math.floor(r() * 1000)}`] = (current as Json)[keys[Math.floor(r() * keys.length)]];
  } else if (op === 4 && typeof current === 'string') set(current + ['\u0000', '\ud83d', ' ', '(', '[', '\\', '▁', '<0x41>'][Math.floor(r() * 8)]);
  else set(clone(HOSTILE_VALUES[Math.floor(r() * HOSTILE_VALUES.length)]));
  return copy;
}

/** Build and use a tokenizer from hostile input: anything may fail, but only with a TokenizerError. */
function exercise(input: unknown): 'loaded' | 'refused' {
  let tok: Tokenizer;
  try {
    tok = Tokenizer.fromHuggingFace(input);
  } catch (e) {
    if (!(e instanceof TokenizerError)) throw e;
    return 'refused';
  }
  for (const text of ['', 'the thing, hey! 123 ', '<s>a</s>  b\u00e9\u4e2d\ud83e\udd99', ' \n\t']) {
    for (const parseSpecial of [false, true]) {
      try {
        const ids = tok.encode(text, { parseSpecial, addSpecial: true });
        for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < tok.vocabSize).toBe(true);
        tok.decode(ids);
        tok.decode(ids, { skipSpecial: true });
        const stream = tok.createStreamDecoder();
        for (const id of ids) stream.push(id);
        stream.flush();
      } catch (e) {
        if (!(e instanceof TokenizerError)) throw e;
      }
    }
  }
  for (let id = 0; id < Math.min(tok.vocabSize, 64); id++) {
    tok.tokenToPiece(id);
    tok.tokenText(id);
  }
  return 'loaded';
}

describe('hostile tokenizer.json', () => {
  const expectCode = (input: unknown, code: string) => {
    let caught: unknown;
    try {
      Tokenizer.fromHuggingFace(input);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(TokenizerError);
    expect((caught as TokenizerError).code).toBe(code);
  };
  const withChange = (change: (j: Json) => void): Json => {
    const j = smallTokenizerJson();
    change(j);
    return j;
  };
  const model = (j: Json) => j.model as Json;

  it('loads the base files, which the mutations then break', () => {
    expect(exercise(smallTokenizerJson())).toBe('loaded');
    expect(exercise(smallUnigramJson())).toBe('loaded');
    const tok = Tokenizer.fromHuggingFace(smallTokenizerJson());
    // ByteLevel's add_prefix_space applies to every piece the Split before it made: " the", " ", " thing"
    expect(tok.decode(tok.encode('the thing', { addSpecial: true }), { skipSpecial: true })).toBe(' the  thing');
  });

  it('names what is wrong with a typed error', () => {
    expectCode('{"model": ', 'INVALID_TOKENIZER_JSON');
    expectCode('[1, 2]', 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => delete j.model), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.version = '2.0')), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (model(j).type = 'Transformer')), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => ((model(j).vocab as Json).x = 3)), 'DUPLICATE_TOKEN');
    expectCode(withChange((j) => ((model(j).vocab as Json).x = -1)), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => ((model(j).vocab as Json).x = 2 ** 40)), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => ((model(j).vocab as Json).zz = 1_000_000)), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => ((model(j).vocab as Json).zz = 1.5)), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => ((model(j).vocab as Json)['\ud800'] = 999)), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (model(j).merges as string[]).push('q zz')), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (model(j).merges as string[]).push('a b c')), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (model(j).merges as unknown[]).push(['a'])), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (model(j).unk_token = '<nope>')), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (model(j).dropout = 0.1)), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (j.normalizer = { type: 'Precompiled', precompiled_charsmap: 'AA==' })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.normalizer = { type: 'Precompiled', precompiled_charsmap: '%%%' })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.normalizer = { type: 'Precompiled', precompiled_charsmap: btoa('\xff\xff\x00\x00abcd') })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.normalizer = { type: 'UnicodeScripts' })), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (j.pre_tokenizer = { type: 'UnicodeScripts' })), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (j.pre_tokenizer = { type: 'FixedLength', length: 0 })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.normalizer = { type: 'Frobnicate' })), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '(?>a)' }, behavior: 'Isolated', invert: false })), 'UNSUPPORTED_COMPONENT');
    expectCode(withChange((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '(a' }, behavior: 'Isolated', invert: false })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: 'a' }, behavior: 'Sideways', invert: false })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.decoder = { type: 'Strip', content: 'ab', start: 1, stop: 0 })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.added_tokens as Json[]).push({ id: 3, content: 'zzz', special: true })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (j.added_tokens as Json[]).push({ id: 999, content: '<s>', special: true })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => (((j.post_processor as Json).special_tokens as Json)['<s>'] = { id: '<s>', ids: [10 ** 6], tokens: ['<s>'] })), 'INVALID_TOKENIZER_JSON');
    expectCode(withChange((j) => ((j.post_processor as Json).single = [{ Sequence: { id: 'B', type_id: 0 } }])), 'INVALID_TOKENIZER_JSON');
    let deep: Json = { type: 'Lowercase' };
    for (let i = 0; i < 40; i++) deep = { type: 'Sequence', normalizers: [deep] };
    expectCode(withChange((j) => (j.normalizer = deep)), 'INVALID_TOKENIZER_JSON');
    expect(() => readTokenizerConfig('{"bos_token": 3}')).toThrow(TokenizerError);
    expect(() => Tokenizer.fromHuggingFace(smallTokenizerJson(), { bos_token: 'not a token' })).toThrow(TokenizerError);
  });

  it('2,000 seeded mutations load or fail with a TokenizerError, quickly', () => {
    const r = rng(1234);
    const bases = [smallTokenizerJson(), smallUnigramJson()];
    const outcome = { loaded: 0, refused: 0 };
    let slowest = 0;
    for (let i = 0; i < 2000; i++) {
      const base = bases[i % 2];
      let input: unknown = mutate(base, r);
      if (i % 10 === 9) {
        // damage the text itself: cut it, or flip a character
        const text = JSON.stringify(base);
        const at = Math.floor(r() * text.length);
        input = r() < 0.5 ? text.slice(0, at) : text.slice(0, at) + String.fromCharCode(Math.floor(r() * 128)) + text.slice(at + 1);
      }
      const t0 = performance.now();
      outcome[exercise(input)]++;
      slowest = Math.max(slowest, performance.now() - t0);
    }
    // both outcomes happen: the mutations reach past the JSON parser and the type checks
    expect(outcome.loaded).toBeGreaterThan(200);
    expect(outcome.refused).toBeGreaterThan(200);
    expect(slowest).toBeLessThan(2000);
  });
});

describe('tokenizer_config.json', () => {
  it('reads special tokens as strings or AddedToken objects, add_bos/eos_token and named chat templates', () => {
    const config = readTokenizerConfig(JSON.stringify({
      bos_token: { content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false, __type: 'AddedToken' },
      eos_token: '</s>', unk_token: null, pad_token: null, add_bos_token: true, add_eos_token: false, clean_up_tokenization_spaces: false,
      chat_template: [{ name: 'default', template: '{{ messages }}' }, { name: 'tool_use', template: '{{ tools }}' }],
      model_max_length: 4096, tokenizer_class: 'LlamaTokenizer', added_tokens_decoder: {},
    }));
    expect(config).toMatchObject({ bosToken: '<s>', eosToken: '</s>', addBosToken: true, addEosToken: false, chatTemplate: '{{ messages }}', modelMaxLength: 4096, tokenizerClass: 'LlamaTokenizer' });
    expect(config.chatTemplates).toEqual({ default: '{{ messages }}', tool_use: '{{ tools }}' });
    expect(config.unkToken).toBeUndefined();
    expect(readTokenizerConfig({ chat_template: '{{ x }}' }).chatTemplate).toBe('{{ x }}');
  });

  it('refuses wrong types with typed errors', () => {
    for (const bad of ['{', '[]', '{"eos_token": 5}', '{"eos_token": {"content": 5}}', '{"add_bos_token": "yes"}', '{"chat_template": 3}',
      '{"chat_template": [{"name": "a"}]}', '{"chat_template": [{"name": "a", "template": "x"}, {"name": "a", "template": "y"}]}', '{"model_max_length": -1}']) {
      expect(() => readTokenizerConfig(bad), bad).toThrow(TokenizerError);
    }
  });

  it('add_bos_token / add_eos_token rebuild what encode adds, as transformers does', () => {
    const json = smallTokenizerJson();
    const plain = Tokenizer.fromHuggingFace(json);
    expect([plain.addBos, plain.addEos]).toEqual([true, false]);
    const both = Tokenizer.fromHuggingFace(json, { bos_token: '<s>', eos_token: '</s>', add_bos_token: true, add_eos_token: true });
    const ids = both.encode('the', { addSpecial: true });
    expect([ids[0], ids[ids.length - 1]]).toEqual([both.bosId, both.eosId]);
    expect([both.addBos, both.addEos, both.isEog(both.eosId!)]).toEqual([true, true, true]);
    const none = Tokenizer.fromHuggingFace(json, { bos_token: '<s>', add_bos_token: false });
    expect(none.encode('the', { addSpecial: true })).toEqual(none.encode('the'));
    // no eos_token and none of the vocabulary's special tokens is an end-of-text token
    expect(() => Tokenizer.fromHuggingFace(smallUnigramJson(), { add_eos_token: true })).toThrow(TokenizerError);
  });
});
