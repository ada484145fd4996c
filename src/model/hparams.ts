// Hyperparameters of the supported architectures (src/model/arch/) from the `<arch>.` metadata keys
// that llama.cpp's converters write. The file is untrusted: every value is range-checked and the
// shapes must agree with each other (heads divide the width, kv heads divide heads, the embedding
// tensor matches width x vocab) before any buffer is sized from them.
import { getArray, getCount, getNumber, getString } from '../gguf/metadata.js';
import { GGUFError } from '../gguf/errors.js';
import type { GGUFFile } from '../gguf/reader.js';
import { findArch, SUPPORTED_ARCHITECTURES } from './arch/arch.js';
import { ModelError } from './errors.js';

export { SUPPORTED_ARCHITECTURES };

export type RopeScalingType = 'none' | 'linear' | 'yarn' | 'longrope';
const ROPE_SCALING_TYPES: readonly RopeScalingType[] = ['none', 'linear', 'yarn', 'longrope'];

export interface HParams {
  readonly architecture: string;
  /** Context length the model was trained for. */
  readonly contextLength: number;
  readonly embeddingLength: number;
  readonly blockCount: number;
  readonly feedForwardLength: number;
  readonly headCount: number;
  readonly headCountKv: number;
  /** Query/key head dimension: `<arch>.attention.key_length`, else embedding / heads. */
  readonly headDim: number;
  /** Value head dimension: `<arch>.attention.value_length`, else headDim. */
  readonly headDimV: number;
  /** How many leading dims of each head rotate; the rest pass through. */
  readonly ropeDimensionCount: number;
  readonly ropeFreqBase: number;
  /** From the architecture: adjacent pairs (ggml "normal", llama) or halves (ggml "neox", qwen). */
  readonly ropeStyle: 'normal' | 'neox';
  readonly ropeScalingType: RopeScalingType;
  /** Context scaling factor (1 = none); ggml's freq_scale is its inverse. */
  readonly ropeScalingFactor: number;
  readonly ropeScalingOriginalContextLength: number;
  /** RoPE's magnitude factor (rope.scaling.attn_factor, 1 when absent: LongRoPE files carry it). */
  readonly ropeScalingAttnFactor: number;
  /** The norms' epsilon: layer_norm_rms_epsilon, or layer_norm_epsilon for LayerNorm models (BERT). */
  readonly rmsNormEps: number;
  /** Sliding-window attention span, undefined when the model attends to the whole context. */
  readonly slidingWindow: number | undefined;
  /** Mixture-of-experts: experts per layer and experts used per token (0 and 0 for dense models). */
  readonly expertCount: number;
  readonly expertUsedCount: number;
  /** Each expert's feed-forward width (`<arch>.expert_feed_forward_length`; 0 when absent). */
  readonly expertFeedForwardLength: number;
  /** A shared expert's width (`<arch>.expert_shared_feed_forward_length`; 0 when absent). */
  readonly expertSharedFeedForwardLength: number;
  readonly vocabSize: number;
}

// Generous bounds that no real model reaches but that keep corrupt values from sizing buffers.
const MAX_CONTEXT = 2 ** 31 - 1;
const MAX_WIDTH = 1 << 20;
const MAX_LAYERS = 1 << 12;
const MAX_HEADS = 1 << 14;
const MAX_VOCAB = 1 << 24;
const MAX_EXPERTS = 1 << 12;

function invalid(message: string): never {
  throw new GGUFError('INVALID_VALUE', message);
}

function positiveFloat(meta: GGUFFile['metadata'], key: string, fallback: number | undefined, max = Infinity): number {
  const v = fallback === undefined ? getNumber(meta, key) : getNumber(meta, key, fallback);
  if (!Number.isFinite(v) || v <= 0 || v > max) invalid(`metadata "${key}" is ${v}, expected a finite number in (0, ${max}]`);
  return v;
}

export function readHParams(file: GGUFFile): HParams {
  const meta = file.metadata;
  const arch = getString(meta, 'general.architecture');
  const def = findArch(arch);
  if (!def) {
    throw new ModelError('UNSUPPORTED_ARCHITECTURE', `architecture "${arch}" is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  const architecture = arch;
  const k = (suffix: string) => `${arch}.${suffix}`;

  const contextLength = getCount(meta, k('context_length'), { min: 1, max: MAX_CONTEXT });
  const embeddingLength = getCount(meta, k('embedding_length'), { min: 1, max: MAX_WIDTH });
  const blockCount = getCount(meta, k('block_count'), { min: 1, max: MAX_LAYERS });
  const feedForwardLength = getCount(meta, k('feed_forward_length'), { min: 1, max: MAX_WIDTH * 8 });
  const headCount = getCount(meta, k('attention.head_count'), { min: 1, max: MAX_HEADS });
  const headCountKv = getCount(meta, k('attention.head_count_kv'), { min: 1, max: MAX_HEADS, fallback: headCount });
  if (headCountKv > headCount || headCount % headCountKv !== 0) {
    invalid(`${k('attention.head_count_kv')} ${headCountKv} must divide ${k('attention.head_count')} ${headCount}`);
  }

  let headDim: number;
  if (meta.has(k('attention.key_length'))) {
    headDim = getCount(meta, k('attention.key_length'), { min: 1, max: MAX_WIDTH });
  } else {
    if (embeddingLength % headCount !== 0) {
      invalid(`${k('embedding_length')} ${embeddingLength} is not a multiple of ${k('attention.head_count')} ${headCount}`);
    }
    headDim = embeddingLength / headCount;
  }
  const headDimV = getCount(meta, k('attention.value_length'), { min: 1, max: MAX_WIDTH, fallback: headDim });

  const ropeDimensionCount = getCount(meta, k('rope.dimension_count'), { min: 2, max: headDim, fallback: headDim });
  // Rotation works on pairs of dims.
  if (ropeDimensionCount % 2 !== 0) invalid(`${k('rope.dimension_count')} ${ropeDimensionCount} must be even`);
  const ropeFreqBase = positiveFloat(meta, k('rope.freq_base'), 10000);

  // Older files only have rope.scale_linear (a linear factor); newer ones name the type.
  const legacyLinear = meta.has(k('rope.scale_linear')) ? positiveFloat(meta, k('rope.scale_linear'), undefined, 1e6) : undefined;
  const typeName = getString(meta, k('rope.scaling.type'), legacyLinear !== undefined && legacyLinear !== 1 ? 'linear' : 'none');
  if (!(ROPE_SCALING_TYPES as readonly string[]).includes(typeName)) {
    invalid(`${k('rope.scaling.type')} "${typeName}" is not one of ${ROPE_SCALING_TYPES.join(', ')}`);
  }
  const ropeScalingType = typeName as RopeScalingType;
  // llama.cpp treats a factor of 0 as "unset".
  const rawFactor = meta.has(k('rope.scaling.factor')) ? getNumber(meta, k('rope.scaling.factor')) : legacyLinear ?? 1;
  if (!Number.isFinite(rawFactor) || rawFactor < 0 || rawFactor > 1e6) invalid(`${k('rope.scaling.factor')} is ${rawFactor}, expected a finite number in [0, 1e6]`);
  const ropeScalingFactor = ropeScalingType === 'none' || rawFactor === 0 ? 1 : rawFactor;
  const ropeScalingOriginalContextLength = getCount(meta, k('rope.scaling.original_context_length'), {
    min: 1, max: MAX_CONTEXT, fallback: contextLength,
  });

  // RMSNorm models name their epsilon layer_norm_rms_epsilon; LayerNorm ones (BERT) layer_norm_epsilon.
  const ropeScalingAttnFactor = positiveFloat(meta, k('rope.scaling.attn_factor'), 1, 1e3);

  const rmsNormEps = positiveFloat(meta, meta.has(k('attention.layer_norm_rms_epsilon')) || !meta.has(k('attention.layer_norm_epsilon'))
    ? k('attention.layer_norm_rms_epsilon') : k('attention.layer_norm_epsilon'), undefined, 1);

  const window = getCount(meta, k('attention.sliding_window'), { max: MAX_CONTEXT, fallback: 0 });
  const slidingWindow = window === 0 ? undefined : window;

  const expertCount = getCount(meta, k('expert_count'), { max: MAX_EXPERTS, fallback: 0 });
  const expertUsedCount = getCount(meta, k('expert_used_count'), { max: MAX_EXPERTS, fallback: 0 });
  if (expertCount === 0 ? expertUsedCount !== 0 : expertUsedCount < 1 || expertUsedCount > expertCount) {
    invalid(`${k('expert_used_count')} ${expertUsedCount} must be in 1..${k('expert_count')} (${expertCount}) for a mixture of experts, or 0 for a dense model`);
  }

  const expertFeedForwardLength = getCount(meta, k('expert_feed_forward_length'), { max: MAX_WIDTH * 8, fallback: 0 });
  const expertSharedFeedForwardLength = getCount(meta, k('expert_shared_feed_forward_length'), { max: MAX_WIDTH * 8, fallback: 0 });

  const vocabSize = readVocabSize(file, k('vocab_size'));
  for (const name of ['token_embd.weight', 'output.weight']) {
    const t = file.tensorsByName.get(name);
    if (t && (t.dims.length !== 2 || t.dims[0] !== embeddingLength || t.dims[1] !== vocabSize)) {
      invalid(`${name} has shape [${t.dims.join(', ')}], expected [${embeddingLength}, ${vocabSize}] (embedding x vocab)`);
    }
  }

  return {
    architecture, contextLength, embeddingLength, blockCount, feedForwardLength, headCount, headCountKv,
    headDim, headDimV, ropeDimensionCount, ropeFreqBase, ropeStyle: def.ropeStyle,
    ropeScalingType, ropeScalingFactor, ropeScalingOriginalContextLength, ropeScalingAttnFactor, rmsNormEps, slidingWindow,
    expertCount, expertUsedCount, expertFeedForwardLength, expertSharedFeedForwardLength, vocabSize,
  };
}

/** Vocabulary size: the token list, else `<arch>.vocab_size`, else the output / embedding tensor's rows. */
function readVocabSize(file: GGUFFile, vocabKey: string): number {
  const tokens = getArray(file.metadata, 'tokenizer.ggml.tokens');
  const declared = file.metadata.has(vocabKey) ? getCount(file.metadata, vocabKey, { min: 1, max: MAX_VOCAB }) : undefined;
  if (tokens) {
    const n = tokens.values.length;
    if (n < 1 || n > MAX_VOCAB) invalid(`tokenizer.ggml.tokens has ${n} entries, expected 1..${MAX_VOCAB}`);
    if (declared !== undefined && declared !== n) invalid(`${vocabKey} ${declared} disagrees with the ${n} tokens of tokenizer.ggml.tokens`);
    return n;
  }
  if (declared !== undefined) return declared;
  const t = file.tensorsByName.get('output.weight') ?? file.tensorsByName.get('token_embd.weight');
  if (t && t.dims.length === 2 && t.dims[1] >= 1 && t.dims[1] <= MAX_VOCAB) return t.dims[1];
  throw new GGUFError('MISSING_KEY', `cannot tell the vocabulary size: no tokenizer.ggml.tokens, ${vocabKey} or 2-D output/token_embd tensor`);
}

/** llama.cpp's LLAMA_POOLING_TYPE values that pool into one vector. */
const POOLING = { 1: 'mean', 2: 'cls', 3: 'last' } as const;

/** A pooling type key: mean, CLS or last; `fallback` (a type number) when absent; undefined for none (0). */
export function poolingType(meta: GGUFFile['metadata'], key: string, fallback = 0): 'mean' | 'cls' | 'last' | undefined {
  const type = getCount(meta, key, { max: 4, fallback });
  if (type === 0) return undefined;
  const pooling = POOLING[type as keyof typeof POOLING];
  if (!pooling) throw new GGUFError('INVALID_VALUE', `${key} ${type} is not none (0), mean (1), CLS (2) or last (3)`);
  return pooling;
}
