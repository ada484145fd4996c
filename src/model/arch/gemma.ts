// gemma and gemma2 (llama.cpp's src/models/gemma.cpp, gemma2.cpp): token embeddings times
// sqrt(dim), a GELU-gated feed-forward (GeGLU), NeoX RoPE, tied output embeddings; the converter
// has already added gemma's +1 to the norm weights, so the norms are plain RMSNorm. gemma2 adds
// RMSNorms after attention and after the feed-forward, attention- and final-logit soft-capping,
// and sliding-window attention on alternate layers (from layer 0; 4096 unless the file says);
// gemma3 (at the end) adds per-head q/k norms and its own window pattern and local RoPE.
import { getArray, getCount, getNumber } from '../../gguf/metadata.js';
import { GGUFValueType } from '../../gguf/constants.js';
import { GGUFError } from '../../gguf/errors.js';
import type { ModelConfig } from '../graph.js';
import type { ArchDef } from './arch.js';
import { llamaLayerTensors } from './llama.js';

const plainLayer = (c: ModelConfig) => llamaLayerTensors(c).filter((t) => !t.role.endsWith('.bias'));

export const gemma: ArchDef = {
  names: ['gemma'],
  ropeStyle: 'neox',
  configure: (c) => ({ ...c, embeddingScale: Math.fround(Math.sqrt(c.dim)) }),
  layerTensors: plainLayer,
  buildLayer(g, w, layer) {
    g.attention(w, layer);
    g.feedForward(w, { activation: 'gelu' });
  },
};

export const gemma2: ArchDef = {
  names: ['gemma2'],
  ropeStyle: 'neox',
  configure(c, hp, meta) {
    const k = (s: string) => `gemma2.${s}`;
    const cap = (key: string, fallback: number) => {
      const v = getNumber(meta, key, fallback);
      if (!(v > 0 && Number.isFinite(v))) throw new GGUFError('INVALID_VALUE', `metadata "${key}" is ${v}, expected a finite number > 0`);
      return v;
    };
    const window = hp.slidingWindow ?? 4096;
    return {
      ...c,
      embeddingScale: Math.fround(Math.sqrt(c.dim)),
      // gemma_pytorch: query_pre_attn_scalar is dim / heads for the 27B (46 layers), else the head size.
      attentionScale: 1 / Math.sqrt(c.nLayers === 46 ? c.dim / c.nHeads : c.headDim),
      attnLogitSoftcap: cap(k('attn_logit_softcapping'), 50),
      finalLogitSoftcap: cap(k('final_logit_softcapping'), 30),
      slidingWindow: window < c.contextLength ? window : undefined,
      windowedLayers: windowPattern(meta, k('attention.sliding_window_pattern'), c.nLayers, 2),
    };
  },
  layerTensors: (c) => [
    ...plainLayer(c),
    { role: 'post_attention_norm', kind: 'vector', shape: [c.dim] },
    { role: 'post_ffw_norm', kind: 'vector', shape: [c.dim] },
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { postNorm: true });
    g.feedForward(w, { activation: 'gelu', postNorm: true });
  },
};

/**
 * Which layers use the sliding window, as llama.cpp reads `attention.sliding_window_pattern`: a
 * per-layer array of booleans, or a period n (layer l is windowed unless l % n == n - 1; 0: all).
 */
export function windowPattern(meta: Parameters<typeof getNumber>[0], key: string, nLayers: number, fallback: number): boolean[] {
  const arr = meta.get(key)?.type === GGUFValueType.ARRAY ? getArray(meta, key) : undefined;
  if (arr) {
    if (arr.values.length !== nLayers) throw new GGUFError('INVALID_VALUE', `metadata "${key}" has ${arr.values.length} entries for ${nLayers} layers`);
    return Array.from(arr.values as ArrayLike<unknown>, (v) => Boolean(v));
  }
  const n = getCount(meta, key, { max: 1 << 16, fallback });
  return Array.from({ length: nLayers }, (_, l) => n === 0 || l % n < n - 1);
}

/**
 * gemma3 (llama.cpp's src/models/gemma3.cpp): gemma2's layer with per-head q/k RMSNorm and no
 * attention soft-capping; with a sliding window, 5 windowed layers to 1 global (pattern 6), the
 * windowed ones using RoPE base rope.freq_base_swa (10000) without the global layers' scaling.
 */
export const gemma3: ArchDef = {
  names: ['gemma3'],
  ropeStyle: 'neox',
  configure(c, hp, meta) {
    const k = (s: string) => `gemma3.${s}`;
    const softcap = getNumber(meta, k('final_logit_softcapping'), 0);
    if (!(softcap >= 0 && Number.isFinite(softcap))) throw new GGUFError('INVALID_VALUE', `metadata "${k('final_logit_softcapping')}" is ${softcap}`);
    const swaBase = getNumber(meta, k('rope.freq_base_swa'), 10000);
    if (!(swaBase > 0 && Number.isFinite(swaBase))) throw new GGUFError('INVALID_VALUE', `metadata "${k('rope.freq_base_swa')}" is ${swaBase}`);
    const windowed = c.slidingWindow !== undefined;
    return {
      ...c,
      embeddingScale: Math.fround(Math.sqrt(c.dim)),
      attentionScale: 1 / Math.sqrt(c.nLayers === 62 ? c.dim / c.nHeads : c.headDim),
      finalLogitSoftcap: softcap > 0 ? softcap : undefined,
      windowedLayers: windowed ? windowPattern(meta, k('attention.sliding_window_pattern'), c.nLayers, 6) : undefined,
      ropeWindowed: windowed ? { ...c.rope, freqBase: swaBase, freqScale: 1 } : undefined,
    };
  },
  layerTensors: (c) => [
    ...gemma2.layerTensors(c),
    { role: 'attn_q_norm', kind: 'vector', shape: [c.headDim] },
    { role: 'attn_k_norm', kind: 'vector', shape: [c.headDim] },
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { qkNorm: 'head', postNorm: true });
    g.feedForward(w, { activation: 'gelu', postNorm: true });
  },
};
