// qwen3 (dense): the qwen2 layer without biases, plus an RMSNorm over each head of q and of k
// (weights of one head's width, shared by all heads) between the projection and RoPE, as
// llama.cpp's src/models/qwen3.cpp. Its head width is attention.key_length, which need not be
// embedding / heads.
import type { ArchDef } from './arch.js';
import { expertTensors, llamaLayerTensors } from './llama.js';

export const qwen3: ArchDef = {
  names: ['qwen3'],
  ropeStyle: 'neox',
  layerTensors: (c) => [
    ...llamaLayerTensors(c).filter((t) => !t.role.endsWith('.bias')),
    { role: 'attn_q_norm', kind: 'vector', shape: [c.headDim] },
    { role: 'attn_k_norm', kind: 'vector', shape: [c.headDim] },
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { qkNorm: 'head' });
    g.feedForward(w);
  },
};

/**
 * qwen3moe (Qwen3-30B-A3B and kin): the qwen3 layer with a mixture of experts for its feed-forward
 * (softmax routing over expert_count experts, expert_used_count per token, weights renormalized over
 * the chosen), as llama.cpp's src/models/qwen3moe.cpp.
 */
export const qwen3moe: ArchDef = {
  names: ['qwen3moe'],
  ropeStyle: 'neox',
  experts: 'required',
  layerTensors: (c) => [
    ...qwen3.layerTensors(c).filter((t) => !t.role.startsWith('ffn_') || t.role === 'ffn_norm'),
    ...expertTensors(c),
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { qkNorm: 'head' });
    g.feedForwardExperts(w);
  },
};
