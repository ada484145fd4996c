// What an architecture is: which tensors each layer has (declared once, with shapes and whether
// they are optional) and how a layer is built from the shared GraphBuilder steps. One file per
// architecture beside this one, like llama.cpp's src/models/*.cpp; the registry at the bottom is
// the one list of what loads.
import type { Tensor, WeightTensor } from '../../backend/backend.js';
import type { GGUFFile } from '../../gguf/reader.js';
import type { GraphBuilder, ModelWeights } from '../graph.js';
import type { ModelConfig } from '../graph.js';
import type { HParams } from '../hparams.js';
import { gemma, gemma2, gemma3 } from './gemma.js';
import { bert, jinaBertV2, nomicBert } from './bert.js';
import { granite } from './granite.js';
import { olmo2, olmoe } from './olmo2.js';
import { llama, mistral, smollm3 } from './llama.js';
import { phi3 } from './phi3.js';
import { qwen2, qwen2moe } from './qwen2.js';
import { qwen3, qwen3moe } from './qwen3.js';

/**
 * A tensor a layer needs: a weight matrix ([cols, rows], kept in its file type; [cols, rows,
 * experts] for a mixture of experts' stacked matrices, loaded as one of rows x experts rows) or
 * an f32 vector ([n]).
 */
export interface TensorDecl {
  /** Name inside the layer (the GGUF name is `blk.{l}.{role}.weight` / `.bias`). */
  readonly role: string;
  readonly kind: 'matrix' | 'vector';
  readonly shape: readonly number[];
  readonly optional?: boolean;
  /** Other sizes a matrix's rows (a vector's length) may have: jina-bert-v2's ffn_up and its bias, ffnDim or 2 x ffnDim with the gate fused in. */
  readonly otherSizes?: readonly number[];
}

/** A layer's tensors by role; optional ones the file lacks are absent. */
export interface LayerWeights {
  matrix(role: string): WeightTensor;
  vector(role: string): Tensor;
  optional(role: string): Tensor | undefined;
}

export interface ArchDef {
  /** general.architecture values this definition runs. */
  readonly names: readonly string[];
  /** RoPE layout: ggml "normal" (adjacent pairs) or "neox" (first and second half). */
  readonly ropeStyle: 'normal' | 'neox';
  /** Whether its files may hold a mixture of experts ({arch}.expert_count > 0), or must. */
  readonly experts?: 'optional' | 'required';
  /** The settings beyond the common ones, from the architecture's own metadata keys (gemma's soft-capping, windows). */
  configure?(c: ModelConfig, hp: HParams, meta: GGUFFile['metadata']): ModelConfig;
  /** The tensors of one layer. */
  layerTensors(c: ModelConfig): readonly TensorDecl[];
  /** Tensors outside the layers, by their GGUF names (`role` is the whole name): BERT's position embeddings. */
  globalTensors?(c: ModelConfig): readonly TensorDecl[];
  /** An encoder (BERT): no output norm or head; its final states are pooled into embeddings (Model.embed). */
  readonly encoder?: boolean;
  /** Steps after the token embeddings, before the first layer (BERT: position and token-type embeddings, a norm). */
  buildInput?(g: GraphBuilder, weights: ModelWeights): void;
  /**
   * Where optional tensors stand in for each other (fused or split q/k/v) or a size depends on
   * another tensor: what is wrong with a layer having these (shape: a tensor's dims), if anything.
   */
  checkLayer?(has: (role: string) => boolean, shape: (role: string) => readonly number[] | undefined, c: ModelConfig): string | undefined;
  /** One layer: reads and updates the residual stream g.x. */
  buildLayer(g: GraphBuilder, w: LayerWeights, layer: number): void;
}

/** Every architecture that loads. */
export const ARCHITECTURES: readonly ArchDef[] = [llama, mistral, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma, gemma2, gemma3, olmo2, olmoe, granite, smollm3, bert, nomicBert, jinaBertV2];

export const SUPPORTED_ARCHITECTURES: readonly string[] = ARCHITECTURES.flatMap((a) => a.names);

export function findArch(name: string): ArchDef | undefined {
  return ARCHITECTURES.find((a) => a.names.includes(name));
}
