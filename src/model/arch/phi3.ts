// phi3 (Phi-3, Phi-3.5, Phi-4-mini): the llama layer with q/k/v fused into one attn_qkv (rows q,
// then k, then v) or split, gate and up fused into one ffn_up of 2 x ffnDim rows (gate first),
// NeoX RoPE, optionally LongRoPE frequency factors (rope_factors_short / _long, loaded with every
// model that has them). As llama.cpp's src/models/phi3.cpp, its sliding window is not applied:
// llama.cpp turns Phi SWA off (the converters' window metadata is not trusted), so the same file
// gives the same logits in both.
import type { ModelConfig } from '../graph.js';
import type { ArchDef, TensorDecl } from './arch.js';

/** q/k/v as one fused attn_qkv (rows q, k, v) or three matrices: each optional, checkFusedOrSplitQkv says which may stand. */
export function fusedOrSplitQkv(c: ModelConfig): TensorDecl[] {
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  return [
    { role: 'attn_qkv', kind: 'matrix', shape: [c.dim, qDim + 2 * kvDim], optional: true },
    { role: 'attn_q', kind: 'matrix', shape: [c.dim, qDim], optional: true },
    { role: 'attn_k', kind: 'matrix', shape: [c.dim, kvDim], optional: true },
    { role: 'attn_v', kind: 'matrix', shape: [c.dim, kvDim], optional: true },
  ];
}

export function checkFusedOrSplitQkv(has: (role: string) => boolean): string | undefined {
  const split = ['attn_q', 'attn_k', 'attn_v'].filter(has).length;
  return (has('attn_qkv') ? split > 0 : split < 3) ? 'needs either attn_qkv or all of attn_q, attn_k and attn_v' : undefined;
}

export const phi3: ArchDef = {
  names: ['phi3'],
  ropeStyle: 'neox',
  configure: (c) => ({ ...c, slidingWindow: undefined }),
  layerTensors(c) {
    const qDim = c.nHeads * c.headDim;
    return [
      { role: 'attn_norm', kind: 'vector', shape: [c.dim] },
      ...fusedOrSplitQkv(c),
      { role: 'attn_output', kind: 'matrix', shape: [qDim, c.dim] },
      { role: 'ffn_norm', kind: 'vector', shape: [c.dim] },
      { role: 'ffn_up', kind: 'matrix', shape: [c.dim, 2 * c.ffnDim] },
      { role: 'ffn_down', kind: 'matrix', shape: [c.ffnDim, c.dim] },
    ];
  },
  checkLayer: checkFusedOrSplitQkv,
  buildLayer(g, w, layer) {
    g.attention(w, layer);
    g.feedForward(w);
  },
};
