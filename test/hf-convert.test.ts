// `wasmforge convert` / convertToGGUF (issue 13): a random-weight GGUF model (test/helpers/synthetic.ts) written
// out as a Hugging Face directory (test/helpers/hf-model-dir.ts), converted back to GGUF by the CLI, F32 and
// Q8_0. Our logits from the converted file equal ours from the directory (F32: bit-identical; Q8_0:
// bit-identical to quantizing the original GGUF), llama.cpp (node-llama-cpp) loads it with logits within
// its own noise of ours and tokenizes text as our tokenizer of the file does. A directory with q/k left in GGUF row
// order (what skipping the permutation would need) must land outside that bound.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { convertToGGUF } from '../src/hf/convert.js';
import { ggufTokenizerMetadata } from '../src/hf/vocab.js';
import { readGGUF } from '../src/gguf/reader.js';
import { loadModel } from '../src/model/model.js';
import { quantizeModel } from '../src/model/quantize-model.js';
import { writeLazyGGUFFile } from '../src/runtime/file-sink.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { captureOutput } from './helpers/capture-output.js';
import { writeHFDirectory } from './helpers/hf-model-dir.js';
import { hfFilesFromGGUF } from './helpers/hf-tokenizer-json.js';
import { llamaCppVocab } from './helpers/llama-cpp-vocab.js';
import { synthesizeLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppNextTokenLogits, llamaCppTokenize, type LlamaCppContextOptions } from './oracle/llama-cpp.js';
import { llamaCppLogitNoise, maxAbsDelta } from './oracle/noise.js';

const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveLlamaCpp) console.warn('hf-convert: node-llama-cpp cannot load here, skipping the llama.cpp checks');

const TOKENS = [1, 50, 120, 7, 299, 33, 260, 2, 14, 101, 77, 5, 188, 240, 61, 90, 12, 133, 271, 44, 3, 150, 66, 222];
const BASE: SyntheticLlamaOptions = { dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, vocab: 300, type: GGMLType.F32, seed: 7, std: 0.08 };
/** As test/parity-llamacpp.test.ts: our max |Δlogit| may be this many times llama.cpp's own noise. */
const NOISE_FACTOR = 4;
const TEXT = 'Once upon a time, there was a tiny model. It said hello!';
const LLAMA_CPP_F32: LlamaCppContextOptions = { kvCacheType: 'f32', flashAttention: false };

const io = captureOutput();
/** The synthetic GGUF, its Hugging Face directory, the same with q/k in GGUF row order, the GGUF quantized by quantizeModel. */
let root: string, gguf: string, dir: string, unpermuted: string, quantized: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'wasmforge-convert-'));
  gguf = join(root, 'model.gguf');
  dir = join(root, 'hf');
  unpermuted = join(root, 'hf-unpermuted');
  const model = await synthesizeLlama(BASE);
  await writeLazyGGUFFile(gguf, model.metadata, model.tensors);
  await writeHFDirectory(gguf, dir);
  await writeHFDirectory(gguf, unpermuted, { skipUnpermute: true });
  quantized = join(root, 'quantized-q8_0.gguf');
  const source = await fileSource(gguf);
  try {
    const q = await quantizeModel(source, GGMLType.Q8_0);
    await writeLazyGGUFFile(quantized, q.metadata, q.tensors);
  } finally {
    await source.close();
  }
});
afterAll(async () => {
  if (haveLlamaCpp) await disposeLlamaCpp();
  rmSync(root, { recursive: true, force: true });
});

async function logitsOf(input: string): Promise<Float32Array[]> {
  const m = await loadModel(input, { backend: 'wasm', threads: 1, contextLength: 64, kvCacheType: 'f32' });
  try {
    return await m.evaluate(TOKENS);
  } finally {
    await m.dispose();
  }
}

async function convert(input: string, type: string): Promise<string> {
  const out = join(root, `${input.replace(/^.*[/\\]/, '')}-${type}.gguf`);
  expect(await main(['convert', input, out, '--type', type])).toBe(0);
  expect(io.out).toMatch(/^wrote .*\.gguf: .* MiB, 21 tensors/m);
  return out;
}

async function metadataOf(path: string) {
  const source = await fileSource(path);
  try {
    return await readGGUF(source);
  } finally {
    await source.close();
  }
}

/** Positions where both pick the same top-1, counting as agreeing a disagreement within maxDelta (a tie). */
function topOneAgreement(ours: Float32Array[], theirs: Float32Array[], maxDelta: number): number {
  const argmax = (row: Float32Array) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0);
  return ours.filter((row, p) => {
    const a = argmax(row), b = argmax(theirs[p]!);
    return a === b || theirs[p]![b]! - theirs[p]![a]! <= maxDelta;
  }).length / ours.length;
}

describe('wasmforge convert: a Hugging Face directory to GGUF', () => {
  it('F32: the metadata llama.cpp\'s converter writes, and logits bit-identical to the directory\'s', async () => {
    const out = await convert(dir, 'f32');
    const file = await metadataOf(out);
    const value = (key: string) => file.metadata.get(key)?.value;
    expect(value('general.architecture')).toBe('llama');
    expect(value('general.file_type')).toBe(0);
    expect(value('llama.attention.head_count_kv')).toBe(2);
    expect(value('tokenizer.ggml.model')).toBe('llama');
    expect(value('tokenizer.ggml.pre')).toBe('default');
    expect((value('tokenizer.ggml.tokens') as { values: string[] }).values.length).toBe(300);
    expect([value('tokenizer.ggml.bos_token_id'), value('tokenizer.ggml.eos_token_id')]).toEqual([1, 2]);
    expect(file.tensors.every((t) => t.type === GGMLType.F32)).toBe(true);

    const fromDir = await logitsOf(dir);
    expect(fromDir).toEqual(await logitsOf(gguf));
    expect(await logitsOf(out)).toEqual(fromDir);
    // The converted file's own tokenizer (GGUF keys, no tokenizer.json) has tokenizer.json's tokens: it reads the
    // directory's ids back to its text. (It need not split text the same way: llama.cpp's SentencePiece loop
    // merges by score, and the made-up vocabulary has pieces its merges never build.)
    const a = await loadModel(out, { backend: 'reference' }), b = await loadModel(dir, { backend: 'reference' });
    try {
      const ids = b.tokenizer.encode(TEXT, { addSpecial: true });
      expect(ids.length).toBeGreaterThan(10);
      expect(a.tokenizer.decode(ids)).toBe(b.tokenizer.decode(ids));
      for (let id = 0; id < 300; id++) expect(a.tokenizer.tokenText(id)).toBe(b.tokenizer.tokenText(id));
      expect([a.tokenizer.bosId, a.tokenizer.eosId, a.tokenizer.addBos]).toEqual([b.tokenizer.bosId, b.tokenizer.eosId, b.tokenizer.addBos]);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it('Q8_0: bit-identical to quantizing the original GGUF', async () => {
    const out = await convert(dir, 'q8_0');
    const file = await metadataOf(out);
    expect(file.metadata.get('general.file_type')?.value).toBe(7);
    expect(file.tensorsByName.get('blk.0.attn_q.weight')!.type).toBe(GGMLType.Q8_0);
    expect(file.tensorsByName.get('blk.0.attn_norm.weight')!.type).toBe(GGMLType.F32);
    expect(await logitsOf(out)).toEqual(await logitsOf(quantized));
  });

  it('typed errors: not a directory, a directory without config.json, an unsupported --type', async () => {
    await expect(convertToGGUF(join(root, 'nothing-here'))).rejects.toMatchObject({ name: 'HFModelError', code: 'NOT_A_DIRECTORY' });
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await expect(convertToGGUF(empty)).rejects.toMatchObject({ name: 'ByteSourceError', code: 'NOT_FOUND' });
    await expect(convertToGGUF(dir, { type: 'q9_9' })).rejects.toMatchObject({ name: 'QuantizeModelError', code: 'UNSUPPORTED_TARGET' });
    const out = join(root, 'never.gguf');
    expect(await main(['convert', dir, out, '--type', 'q9_9'])).toBe(1);
    expect(io.err).toMatch(/UsageError: --type "q9_9" is not one of f32\|f16/);
    expect(await main(['convert', empty, out])).toBe(1);
    expect(io.err).toMatch(/ByteSourceError \[NOT_FOUND\]: .*config\.json/);
    expect(existsSync(out)).toBe(false);
  });
});

describe.skipIf(!haveLlamaCpp)('llama.cpp loads the converted GGUF', () => {
  for (const type of ['f32', 'q8_0']) {
    it(`${type}: logits within llama.cpp's noise of ours, top-1 >= 99%, and llama.cpp's tokens for text are ours`, async () => {
      const out = await convert(dir, type);
      // F32: ours from the directory (the original GGUF's, to the bit); Q8_0: ours from the converted file, the
      // same weights llama.cpp runs (and bit-identical to quantizing the original GGUF, above)
      const ours = await logitsOf(type === 'f32' ? dir : out);
      const theirs = await llamaCppNextTokenLogits(out, TOKENS, LLAMA_CPP_F32);
      expect(theirs.length).toBe(ours.length);
      const noiseDir = join(root, `noise-${type}`);
      mkdirSync(noiseDir);
      const bound = NOISE_FACTOR * (await llamaCppLogitNoise(out, TOKENS, LLAMA_CPP_F32, theirs, noiseDir)).max;
      const delta = maxAbsDelta(ours, theirs);
      console.log(`hf-convert ${type}: max |Δlogit| ${delta.toExponential(3)}, bound ${bound.toExponential(3)}`);
      expect(delta).toBeLessThan(bound);
      expect(topOneAgreement(ours, theirs, delta)).toBeGreaterThanOrEqual(0.99);
      // and within it of ours from the original model, which no Hugging Face reading touched
      expect(maxAbsDelta(await logitsOf(type === 'f32' ? gguf : quantized), theirs)).toBeLessThan(bound);

      // the tokenizer keys mean to llama.cpp what they mean to our GGUF tokenizer
      const m = await loadModel(out, { backend: 'reference' });
      try {
        expect(await llamaCppTokenize(out, TEXT, { addBos: true })).toEqual(m.tokenizer.encode(TEXT, { addSpecial: true }));
      } finally {
        await m.dispose();
      }

      // q/k rows in GGUF order read as Hugging Face's: the converted file is wrong, and llama.cpp shows it
      const wrong = await llamaCppNextTokenLogits(await convert(unpermuted, type), TOKENS, LLAMA_CPP_F32);
      expect(maxAbsDelta(ours, wrong)).toBeGreaterThan(bound);
    });
  }
});

describe('byte-level BPE tokenizer.json to tokenizer.ggml.* (model gpt2, merges, pre by llama.cpp\'s check hash)', () => {
  for (const name of ['llama-bpe', 'qwen2']) {
    const { path, why } = llamaCppVocab(name);
    it.skipIf(!path)(`${name}${why ? ` (${why})` : ''}: the pre-tokenizer llama.cpp names, and the GGUF tokenizer of the keys encodes as llama.cpp's own file`, async () => {
      const original = await metadataOf(path!);
      const files = hfFilesFromGGUF(original.metadata);
      const json = JSON.stringify(files.tokenizer);
      const tokenizer = Tokenizer.fromHuggingFace(json, files.config);
      const keys = new Map(await ggufTokenizerMetadata(tokenizer, json, tokenizer.vocabSize));
      expect(keys.get('tokenizer.ggml.model')?.value).toBe('gpt2');
      expect(keys.get('tokenizer.ggml.pre')?.value).toBe(name);
      const text = 'Hello world, 12345 héllo!\n  tabs\tand 🦙 <|begin_of_text|>';
      expect(Tokenizer.fromGGUF(keys).encode(text, { addSpecial: true })).toEqual(Tokenizer.fromGGUF(original.metadata).encode(text, { addSpecial: true }));
    });
  }
});
