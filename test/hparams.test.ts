import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GGUFValueType } from '../src/gguf/constants.js';
import { GGUFError, type GGUFErrorCode } from '../src/gguf/errors.js';
import { readGGUF, type GGUFEntry, type GGUFFile } from '../src/gguf/reader.js';
import { readHParams, type HParams } from '../src/model/hparams.js';
import { ModelError } from '../src/model/errors.js';
import { fileSource } from '../src/runtime/file-source.js';

const T = GGUFValueType;
const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const HAVE_SHARED = existsSync(join(SHARED, 'models', 'stories260K.gguf'));

async function header(rel: string): Promise<GGUFFile> {
  const src = await fileSource(join(SHARED, rel));
  try {
    return await readGGUF(src);
  } finally {
    await src.close();
  }
}

/** A copy of the file's header with some metadata replaced (undefined deletes) or renamed to another arch. */
function edited(file: GGUFFile, edits: Record<string, GGUFEntry | undefined>, arch?: string): GGUFFile {
  let entries = [...file.metadata];
  if (arch) {
    entries = entries.map(([key, e]) => [key.startsWith('llama.') ? arch + key.slice(5) : key, e]);
    entries = entries.map(([key, e]) => (key === 'general.architecture' ? [key, { type: T.STRING, value: arch }] : [key, e]));
  }
  const metadata = new Map(entries);
  for (const [key, e] of Object.entries(edits)) {
    if (e === undefined) metadata.delete(key);
    else metadata.set(key, e);
  }
  return { ...file, metadata };
}

function codeOf(fn: () => unknown): GGUFErrorCode | string {
  try {
    fn();
  } catch (e) {
    return e instanceof GGUFError ? e.code : `not a GGUFError: ${String(e)}`;
  }
  return 'no error';
}

const u32 = (value: number): GGUFEntry => ({ type: T.UINT32, value });
const f32 = (value: number): GGUFEntry => ({ type: T.FLOAT32, value });
const str = (value: string): GGUFEntry => ({ type: T.STRING, value });

const STORIES: HParams = {
  architecture: 'llama', contextLength: 2048, embeddingLength: 64, blockCount: 5, feedForwardLength: 172,
  headCount: 8, headCountKv: 4, headDim: 8, headDimV: 8, ropeDimensionCount: 8, ropeFreqBase: 10000, ropeStyle: 'normal',
  ropeScalingType: 'none', ropeScalingFactor: 1, ropeScalingOriginalContextLength: 2048, ropeScalingAttnFactor: 1, rmsNormEps: Math.fround(1e-5),
  slidingWindow: undefined, expertCount: 0, expertUsedCount: 0, expertFeedForwardLength: 0, expertSharedFeedForwardLength: 0, vocabSize: 512,
};

describe.skipIf(!HAVE_SHARED)(`readHParams on the shared models${HAVE_SHARED ? '' : ' (skipped: ../shared/models missing)'}`, () => {
  it.each(['stories260K.gguf', 'stories260K-f16.gguf', 'stories260K-q8_0.gguf', 'stories260K-q4_0.gguf'])('%s', async (name) => {
    expect(readHParams(await header(`models/${name}`))).toEqual(STORIES);
  });

  it('llama-2-tiny-random.gguf: 1 layer, dim 8, 2 heads, the 32000-token Llama 2 vocabulary', async () => {
    const h = readHParams(await header('models/llama-2-tiny-random.gguf'));
    expect(h).toMatchObject({ contextLength: 4096, embeddingLength: 8, blockCount: 1, feedForwardLength: 32, headCount: 2, headCountKv: 2, headDim: 4, ropeDimensionCount: 4, vocabSize: 32000 });
  });

  it('vocab-only llama files: sizes from metadata, declared vocab_size agreeing with the token list', async () => {
    expect(readHParams(await header('vocab/ggml-vocab-llama-spm.gguf'))).toMatchObject({ embeddingLength: 4096, headDim: 128, ropeDimensionCount: 128, vocabSize: 32000, blockCount: 32 });
    expect(readHParams(await header('vocab/ggml-vocab-deepseek-llm.gguf'))).toMatchObject({ vocabSize: 102400, ropeFreqBase: 10000, rmsNormEps: Math.fround(1e-6), blockCount: 30 });
  });

  it('refuses an architecture it has no definition for, naming it and the supported ones', async () => {
    const gpt2 = await header('vocab/ggml-vocab-gpt-2.gguf');
    expect(() => readHParams(gpt2)).toThrow(expect.objectContaining({ name: 'ModelError', code: 'UNSUPPORTED_ARCHITECTURE' }));
    expect(() => readHParams(gpt2)).toThrow(ModelError);
    expect(() => readHParams(gpt2)).toThrow(/"gpt2" is not supported \(supported: llama, mistral, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma, gemma2, gemma3, olmo2, olmoe, granite, smollm3, bert, nomic-bert, jina-bert-v2\)/);
  });

  describe('edited headers', () => {
    let base: GGUFFile;
    beforeAll(async () => {
      base = await header('models/stories260K.gguf');
    });

    it('qwen2 and mistral read the same keys under their own prefix; qwen2 uses neox rope', () => {
      expect(readHParams(edited(base, {}, 'qwen2'))).toEqual({ ...STORIES, architecture: 'qwen2', ropeStyle: 'neox' });
      expect(readHParams(edited(base, {}, 'mistral'))).toEqual({ ...STORIES, architecture: 'mistral' });
    });

    it('optional keys: explicit head dims, rope base and scaling, sliding window, experts', () => {
      const h = readHParams(edited(base, {
        'llama.attention.key_length': u32(16), 'llama.attention.value_length': u32(12), 'llama.rope.freq_base': f32(500000),
        'llama.rope.scaling.type': str('yarn'), 'llama.rope.scaling.factor': f32(4), 'llama.rope.scaling.original_context_length': u32(512),
        'llama.attention.sliding_window': u32(4096), 'llama.expert_count': u32(8), 'llama.expert_used_count': u32(2),
        'llama.expert_feed_forward_length': u32(96),
      }));
      expect(h).toEqual({
        ...STORIES, headDim: 16, headDimV: 12, ropeFreqBase: 500000, ropeScalingType: 'yarn', ropeScalingFactor: 4,
        ropeScalingOriginalContextLength: 512, slidingWindow: 4096, expertCount: 8, expertUsedCount: 2, expertFeedForwardLength: 96, expertSharedFeedForwardLength: 0,
      });
    });

    it('defaults: kv heads = heads, rope dims = head dim; legacy rope.scale_linear means linear scaling', () => {
      const h = readHParams(edited(base, { 'llama.attention.head_count_kv': undefined, 'llama.rope.dimension_count': undefined, 'llama.rope.scale_linear': f32(2) }));
      expect(h).toMatchObject({ headCountKv: 8, ropeDimensionCount: 8, ropeScalingType: 'linear', ropeScalingFactor: 2 });
      expect(readHParams(edited(base, { 'llama.attention.sliding_window': u32(0) })).slidingWindow).toBeUndefined();
    });

    it('vocab size falls back to the output tensor when there is no token list', () => {
      expect(readHParams(edited(base, { 'tokenizer.ggml.tokens': undefined })).vocabSize).toBe(512);
    });

    const bad: [string, Record<string, GGUFEntry | undefined>, GGUFErrorCode][] = [
      ['missing head count', { 'llama.attention.head_count': undefined }, 'MISSING_KEY'],
      ['missing embedding length', { 'llama.embedding_length': undefined }, 'MISSING_KEY'],
      ['missing rms eps', { 'llama.attention.layer_norm_rms_epsilon': undefined }, 'MISSING_KEY'],
      ['missing architecture', { 'general.architecture': undefined }, 'MISSING_KEY'],
      ['kv heads not dividing heads', { 'llama.attention.head_count_kv': u32(3) }, 'INVALID_VALUE'],
      ['kv heads above heads', { 'llama.attention.head_count_kv': u32(16) }, 'INVALID_VALUE'],
      ['heads not dividing the width', { 'llama.attention.head_count': u32(7), 'llama.attention.head_count_kv': u32(7) }, 'INVALID_VALUE'],
      ['zero heads', { 'llama.attention.head_count': u32(0) }, 'INVALID_VALUE'],
      ['zero layers', { 'llama.block_count': u32(0) }, 'INVALID_VALUE'],
      ['absurd context', { 'llama.context_length': { type: T.UINT64, value: 2 ** 40 } }, 'INVALID_VALUE'],
      ['odd rope dims', { 'llama.rope.dimension_count': u32(7) }, 'INVALID_VALUE'],
      ['rope dims above head dim', { 'llama.rope.dimension_count': u32(16) }, 'INVALID_VALUE'],
      ['zero rope base', { 'llama.rope.freq_base': f32(0) }, 'INVALID_VALUE'],
      ['NaN rms eps', { 'llama.attention.layer_norm_rms_epsilon': f32(NaN) }, 'INVALID_VALUE'],
      ['unknown rope scaling type', { 'llama.rope.scaling.type': str('ntk') }, 'INVALID_VALUE'],
      ['negative rope scaling factor', { 'llama.rope.scaling.type': str('linear'), 'llama.rope.scaling.factor': f32(-2) }, 'INVALID_VALUE'],
      ['experts used without experts', { 'llama.expert_used_count': u32(2) }, 'INVALID_VALUE'],
      ['more experts used than exist', { 'llama.expert_count': u32(4), 'llama.expert_used_count': u32(5) }, 'INVALID_VALUE'],
      ['vocab_size disagreeing with the tokens', { 'llama.vocab_size': u32(500) }, 'INVALID_VALUE'],
      ['token list not matching token_embd', { 'tokenizer.ggml.tokens': { type: T.ARRAY, value: { elementType: T.STRING, values: ['a', 'b'] } } }, 'INVALID_VALUE'],
      ['width not matching token_embd', { 'llama.embedding_length': u32(128) }, 'INVALID_VALUE'],
      ['float where an integer belongs', { 'llama.block_count': f32(5) }, 'WRONG_TYPE'],
    ];
    it.each(bad)('%s -> %s', (_what, edits, code) => {
      expect(codeOf(() => readHParams(edited(base, edits)))).toBe(code);
    });
  });
});
