// olmo2 (OLMo 2; llama.cpp's src/models/olmo2.cpp): no pre-norms; q and k RMSNormed over their whole
// projection (weights as wide as q and k, not one head) before NeoX RoPE; each branch's output
// RMSNormed (post_attention_norm, post_ffw_norm) before it joins the residual stream. With a
// sliding window (olmo3), 3 windowed layers to 1 global, the windowed ones with plain RoPE. olmoe
// (below) is the mixture-of-experts sibling.
import { getNumber } from '../../gguf/metadata.js';
import type { ModelConfig } from '../graph.js';
import type { ArchDef, TensorDecl } from './arch.js';
import { windowPattern } from './gemma.js';
import { expertTensors } from './llama.js';

/** q/k/v and output projections with q/k norms as wide as q and k (olmo2, olmoe). */
function attentionTensors(c: ModelConfig): TensorDecl[] {
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  return [
    { role: 'attn_q', kind: 'matrix', shape: [c.dim, qDim] },
    { role: 'attn_k', kind: 'matrix', shape: [c.dim, kvDim] },
    { role: 'attn_v', kind: 'matrix', shape: [c.dim, kvDim] },
    { role: 'attn_q_norm', kind: 'vector', shape: [qDim] },
    { role: 'attn_k_norm', kind: 'vector', shape: [kvDim] },
    { role: 'attn_output', kind: 'matrix', shape: [qDim, c.dim] },
  ];
}

export const olmo2: ArchDef = {
  names: ['olmo2'],
  ropeStyle: 'neox',
  configure(c, _hp, meta) {
    if (c.slidingWindow === undefined) return c;
    const base = getNumber(meta, 'olmo2.rope.freq_base_swa', c.rope.freqBase);
    return {
      ...c,
      windowedLayers: windowPattern(meta, 'olmo2.attention.sliding_window_pattern', c.nLayers, 4),
      ropeWindowed: { ...c.rope, freqBase: base, freqScale: 1, extFactor: 0, attnFactor: 1 },
    };
  },
  layerTensors: (c) => [
    ...attentionTensors(c),
    { role: 'post_attention_norm', kind: 'vector', shape: [c.dim] },
    { role: 'ffn_gate', kind: 'matrix', shape: [c.dim, c.ffnDim] },
    { role: 'ffn_up', kind: 'matrix', shape: [c.dim, c.ffnDim] },
    { role: 'ffn_down', kind: 'matrix', shape: [c.ffnDim, c.dim] },
    { role: 'post_ffw_norm', kind: 'vector', shape: [c.dim] },
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { preNorm: false, qkNorm: 'projection', postNorm: true });
    g.feedForward(w, { preNorm: false, postNorm: true });
  },
};

/**
 * olmoe (OLMoE; llama.cpp's src/models/olmoe.cpp): pre-norm attention with q/k RMSNormed over the
 * whole projection, NeoX RoPE, and a mixture of experts (softmax routing, the chosen experts'
 * probabilities used as they are: not renormalized).
 */
export const olmoe: ArchDef = {
  names: ['olmoe'],
  ropeStyle: 'neox',
  experts: 'required',
  layerTensors: (c) => [
    { role: 'attn_norm', kind: 'vector', shape: [c.dim] },
    ...attentionTensors(c),
    { role: 'ffn_norm', kind: 'vector', shape: [c.dim] },
    ...expertTensors(c),
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { qkNorm: 'projection' });
    g.feedForwardExperts(w, { normalize: false });
  },
};
