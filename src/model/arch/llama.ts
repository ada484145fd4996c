// llama (1, 2, 3), mixtral and mistral: pre-norm attention with RoPE on adjacent pairs, and a SwiGLU
// feed-forward (or, with {arch}.expert_count, a mixture of SwiGLU experts: mixtral). q/k/v biases load when a file has them (llama.cpp's llama graph takes them too).
import type { ArchDef, TensorDecl } from './arch.js';
import type { ModelConfig } from '../graph.js';

/** The tensors of a llama-style layer: attention (biases optional) and a gated feed-forward, or its experts. */
export function llamaLayerTensors(c: ModelConfig): TensorDecl[] {
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  const ffn: TensorDecl[] = c.experts ? expertTensors(c) : [
    { role: 'ffn_gate', kind: 'matrix', shape: [c.dim, c.ffnDim] },
    { role: 'ffn_up', kind: 'matrix', shape: [c.dim, c.ffnDim] },
    { role: 'ffn_down', kind: 'matrix', shape: [c.ffnDim, c.dim] },
  ];
  return [
    { role: 'attn_norm', kind: 'vector', shape: [c.dim] },
    { role: 'attn_q', kind: 'matrix', shape: [c.dim, qDim] },
    { role: 'attn_k', kind: 'matrix', shape: [c.dim, kvDim] },
    { role: 'attn_v', kind: 'matrix', shape: [c.dim, kvDim] },
    { role: 'attn_output', kind: 'matrix', shape: [qDim, c.dim] },
    { role: 'attn_q.bias', kind: 'vector', shape: [qDim], optional: true },
    { role: 'attn_k.bias', kind: 'vector', shape: [kvDim], optional: true },
    { role: 'attn_v.bias', kind: 'vector', shape: [kvDim], optional: true },
    { role: 'ffn_norm', kind: 'vector', shape: [c.dim] },
    ...ffn,
  ];
}

/** A mixture of experts' tensors: the router and each projection's experts stacked ([cols, rows, experts]). */
export function expertTensors(c: ModelConfig): TensorDecl[] {
  const { count, ffnDim } = c.experts!;
  return [
    { role: 'ffn_gate_inp', kind: 'matrix', shape: [c.dim, count] },
    { role: 'ffn_gate_exps', kind: 'matrix', shape: [c.dim, ffnDim, count] },
    { role: 'ffn_up_exps', kind: 'matrix', shape: [c.dim, ffnDim, count] },
    { role: 'ffn_down_exps', kind: 'matrix', shape: [ffnDim, c.dim, count] },
  ];
}

export const llama: ArchDef = {
  names: ['llama'],
  ropeStyle: 'normal',
  // Mixtral is a llama file with experts: softmax routing, weights renormalized over the chosen.
  experts: 'optional',
  layerTensors: llamaLayerTensors,
  buildLayer(g, w, layer) {
    g.attention(w, layer);
    if (g.config.experts) g.feedForwardExperts(w);
    else g.feedForward(w);
  },
};

/** Mistral files that name their architecture: the llama graph (sliding windows come from metadata). */
export const mistral: ArchDef = { ...llama, names: ['mistral'] };

/** SmolLM3: the llama layer, with no RoPE in every fourth layer (NoPE), as llama.cpp's src/models/smollm3.cpp. */
export const smollm3: ArchDef = {
  names: ['smollm3'],
  ropeStyle: 'normal',
  layerTensors: (c) => llamaLayerTensors(c).filter((t) => !t.role.endsWith('.bias')),
  buildLayer(g, w, layer) {
    g.attention(w, layer, { rope: (layer + 1) % 4 !== 0 });
    g.feedForward(w);
  },
};
