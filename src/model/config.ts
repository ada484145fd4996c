// From GGUF hyperparameters to the graph's configuration, with llama.cpp's RoPE defaults.
import type { RopeParams } from '../backend/backend.js';
import type { GGUFFile } from '../gguf/reader.js';
import { poolingType, readHParams, type HParams } from './hparams.js';
import { ModelError } from './errors.js';
import { GGUFError } from '../gguf/errors.js';
import { ARCHITECTURES, findArch } from './arch/arch.js';
import type { ModelConfig } from './graph.js';

export function ropeParams(hp: HParams): RopeParams {
  const scaled = hp.ropeScalingType === 'linear' || hp.ropeScalingType === 'yarn';
  const yarn = hp.ropeScalingType === 'yarn';
  return {
    ropeDims: hp.ropeDimensionCount,
    freqBase: hp.ropeFreqBase,
    freqScale: scaled && hp.ropeScalingFactor > 0 ? 1 / hp.ropeScalingFactor : 1,
    neox: hp.ropeStyle === 'neox',
    // llama.cpp turns YaRN's extrapolation mix fully on (ext_factor 1) when the file asks for YaRN.
    extFactor: yarn ? 1 : 0,
    attnFactor: hp.ropeScalingAttnFactor,
    betaFast: 32,
    betaSlow: 1,
    nCtxOrig: hp.ropeScalingOriginalContextLength || hp.contextLength,
  };
}

/** Architectures whose experts' width is expert_feed_forward_length. */
const EXPERT_WIDTH_ARCHS = ['qwen2moe', 'qwen3moe'];

export function modelConfigFromFile(file: GGUFFile): ModelConfig {
  const hp = readHParams(file);
  const arch = findArch(hp.architecture)!; // readHParams checked it
  if (hp.expertCount > 0 && !arch.experts) {
    throw new ModelError('UNSUPPORTED_ARCHITECTURE', `${hp.architecture} with a mixture of ${hp.expertCount} experts is not supported (experts run for: ${ARCHITECTURES.filter((a) => a.experts).flatMap((a) => a.names).join(', ')})`);
  }
  if (hp.expertCount === 0 && arch.experts === 'required') throw new GGUFError('INVALID_VALUE', `${hp.architecture} needs ${hp.architecture}.expert_count > 0`);
  // LongRoPE is carried by the rope_factors_short / _long tensors (the graph picks them by context length).
  if (hp.ropeScalingType === 'longrope' && !file.tensorsByName.has('rope_factors_long.weight')) {
    throw new ModelError('MISSING_TENSOR', 'LongRoPE scaling needs the rope_factors_short.weight and rope_factors_long.weight tensors, which the file lacks');
  }
  if (hp.headDimV !== hp.headDim) throw new ModelError('UNSUPPORTED_ARCHITECTURE', `value head size ${hp.headDimV} differs from key head size ${hp.headDim}`);
  // Sliding-window attention (llama.cpp's standard SWA: position p attends to p - W + 1..p) runs as
  // such: the context stays the model's, and blocks that fall out of the window are released
  // (see kv-cache.ts). A window covering the whole context is no window at all.
  const window = hp.slidingWindow !== undefined && hp.slidingWindow < hp.contextLength ? hp.slidingWindow : undefined;
  const base: ModelConfig = {
    nLayers: hp.blockCount,
    dim: hp.embeddingLength,
    nHeads: hp.headCount,
    nKvHeads: hp.headCountKv,
    headDim: hp.headDim,
    ffnDim: hp.feedForwardLength,
    vocabSize: hp.vocabSize,
    rmsEps: hp.rmsNormEps,
    rope: ropeParams(hp),
    contextLength: hp.contextLength,
    slidingWindow: window,
    // As llama.cpp: qwen2moe's and qwen3moe's experts are expert_feed_forward_length wide (else
    // feed_forward_length over the experts used); llama's (mixtral) and olmoe's feed_forward_length.
    experts: hp.expertCount > 0 ? {
      count: hp.expertCount,
      used: hp.expertUsedCount,
      ffnDim: EXPERT_WIDTH_ARCHS.includes(hp.architecture) ? hp.expertFeedForwardLength || Math.floor(hp.feedForwardLength / hp.expertUsedCount) : hp.feedForwardLength,
      // qwen2moe's shared expert: expert_shared_feed_forward_length, else feed_forward_length
      sharedFfnDim: hp.architecture === 'qwen2moe' ? hp.expertSharedFeedForwardLength || hp.feedForwardLength : undefined,
    } : undefined,
    // A decoder trained as an embedder (Qwen3-Embedding) says how to pool; encoders read it in their configure.
    pooling: arch.encoder ? undefined : poolingType(file.metadata, `${hp.architecture}.pooling_type`),
  };
  return arch.configure ? arch.configure(base, hp, file.metadata) : base;
}
