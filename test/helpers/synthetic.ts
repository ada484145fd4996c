// Random-weight llama-family models of real shapes, for speed and memory work and for checking
// that every tensor type we write loads and computes correctly in llama.cpp. Weights are
// N(0, std²) from a seeded PRNG (xoshiro128** + polar Box-Muller), norms are 1, biases small random; the
// tokenizer is copied from a real GGUF (or a plain byte-fallback SentencePiece vocab is made up).
//
// Each tensor's values depend only on (seed, tensor name, element index), never on its type or on
// the other tensors, so the F32 and the Q4_0 model of one seed hold the same underlying weights.
// Tensors are produced on demand in row chunks: nothing but the encoded tensor being written (and
// one chunk of f32 values) is held, so a 1.1B-parameter model streams to disk in bounded memory.
import { WasmforgeError } from '../../src/errors.js';
import { GGUFValueType } from '../../src/gguf/constants.js';
import { writeLazyGGUFFile } from '../../src/runtime/file-sink.js';
import type { GGUFEntry, GGUFFile } from '../../src/gguf/reader.js';
import type { GGUFWriteOptions } from '../../src/gguf/writer.js';
import { GGMLType, typeName, typeTraits } from '../../src/tensor/ggml-types.js';
import { canQuantize, quantizeRow } from '../../src/tensor/quantize.js';
import { GGML_QNT_VERSION, llamaFileType, tensorTypeFor, type LazyTensor } from '../../src/model/quantize-model.js';

export type SyntheticModelErrorCode = 'BAD_SHAPE' | 'BAD_TYPE' | 'BAD_VOCAB' | 'VOCAB_NOT_FOUND';

export class SyntheticModelError extends WasmforgeError<SyntheticModelErrorCode> {
  override readonly name = 'SyntheticModelError';
}

export type SyntheticVocab =
  /** Llama 2's 32000-token SentencePiece vocab, read from ../shared's llama-2-tiny-random.gguf. */
  | 'llama2'
  /** Every tokenizer.* key of this file. */
  | { metadataFrom: GGUFFile }
  /** A made-up SentencePiece vocab of this many tokens (>= 260): specials, 256 bytes, then pieces. */
  | number;

export interface SyntheticLlamaOptions {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffnDim: number;
  vocab: SyntheticVocab;
  /**
   * Append unused tokens (`<unused_N>`, type UNUSED) up to this many: a real model's vocabulary size (Llama 3's
   * 128256) with the tokenization of a smaller one, for speed work where the embedding and head size matter.
   */
  padVocabTo?: number;
  /** Type of the 2-D weight matrices (rows that do not fit its blocks fall back as in quantize). */
  type: GGMLType;
  /** Type of output.weight (default: `type`). */
  outputType?: GGMLType;
  /** No output.weight: the logits use token_embd.weight. */
  tiedEmbeddings?: boolean;
  /**
   * output.weight holds the same values as token_embd.weight (stored on its own, in outputType).
   * With embeddingStd well above std the model then predicts its input token by a wide margin, so
   * its top-1 choice is robust to small numeric differences (a plain random model's top logits
   * are near-ties, and any two implementations disagree on some of them).
   */
  outputFromEmbedding?: boolean;
  /** Standard deviation of token_embd.weight (default: std). */
  embeddingStd?: number;
  /** q/k/v biases (default: true for qwen2, false for llama). */
  qkvBias?: boolean;
  /**
   * qwen3 adds per-head q/k norms (random around 1) and no biases; phi3 fuses q/k/v into attn_qkv
   * and gate/up into one ffn_up; gemma has no output.weight of its own unless asked (GeGLU is in
   * the graph, not the file); gemma2 adds post-attention and post-feed-forward norms (around 1).
   */
  arch?: 'llama' | 'qwen2' | 'qwen2moe' | 'qwen3' | 'qwen3moe' | 'phi3' | 'gemma' | 'gemma2' | 'gemma3' | 'olmo2' | 'olmoe' | 'granite' | 'smollm3' | 'bert' | 'nomic-bert' | 'jina-bert-v2';
  /**
   * jina-bert-v2's layout: its feed-forward (default 'fused': GEGLU with the gate in ffn_up's first
   * half, as jina-embeddings-v2 files; 'split': ffn_gate and ffn_up; 'ungated': GELU of ffn_up), and
   * `code`: the code model's LayerNorms on q and k, second attention norm and ffn_up bias.
   */
  jina?: { ffn?: 'fused' | 'split' | 'ungated'; code?: boolean };
  /** {arch}.pooling_type: 1 mean, 2 CLS, 3 last (default 1 for encoders; decoders get the key only when it is given). */
  pooling?: number;
  /** granite's multipliers (default: embedding 12, residual 0.22, attention 1 / headDim, logits / 8, as Granite 3 files). */
  graniteScales?: { embedding: number; residual: number; attention: number; logit: number };
  /**
   * A mixture of experts instead of the dense feed-forward (llama: mixtral; qwen3moe needs it): an
   * F32 router ffn_gate_inp and stacked ffn_{gate,up,down}_exps of `ffnDim` rows per expert.
   */
  experts?: { count: number; used: number; ffnDim: number; /** qwen2moe's shared expert width */ sharedFfnDim?: number };
  /** rope_freqs.weight: llama 3's RoPE frequency factors (random, around 2). */
  ropeFreqs?: boolean;
  /**
   * phi3's LongRoPE: rope_factors_short / rope_factors_long (random, around 2, different), the
   * original context (long factors apply to contexts past it) and rope.scaling.attn_factor.
   */
  longRope?: { originalContext: number; attnFactor: number };
  /** gemma2's {arch}.attn_logit_softcapping and final_logit_softcapping (default: absent, llama.cpp's 50 and 30). */
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** Per-head dimension (default dim / nHeads). */
  headDim?: number;
  contextLength?: number;
  /** {arch}.attention.sliding_window: each token attends to at most this many keys (default: none). */
  slidingWindow?: number;
  /** {arch}.attention.sliding_window_pattern as a period (default: absent, the architecture's own). */
  slidingWindowPattern?: number;
  ropeFreqBase?: number;
  /** Standard deviation of the weights (default 0.02). */
  std?: number;
  /**
   * Build the block-quantized matrices from this many distinct random blocks per type (quantized
   * once per model), each block of a tensor a seeded random pick among them, instead of
   * quantizing every value: the K-quant reference quantizers manage about 1M values/s, too slow
   * for billion-parameter shapes. Values keep their distribution and the bytes are real blocks,
   * which is all speed work needs; tests that compare numbers should leave it unset.
   */
  distinctBlocks?: number;
  seed: number;
}

export interface SyntheticModel {
  readonly metadata: [string, GGUFEntry][];
  readonly tensors: LazyTensor[];
  readonly nParams: number;
  /** Bytes of tensor data (without header and padding). */
  readonly nBytes: number;
}

// ---------------------------------------------------------------- seeded normal generator

/** FNV-1a over the UTF-16 code units of s, mixed with the seed. */
function hashName(seed: number, s: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** xoshiro128** seeded through splitmix32, with Box-Muller normals (both of each pair are used). */
export class NormalRng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    // result = rotl(b * 5, 7) * 9
    const b5 = Math.imul(this.b, 5);
    const result = Math.imul((b5 << 7) | (b5 >>> 25), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return result;
  }

  /**
   * Fill out[from, to) with N(0, std²) values: Box-Muller in Marsaglia's polar form (one log and
   * one sqrt per pair, no trigonometry; about a fifth of the candidate points are rejected).
   */
  fillNormal(out: Float32Array, std: number, from = 0, to = out.length): void {
    let i = from;
    if (i < to && this.hasSpare) {
      out[i++] = this.spare * std;
      this.hasSpare = false;
    }
    // nextU32 inlined on local copies of the state: this loop is the generator's hot spot.
    let { a, b, c, d } = this;
    const SCALE = 2 / 4294967296;
    while (i < to) {
      let b5 = Math.imul(b, 5);
      const r1 = Math.imul((b5 << 7) | (b5 >>> 25), 9) >>> 0;
      let t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      b5 = Math.imul(b, 5);
      const r2 = Math.imul((b5 << 7) | (b5 >>> 25), 9) >>> 0;
      t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      const u = r1 * SCALE - 1;
      const v = r2 * SCALE - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = Math.sqrt((-2 * Math.log(s)) / s);
      out[i++] = u * f * std;
      if (i < to) out[i++] = v * f * std;
      else {
        this.spare = v * f;
        this.hasSpare = true;
      }
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }
}

// ---------------------------------------------------------------- tensors

/** Elements generated and encoded per step: bounds the f32 scratch independently of tensor size. */
const CHUNK_ELEMENTS = 1 << 16;

/** Quantized random blocks shared by all tensors of one type (see distinctBlocks). */
type BlockPool = (type: GGMLType) => { blocks: Uint8Array; count: number };

type Fill = { kind: 'normal'; std: number; seed: number; pool?: BlockPool; mean?: number } | { kind: 'ones' };


function lazyTensor(name: string, dims: number[], type: GGMLType, fill: Fill): LazyTensor {
  const { blockSize, blockBytes } = typeTraits(type)!;
  const rowLength = dims[0];
  const nElements = dims.reduce((a, b) => a * b, 1);
  const nBlocks = nElements / blockSize;
  return {
    name,
    dims,
    type,
    data(): Uint8Array {
      const out = new Uint8Array(nBlocks * blockBytes);
      if (fill.kind === 'normal' && fill.pool && blockSize > 1) {
        const { blocks, count } = fill.pool(type);
        // Each block a seeded pick from the pool: fast, and still N(0, std²) values in real blocks.
        const rng = new NormalRng(fill.seed);
        for (let o = 0; o < out.length; o += blockBytes) {
          const from = (rng.nextU32() % count) * blockBytes;
          out.set(blocks.subarray(from, from + blockBytes), o);
        }
        return out;
      }
      const rng = fill.kind === 'normal' ? new NormalRng(fill.seed) : undefined;
      if (type === GGMLType.F32) {
        // Generate straight into the output: no scratch, no per-element encoding.
        const view = new Float32Array(out.buffer);
        if (rng) {
          rng.fillNormal(view, (fill as { std: number }).std);
          const mean = (fill as { mean?: number }).mean ?? 0;
          if (mean !== 0) for (let i = 0; i < view.length; i++) view[i] += mean;
        } else view.fill(1);
        return out;
      }
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / rowLength));
      const chunk = new Float32Array(Math.min(nElements, rowsPerChunk * rowLength));
      if (!rng) chunk.fill(1);
      for (let start = 0; start < nElements; start += chunk.length) {
        const n = Math.min(chunk.length, nElements - start);
        rng?.fillNormal(chunk, (fill as { std: number }).std, 0, n);
        quantizeRow(type, chunk, 0, n, out, (start / blockSize) * blockBytes);
      }
      return out;
    },
  };
}

function makeBlockPool(seed: number, std: number, count: number): BlockPool {
  const pools = new Map<GGMLType, Uint8Array>();
  return (type) => {
    let blocks = pools.get(type);
    if (!blocks) {
      const { blockSize, blockBytes } = typeTraits(type)!;
      const values = new Float32Array(count * blockSize);
      new NormalRng(hashName(seed, `block pool ${typeName(type)}`)).fillNormal(values, std);
      blocks = new Uint8Array(count * blockBytes);
      quantizeRow(type, values, 0, values.length, blocks, 0);
      pools.set(type, blocks);
    }
    return { blocks, count };
  };
}

// ---------------------------------------------------------------- vocabularies

/** A SentencePiece-style vocab: <unk>, <s>, </s>, the 256 byte tokens, then distinct pieces. */
function madeUpVocab(n: number): [string, GGUFEntry][] {
  if (!Number.isInteger(n) || n < 260) throw new SyntheticModelError('BAD_VOCAB', `a made-up vocab needs at least 260 tokens, got ${n}`);
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // BYTE
  }
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  for (let i = 0; tokens.length < n; i++) {
    let s = '';
    for (let k = i; ; k = Math.floor(k / 26) - 1) {
      s = letters[k % 26] + s;
      if (k < 26) break;
    }
    tokens.push(i % 2 === 0 ? `\u2581${s}` : s);
    types.push(1); // NORMAL
  }
  const scores = new Float32Array(n);
  for (let i = 259; i < n; i++) scores[i] = -(i - 259);
  return [
    ['tokenizer.ggml.model', { type: GGUFValueType.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: GGUFValueType.ARRAY, value: { elementType: GGUFValueType.STRING, values: tokens } }],
    ['tokenizer.ggml.scores', { type: GGUFValueType.ARRAY, value: { elementType: GGUFValueType.FLOAT32, values: scores } }],
    ['tokenizer.ggml.token_type', { type: GGUFValueType.ARRAY, value: { elementType: GGUFValueType.INT32, values: Int32Array.from(types) } }],
    ['tokenizer.ggml.unknown_token_id', { type: GGUFValueType.UINT32, value: 0 }],
    ['tokenizer.ggml.bos_token_id', { type: GGUFValueType.UINT32, value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: GGUFValueType.UINT32, value: 2 }],
  ];
}

async function vocabMetadata(vocab: SyntheticVocab): Promise<[string, GGUFEntry][]> {
  if (typeof vocab === 'number') return madeUpVocab(vocab);
  let gguf: GGUFFile;
  if (vocab === 'llama2') {
    const [{ fileSource }, { readGGUF }] = await Promise.all([import('../../src/runtime/file-source.js'), import('../../src/gguf/reader.js')]);
    const source = await fileSource(await (await import('./shared-files.js')).llama2VocabPath());
    try {
      gguf = await readGGUF(source);
    } finally {
      await source.close();
    }
  } else {
    gguf = vocab.metadataFrom;
  }
  const entries = [...gguf.metadata].filter(([k]) => k.startsWith('tokenizer.'));
  const tokens = gguf.metadata.get('tokenizer.ggml.tokens')?.value;
  if (!tokens || typeof tokens !== 'object' || !('values' in tokens) || tokens.values.length === 0) {
    throw new SyntheticModelError('BAD_VOCAB', 'the vocab source has no tokenizer.ggml.tokens');
  }
  return entries;
}

function padVocab(meta: [string, GGUFEntry][], n: number | undefined): [string, GGUFEntry][] {
  if (n === undefined) return meta;
  const have = vocabSize(meta);
  if (!Number.isSafeInteger(n) || n < have) throw new SyntheticModelError('BAD_VOCAB', `padVocabTo must be an integer of at least the vocab's ${have} tokens, got ${n}`);
  const padded = (key: string, extra: (i: number) => unknown): void => {
    const at = meta.findIndex(([k]) => k === key);
    if (at < 0) return;
    const { elementType, values } = meta[at]![1].value as { elementType: GGUFValueType; values: ArrayLike<unknown> };
    const all = [...Array.from(values), ...Array.from({ length: n - have }, (_, i) => extra(have + i))];
    const typed = values instanceof Float32Array ? Float32Array.from(all as number[]) : values instanceof Int32Array ? Int32Array.from(all as number[]) : all;
    meta[at] = [key, { type: GGUFValueType.ARRAY, value: { elementType, values: typed } } as GGUFEntry];
  };
  meta = [...meta];
  padded('tokenizer.ggml.tokens', (i) => `<unused_${i}>`);
  padded('tokenizer.ggml.scores', () => 0);
  padded('tokenizer.ggml.token_type', () => 5); // UNUSED
  return meta;
}

function vocabSize(meta: [string, GGUFEntry][]): number {
  const e = meta.find(([k]) => k === 'tokenizer.ggml.tokens')![1];
  return (e.value as { values: unknown[] }).values.length;
}

// ---------------------------------------------------------------- the model

function checkShape(o: SyntheticLlamaOptions): void {
  const positive = { dim: o.dim, nLayers: o.nLayers, nHeads: o.nHeads, nKvHeads: o.nKvHeads, ffnDim: o.ffnDim };
  for (const [k, v] of Object.entries(positive)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new SyntheticModelError('BAD_SHAPE', `${k} must be a positive integer, got ${v}`);
  }
  if (o.nHeads % o.nKvHeads !== 0) throw new SyntheticModelError('BAD_SHAPE', `nHeads ${o.nHeads} is not a multiple of nKvHeads ${o.nKvHeads}`);
  const headDim = o.headDim ?? o.dim / o.nHeads;
  if (!Number.isSafeInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new SyntheticModelError('BAD_SHAPE', `head dimension ${headDim} must be an even integer (dim ${o.dim} / nHeads ${o.nHeads}, or headDim)`);
  }
  if (o.experts && o.arch !== 'qwen3moe' && o.arch !== 'qwen2moe' && o.experts.ffnDim !== o.ffnDim) {
    throw new SyntheticModelError('BAD_SHAPE', `a ${o.arch ?? 'llama'} model's experts are feed_forward_length (${o.ffnDim}) wide, not ${o.experts.ffnDim}`);
  }
  if (o.tiedEmbeddings && o.outputFromEmbedding) throw new SyntheticModelError('BAD_SHAPE', 'outputFromEmbedding needs an output.weight: not with tiedEmbeddings');
  for (const [k, v] of [['std', o.std], ['embeddingStd', o.embeddingStd]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new SyntheticModelError('BAD_SHAPE', `${k} must be a finite non-negative number, got ${v}`);
  }
  if (o.slidingWindow !== undefined && (!Number.isSafeInteger(o.slidingWindow) || o.slidingWindow < 1)) {
    throw new SyntheticModelError('BAD_SHAPE', `slidingWindow must be a positive integer, got ${o.slidingWindow}`);
  }
  if (o.distinctBlocks !== undefined && (!Number.isSafeInteger(o.distinctBlocks) || o.distinctBlocks < 1)) {
    throw new SyntheticModelError('BAD_SHAPE', `distinctBlocks must be a positive integer, got ${o.distinctBlocks}`);
  }
  for (const [k, t] of [['type', o.type], ['outputType', o.outputType ?? o.type]] as const) {
    if (!canQuantize(t) || t === GGMLType.Q8_K) throw new SyntheticModelError('BAD_TYPE', `${k} ${typeName(t)} cannot be written`);
  }
}

/**
 * A random-weight llama (or qwen2) model: its metadata and lazily generated tensors, ready for
 * writeLazyGGUFFile / streamGGUF. Async only because vocab 'llama2' is read from a file.
 */
export async function synthesizeLlama(opts: SyntheticLlamaOptions): Promise<SyntheticModel> {
  checkShape(opts);
  const arch = opts.arch ?? 'llama';
  const { dim, nLayers, nHeads, nKvHeads, ffnDim, type } = opts;
  const headDim = opts.headDim ?? dim / nHeads;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const std = opts.std ?? 0.02;
  const qkvBias = opts.qkvBias ?? (arch === 'qwen2' || arch === 'qwen2moe');
  const vocabMeta = padVocab(await vocabMetadata(opts.vocab), opts.padVocabTo);
  const nVocab = vocabSize(vocabMeta);

  const pool = opts.distinctBlocks !== undefined ? makeBlockPool(opts.seed, std, opts.distinctBlocks) : undefined;
  const tensors: LazyTensor[] = [];
  const matrix = (name: string, cols: number, rows: number, want = type, values = { std, seedName: name }): void => {
    const fill: Fill = { kind: 'normal', std: values.std, seed: hashName(opts.seed, values.seedName), pool };
    tensors.push(lazyTensor(name, [cols, rows], tensorTypeFor(want, cols, GGMLType.F32).type, fill));
  };
  /** Experts' matrices stacked: [cols, rows, count], rows quantized like any matrix's. */
  const experts = (name: string, cols: number, rows: number, count: number): void => {
    const fill: Fill = { kind: 'normal', std, seed: hashName(opts.seed, name), pool };
    tensors.push(lazyTensor(name, [cols, rows, count], tensorTypeFor(type, cols, GGMLType.F32).type, fill));
  };
  const embedding = { std: opts.embeddingStd ?? std, seedName: 'token_embd.weight' };
  const vector = (name: string, n: number, fill: 'ones' | 'random' | 'around one' | 'around two'): void => {
    const spread = fill === 'random' ? std : fill === 'around two' ? 0.4 : 0.1;
    const mean = fill === 'around one' ? 1 : fill === 'around two' ? 2 : 0;
    const f: Fill = fill === 'ones' ? { kind: 'ones' } : { kind: 'normal', std: spread, seed: hashName(opts.seed, name), mean };
    tensors.push(lazyTensor(name, [n], GGMLType.F32, f));
  };

  matrix('token_embd.weight', dim, nVocab, type, embedding);
  const encoder = arch === 'bert' || arch === 'nomic-bert' || arch === 'jina-bert-v2';
  if (encoder) {
    matrix('token_types.weight', dim, 2, GGMLType.F32);
    if (arch === 'bert') matrix('position_embd.weight', dim, opts.contextLength ?? 2048, GGMLType.F32);
    vector('token_embd_norm.weight', dim, 'around one');
    vector('token_embd_norm.bias', dim, 'random');
  }
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    if (arch === 'nomic-bert') {
      // post-norm encoder layer with fused q/k/v, an output bias and a SwiGLU feed-forward
      matrix(`${p}attn_qkv.weight`, dim, qDim + 2 * kvDim);
      matrix(`${p}attn_output.weight`, qDim, dim);
      vector(`${p}attn_output.bias`, dim, 'random');
      matrix(`${p}ffn_gate.weight`, dim, ffnDim);
      matrix(`${p}ffn_up.weight`, dim, ffnDim);
      matrix(`${p}ffn_down.weight`, ffnDim, dim);
    }
    if (arch === 'jina-bert-v2') {
      // post-norm encoder layer (no positions: ALiBi) with biases, a GELU feed-forward and the code model's extra norms
      const ffn = opts.jina?.ffn ?? 'fused', code = opts.jina?.code ?? false;
      for (const [name, cols, rows] of [['attn_q', dim, qDim], ['attn_k', dim, kvDim], ['attn_v', dim, kvDim], ['attn_output', qDim, dim]] as const) {
        matrix(`${p}${name}.weight`, cols, rows);
        vector(`${p}${name}.bias`, rows, 'random');
      }
      if (code) {
        for (const [name, n] of [['attn_q_norm', qDim], ['attn_k_norm', kvDim], ['attn_norm_2', dim]] as const) {
          vector(`${p}${name}.weight`, n, 'around one');
          vector(`${p}${name}.bias`, n, 'random');
        }
      }
      if (ffn === 'split') matrix(`${p}ffn_gate.weight`, dim, ffnDim);
      const upRows = ffn === 'fused' ? 2 * ffnDim : ffnDim;
      matrix(`${p}ffn_up.weight`, dim, upRows);
      if (code) vector(`${p}ffn_up.bias`, upRows, 'random');
      matrix(`${p}ffn_down.weight`, ffnDim, dim);
      vector(`${p}ffn_down.bias`, dim, 'random');
    }
    if (arch === 'bert') {
      // post-norm encoder layer: every projection with a bias
      for (const [name, cols, rows] of [['attn_q', dim, qDim], ['attn_k', dim, kvDim], ['attn_v', dim, kvDim], ['attn_output', qDim, dim], ['ffn_up', dim, ffnDim], ['ffn_down', ffnDim, dim]] as const) {
        matrix(`${p}${name}.weight`, cols, rows);
        vector(`${p}${name}.bias`, rows, 'random');
      }
    }
    if (encoder) {
      // LayerNorms with weight and bias
      for (const norm of ['attn_output_norm', 'layer_output_norm']) {
        vector(`${p}${norm}.weight`, dim, 'around one');
        vector(`${p}${norm}.bias`, dim, 'random');
      }
      continue;
    }
    if (arch !== 'olmo2') vector(p + 'attn_norm.weight', dim, 'ones');
    if (arch === 'phi3') matrix(p + 'attn_qkv.weight', dim, qDim + 2 * kvDim);
    else {
      matrix(p + 'attn_q.weight', dim, qDim);
      matrix(p + 'attn_k.weight', dim, kvDim);
      matrix(p + 'attn_v.weight', dim, kvDim);
    }
    if (qkvBias) {
      vector(p + 'attn_q.bias', qDim, 'random');
      vector(p + 'attn_k.bias', kvDim, 'random');
      vector(p + 'attn_v.bias', kvDim, 'random');
    }
    if (arch === 'qwen3' || arch === 'qwen3moe' || arch === 'gemma3') {
      vector(p + 'attn_q_norm.weight', headDim, 'around one');
      vector(p + 'attn_k_norm.weight', headDim, 'around one');
    }
    if (arch === 'olmo2' || arch === 'olmoe') {
      vector(p + 'attn_q_norm.weight', qDim, 'around one');
      vector(p + 'attn_k_norm.weight', kvDim, 'around one');
    }
    matrix(p + 'attn_output.weight', qDim, dim);
    const postNorms = arch === 'gemma2' || arch === 'gemma3' || arch === 'olmo2';
    if (postNorms) vector(p + 'post_attention_norm.weight', dim, 'around one');
    if (arch !== 'olmo2') vector(p + 'ffn_norm.weight', dim, 'ones');
    if (opts.experts) {
      const { count, ffnDim: f } = opts.experts;
      matrix(p + 'ffn_gate_inp.weight', dim, count, GGMLType.F32); // llama.cpp's quantizer keeps routers F32
      experts(p + 'ffn_gate_exps.weight', dim, f, count);
      experts(p + 'ffn_up_exps.weight', dim, f, count);
      experts(p + 'ffn_down_exps.weight', f, dim, count);
      const shared = opts.experts.sharedFfnDim;
      if (shared) {
        vector(p + 'ffn_gate_inp_shexp.weight', dim, 'random');
        matrix(p + 'ffn_gate_shexp.weight', dim, shared);
        matrix(p + 'ffn_up_shexp.weight', dim, shared);
        matrix(p + 'ffn_down_shexp.weight', shared, dim);
      }
    } else {
      if (arch === 'phi3') matrix(p + 'ffn_up.weight', dim, 2 * ffnDim);
      else {
        matrix(p + 'ffn_gate.weight', dim, ffnDim);
        matrix(p + 'ffn_up.weight', dim, ffnDim);
      }
      matrix(p + 'ffn_down.weight', ffnDim, dim);
    }
    if (postNorms) vector(p + 'post_ffw_norm.weight', dim, 'around one');
  }
  if (!encoder) vector('output_norm.weight', dim, 'ones');
  if (opts.ropeFreqs) vector('rope_freqs.weight', headDim / 2, 'around two');
  if (opts.longRope) {
    vector('rope_factors_short.weight', headDim / 2, 'around two');
    vector('rope_factors_long.weight', headDim / 2, 'around two');
  }
  if (!opts.tiedEmbeddings && !encoder) matrix('output.weight', dim, nVocab, opts.outputType ?? type, opts.outputFromEmbedding ? embedding : undefined);

  const u32 = (value: number): GGUFEntry => ({ type: GGUFValueType.UINT32, value });
  const f32 = (value: number): GGUFEntry => ({ type: GGUFValueType.FLOAT32, value });
  const quantized = tensors.some((t) => typeTraits(t.type)!.blockSize > 1);
  const metadata: [string, GGUFEntry][] = [
    ['general.architecture', { type: GGUFValueType.STRING, value: arch }],
    ['general.name', { type: GGUFValueType.STRING, value: `random-weight test model, dim ${dim} x ${nLayers} layers, seed ${opts.seed}` }],
    ['general.file_type', u32(llamaFileType(type))],
    ...(quantized ? [['general.quantization_version', u32(GGML_QNT_VERSION)] as [string, GGUFEntry]] : []),
    [`${arch}.context_length`, u32(opts.contextLength ?? 2048)],
    [`${arch}.embedding_length`, u32(dim)],
    [`${arch}.block_count`, u32(nLayers)],
    [`${arch}.feed_forward_length`, u32(ffnDim)],
    [`${arch}.attention.head_count`, u32(nHeads)],
    [`${arch}.attention.head_count_kv`, u32(nKvHeads)],
    // jina-bert-v2 has no RoPE (ALiBi) and its files no rope keys
    ...(arch === 'jina-bert-v2' ? [] : [
      [`${arch}.rope.dimension_count`, u32(headDim)],
      [`${arch}.rope.freq_base`, f32(opts.ropeFreqBase ?? (arch === 'llama' || arch.startsWith('gemma') || arch === 'phi3' ? 10000 : 1000000))],
    ] as [string, GGUFEntry][]),
    encoder
      ? [`${arch}.attention.layer_norm_epsilon`, f32(1e-12)]
      : [`${arch}.attention.layer_norm_rms_epsilon`, f32(arch === 'llama' ? 1e-5 : 1e-6)],
    ...(encoder ? ([
      [`${arch}.attention.causal`, { type: GGUFValueType.BOOL, value: false }],
      [`${arch}.pooling_type`, u32(opts.pooling ?? 1)],
    ] as [string, GGUFEntry][]) : opts.pooling !== undefined ? [[`${arch}.pooling_type`, u32(opts.pooling)] as [string, GGUFEntry]] : []),
    ...(opts.slidingWindow !== undefined ? [[`${arch}.attention.sliding_window`, u32(opts.slidingWindow)] as [string, GGUFEntry]] : []),
    ...(opts.longRope ? ([
      [`${arch}.rope.scaling.original_context_length`, u32(opts.longRope.originalContext)],
      [`${arch}.rope.scaling.attn_factor`, f32(opts.longRope.attnFactor)],
    ] as [string, GGUFEntry][]) : []),
    ...(opts.slidingWindowPattern !== undefined ? [[`${arch}.attention.sliding_window_pattern`, u32(opts.slidingWindowPattern)] as [string, GGUFEntry]] : []),
    ...(opts.experts ? ([
      [`${arch}.expert_count`, u32(opts.experts.count)],
      [`${arch}.expert_used_count`, u32(opts.experts.used)],
      ...(arch === 'qwen3moe' || arch === 'qwen2moe' ? [[`${arch}.expert_feed_forward_length`, u32(opts.experts.ffnDim)]] : []),
      ...(opts.experts.sharedFfnDim ? [[`${arch}.expert_shared_feed_forward_length`, u32(opts.experts.sharedFfnDim)]] : []),
    ] as [string, GGUFEntry][]) : []),
    ...(arch === 'granite' ? (() => {
      const g = opts.graniteScales ?? { embedding: 12, residual: 0.22, attention: 1 / headDim, logit: 8 };
      return [
        [`${arch}.embedding_scale`, f32(g.embedding)], [`${arch}.residual_scale`, f32(g.residual)],
        [`${arch}.attention.scale`, f32(g.attention)], [`${arch}.logit_scale`, f32(g.logit)],
      ] as [string, GGUFEntry][];
    })() : []),
    ...(opts.attnSoftcap !== undefined ? [[`${arch}.attn_logit_softcapping`, f32(opts.attnSoftcap)] as [string, GGUFEntry]] : []),
    ...(opts.finalSoftcap !== undefined ? [[`${arch}.final_logit_softcapping`, f32(opts.finalSoftcap)] as [string, GGUFEntry]] : []),
    ...(headDim !== dim / nHeads
      ? ([[`${arch}.attention.key_length`, u32(headDim)], [`${arch}.attention.value_length`, u32(headDim)]] as [string, GGUFEntry][])
      : []),
    ...vocabMeta,
  ];

  let nParams = 0;
  let nBytes = 0;
  for (const t of tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const { blockSize, blockBytes } = typeTraits(t.type)!;
    nParams += n;
    nBytes += (n / blockSize) * blockBytes;
  }
  return { metadata, tensors, nParams, nBytes };
}

/** synthesizeLlama straight to a GGUF file, one tensor at a time. */
export async function writeSyntheticLlama(path: string, opts: SyntheticLlamaOptions, writeOpts: GGUFWriteOptions = {}): Promise<SyntheticModel & { bytes: number }> {
  const model = await synthesizeLlama(opts);
  const { bytes } = await writeLazyGGUFFile(path, model.metadata, model.tensors, writeOpts);
  return { ...model, bytes };
}
