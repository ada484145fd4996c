// The forward pass every architecture shares, read top to bottom like llama2.c's run.c: token
// embeddings, one ArchDef.buildLayer per layer over the residual stream, final norm and output
// projection. One call evaluates a batch of tokens from one or more sequences: every matmul covers
// the whole batch; attention reads each token's own sequence through the paged KV cache. The
// GraphBuilder steps (attention, feed-forward) are the pieces the architecture files compose.
// Sliding-window models (config.slidingWindow) attend to the last W keys only, as llama.cpp's
// standard SWA; after each pass the blocks that fell out of every sequence's window go back to
// the pool (KVCache.releaseOutsideWindow), so a sequence holds about W + one block of keys.
import { asF32, asWeight, MAX_TOP_K, subTensor, type AttentionArgs, type ExpertRouting, type Backend, type KVCacheType, type RopeParams, type Tensor, type WeightTensor } from '../backend/backend.js';
import { GGMLType } from '../tensor/ggml-types.js';
import { KVCacheError } from '../kv/errors.js';
import type { KVCache } from '../kv/kv-cache.js';
import { hadamard, kvRotation } from '../kv/rotation.js';
import type { ArchDef, LayerWeights } from './arch/arch.js';
import type { ActiveAdapter } from './lora.js';
import type { TopLogits } from '../generation/logits-processor.js';

/** The output head's logits buffer holds at most this (Graph.logitsRows). */
const LOGITS_BUFFER_BYTES = 32 * 2 ** 20;

export interface ModelConfig {
  readonly nLayers: number;
  readonly dim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly ffnDim: number;
  readonly vocabSize: number;
  readonly rmsEps: number;
  readonly rope: RopeParams;
  /** Context length the model was trained for. */
  readonly contextLength: number;
  /**
   * Sliding-window attention ({arch}.attention.sliding_window): a token at position p attends to
   * keys k with k <= p and p - k < slidingWindow. Undefined: all earlier keys.
   */
  readonly slidingWindow?: number;
  /** Which layers attend within slidingWindow (gemma 2 alternates); undefined: all of them. */
  readonly windowedLayers?: readonly boolean[];
  /** Token embeddings are multiplied by this (gemma: sqrt(dim)). */
  readonly embeddingScale?: number;
  /** Attention softmax scale; default 1 / sqrt(headDim) (gemma 2: query_pre_attn_scalar^-1/2). */
  readonly attentionScale?: number;
  /** Attention-logit soft-capping: scores s become cap * tanh(s / cap) (gemma 2). */
  readonly attnLogitSoftcap?: number;
  /** Final-logit soft-capping (gemma 2). */
  readonly finalLogitSoftcap?: number;
  /** RoPE of the windowed layers where it differs from `rope` (gemma 3: base 10000, no scaling). */
  readonly ropeWindowed?: RopeParams;
  /** Each branch's output (attention, feed-forward) is multiplied by this before it joins the residual (granite). */
  readonly residualScale?: number;
  /** The logits are multiplied by this (granite: 1 / logit_scale). */
  readonly logitScale?: number;
  /** Whether a token attends to earlier positions only (default true); encoders (BERT) see their whole sequence. */
  readonly causal?: boolean;
  /** How embeddings pool the tokens' final states ({arch}.pooling_type): encoders always, decoders trained as embedders (Qwen3-Embedding). */
  readonly pooling?: 'mean' | 'cls' | 'last';
  /** ALiBi's maxBias: attention scores get per-head position biases instead of RoPE (jina-bert-v2: 8). */
  readonly alibiMaxBias?: number;
  /** BERT's token types (tokenizer.ggml.token_type_count). */
  readonly tokenTypeCount?: number;
  /** Mixture of experts: experts per layer, experts each token uses, and each expert's feed-forward width. */
  readonly experts?: {
    readonly count: number;
    readonly used: number;
    readonly ffnDim: number;
    /** A shared expert every token runs, gated by sigmoid(ffn_gate_inp_shexp . x) (qwen2moe): its width. */
    readonly sharedFfnDim?: number;
  };
}

/** The window every layer attends within (the KV cache may then drop older keys); undefined when some layer sees everything. */
export function everyLayerWindow(c: ModelConfig): number | undefined {
  return c.windowedLayers === undefined || c.windowedLayers.every(Boolean) ? c.slidingWindow : undefined;
}

/** Whether layer l attends within the sliding window. */
export function layerIsWindowed(c: ModelConfig, l: number): boolean {
  return c.slidingWindow !== undefined && (c.windowedLayers?.[l] ?? true);
}

export interface ModelWeights {
  readonly tokenEmbedding: WeightTensor;
  readonly layers: readonly LayerWeights[];
  /** The final norm and output projection (the token embedding itself when tied); absent for encoders. */
  readonly outputNorm?: Tensor; // f32[dim]
  readonly output?: WeightTensor;
  /** Tensors outside the layers an architecture declares (ArchDef.globalTensors), by GGUF name: BERT's position embeddings. */
  readonly globals: ReadonlyMap<string, Tensor>;
  /**
   * RoPE frequency factors (f32[ropeDims / 2]) for every layer: llama 3's rope_freqs, or phi3's
   * LongRoPE factors (long ones when the context runs past the original one, else short).
   */
  readonly ropeFactors?: { readonly fixed?: Tensor; readonly short?: Tensor; readonly long?: Tensor };
}

/**
 * The steps an architecture's buildLayer composes; each reads and updates the residual stream.
 * What the configuration says (this layer's window, the softmax scale, soft-capping, RoPE factors)
 * and what the weights are (fused q/k/v or gate/up, biases) they take care of themselves.
 */
export interface GraphBuilder {
  readonly config: ModelConfig;
  /**
   * Pre-norm self-attention: x += post(Wo · attention(rope(q), rope(k), v)) of norm(x). q/k/v come
   * from attn_q/attn_k/attn_v, or from one fused attn_qkv (rows q, k, v: phi3).
   */
  attention(w: LayerWeights, layer: number, options?: AttentionOptions): void;
  /**
   * Pre-norm gated feed-forward: x += post(Wdown · (act(Wgate · n) * Wup · n)), n = norm(x). The
   * gate is ffn_gate, or the first half of a fused ffn_up of 2 x ffnDim rows (phi3); an ffn_up.bias
   * is added to Wup · n (fused: its first half to the gate's). Without a gate and with ffn_up of
   * ffnDim rows, ungated: x += Wdown · gelu(Wup · n + b) (BERT).
   */
  feedForward(w: LayerWeights, options?: FeedForwardOptions): void;
  /**
   * Pre-norm mixture-of-experts feed-forward (llama.cpp's build_moe_ffn with softmax gating): the
   * router (ffn_gate_inp) picks config.experts.used experts per token; each runs a SwiGLU of
   * ffn_gate_exps / ffn_up_exps / ffn_down_exps, and x += their outputs weighted by the router's
   * probabilities (renormalized over the chosen ones unless `normalize` is false).
   */
  feedForwardExperts(w: LayerWeights, options?: { readonly normalize?: boolean }): void;
  /** x += rows of `table` (f32 or any weight type): each token's position's row, or one row for all tokens (BERT's token type 0). */
  addRows(table: WeightTensor, rows: 'positions' | number): void;
  /** x = LayerNorm(x) with weight and bias (BERT's post-norms). */
  layerNorm(weight: Tensor, bias: Tensor): void;
  /** Keep a copy of x, the layer's input, for addLayerInput. */
  keepLayerInput(): void;
  /** x += the copy keepLayerInput kept (jina-bert-v2's second attention norm re-adds the layer input). */
  addLayerInput(): void;
}

export interface AttentionOptions {
  /**
   * RMSNorm q and k before RoPE: each head (attn_q_norm / attn_k_norm one head wide: qwen3, gemma3),
   * or each projection as a whole (as wide as q and k: olmo2); or 'layer': LayerNorm each
   * projection with weight and bias (attn_q_norm.bias, attn_k_norm.bias: jina-bert-v2).
   */
  readonly qkNorm?: 'head' | 'projection' | 'layer';
  /** RMSNorm the input (attn_norm) first; default true (olmo2 has no pre-norms). */
  readonly preNorm?: boolean;
  /** Rotate q and k; default true (SmolLM3's every fourth layer has no positional encoding: NoPE). */
  readonly rope?: boolean;
  /** RMSNorm the attention output (post_attention_norm) before it joins the residual (gemma 2). */
  readonly postNorm?: boolean;
}

export interface FeedForwardOptions {
  /** RMSNorm the input (ffn_norm) first; default true. */
  readonly preNorm?: boolean;
  /** The gate's activation: SiLU (SwiGLU, default) or GELU (GeGLU: gemma). */
  readonly activation?: 'silu' | 'gelu';
  /** RMSNorm the feed-forward output (post_ffw_norm) before it joins the residual (gemma 2). */
  readonly postNorm?: boolean;
}

export interface BatchToken {
  readonly token: number;
  readonly seqId: number;
  /**
   * What comes back after this token: its next-token logits (true), nothing (false), or what the
   * backend picks from them: their argmax ('argmax': greedy decoding reads back a token id, not a
   * vocabulary row), or their k largest with their ids ({ topK: k }, k <= MAX_TOP_K; top-k sampling).
   */
  readonly logits: LogitsRequest;
}

export type LogitsRequest = boolean | 'argmax' | { readonly topK: number };

/** The least a sampler needs after a position: the argmax, the top k (k up to MAX_TOP_K), else the row. */
export function logitsRequestFor(sampler: { readonly picksArgmax: boolean; readonly candidatesNeeded: number | undefined }): Exclude<LogitsRequest, false> {
  const k = sampler.candidatesNeeded;
  return sampler.picksArgmax ? 'argmax' : k !== undefined && k <= MAX_TOP_K ? { topK: k } : true;
}

/** What forward() gives a position that asked: its logits row, their argmax, or their top k (min(k, vocabulary)). */
export type PositionLogits = Float32Array | number | TopLogits;

/** A batch whose tokens ask for logits rows or nothing (forward then returns only rows). */
export interface LogitsBatchToken extends BatchToken {
  readonly logits: boolean;
}

/** Activation buffers, allocated once for the largest batch (llama2.c's RunState). */
interface Buffers {
  x: Tensor; // residual stream [T][dim]
  xb: Tensor; // normed input / projection output [T][dim]
  q: Tensor; // [T][nHeads * headDim]
  k: Tensor; // [T][kvDim]
  v: Tensor; // [T][kvDim]
  /**
   * A rotated quantized cache (src/kv/rotation.ts): q, k, v of a batch of n tokens packed one
   * after another ([n][qDim], [n][kvDim], [n][kvDim]) so the rotations run as few matmuls, the
   * rotated copies likewise, and the Hadamard matrices as F32 weights.
   */
  rotation: { qkv: Tensor; rotated: Tensor; hk: WeightTensor; hv: WeightTensor } | undefined;
  attnOut: Tensor; // [T][nHeads * headDim]
  gate: Tensor; // [T][ffnDim]
  up: Tensor; // [T][ffnDim]
  logits: Tensor; // [logitsRows][vocab] (a single float for an encoder: it has no output head)
  argmax: Tensor; // i32[logitsRows]: the argmax of each logits row
  topK: Tensor; // the rows' top ids, then their f32 logits: [2][logitsRows][min(MAX_TOP_K, vocab)] at most
  /** Mixture-of-experts buffers: router logits [T][E], the routing, expert gate/up [T][used][ffn] and down [T][used][dim]. */
  moe: {
    routerLogits: Tensor; routing: ExpertRouting; gate: Tensor; up: Tensor; down: Tensor;
    /** The shared expert's gate/up [T][sharedFfn], output [T][dim] and gate value [T] (qwen2moe). */
    shared?: { gate: Tensor; up: Tensor; out: Tensor; weight: Tensor };
  } | undefined;
  ids: Tensor; // i32[T]
  positions: Tensor; // i32[T]
  slots: Tensor; // i32[T]
  tokenInfo: Tensor; // i32[3T]: block table start, first key, end key
  /** tokenInfo for the windowed layers of a model whose other layers see everything (gemma 2). */
  tokenInfoWindowed: Tensor | undefined;
  blockTables: Tensor; // i32: the batch's block tables, one after another
  blockTableCapacity: number; // in entries
}

export class Graph implements GraphBuilder {
  private readonly buf: Buffers;
  /** Most positions one pass of the output head takes (Graph.logitsRows). */
  readonly logitsRows: number;
  /** Tokens in the batch being evaluated (set by forward for the builder steps). */
  private nTokens = 0;
  /** LoRA pairs by the weight they adapt, with their effective scale. */
  private lora = new Map<WeightTensor, { a: WeightTensor; b: WeightTensor; scale: number }[]>();
  /** Scratch for A·x ([tokens][rank]) and B·(A·x) ([tokens][out]), grown (never shrunk) as adapters need. */
  private loraScratch: { t: Tensor; u: Tensor; rank: number; out: number } | undefined;
  /** keepLayerInput's copy of x ([maxBatchTokens][dim]), allocated on first use: only some architectures re-add a layer's input. */
  private layerInput: Tensor | undefined;

  constructor(
    private readonly backend: Backend,
    readonly arch: ArchDef,
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly kv: KVCache,
    readonly maxBatchTokens: number,
  ) {
    if (kv.options.slidingWindow !== everyLayerWindow(config)) {
      throw new RangeError(`the KV cache's sliding window (${kv.options.slidingWindow}) differs from the model's (${everyLayerWindow(config)})`);
    }
    this.logitsRows = Graph.logitsRows(config, maxBatchTokens, backend.capabilities.maxTensorBytes);
    this.buf = Graph.allocateBuffers(backend, config, kv, maxBatchTokens, this.logitsRows, weights.output !== undefined);
  }

  /** Bytes the rotation of a quantized cache adds to the activations (none without one). */
  static rotationBytes(c: ModelConfig, maxBatchTokens: number, kvType: KVCacheType): number {
    const rot = kvRotation(c.headDim, kvType);
    return rot ? 4 * (2 * maxBatchTokens * (c.nHeads + 2 * c.nKvHeads) * c.headDim + rot.k ** 2 + rot.v ** 2) : 0;
  }

  /**
   * The LoRA adapters every later forward pass applies (unmerged, as llama.cpp: y = W·x + s·B·(A·x),
   * s = scale · alpha / rank, or scale when alpha is 0); an empty list switches them off.
   */
  setAdapters(active: readonly ActiveAdapter[]): void {
    const map = new Map<WeightTensor, { a: WeightTensor; b: WeightTensor; scale: number }[]>();
    let rank = 0, out = 0;
    for (const { adapter, scale } of active) {
      if (!Number.isFinite(scale)) throw new RangeError(`an adapter scale must be a finite number, got ${scale}`);
      for (const p of adapter.pairs) {
        const s = adapter.alpha ? (scale * adapter.alpha) / p.rank : scale;
        map.set(p.target, [...(map.get(p.target) ?? []), { a: p.a, b: p.b, scale: s }]);
        rank = Math.max(rank, p.rank);
        out = Math.max(out, p.target.rows);
      }
    }
    const have = this.loraScratch;
    if (map.size > 0 && (!have || have.rank < rank || have.out < out)) {
      const T = this.maxBatchTokens;
      rank = Math.max(rank, have?.rank ?? 0);
      out = Math.max(out, have?.out ?? 0);
      this.loraScratch = { t: this.backend.allocate(GGMLType.F32, [rank * T]), u: this.backend.allocate(GGMLType.F32, [out * T]), rank, out };
    }
    this.lora = map;
  }

  /** out += s·B·(A·x) for each adapter pair on w. */
  private adapt(out: Tensor, w: WeightTensor, x: Tensor, nTokens: number): void {
    const pairs = this.lora.get(w);
    if (!pairs) return;
    const be = this.backend, { t, u } = this.loraScratch!;
    for (const p of pairs) {
      be.matmul(t, p.a, x, nTokens);
      be.matmul(u, p.b, t, nTokens);
      be.scale(u, u, w.rows * nTokens, p.scale);
      be.add(out, out, u, w.rows * nTokens);
    }
  }

  /**
   * Most positions one pass of the output head takes: its logits stay within LOGITS_BUFFER_BYTES
   * and the backend's largest tensor (a 128k vocabulary would otherwise take 250 MiB at 512
   * tokens); a batch asking for more runs the head in passes.
   */
  static logitsRows(c: ModelConfig, maxBatchTokens: number, maxTensorBytes: number): number {
    return Math.max(1, Math.min(maxBatchTokens, Math.floor(Math.min(LOGITS_BUFFER_BYTES, maxTensorBytes) / (4 * c.vocabSize))));
  }

  /** Bytes of activation memory a graph of this shape allocates (for up-front budget checks). */
  static activationBytes(c: ModelConfig, maxBatchTokens: number, blockTableEntries: number, maxTensorBytes: number): number {
    const T = maxBatchTokens, L = Graph.logitsRows(c, T, maxTensorBytes);
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const e = c.experts;
    const moeFloats = e ? T * (e.count + 2 * e.used + e.used * (2 * e.ffnDim + c.dim) + 2 * (e.sharedFfnDim ?? 0) + c.dim + 1) : 0;
    const floats = T * (2 * c.dim + 2 * qDim + 2 * kvDim + 2 * c.ffnDim) + L * (c.vocabSize + 2 * Math.min(MAX_TOP_K, c.vocabSize)) + moeFloats;
    return 4 * (floats + 10 * T + blockTableEntries) + 64 * 18;
  }

  private static blockTableEntries(kv: KVCache, maxBatchTokens: number): number {
    const perSequence = Math.ceil(kv.options.maxSequenceLength / kv.blockSize);
    return Math.min(maxBatchTokens, 256) * perSequence;
  }

  /** hasHead: the model has an output head (encoders have none: one float stands in for the logits). */
  private static allocateBuffers(b: Backend, c: ModelConfig, kv: KVCache, T: number, logitsRows: number, hasHead: boolean): Buffers {
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const f32 = (n: number) => b.allocate(GGMLType.F32, [n, T]);
    const i32 = (n: number) => b.allocate(GGMLType.I32, [n]);
    const blockTableCapacity = Graph.blockTableEntries(kv, T);
    const rot = kvRotation(c.headDim, kv.options.type);
    const matrix = (n: number): WeightTensor => {
      const w = asWeight(b.allocate(GGMLType.F32, [n, n]), n, n);
      b.upload(w, hadamard(n));
      return w;
    };
    let rotation: Buffers['rotation'];
    if (rot) {
      const hk = matrix(rot.k);
      rotation = { qkv: f32(qDim + 2 * kvDim), rotated: f32(qDim + 2 * kvDim), hk, hv: rot.v === rot.k ? hk : matrix(rot.v) };
    }
    // with a rotation, q, k and v live in its packed buffer (attention() takes views for each batch)
    const packed = (at: number, n: number) => subTensor(rotation!.qkv, 4 * T * at, GGMLType.F32, [n, T]);
    return {
      x: f32(c.dim), xb: f32(c.dim),
      q: rotation ? packed(0, qDim) : f32(qDim), k: rotation ? packed(qDim, kvDim) : f32(kvDim), v: rotation ? packed(qDim + kvDim, kvDim) : f32(kvDim), rotation,
      attnOut: f32(qDim), gate: f32(c.ffnDim), up: f32(c.ffnDim), logits: b.allocate(GGMLType.F32, hasHead ? [c.vocabSize, logitsRows] : [1]), argmax: i32(logitsRows),
      topK: i32(hasHead ? 2 * logitsRows * Math.min(MAX_TOP_K, c.vocabSize) : 1),
      ids: i32(T), positions: i32(T), slots: i32(T), tokenInfo: i32(3 * T),
      tokenInfoWindowed: c.slidingWindow !== undefined && everyLayerWindow(c) === undefined ? i32(3 * T) : undefined,
      moe: c.experts && {
        routerLogits: f32(c.experts.count),
        routing: { ids: i32(T * c.experts.used), weights: b.allocate(GGMLType.F32, [T * c.experts.used]), nTokens: T, used: c.experts.used },
        gate: f32(c.experts.used * c.experts.ffnDim), up: f32(c.experts.used * c.experts.ffnDim), down: f32(c.experts.used * c.dim),
        shared: c.experts.sharedFfnDim ? {
          gate: f32(c.experts.sharedFfnDim), up: f32(c.experts.sharedFfnDim), out: f32(c.dim), weight: f32(1),
        } : undefined,
      },
      blockTables: i32(blockTableCapacity), blockTableCapacity,
    };
  }

  /**
   * Evaluate a batch (at most maxBatchTokens). Tokens of one sequence must appear in order; each
   * takes the sequence's next position. Returns, for the tokens that asked, in order, their
   * next-token logits (a row), their argmax (a token id) or their top k (a row holding a NaN comes
   * back whole instead: where the sampler puts a NaN among its candidates depends on its walk over the row).
   * If the KV cache cannot take the batch, throws and leaves every sequence as it was. With a
   * sliding window, the batch's sequences then release the blocks no later token attends to.
   */
  forward(batch: readonly LogitsBatchToken[]): Promise<Float32Array[]>;
  forward(batch: readonly BatchToken[]): Promise<PositionLogits[]>;
  async forward(batch: readonly BatchToken[]): Promise<PositionLogits[]> {
    const T = batch.length;
    if (T === 0) return [];
    if (T > this.maxBatchTokens) throw new RangeError(`batch of ${T} tokens exceeds maxBatchTokens ${this.maxBatchTokens}`);
    for (const { logits: a } of batch) {
      if (typeof a === 'object' && !(Number.isInteger(a.topK) && a.topK >= 1 && a.topK <= MAX_TOP_K)) throw new RangeError(`a top-k logits request takes k in 1..${MAX_TOP_K}, got ${a.topK}`);
    }
    const { backend: be, config: c, weights: w, buf } = this;

    this.placeTokens(batch);

    be.getRows(buf.x, w.tokenEmbedding, buf.ids, T);
    if (c.embeddingScale !== undefined) be.scale(buf.x, buf.x, T * c.dim, c.embeddingScale);
    this.nTokens = T;
    this.arch.buildInput?.(this, w);
    for (let l = 0; l < c.nLayers; l++) this.arch.buildLayer(this, w.layers[l], l);
    this.releaseOutsideWindow(batch);

    // Only the tokens that asked for logits go through the final norm and output projection, at
    // most logitsRows of them a pass.
    const wanted = batch.flatMap((t, i) => (t.logits ? [i] : []));
    if (wanted.length === 0) return [];
    if (!w.outputNorm || !w.output) throw new RangeError(`${this.arch.names[0]} is an encoder: it has no next-token logits`);
    const out: PositionLogits[] = [];
    for (let at = 0; at < wanted.length; at += this.logitsRows) {
      out.push(...await this.outputHead(batch, wanted.slice(at, at + this.logitsRows)));
    }
    return out;
  }

  /** The final norm, output head and what each of `rows` (batch indices, at most logitsRows) asked for. */
  private async outputHead(batch: readonly BatchToken[], rows: readonly number[]): Promise<PositionLogits[]> {
    const { backend: be, config: c, weights: w, buf } = this;
    const rowBytes = 4 * c.dim, n = rows.length;
    rows.forEach((src, dst) => be.copy(buf.xb, dst * rowBytes, buf.x, src * rowBytes, rowBytes));
    be.rmsNorm(buf.xb, buf.xb, w.outputNorm!, c.dim, n, c.rmsEps);
    be.matmul(buf.logits, w.output!, buf.xb, n);
    this.adapt(buf.logits, w.output!, buf.xb, n);
    if (c.logitScale !== undefined) be.scale(buf.logits, buf.logits, n * c.vocabSize, c.logitScale);
    if (c.finalLogitSoftcap !== undefined) be.softcap(buf.logits, buf.logits, n * c.vocabSize, c.finalLogitSoftcap);
    const asked = rows.map((i) => batch[i].logits);
    const out: (PositionLogits | undefined)[] = Array(n).fill(undefined);
    if (asked.includes('argmax')) {
      be.argmax(buf.argmax, buf.logits, c.vocabSize, n);
      const bytes = await be.read(buf.argmax, 0, 4 * n);
      const ids = new Int32Array(bytes.buffer, bytes.byteOffset, n);
      asked.forEach((a, i) => { if (a === 'argmax') out[i] = ids[i]; });
    }
    // Top k: one op for every row at the largest k asked (a smaller k's top is its first entries).
    const kOf = asked.map((a) => (typeof a === 'object' ? Math.min(a.topK, c.vocabSize) : 0));
    const k = Math.max(...kOf);
    if (k > 0) {
      const ids = subTensor(buf.topK, 0, GGMLType.I32, [k, n]), values = subTensor(buf.topK, 4 * k * n, GGMLType.F32, [k, n]);
      be.topK(ids, values, buf.logits, c.vocabSize, n, k);
      const bytes = await be.read(buf.topK, 0, 8 * k * n);
      const topIds = new Int32Array(bytes.buffer, bytes.byteOffset, k * n), topLogits = new Float32Array(bytes.buffer, bytes.byteOffset + 4 * k * n, k * n);
      kOf.forEach((ki, i) => {
        if (ki > 0 && !Number.isNaN(topLogits[i * k])) out[i] = { ids: topIds.subarray(i * k, i * k + ki), logits: topLogits.subarray(i * k, i * k + ki) };
      });
    }
    if (out.every((o) => o !== undefined)) return out as PositionLogits[];
    // read() returns a copy of its own: one row is handed out as it is; several get a buffer each.
    const all = asF32(await be.read(buf.logits, 0, 4 * n * c.vocabSize));
    if (n === 1) return [all];
    return out.map((o, i) => o ?? all.slice(i * c.vocabSize, (i + 1) * c.vocabSize));
  }

  attention(w: LayerWeights, layer: number, options: AttentionOptions = {}): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const input = this.preNorm(w, 'attn_norm', options.preNorm);
    const fused = w.optional('attn_qkv');
    const [wq, wk, wv] = fused ? rowSlices(w.matrix('attn_qkv'), [qDim, kvDim, kvDim]) : [w.matrix('attn_q'), w.matrix('attn_k'), w.matrix('attn_v')];
    const rot = buf.rotation;
    // this batch's q, k, v: packed back to back under a rotation (so it runs as few matmuls)
    const view = (t: Tensor, at: number, n: number) => subTensor(t, 4 * T * at, GGMLType.F32, [n, T]);
    const [q, k, v] = rot ? [view(rot.qkv, 0, qDim), view(rot.qkv, qDim, kvDim), view(rot.qkv, qDim + kvDim, kvDim)] : [buf.q, buf.k, buf.v];
    be.matmulShared([{ out: q, w: wq }, { out: k, w: wk }, { out: v, w: wv }], input, T);
    this.adapt(q, wq, input, T);
    this.adapt(k, wk, input, T);
    this.adapt(v, wv, input, T);
    const bq = w.optional('attn_q.bias'), bk = w.optional('attn_k.bias'), bv = w.optional('attn_v.bias');
    if (bq) be.addBias(q, q, bq, qDim, T);
    if (bk) be.addBias(k, k, bk, kvDim, T);
    if (bv) be.addBias(v, v, bv, kvDim, T);
    if (options.qkNorm === 'layer') {
      be.layerNorm(q, q, w.vector('attn_q_norm'), w.vector('attn_q_norm.bias'), qDim, T, c.rmsEps);
      be.layerNorm(k, k, w.vector('attn_k_norm'), w.vector('attn_k_norm.bias'), kvDim, T, c.rmsEps);
    } else if (options.qkNorm) {
      const perHead = options.qkNorm === 'head';
      be.rmsNorm(q, q, w.vector('attn_q_norm'), perHead ? c.headDim : qDim, perHead ? T * c.nHeads : T, c.rmsEps);
      be.rmsNorm(k, k, w.vector('attn_k_norm'), perHead ? c.headDim : kvDim, perHead ? T * c.nKvHeads : T, c.rmsEps);
    }
    if (options.rope ?? true) {
      const rope = layerIsWindowed(c, layer) ? c.ropeWindowed ?? c.rope : c.rope;
      be.rope(q, T, c.nHeads, c.headDim, buf.positions, rope, this.ropeFactors);
      be.rope(k, T, c.nKvHeads, c.headDim, buf.positions, rope, this.ropeFactors);
    }
    if (rot) {
      // llama.cpp's rotation of a quantized cache (src/kv/rotation.ts): q and k by Hk, v by Hv
      // (one matmul over q, k and v when Hk is Hv), then attention into q's place, rotated back by Hv
      const nk = rot.hk.cols, nv = rot.hv.cols, all = qDim + 2 * kvDim;
      const [rq, rk, rv] = [view(rot.rotated, 0, qDim), view(rot.rotated, qDim, kvDim), view(rot.rotated, qDim + kvDim, kvDim)];
      if (nk === nv) be.matmul(view(rot.rotated, 0, all), rot.hk, view(rot.qkv, 0, all), (T * all) / nk);
      else {
        be.matmul(view(rot.rotated, 0, qDim + kvDim), rot.hk, view(rot.qkv, 0, qDim + kvDim), (T * (qDim + kvDim)) / nk);
        be.matmul(rv, rot.hv, v, (T * kvDim) / nv);
      }
      be.storeKV(this.kv.layers[layer], rk, rv, buf.slots, T);
      be.attention({ ...this.attentionArgs(layer, T), q: rq, out: q });
      be.matmul(buf.attnOut, rot.hv, q, (T * qDim) / nv);
    } else {
      be.storeKV(this.kv.layers[layer], k, v, buf.slots, T);
      be.attention(this.attentionArgs(layer, T));
    }
    be.matmul(buf.xb, w.matrix('attn_output'), buf.attnOut, T);
    this.adapt(buf.xb, w.matrix('attn_output'), buf.attnOut, T);
    const bo = w.optional('attn_output.bias');
    if (bo) be.addBias(buf.xb, buf.xb, bo, c.dim, T);
    this.joinResidual(w, options.postNorm ? 'post_attention_norm' : undefined);
  }

  feedForward(w: LayerWeights, options: FeedForwardOptions = {}): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    const input = this.preNorm(w, 'ffn_norm', options.preNorm);
    const up = w.matrix('ffn_up');
    if (!w.optional('ffn_gate') && up.rows === c.ffnDim) {
      // ungated (BERT): down(act(up(x) + b) ) + b
      be.matmul(buf.gate, up, input, T);
      this.adapt(buf.gate, up, input, T);
      const bu = w.optional('ffn_up.bias');
      if (bu) be.addBias(buf.gate, buf.gate, bu, c.ffnDim, T);
      if (options.activation !== 'gelu') throw new RangeError('an ungated feed-forward runs GELU only');
      be.gelu(buf.gate, buf.gate, T * c.ffnDim);
    } else {
      const fused = !w.optional('ffn_gate');
      const [wGate, wUp] = fused ? rowSlices(up, [c.ffnDim, c.ffnDim]) : [w.matrix('ffn_gate'), up];
      be.matmulShared([{ out: buf.gate, w: wGate }, { out: buf.up, w: wUp }], input, T);
      this.adapt(buf.gate, wGate, input, T);
      this.adapt(buf.up, wUp, input, T);
      // ffn_up's bias (jina-bert-v2): for a fused ffn_up, its first half is the gate's
      const bu = w.optional('ffn_up.bias');
      if (bu && fused) {
        be.addBias(buf.gate, buf.gate, subTensor(bu, 0, GGMLType.F32, [c.ffnDim]), c.ffnDim, T);
        be.addBias(buf.up, buf.up, subTensor(bu, 4 * c.ffnDim, GGMLType.F32, [c.ffnDim]), c.ffnDim, T);
      } else if (bu) be.addBias(buf.up, buf.up, bu, c.ffnDim, T);
      if (options.activation === 'gelu') be.geglu(buf.gate, buf.gate, buf.up, T * c.ffnDim);
      else be.swiglu(buf.gate, buf.gate, buf.up, T * c.ffnDim);
    }
    be.matmul(buf.xb, w.matrix('ffn_down'), buf.gate, T);
    this.adapt(buf.xb, w.matrix('ffn_down'), buf.gate, T);
    const bd = w.optional('ffn_down.bias');
    if (bd) be.addBias(buf.xb, buf.xb, bd, c.dim, T);
    this.joinResidual(w, options.postNorm ? 'post_ffw_norm' : undefined);
  }

  addRows(table: WeightTensor, rows: 'positions' | number): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    if (rows === 'positions') be.getRows(buf.xb, table, buf.positions, T);
    else {
      be.upload(buf.ids, new Int32Array(T).fill(rows)); // the token ids were consumed by the embedding lookup
      be.getRows(buf.xb, table, buf.ids, T);
    }
    be.add(buf.x, buf.x, buf.xb, T * c.dim);
  }

  layerNorm(weight: Tensor, bias: Tensor): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    be.layerNorm(buf.x, buf.x, weight, bias, c.dim, T, c.rmsEps);
  }

  keepLayerInput(): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    this.layerInput ??= be.allocate(GGMLType.F32, [c.dim, this.maxBatchTokens]);
    be.copy(this.layerInput, 0, buf.x, 0, 4 * T * c.dim);
  }

  addLayerInput(): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    if (!this.layerInput) throw new RangeError('addLayerInput without keepLayerInput');
    be.add(buf.x, buf.x, this.layerInput, T * c.dim);
  }

  /**
   * An encoder's pass over one whole sequence (every token sees every other): the final state of
   * each token ([T][dim]). Uses, and gives back, KV sequence `seqId`.
   */
  /** The final states of every token of one whole sequence (a new KV sequence, removed after): what embeddings pool. */
  async encode(tokens: readonly number[], seqId: number): Promise<Float32Array[]> {
    const T = tokens.length, dim = this.config.dim;
    this.kv.createSequence(seqId);
    try {
      await this.forward(tokens.map((token) => ({ token, seqId, logits: false })));
      // A decoder's embedding is its final norm's output (llama.cpp's result_norm); an encoder's the last layer's.
      const norm = this.weights.outputNorm;
      if (norm) this.backend.rmsNorm(this.buf.xb, this.buf.x, norm, dim, T, this.config.rmsEps);
      const all = asF32(await this.backend.read(norm ? this.buf.xb : this.buf.x, 0, 4 * T * dim));
      return Array.from({ length: T }, (_, t) => all.slice(t * dim, (t + 1) * dim));
    } finally {
      this.kv.removeSequence(seqId);
    }
  }

  /** The branch input: norm(x) in xb, or x itself for a layer without pre-norms. */
  private preNorm(w: LayerWeights, role: string, apply = true): Tensor {
    const { backend: be, config: c, buf, nTokens: T } = this;
    if (!apply) return buf.x;
    be.rmsNorm(buf.xb, buf.x, w.vector(role), c.dim, T, c.rmsEps);
    return buf.xb;
  }

  /** x += the branch output in xb, after its post-norm (gemma2, olmo2) and residual scale (granite). */
  private joinResidual(w: LayerWeights, postNorm: string | undefined): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    if (postNorm) be.rmsNorm(buf.xb, buf.xb, w.vector(postNorm), c.dim, T, c.rmsEps);
    if (c.residualScale !== undefined) be.scale(buf.xb, buf.xb, T * c.dim, c.residualScale);
    be.add(buf.x, buf.x, buf.xb, T * c.dim);
  }

  feedForwardExperts(w: LayerWeights, options: { readonly normalize?: boolean } = {}): void {
    const { backend: be, config: c, buf, nTokens: T } = this;
    const e = c.experts, moe = buf.moe;
    if (!e || !moe) throw new RangeError('feedForwardExperts: the model has no experts');
    const routing = { ...moe.routing, nTokens: T };
    be.rmsNorm(buf.xb, buf.x, w.vector('ffn_norm'), c.dim, T, c.rmsEps);
    be.matmul(moe.routerLogits, w.matrix('ffn_gate_inp'), buf.xb, T);
    be.routeExperts(routing, moe.routerLogits, e.count, options.normalize ?? true);
    be.matmulRouted(moe.gate, w.matrix('ffn_gate_exps'), e.count, buf.xb, routing, false);
    be.matmulRouted(moe.up, w.matrix('ffn_up_exps'), e.count, buf.xb, routing, false);
    be.swiglu(moe.gate, moe.gate, moe.up, T * e.used * e.ffnDim);
    be.matmulRouted(moe.down, w.matrix('ffn_down_exps'), e.count, moe.gate, routing, true);
    const shared = moe.shared;
    if (shared) {
      // qwen2moe: a dense SwiGLU expert for every token, scaled by sigmoid(w . x), added to the routed ones
      const f = e.sharedFfnDim!;
      be.matmulShared([{ out: shared.gate, w: w.matrix('ffn_gate_shexp') }, { out: shared.up, w: w.matrix('ffn_up_shexp') }], buf.xb, T);
      be.swiglu(shared.gate, shared.gate, shared.up, T * f);
      be.matmul(shared.out, w.matrix('ffn_down_shexp'), shared.gate, T);
      be.matmul(shared.weight, asWeight(w.vector('ffn_gate_inp_shexp'), c.dim, 1), buf.xb, T);
      be.sigmoid(shared.weight, shared.weight, T);
      be.combineExperts(shared.out, shared.out, { ids: routing.ids, weights: shared.weight, nTokens: T, used: 1 }, c.dim);
    }
    be.combineExperts(buf.xb, moe.down, routing, c.dim);
    if (shared) be.add(buf.xb, buf.xb, shared.out, T * c.dim);
    this.joinResidual(w, undefined);
  }

  /** The RoPE frequency factors of this graph's context: phi3's long ones only past the original context. */
  private get ropeFactors(): Tensor | undefined {
    const f = this.weights.ropeFactors;
    if (!f) return undefined;
    return f.fixed ?? (this.kv.options.maxSequenceLength > this.config.rope.nCtxOrig ? f.long : f.short);
  }

  /** Reserve KV positions for the batch (all or nothing) and write ids, positions, slots and block tables. */
  private placeTokens(batch: readonly BatchToken[]): void {
    const { buf, kv } = this;
    const countPerSeq = new Map<number, number>();
    for (const t of batch) {
      if (!Number.isInteger(t.token) || t.token < 0 || t.token >= this.config.vocabSize) {
        throw new RangeError(`token id ${t.token} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
      }
      countPerSeq.set(t.seqId, (countPerSeq.get(t.seqId) ?? 0) + 1);
    }
    const reserved: { seqId: number; start: number; positions: number[]; slots: number[] }[] = [];
    try {
      for (const [seqId, n] of countPerSeq) {
        const start = kv.sequenceLength(seqId);
        // The kernel reads block tables from each token's first key on; earlier entries may be
        // released (-1), later ones must not be (KVCache keeps this; checked as it is cheap).
        if (kv.releasedBlocks(seqId) * kv.blockSize > kv.firstKey(start)) {
          throw new KVCacheError('OUTSIDE_WINDOW', `sequence ${seqId}: position ${start} attends to keys whose blocks were released`);
        }
        reserved.push({ seqId, start, ...kv.reserve(seqId, n) });
      }
    } catch (err) {
      for (const r of reserved) kv.truncate(r.seqId, r.start);
      throw err;
    }

    // Block tables after the reservation, one per sequence, packed one after another.
    const tableStart = new Map<number, number>();
    const tables: number[] = [];
    for (const { seqId } of reserved) {
      const table = kv.blockTable(seqId);
      if (tables.length + table.length > buf.blockTableCapacity) throw new RangeError('too many sequences in one batch');
      tableStart.set(seqId, tables.length);
      tables.push(...table);
    }

    const T = batch.length;
    const ids = new Int32Array(T), positions = new Int32Array(T), slots = new Int32Array(T), info = new Int32Array(3 * T);
    const window = this.config.slidingWindow!;
    const windowed = buf.tokenInfoWindowed ? new Int32Array(3 * T) : undefined;
    const next = new Map(reserved.map((r) => [r.seqId, { ...r, i: 0 }]));
    const causal = this.config.causal ?? true;
    batch.forEach((t, i) => {
      const r = next.get(t.seqId)!;
      const p = r.positions[r.i];
      ids[i] = t.token;
      positions[i] = p;
      slots[i] = r.slots[r.i];
      info[3 * i] = tableStart.get(t.seqId)!;
      info[3 * i + 1] = kv.firstKey(p); // keys firstKey..p: causal, within the window
      info[3 * i + 2] = causal ? p + 1 : r.start + r.positions.length; // an encoder sees its whole sequence
      if (windowed) windowed.set([info[3 * i], Math.max(0, p + 1 - window), p + 1], 3 * i);
      r.i++;
    });
    const be = this.backend;
    be.upload(buf.blockTables, Int32Array.from(tables));
    be.upload(buf.ids, ids);
    be.upload(buf.positions, positions);
    be.upload(buf.slots, slots);
    be.upload(buf.tokenInfo, info);
    if (windowed) be.upload(buf.tokenInfoWindowed!, windowed);
  }

  /** The batch's sequences give back the blocks that fell out of their windows (sliding-window models). */
  private releaseOutsideWindow(batch: readonly BatchToken[]): void {
    if (everyLayerWindow(this.config) === undefined) return;
    for (const seqId of new Set(batch.map((t) => t.seqId))) this.kv.releaseOutsideWindow(seqId);
  }

  private attentionArgs(layer: number, nTokens: number): AttentionArgs {
    const c = this.config, buf = this.buf;
    return {
      q: buf.q, out: buf.attnOut, nTokens, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim,
      scale: c.attentionScale ?? 1 / Math.sqrt(c.headDim), softcap: c.attnLogitSoftcap,
      alibi: c.alibiMaxBias === undefined ? undefined : { maxBias: c.alibiMaxBias, positions: buf.positions },
      layer: this.kv.layers[layer], blockTables: buf.blockTables,
      tokenInfo: buf.tokenInfoWindowed && layerIsWindowed(c, layer) ? buf.tokenInfoWindowed : buf.tokenInfo,
    };
  }
}

/** Consecutive row ranges of a weight matrix as weights of their own (the parts of a fused tensor). */
function rowSlices(w: WeightTensor, rows: readonly number[]): WeightTensor[] {
  const total = rows.reduce((a, b) => a + b, 0);
  if (total !== w.rows) throw new RangeError(`a fused weight of ${w.rows} rows cannot split into ${rows.join(' + ')}`);
  let start = 0;
  return rows.map((n) => {
    const part = asWeight(subTensor(w, start * w.rowBytes, w.type, [w.cols, n]), w.cols, n);
    start += n;
    return part;
  });
}
