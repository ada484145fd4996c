// Tokenizer behaviour beyond the conformance vectors: special tokens, BOS/EOS rules, end-of-generation ids,
// decoding, the stream decoder and typed errors. Expected values come from the vocabulary metadata and
// llama.cpp's documented rules, never from running this tokenizer.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GGUFValueType } from '../src/gguf/constants.js';
import { readGGUF, type GGUFEntry, type GGUFFile } from '../src/gguf/reader.js';
import { openSource } from '../src/io/open-source.js';
import { TokenAttr, Tokenizer, TokenizerError } from '../src/tokenizer/index.js';

type Meta = GGUFFile['metadata'];
const VOCAB_DIR = join(import.meta.dirname, '..', '..', 'shared', 'vocab');
const BUNDLED = join(import.meta.dirname, '..', 'models', 'stories260K.gguf');
const HAVE_SHARED = existsSync(join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf'));
const SKIP_NOTE = HAVE_SHARED ? '' : ` (skipped: ${VOCAB_DIR} not found)`;

async function loadMeta(path: string): Promise<Meta> {
  const source = await openSource(path);
  try {
    return (await readGGUF(source)).metadata;
  } finally {
    await source.close();
  }
}
const vocabMeta = (name: string) => loadMeta(join(VOCAB_DIR, `ggml-vocab-${name}.gguf`));

/** A copy of the metadata with some keys replaced (undefined removes the key). */
function withKeys(meta: Meta, changes: Record<string, GGUFEntry | undefined>): Meta {
  const m = new Map(meta);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) m.delete(k);
    else m.set(k, v);
  }
  return m;
}
const bool = (value: boolean): GGUFEntry => ({ type: GGUFValueType.BOOL, value });
const str = (value: string): GGUFEntry => ({ type: GGUFValueType.STRING, value });

/** Token id of a vocabulary text, found by scanning the vocabulary (independent of encode). */
function idOf(tok: Tokenizer, text: string): number {
  for (let i = 0; i < tok.vocabSize; i++) if (tok.tokenText(i) === text) return i;
  throw new Error(`no token ${JSON.stringify(text)}`);
}

const concatPieces = (tok: Tokenizer, ids: number[]) => {
  const parts = ids.map((id) => tok.tokenToPiece(id));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe.skipIf(!HAVE_SHARED)(`tokenizer with llama.cpp vocabularies${SKIP_NOTE}`, () => {
  let spmMeta: Meta, gpt2Meta: Meta;
  let spm: Tokenizer, phi3: Tokenizer, gpt2: Tokenizer, starcoder: Tokenizer, deepseek: Tokenizer, bert: Tokenizer;
  beforeAll(async () => {
    spmMeta = await vocabMeta('llama-spm');
    gpt2Meta = await vocabMeta('gpt-2');
    spm = Tokenizer.fromGGUF(spmMeta);
    gpt2 = Tokenizer.fromGGUF(gpt2Meta);
    phi3 = Tokenizer.fromGGUF(await vocabMeta('phi-3'));
    starcoder = Tokenizer.fromGGUF(await vocabMeta('starcoder'));
    deepseek = Tokenizer.fromGGUF(await vocabMeta('deepseek-llm'));
    bert = Tokenizer.fromGGUF(await vocabMeta('bert-bge'));
  });

  describe('special tokens', () => {
    it('parses control-token text only when asked, with the space prefix again after it', () => {
      const bos = spm.bosId!, eos = spm.eosId!;
      const parsed = spm.encode('Hello<s>world</s>', { parseSpecial: true });
      expect(parsed).toEqual([...spm.encode('Hello'), bos, ...spm.encode('world'), eos]);
      const plain = spm.encode('Hello<s>world</s>');
      expect(plain).not.toContain(bos);
      expect(plain).not.toContain(eos);
      expect(spm.decode(plain)).toBe('Hello<s>world</s>');
    });

    it('always splits out user-defined tokens, even without parseSpecial', () => {
      // deepseek-llm stores single Latin-1 letters such as "ö" as user-defined tokens
      const o = idOf(deepseek, 'ö');
      expect(deepseek.tokenAttr(o) & TokenAttr.USER_DEFINED).toBeTruthy();
      expect(deepseek.encode('ö')).toEqual([o]);
      expect(deepseek.encode('schön')).toEqual([...deepseek.encode('sch'), o, ...deepseek.encode('n')]);
    });

    it('strips whitespace after special tokens of models llama.cpp marks that way (phi-3)', () => {
      const user = idOf(phi3, '<|user|>');
      expect(phi3.encode('<|user|>  \n hi', { parseSpecial: true })).toEqual([user, ...phi3.encode('hi')]);
    });

    it('treats BPE special-token text as plain text unless parseSpecial is set', () => {
      const eot = idOf(gpt2, '<|endoftext|>');
      expect(gpt2.encode('a<|endoftext|>b', { parseSpecial: true })).toEqual([...gpt2.encode('a'), eot, ...gpt2.encode('b')]);
      expect(gpt2.encode('a<|endoftext|>b')).not.toContain(eot);
    });
  });

  describe('BOS / EOS', () => {
    it('follows add_bos_token / add_eos_token', () => {
      const text = 'Hello world';
      expect(spm.addBos).toBe(true);
      expect(spm.encode(text, { addSpecial: true })).toEqual([spm.bosId, ...spm.encode(text)]);
      expect(deepseek.encode(text, { addSpecial: true })).toEqual([deepseek.bosId, ...deepseek.encode(text)]);
      const eosToo = Tokenizer.fromGGUF(withKeys(spmMeta, { 'tokenizer.ggml.add_eos_token': bool(true), 'tokenizer.ggml.add_bos_token': bool(false) }));
      expect(eosToo.encode(text, { addSpecial: true })).toEqual([...spm.encode(text), spm.eosId]);
    });

    it("uses llama.cpp's per-model defaults when the metadata does not say", () => {
      const spmNoKeys = Tokenizer.fromGGUF(withKeys(spmMeta, { 'tokenizer.ggml.add_bos_token': undefined, 'tokenizer.ggml.add_eos_token': undefined }));
      expect(spmNoKeys.addBos).toBe(true); // SentencePiece: BOS on
      expect(spmNoKeys.addEos).toBe(false);
      expect(gpt2.addBos).toBe(false); // gpt-2 pre-tokenizer: no BOS
      expect(gpt2.encode('hi', { addSpecial: true })).toEqual(gpt2.encode('hi'));
      const llama3 = Tokenizer.fromGGUF(withKeys(gpt2Meta, { 'tokenizer.ggml.pre': str('llama-bpe') }));
      expect(llama3.addBos).toBe(true); // llama3 family: BOS on
      expect(llama3.encode('hi', { addSpecial: true })[0]).toBe(50256);
    });

    it('wraps BERT input in CLS ... SEP', () => {
      const cls = 101, sep = 102; // tokenizer.ggml.cls/seperator_token_id of bert-bge
      expect(bert.tokenText(cls)).toBe('[CLS]');
      expect(bert.encode('hello world', { addSpecial: true })).toEqual([cls, ...bert.encode('hello world'), sep]);
    });
  });

  describe('end of generation', () => {
    it('knows eos, eot and the stop tokens llama.cpp finds by text', () => {
      expect(spm.isEog(spm.eosId!)).toBe(true);
      expect(spm.isEog(spm.bosId!)).toBe(false);
      expect(gpt2.isEog(50256)).toBe(true);
      expect(phi3.isEog(idOf(phi3, '<|end|>'))).toBe(true);
      expect(phi3.isEog(idOf(phi3, '<|user|>'))).toBe(false);
      expect(starcoder.isEog(idOf(starcoder, '<fim_pad>'))).toBe(true);
      expect(starcoder.isEog(idOf(starcoder, '<fim_prefix>'))).toBe(false);
    });
  });

  describe('decoding', () => {
    const samples = ['Hello world', 'héllo wörld', '  two  spaces', 'tabs\tand\nnewlines\n', '🦙 llamas 🚀', '日本語のテキスト', 'x = f(1, 2);'];

    it('round-trips SentencePiece text, dropping the space the tokenizer put in front', () => {
      for (const s of samples) expect(spm.decode(spm.encode(s))).toBe(s);
      // llama.cpp keeps that space when a BOS precedes it
      for (const s of samples) expect(spm.decode(spm.encode(s, { addSpecial: true }), { skipSpecial: true })).toBe(' ' + s);
      expect(spm.decode(spm.encode('a', { addSpecial: true }))).toBe('<s> a');
    });

    it('round-trips byte-level BPE text', () => {
      for (const s of samples) expect(gpt2.decode(gpt2.encode(s))).toBe(s);
      for (const s of samples) expect(starcoder.decode(starcoder.encode(s))).toBe(s);
    });

    it('cleans tokenization spaces only where llama.cpp does', () => {
      expect(gpt2.decode(gpt2.encode("a , b . c ' d 's"))).toBe("a, b. c'd's");
      expect(deepseek.decode(deepseek.encode("a , b . c ' d 's"))).toBe("a , b . c ' d 's"); // clean_spaces off
    });

    it('renders control tokens unless skipped', () => {
      const ids = spm.encode('<s>x</s>', { parseSpecial: true });
      expect(spm.decode(ids)).toBe('<s> x</s>');
      expect(spm.decode(ids, { skipSpecial: true })).toBe(' x');
      expect(new TextDecoder().decode(spm.tokenToPiece(spm.eosId!, { special: false }))).toBe('');
    });

    it('maps byte tokens, byte characters and ▁ back to bytes', () => {
      expect(Array.from(spm.tokenToPiece(idOf(spm, '<0x0A>')))).toEqual([0x0a]);
      expect(Array.from(spm.tokenToPiece(idOf(spm, '<0xF0>')))).toEqual([0xf0]);
      expect(new TextDecoder().decode(spm.tokenToPiece(idOf(spm, '▁the')))).toBe(' the');
      expect(new TextDecoder().decode(spm.tokenToPiece(idOf(spm, '▁the'), { lstrip: true }))).toBe('the');
      expect(new TextDecoder().decode(gpt2.tokenToPiece(idOf(gpt2, 'Ġthe')))).toBe(' the');
      expect(Array.from(gpt2.tokenToPiece(idOf(gpt2, 'Ċ')))).toEqual([0x0a]);
      expect(bert.decode(bert.encode('Hello, World!')).trim()).toBe('hello, world!');
    });

    it('rejects ids outside the vocabulary', () => {
      expect(() => spm.decode([spm.vocabSize])).toThrowError(TokenizerError);
      expect(() => spm.tokenToPiece(-1)).toThrowError(expect.objectContaining({ code: 'INVALID_TOKEN_ID' }));
    });
  });

  describe('stream decoder', () => {
    it('holds back a character split across byte-fallback tokens', () => {
      const ids = spm.encode('🦙!');
      const byteIds = ids.filter((id) => spm.tokenAttr(id) & TokenAttr.BYTE);
      expect(byteIds.map((id) => spm.tokenText(id))).toEqual(['<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
      const d = spm.createStreamDecoder();
      const outs = ids.map((id) => d.push(id));
      const firstByte = ids.indexOf(byteIds[0]);
      expect(outs.slice(firstByte, firstByte + 3)).toEqual(['', '', '']);
      expect(outs[firstByte + 3]).toBe('🦙');
      expect(outs.join('') + d.flush()).toBe(new TextDecoder().decode(concatPieces(spm, ids)));
      expect(outs.join('')).not.toContain('\uFFFD');
    });

    it('flushes an unfinished character as U+FFFD', () => {
      const d = spm.createStreamDecoder();
      expect(d.push(idOf(spm, '<0xE6>'))).toBe('');
      expect(d.push(idOf(spm, '<0x97>'))).toBe('');
      expect(d.flush()).toBe('\uFFFD');
    });

    it('skips control tokens when asked', () => {
      const d = gpt2.createStreamDecoder({ skipSpecial: true });
      expect(d.push(50256) + d.push(gpt2.encode('hi')[0]) + d.flush()).toBe('hi');
    });
  });

  describe('typed errors', () => {
    it('rejects an unknown pre-tokenizer', () => {
      const meta = withKeys(gpt2Meta, { 'tokenizer.ggml.pre': str('no-such-pre') });
      expect(() => Tokenizer.fromGGUF(meta)).toThrowError(expect.objectContaining({ name: 'TokenizerError', code: 'UNKNOWN_PRE_TOKENIZER' }));
    });

    it('rejects unsupported models and missing or malformed keys', () => {
      expect(() => Tokenizer.fromGGUF(withKeys(spmMeta, { 'tokenizer.ggml.model': str('t5') }))).toThrowError(expect.objectContaining({ code: 'UNSUPPORTED_MODEL' }));
      expect(() => Tokenizer.fromGGUF(withKeys(spmMeta, { 'tokenizer.ggml.tokens': undefined }))).toThrowError(expect.objectContaining({ code: 'MISSING_METADATA' }));
      expect(() => Tokenizer.fromGGUF(withKeys(gpt2Meta, { 'tokenizer.ggml.merges': undefined }))).toThrowError(expect.objectContaining({ code: 'MISSING_METADATA' }));
      expect(() => Tokenizer.fromGGUF(withKeys(spmMeta, { 'tokenizer.ggml.add_bos_token': str('yes') }))).toThrowError(expect.objectContaining({ code: 'INVALID_METADATA' }));
    });
  });
});

function tokenTextsOf(tok: Tokenizer, text: string): string[] {
  return tok.encode(text).map((id) => tok.tokenText(id));
}

describe('bundled stories260K tokenizer', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = Tokenizer.fromGGUF(await loadMeta(BUNDLED));
  });

  it('reads its 512-token SentencePiece vocabulary', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.type).toBe('spm');
    expect([tok.bosId, tok.eosId, tok.unkId]).toEqual([1, 2, 0]);
    expect(tok.addBos).toBe(true);
  });

  it('round-trips a story and uses merges (fewer tokens than bytes)', () => {
    const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n"Lily, let\'s go!"';
    const ids = tok.encode(story, { addSpecial: true });
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeLessThan(new TextEncoder().encode(story).length / 2);
    expect(ids.every((id) => id >= 0 && id < 512)).toBe(true);
    expect(tok.decode(ids.slice(1))).toBe(story);
    expect(tokenTextsOf(tok, 'Once')[0].startsWith('▁')).toBe(true);
  });

  it('falls back to bytes for characters outside its vocabulary', () => {
    const ids = tok.encode('🦙');
    expect(ids.filter((id) => tok.tokenAttr(id) & TokenAttr.BYTE).map((id) => tok.tokenText(id))).toEqual(['<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
    expect(tok.decode(ids)).toBe('🦙');
  });
});
