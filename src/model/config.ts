// From GGUF hyperparameters to the graph's configuration, with llama.cpp's RoPE defaults.
import type { RopeParams } from '../backend/backend.js';
import type { GGUFFile } from '../gguf/reader.js';
import { readHParams, type LlamaHParams } from './hparams.js';
import { log } from '../log.js';
import { ModelError } from './errors.js';
import type { LlamaConfig } from './llama-graph.js';

export function ropeParams(hp: LlamaHParams): RopeParams {
  const scaled = hp.ropeScalingType === 'linear' || hp.ropeScalingType === 'yarn';
  const yarn = hp.ropeScalingType === 'yarn';
  return {
    ropeDims: hp.ropeDimensionCount,
    freqBase: hp.ropeFreqBase,
    freqScale: scaled && hp.ropeScalingFactor > 0 ? 1 / hp.ropeScalingFactor : 1,
    neox: hp.ropeStyle === 'neox',
    // llama.cpp turns YaRN's extrapolation mix fully on (ext_factor 1) when the file asks for YaRN.
    extFactor: yarn ? 1 : 0,
    attnFactor: 1,
    betaFast: 32,
    betaSlow: 1,
    nCtxOrig: hp.ropeScalingOriginalContextLength || hp.contextLength,
  };
}

export function llamaConfigFromFile(file: GGUFFile): LlamaConfig {
  const hp = readHParams(file);
  if (hp.expertCount > 0) throw new ModelError('UNSUPPORTED_ARCHITECTURE', `mixture-of-experts models (${hp.expertCount} experts) are not supported yet`);
  if (hp.ropeScalingType === 'longrope') throw new ModelError('UNSUPPORTED_ARCHITECTURE', 'LongRoPE scaling is not supported yet');
  if (hp.headDimV !== hp.headDim) throw new ModelError('UNSUPPORTED_ARCHITECTURE', `value head size ${hp.headDimV} differs from key head size ${hp.headDim}`);
  // Attention here has no sliding-window mask: within the window the result is the same, so the
  // context is capped at the window rather than computing something the model was not trained for.
  let contextLength = hp.contextLength;
  if (hp.slidingWindow !== undefined && hp.slidingWindow > 0 && hp.slidingWindow < contextLength) {
    log.warn(`context capped at the sliding window of ${hp.slidingWindow} tokens`);
    contextLength = hp.slidingWindow;
  }
  return {
    nLayers: hp.blockCount,
    dim: hp.embeddingLength,
    nHeads: hp.headCount,
    nKvHeads: hp.headCountKv,
    headDim: hp.headDim,
    ffnDim: hp.feedForwardLength,
    vocabSize: hp.vocabSize,
    rmsEps: hp.rmsNormEps,
    rope: ropeParams(hp),
    contextLength,
  };
}
