// qwen3 (dense): the qwen2 layer without biases, plus an RMSNorm over each head of q and of k
// (weights of one head's width, shared by all heads) between the projection and RoPE, as
// llama.cpp's src/models/qwen3.cpp. Its head width is attention.key_length, which need not be
// embedding / heads.
import type { ArchDef } from './arch.js';
import { llamaLayerTensors } from './llama.js';

export const qwen3: ArchDef = {
  names: ['qwen3'],
  ropeStyle: 'neox',
  layerTensors: (c) => [
    ...llamaLayerTensors(c).filter((t) => !t.role.endsWith('.bias')),
    { role: 'attn_q_norm', kind: 'vector', shape: [c.headDim] },
    { role: 'attn_k_norm', kind: 'vector', shape: [c.headDim] },
  ],
  buildLayer(g, w, layer) {
    g.attention(w, layer, { qkNorm: true });
    g.feedForward(w);
  },
};
