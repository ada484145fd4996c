// bert (BERT encoders for embeddings: all-MiniLM, bge; llama.cpp's src/models/bert.cpp): token
// embeddings plus token type 0's row and absolute position embeddings, a LayerNorm; then per layer
// attention over the whole sequence (not causal) with biases, residual, LayerNorm, an ungated GELU
// feed-forward with biases, residual, LayerNorm. No output head: Model.embed pools the final states
// ({arch}.pooling_type: mean, CLS or last token). nomic-bert (below) is the rotary, SwiGLU sibling;
// jina-bert-v2 the ALiBi, GEGLU one.
import { GGUFValueType } from '../../gguf/constants.js';
import { GGUFError } from '../../gguf/errors.js';
import { getCount } from '../../gguf/metadata.js';
import type { WeightTensor } from '../../backend/backend.js';
import type { ArchDef, TensorDecl } from './arch.js';
import { checkFusedOrSplitQkv, fusedOrSplitQkv } from './phi3.js';
import { poolingType } from '../hparams.js';


const matrix = (role: string, cols: number, rows: number, optional = false, otherSizes?: number[]): TensorDecl => ({ role, kind: 'matrix', shape: [cols, rows], optional, otherSizes });
const vector = (role: string, n: number, optional = false, otherSizes?: number[]): TensorDecl => ({ role, kind: 'vector', shape: [n], optional, otherSizes });

/** The encoder settings every BERT-family file carries under its own architecture prefix. */
const configureEncoder: NonNullable<ArchDef['configure']> = (c, hp, meta) => {
  const k = (s: string) => `${hp.architecture}.${s}`;
  const causal = meta.get(k('attention.causal'));
  if (causal && (causal.type !== GGUFValueType.BOOL || causal.value !== false)) {
    throw new GGUFError('INVALID_VALUE', `${k('attention.causal')} must be false: a causal encoder is not supported`);
  }
  // llama.cpp's files say how to pool; mean (sentence-transformers' usual) where they do not.
  const pooling = poolingType(meta, k('pooling_type'), 1);
  if (!pooling) throw new GGUFError('INVALID_VALUE', `${k('pooling_type')} is none: an encoder's states must be pooled (mean, CLS or last)`);
  return { ...c, causal: false, pooling, tokenTypeCount: getCount(meta, 'tokenizer.ggml.token_type_count', { min: 1, max: 1 << 16, fallback: 2 }) };
};

export const bert: ArchDef = {
  names: ['bert'],
  ropeStyle: 'normal',
  encoder: true,
  configure: configureEncoder,
  globalTensors(c) {
    return [
      matrix('token_types.weight', c.dim, c.tokenTypeCount ?? 2, true),
      matrix('position_embd.weight', c.dim, c.contextLength),
      vector('token_embd_norm.weight', c.dim),
      vector('token_embd_norm.bias', c.dim),
    ];
  },
  layerTensors(c) {
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    return [
      matrix('attn_q', c.dim, qDim), vector('attn_q.bias', qDim, true),
      matrix('attn_k', c.dim, kvDim), vector('attn_k.bias', kvDim, true),
      matrix('attn_v', c.dim, kvDim), vector('attn_v.bias', kvDim, true),
      matrix('attn_output', qDim, c.dim), vector('attn_output.bias', c.dim, true),
      vector('attn_output_norm', c.dim), vector('attn_output_norm.bias', c.dim),
      matrix('ffn_up', c.dim, c.ffnDim), vector('ffn_up.bias', c.ffnDim, true),
      matrix('ffn_down', c.ffnDim, c.dim), vector('ffn_down.bias', c.dim, true),
      vector('layer_output_norm', c.dim), vector('layer_output_norm.bias', c.dim),
    ];
  },
  buildInput(g, weights) {
    const types = weights.globals.get('token_types.weight') as WeightTensor | undefined;
    if (types) g.addRows(types, 0); // every token is "sentence A"
    g.addRows(weights.globals.get('position_embd.weight') as WeightTensor, 'positions');
    g.layerNorm(weights.globals.get('token_embd_norm.weight')!, weights.globals.get('token_embd_norm.bias')!);
  },
  buildLayer(g, w, layer) {
    g.attention(w, layer, { preNorm: false, rope: false });
    g.layerNorm(w.vector('attn_output_norm'), w.vector('attn_output_norm.bias'));
    g.feedForward(w, { preNorm: false, activation: 'gelu' });
    g.layerNorm(w.vector('layer_output_norm'), w.vector('layer_output_norm.bias'));
  },
};

/**
 * nomic-bert (nomic-embed-text; the same llama.cpp graph with its branches): no position
 * embeddings but NeoX RoPE, q/k/v usually fused into attn_qkv, and a SwiGLU feed-forward without
 * biases (llama.cpp ignores any), between the same LayerNorms as BERT.
 */
export const nomicBert: ArchDef = {
  names: ['nomic-bert'],
  ropeStyle: 'neox',
  encoder: true,
  configure: configureEncoder,
  globalTensors: (c) => bert.globalTensors!(c).filter((t) => t.role !== 'position_embd.weight'),
  layerTensors(c) {
    const qDim = c.nHeads * c.headDim;
    return [
      ...fusedOrSplitQkv(c),
      matrix('attn_output', qDim, c.dim), vector('attn_output.bias', c.dim, true),
      vector('attn_output_norm', c.dim), vector('attn_output_norm.bias', c.dim),
      matrix('ffn_gate', c.dim, c.ffnDim), matrix('ffn_up', c.dim, c.ffnDim), matrix('ffn_down', c.ffnDim, c.dim),
      vector('layer_output_norm', c.dim), vector('layer_output_norm.bias', c.dim),
    ];
  },
  checkLayer: checkFusedOrSplitQkv,
  buildInput(g, weights) {
    const types = weights.globals.get('token_types.weight') as WeightTensor | undefined;
    if (types) g.addRows(types, 0);
    g.layerNorm(weights.globals.get('token_embd_norm.weight')!, weights.globals.get('token_embd_norm.bias')!);
  },
  buildLayer(g, w, layer) {
    g.attention(w, layer, { preNorm: false });
    g.layerNorm(w.vector('attn_output_norm'), w.vector('attn_output_norm.bias'));
    g.feedForward(w, { preNorm: false });
    g.layerNorm(w.vector('layer_output_norm'), w.vector('layer_output_norm.bias'));
  },
};

/** llama.cpp fixes jina-bert-v2's ALiBi maxBias at 8 (its files carry no key for it). */
const JINA_ALIBI_MAX_BIAS = 8;

/**
 * jina-bert-v2 (jina-embeddings-v2; the same llama.cpp graph with its branches): no position
 * embeddings but ALiBi over the whole sequence, token types required, biases on the output and
 * down projections, and a GELU feed-forward: GEGLU with the gate fused into ffn_up's first half
 * (2 x ffnDim rows, the usual form), or a separate ffn_gate, or ungated. The code model adds
 * LayerNorms on q and k (attn_q_norm, attn_k_norm) and a second attention norm (attn_norm_2)
 * over the attention norm's output plus the layer's input again.
 */
export const jinaBertV2: ArchDef = {
  names: ['jina-bert-v2'],
  ropeStyle: 'normal', // unused: no RoPE
  encoder: true,
  configure: (c, hp, meta) => ({ ...configureEncoder(c, hp, meta), alibiMaxBias: JINA_ALIBI_MAX_BIAS }),
  globalTensors: (c) => nomicBert.globalTensors!(c).map((t) => (t.role === 'token_types.weight' ? { ...t, optional: false } : t)),
  layerTensors(c) {
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    return [
      matrix('attn_q', c.dim, qDim), vector('attn_q.bias', qDim, true),
      matrix('attn_k', c.dim, kvDim), vector('attn_k.bias', kvDim, true),
      matrix('attn_v', c.dim, kvDim), vector('attn_v.bias', kvDim, true),
      vector('attn_q_norm', qDim, true), vector('attn_q_norm.bias', qDim, true),
      vector('attn_k_norm', kvDim, true), vector('attn_k_norm.bias', kvDim, true),
      matrix('attn_output', qDim, c.dim), vector('attn_output.bias', c.dim),
      vector('attn_output_norm', c.dim), vector('attn_output_norm.bias', c.dim),
      vector('attn_norm_2', c.dim, true), vector('attn_norm_2.bias', c.dim, true),
      matrix('ffn_gate', c.dim, c.ffnDim, true),
      matrix('ffn_up', c.dim, c.ffnDim, false, [2 * c.ffnDim]), vector('ffn_up.bias', c.ffnDim, true, [2 * c.ffnDim]),
      matrix('ffn_down', c.ffnDim, c.dim), vector('ffn_down.bias', c.dim),
      vector('layer_output_norm', c.dim), vector('layer_output_norm.bias', c.dim),
    ];
  },
  checkLayer(has, shape, c) {
    const qkNorms = ['attn_q_norm', 'attn_q_norm.bias', 'attn_k_norm', 'attn_k_norm.bias'].filter(has).length;
    if (qkNorms !== 0 && qkNorms !== 4) return 'needs attn_q_norm and attn_k_norm with their biases, or none of them';
    if (has('attn_norm_2') !== has('attn_norm_2.bias')) return 'needs attn_norm_2 with its bias, or neither';
    const upRows = shape('ffn_up')?.[1];
    if (has('ffn_gate') && upRows !== c.ffnDim) return `has ffn_gate, so ffn_up must have ${c.ffnDim} rows, not ${upRows} (a gate fused into it)`;
    const upBias = shape('ffn_up.bias')?.[0];
    if (upBias !== undefined && upBias !== upRows) return `ffn_up.bias has ${upBias} values for ffn_up's ${upRows} rows`;
    return undefined;
  },
  buildInput: nomicBert.buildInput,
  buildLayer(g, w, layer) {
    const norm2 = w.optional('attn_norm_2');
    if (norm2) g.keepLayerInput();
    g.attention(w, layer, { preNorm: false, rope: false, qkNorm: w.optional('attn_q_norm') ? 'layer' : undefined });
    g.layerNorm(w.vector('attn_output_norm'), w.vector('attn_output_norm.bias'));
    if (norm2) {
      g.addLayerInput();
      g.layerNorm(norm2, w.vector('attn_norm_2.bias'));
    }
    g.feedForward(w, { preNorm: false, activation: 'gelu' });
    g.layerNorm(w.vector('layer_output_norm'), w.vector('layer_output_norm.bias'));
  },
};
