// Hugging Face tensor names → our (llama.cpp's GGUF) names, each with the shape config.json implies
// and, for llama-style RoPE, the q/k row permutation llama.cpp's converter applies.
import type { HFModelConfig } from './config.js';
import { HFModelError } from './errors.js';

export interface MappedTensor {
  readonly ggufName: string;
  /** The PyTorch shape (outermost first) config.json implies. */
  readonly shape: readonly number[];
  /**
   * Rows come in this many heads whose halves are interleaved (llama.cpp's `permute(w, n_head,
   * n_head_kv)`): HF's llama keeps each head's rotated pairs as (first half, second half), ggml's
   * "normal" RoPE rotates adjacent rows.
   */
  readonly permuteHeads?: number;
}

/** Tensors HF checkpoints carry that no GGUF has (old llama checkpoints store RoPE's inverse frequencies). */
const SKIPPED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/**
 * The GGUF name, shape and permutation of an HF tensor; undefined for one to skip. A name the
 * architecture does not have is UNKNOWN_TENSOR (as the converter refuses it): ignoring it could
 * silently drop a part of the model.
 */
export function mapTensor(name: string, c: HFModelConfig): MappedTensor | undefined {
  if (SKIPPED.test(name)) return undefined;
  const H = c.hiddenSize, F = c.intermediateSize, V = c.vocabSize;
  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  // llama.cpp's converter permutes q and k (weights and biases) for the llama family only: qwen2/qwen3 use NeoX RoPE.
  const permuted = c.architecture === 'llama';
  switch (name) {
    case 'model.embed_tokens.weight': return { ggufName: 'token_embd.weight', shape: [V, H] };
    case 'model.norm.weight': return { ggufName: 'output_norm.weight', shape: [H] };
    case 'lm_head.weight': return { ggufName: 'output.weight', shape: [V, H] };
  }
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const layer = Number(m[1]);
    if (String(layer) !== m[1] || layer >= c.nLayers) throw new HFModelError('UNKNOWN_TENSOR', `tensor "${name}": layer ${m[1]}, but config.json has num_hidden_layers ${c.nLayers}`);
    const at = (role: string, shape: number[], permuteHeads?: number): MappedTensor => ({
      ggufName: role.endsWith('.bias') ? `blk.${layer}.${role}` : `blk.${layer}.${role}.weight`, shape, ...(permuteHeads ? { permuteHeads } : {}),
    });
    const bias = c.attentionBias, qkNorm = c.architecture === 'qwen3';
    switch (m[2]) {
      case 'input_layernorm.weight': return at('attn_norm', [H]);
      case 'self_attn.q_proj.weight': return at('attn_q', [qDim, H], permuted ? c.nHeads : undefined);
      case 'self_attn.k_proj.weight': return at('attn_k', [kvDim, H], permuted ? c.nKvHeads : undefined);
      case 'self_attn.v_proj.weight': return at('attn_v', [kvDim, H]);
      case 'self_attn.o_proj.weight': return at('attn_output', [H, qDim]);
      case 'self_attn.q_proj.bias': if (bias) return at('attn_q.bias', [qDim], permuted ? c.nHeads : undefined); break;
      case 'self_attn.k_proj.bias': if (bias) return at('attn_k.bias', [kvDim], permuted ? c.nKvHeads : undefined); break;
      case 'self_attn.v_proj.bias': if (bias) return at('attn_v.bias', [kvDim]); break;
      case 'self_attn.q_norm.weight': if (qkNorm) return at('attn_q_norm', [c.headDim]); break;
      case 'self_attn.k_norm.weight': if (qkNorm) return at('attn_k_norm', [c.headDim]); break;
      case 'post_attention_layernorm.weight': return at('ffn_norm', [H]);
      case 'mlp.gate_proj.weight': return at('ffn_gate', [F, H]);
      case 'mlp.up_proj.weight': return at('ffn_up', [F, H]);
      case 'mlp.down_proj.weight': return at('ffn_down', [H, F]);
    }
  }
  throw new HFModelError('UNKNOWN_TENSOR', `tensor "${name}" is not part of a ${c.architecture} model${/_proj\.bias$/.test(name) && c.architecture === 'llama' ? ' (q/k/v biases need attention_bias: true in config.json)' : ''}`);
}

/**
 * The source row of output row `row` of a permuted tensor: within each head of `headRows` rows,
 * output row 2j + s is input row s * headRows / 2 + j (the converter's reshape(n_head, 2, headRows / 2)
 * .swapaxes(1, 2)).
 */
export function permutedSourceRow(row: number, headRows: number): number {
  const head = Math.floor(row / headRows), i = row % headRows;
  return head * headRows + (i % 2) * (headRows / 2) + (i >> 1);
}
