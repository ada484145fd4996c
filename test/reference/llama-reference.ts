// A llama forward pass written straight from the math, in the spirit of llama2.c's run.c:
// plain arrays, one token at a time, every weight dequantized to f32 up front. It shares no code
// with the backend contract or the model graph, so it can judge both. Test-only.
//
// Architectures: llama (RoPE on adjacent pairs) and qwen2 (q/k/v biases, NeoX RoPE).
// Sliding-window attention ({arch}.attention.sliding_window, or opts.window): the cache keeps every
// position and the mask skips keys more than window - 1 positions back, as llama.cpp's standard SWA.
import { readGGUF, type GGUFFile } from '../../src/gguf/reader.js';
import { getCount, getNumber, getString, has } from '../../src/gguf/metadata.js';
import { readRange } from '../../src/io/byte-source.js';
import { fileSource } from '../../src/runtime/file-source.js';
import { dequantize } from '../../src/tensor/dequant.js';

export interface LlamaConfig {
  readonly arch: string;
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly ffnDim: number;
  readonly vocab: number;
  readonly ropeDims: number;
  readonly ropeBase: number;
  readonly ropeFreqScale: number;
  readonly neox: boolean;
  readonly eps: number;
  readonly maxSeq: number;
  /** Keys a token attends to, itself included (undefined: all earlier ones). */
  readonly window?: number;
}

interface Layer {
  attnNorm: Float32Array;
  wq: Float32Array; wk: Float32Array; wv: Float32Array; wo: Float32Array;
  bq?: Float32Array; bk?: Float32Array; bv?: Float32Array;
  ffnNorm: Float32Array;
  wGate: Float32Array; wUp: Float32Array; wDown: Float32Array;
}

export interface LlamaReference {
  readonly config: LlamaConfig;
  readonly gguf: GGUFFile;
  /** Logits for `token` at position `pos`; positions must be fed in order 0, 1, 2, ... */
  forward(token: number, pos: number): Float32Array;
  /** Forget the KV cache (start a new sequence). */
  reset(): void;
}

/** out[r] = sum_c W[r][c] x[c], W row-major [rows][cols], accumulated in f64. */
function matvec(out: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += w[r * cols + c] * x[c];
    out[r] = acc;
  }
}

function rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * inv * w[i];
}

/** Rotate each head's first ropeDims dims by pos * base^(-2i/ropeDims) * freqScale. */
function rope(v: Float32Array, nHeads: number, headDim: number, pos: number, c: LlamaConfig): void {
  const half = c.ropeDims / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      const theta = pos * Math.pow(c.ropeBase, (-2 * i) / c.ropeDims) * c.ropeFreqScale;
      const a = h * headDim + (c.neox ? i : 2 * i);
      const b = h * headDim + (c.neox ? i + half : 2 * i + 1);
      const x0 = v[a], x1 = v[b];
      v[a] = x0 * Math.cos(theta) - x1 * Math.sin(theta);
      v[b] = x0 * Math.sin(theta) + x1 * Math.cos(theta);
    }
  }
}

export async function loadLlamaReference(path: string, opts: { maxSeq?: number; window?: number } = {}): Promise<LlamaReference> {
  const source = await fileSource(path);
  try {
    const gguf = await readGGUF(source);
    const m = gguf.metadata;
    const arch = getString(m, 'general.architecture');
    if (arch !== 'llama' && arch !== 'qwen2') throw new Error(`llama reference: unsupported architecture ${arch}`);
    const dim = getCount(m, `${arch}.embedding_length`, { min: 1 });
    const nHeads = getCount(m, `${arch}.attention.head_count`, { min: 1 });
    const headDim = dim / nHeads;
    const linear = has(m, `${arch}.rope.scaling.type`) && getString(m, `${arch}.rope.scaling.type`) === 'linear';
    const config: LlamaConfig = {
      arch,
      dim,
      nLayers: getCount(m, `${arch}.block_count`, { min: 1 }),
      nHeads,
      nKvHeads: getCount(m, `${arch}.attention.head_count_kv`, { fallback: nHeads }),
      headDim,
      ffnDim: getCount(m, `${arch}.feed_forward_length`, { min: 1 }),
      vocab: gguf.tensorsByName.get('token_embd.weight')!.dims[1],
      ropeDims: getCount(m, `${arch}.rope.dimension_count`, { fallback: headDim }),
      ropeBase: getNumber(m, `${arch}.rope.freq_base`, 10000),
      ropeFreqScale: linear ? 1 / getNumber(m, `${arch}.rope.scaling.factor`, 1) : 1,
      neox: arch === 'qwen2',
      eps: getNumber(m, `${arch}.attention.layer_norm_rms_epsilon`, 1e-5),
      maxSeq: opts.maxSeq ?? Math.min(getCount(m, `${arch}.context_length`, { fallback: 2048 }), 2048),
      window: opts.window ?? (getCount(m, `${arch}.attention.sliding_window`, { fallback: 0 }) || undefined),
    };

    const load = async (name: string): Promise<Float32Array> => {
      const t = gguf.tensorsByName.get(name);
      if (!t) throw new Error(`llama reference: tensor ${name} missing`);
      const bytes = await readRange(source, t.fileOffset, t.nBytes);
      return dequantize(t.type, bytes, t.nElements);
    };
    const maybe = async (name: string) => (gguf.tensorsByName.has(name) ? load(name) : undefined);

    const tokEmbd = await load('token_embd.weight');
    const outNorm = await load('output_norm.weight');
    const output = (await maybe('output.weight')) ?? tokEmbd; // tied embeddings
    const layers: Layer[] = [];
    for (let l = 0; l < config.nLayers; l++) {
      const p = `blk.${l}.`;
      layers.push({
        attnNorm: await load(p + 'attn_norm.weight'),
        wq: await load(p + 'attn_q.weight'),
        wk: await load(p + 'attn_k.weight'),
        wv: await load(p + 'attn_v.weight'),
        wo: await load(p + 'attn_output.weight'),
        bq: await maybe(p + 'attn_q.bias'),
        bk: await maybe(p + 'attn_k.bias'),
        bv: await maybe(p + 'attn_v.bias'),
        ffnNorm: await load(p + 'ffn_norm.weight'),
        wGate: await load(p + 'ffn_gate.weight'),
        wUp: await load(p + 'ffn_up.weight'),
        wDown: await load(p + 'ffn_down.weight'),
      });
    }

    const { nLayers, nKvHeads, ffnDim, vocab, maxSeq } = config;
    const kvDim = nKvHeads * headDim;
    const keyCache = layers.map(() => new Float32Array(maxSeq * kvDim));
    const valueCache = layers.map(() => new Float32Array(maxSeq * kvDim));
    const x = new Float32Array(dim), xb = new Float32Array(dim), xb2 = new Float32Array(dim);
    const q = new Float32Array(dim), k = new Float32Array(kvDim), v = new Float32Array(kvDim);
    const hb = new Float32Array(ffnDim), hb2 = new Float32Array(ffnDim);
    const att = new Float64Array(maxSeq);
    let nextPos = 0;

    const forward = (token: number, pos: number): Float32Array => {
      if (pos !== nextPos) throw new Error(`llama reference: expected position ${nextPos}, got ${pos}`);
      if (pos >= maxSeq) throw new Error(`llama reference: position ${pos} beyond maxSeq ${maxSeq}`);
      if (token < 0 || token >= vocab) throw new Error(`llama reference: token ${token} outside vocab`);
      nextPos++;
      x.set(tokEmbd.subarray(token * dim, (token + 1) * dim));
      for (let l = 0; l < nLayers; l++) {
        const L = layers[l];
        rmsnorm(xb, x, L.attnNorm, config.eps);
        matvec(q, L.wq, xb, dim, dim);
        matvec(k, L.wk, xb, kvDim, dim);
        matvec(v, L.wv, xb, kvDim, dim);
        if (L.bq) for (let i = 0; i < dim; i++) q[i] += L.bq[i];
        if (L.bk) for (let i = 0; i < kvDim; i++) k[i] += L.bk[i];
        if (L.bv) for (let i = 0; i < kvDim; i++) v[i] += L.bv[i];
        rope(q, nHeads, headDim, pos, config);
        rope(k, nKvHeads, headDim, pos, config);
        keyCache[l].set(k, pos * kvDim);
        valueCache[l].set(v, pos * kvDim);

        const group = nHeads / nKvHeads;
        const scale = 1 / Math.sqrt(headDim);
        const from = config.window === undefined ? 0 : Math.max(0, pos - config.window + 1); // pos - t < window
        for (let h = 0; h < nHeads; h++) {
          const kvOff = Math.floor(h / group) * headDim;
          let max = -Infinity;
          for (let t = from; t <= pos; t++) {
            let s = 0;
            for (let i = 0; i < headDim; i++) s += q[h * headDim + i] * keyCache[l][t * kvDim + kvOff + i];
            att[t] = s * scale;
            if (att[t] > max) max = att[t];
          }
          let sum = 0;
          for (let t = from; t <= pos; t++) {
            att[t] = Math.exp(att[t] - max);
            sum += att[t];
          }
          for (let i = 0; i < headDim; i++) {
            let acc = 0;
            for (let t = from; t <= pos; t++) acc += att[t] * valueCache[l][t * kvDim + kvOff + i];
            xb[h * headDim + i] = acc / sum;
          }
        }
        matvec(xb2, L.wo, xb, dim, dim);
        for (let i = 0; i < dim; i++) x[i] += xb2[i];

        rmsnorm(xb, x, L.ffnNorm, config.eps);
        matvec(hb, L.wGate, xb, ffnDim, dim);
        matvec(hb2, L.wUp, xb, ffnDim, dim);
        for (let i = 0; i < ffnDim; i++) hb[i] = (hb[i] / (1 + Math.exp(-hb[i]))) * hb2[i];
        matvec(xb, L.wDown, hb, dim, ffnDim);
        for (let i = 0; i < dim; i++) x[i] += xb[i];
      }
      rmsnorm(x, x, outNorm, config.eps);
      const logits = new Float32Array(vocab);
      matvec(logits, output, x, vocab, dim);
      return logits;
    };

    return {
      config,
      gguf,
      forward,
      reset() {
        nextPos = 0;
      },
    };
  } finally {
    await source.close();
  }
}
