// qwen2: the llama layer with q/k/v biases and RoPE on the two halves of each head (NeoX).
import type { ArchDef } from './arch.js';
import { expertTensors, llama, llamaLayerTensors } from './llama.js';

export const qwen2: ArchDef = { ...llama, names: ['qwen2'], ropeStyle: 'neox' };

/**
 * qwen2moe (Qwen1.5-MoE, Qwen2-57B-A14B; llama.cpp's src/models/qwen2moe.cpp): the qwen2 layer with
 * routed experts (softmax routing, the chosen probabilities used as they are) plus a shared expert
 * every token runs, scaled by a sigmoid gate (ffn_gate_inp_shexp).
 */
export const qwen2moe: ArchDef = {
  names: ['qwen2moe'],
  ropeStyle: 'neox',
  experts: 'required',
  layerTensors(c) {
    const shared = c.experts!.sharedFfnDim!;
    return [
      ...llamaLayerTensors(c).filter((t) => !t.role.startsWith('ffn_') || t.role === 'ffn_norm'),
      ...expertTensors(c),
      { role: 'ffn_gate_inp_shexp', kind: 'vector', shape: [c.dim] },
      { role: 'ffn_gate_shexp', kind: 'matrix', shape: [c.dim, shared] },
      { role: 'ffn_up_shexp', kind: 'matrix', shape: [c.dim, shared] },
      { role: 'ffn_down_shexp', kind: 'matrix', shape: [shared, c.dim] },
    ];
  },
  buildLayer(g, w, layer) {
    g.attention(w, layer);
    g.feedForwardExperts(w, { normalize: false });
  },
};
