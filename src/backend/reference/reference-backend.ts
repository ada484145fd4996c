// The scalar reference backend: every op of the Backend contract written as plainly as possible,
// one scalar at a time, in f64, rounded to f32 only when stored. No SIMD, no threads, no
// activation quantization, no cleverness: when it disagrees with a fast backend, the fast backend
// is wrong (test/backend-ops.test.ts holds every backend to it). It does take the roundings
// that are part of the ops' definition as llama.cpp computes them: F16/BF16 weights dot
// activations rounded to f16/bf16 (ggml's vec_dot_type for them), and attention over an f16 cache
// with a head dim that is not a multiple of 16 rounds Q and the V accumulator to f16 (ggml's
// one-row flash attention); over a q8_0 / q4_0 cache the query is quantized to Q8_0 (K's
// vec_dot_type in ggml's flash attention). Selectable as loadModel(..., { backend: 'reference' }): slow, exact.
//
// Memory: every allocate() is its own ArrayBuffer (buffer ids from 1), as a GPU backend's buffers
// are separate: code that assumed one linear memory would fail here.
import type { ByteSource } from '../../io/byte-source.js';
import { dequantize } from '../../tensor/dequant.js';
import { quantizeRow } from '../../tensor/quantize.js';
import { GGMLType, rowBytes as typeRowBytes, typeName } from '../../tensor/ggml-types.js';
import { alibiSlopes, checkTopK, KV_CACHE_TYPES, kvCacheTypeProblem, kvElementType, kvRowBytes, tensorBytes, type AttentionArgs, type Backend, type KVLayer, type RopeParams, type Tensor, type WeightTensor } from '../backend.js';
import { BackendError } from '../errors.js';
import { f16BitsToF32, f32ToF16Bits } from './half.js';

const f16Round = (x: number): number => f16BitsToF32(f32ToF16Bits(x));

/** Round half to even (x >= 0). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** x as an f32, rounded to bf16 (8 significant bits, ties to even); overflow gives infinity. */
export function bf16Round(x: number): number {
  const v = Math.fround(x);
  if (v === 0 || !Number.isFinite(v)) return v;
  const e = Math.max(-126, Math.floor(Math.log2(Math.abs(v)))); // right for every f32: its log2 is off an integer by > 1e-8
  return Math.fround(Math.sign(v) * roundHalfEven(Math.abs(v) / 2 ** (e - 7)) * 2 ** (e - 7));
}

/** ggml's YaRN correction dimension: the rotary dim whose wavelength fits nRot turns in nCtxOrig. */
function yarnCorrDim(nDims: number, nCtxOrig: number, nRot: number, base: number): number {
  return (nDims * Math.log(nCtxOrig / (nRot * 2 * Math.PI))) / (2 * Math.log(base));
}

/** [low, high] pair indices between which YaRN ramps from extrapolation to interpolation. */
export function yarnCorrDims(nDims: number, nCtxOrig: number, base: number, betaFast: number, betaSlow: number): [number, number] {
  const start = Math.floor(yarnCorrDim(nDims, nCtxOrig, betaFast, base));
  const end = Math.ceil(yarnCorrDim(nDims, nCtxOrig, betaSlow, base));
  return [Math.max(0, start), Math.min(nDims - 1, end)];
}

/** 1 for pairs below `low` (pure extrapolation), 0 above `high`, linear in between. */
function yarnRamp(low: number, high: number, pair: number): number {
  const y = (pair - low) / Math.max(0.001, high - low);
  return 1 - Math.min(1, Math.max(0, y));
}

/**
 * cos/sin (already multiplied by mscale) for rotary pair `pair` at position `pos`, as ggml's
 * rope_yarn defines them. Exported so tests can check other RoPE code against the same formula.
 */
export function ropeAngle(pos: number, pair: number, p: RopeParams, freqFactor = 1): { cos: number; sin: number } {
  const thetaExtrap = (pos * Math.pow(p.freqBase, (-2 * pair) / p.ropeDims)) / freqFactor;
  const thetaInterp = p.freqScale * thetaExtrap;
  let theta = thetaInterp;
  let mscale = p.attnFactor; // ggml scales by attn_factor even with YaRN off
  if (p.extFactor !== 0) {
    const [low, high] = yarnCorrDims(p.ropeDims, p.nCtxOrig, p.freqBase, p.betaFast, p.betaSlow);
    const mix = yarnRamp(low, high, pair) * p.extFactor;
    theta = thetaInterp * (1 - mix) + thetaExtrap * mix;
    mscale *= 1 + 0.1 * Math.log(1 / p.freqScale);
  }
  return { cos: Math.cos(theta) * mscale, sin: Math.sin(theta) * mscale };
}

/** GELU as ggml's CPU backend: an f16 table (f16-rounded input, f16 output), 0 below -10, identity above 10. */
function ggmlGelu(x: number): number {
  if (x <= -10) return 0;
  if (x >= 10) return x;
  const h = f16Round(x);
  return f16Round(0.5 * h * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (h + 0.044715 * h ** 3))));
}

/** Types the reference dequantizer reads (src/tensor/dequant.ts). */
const WEIGHT_TYPES = new Set<GGMLType>([
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
  GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_NL, GGMLType.MXFP4,
]);

/** JS engines cap one ArrayBuffer (V8: 2^32 bytes on 64-bit); a tensor must fit one. */
const MAX_TENSOR_BYTES = 2 ** 32;

export function createReferenceBackend(): Backend {
  const buffers: (ArrayBuffer | undefined)[] = [undefined]; // ids from 1
  let disposed = false;

  /** The bytes of `t` (its first `need` bytes), checked to be an allocated range. */
  const bytesOf = (t: Tensor, what: string, need = t.bytes): { buffer: ArrayBuffer; offset: number } => {
    if (disposed) throw new BackendError('DISPOSED', 'the reference backend was disposed');
    const buffer = Number.isInteger(t.buffer) ? buffers[t.buffer] : undefined;
    if (!buffer || !Number.isInteger(t.offset) || t.offset < 0 || need > t.bytes || t.offset + need > buffer.byteLength) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: [buffer ${t.buffer}, ${t.offset}..${t.offset + need}) is not allocated memory of this backend`);
    }
    return { buffer, offset: t.offset };
  };
  const f32View = (t: Tensor, count: number, what: string): Float32Array => {
    const { buffer, offset } = bytesOf(t, what, count * 4);
    if (offset % 4 !== 0) throw new BackendError('INVALID_ARGUMENT', `${what}: offset ${offset} is not 4-byte aligned`);
    return new Float32Array(buffer, offset, count);
  };
  const i32View = (t: Tensor, count: number, what: string): Int32Array => {
    const { buffer, offset } = bytesOf(t, what, count * 4);
    if (offset % 4 !== 0) throw new BackendError('INVALID_ARGUMENT', `${what}: offset ${offset} is not 4-byte aligned`);
    return new Int32Array(buffer, offset, count);
  };
  const u8View = (t: Tensor, what: string, byteOffset = 0, bytes = t.bytes - byteOffset): Uint8Array => {
    if (!Number.isInteger(byteOffset) || !Number.isInteger(bytes) || byteOffset < 0 || bytes < 0) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: bad byte range ${byteOffset} + ${bytes}`);
    }
    const { buffer, offset } = bytesOf(t, what, byteOffset + bytes);
    return new Uint8Array(buffer, offset + byteOffset, bytes);
  };

  const checkWeight = (w: WeightTensor, what: string) => {
    if (w.rowBytes !== typeRowBytes(w.type, w.cols)) {
      throw new RangeError(`${what}: rowBytes ${w.rowBytes} does not match ${typeName(w.type)} with ${w.cols} cols`);
    }
    bytesOf(w, what, w.rows * w.rowBytes);
  };

  /** Row r of a weight, dequantized by the reference dequantizer. */
  const weightRow = (w: WeightTensor, r: number): Float32Array => {
    return dequantize(w.type, u8View(w, 'weight row', r * w.rowBytes, w.rowBytes), w.cols);
  };

  /** The activation a weight type's dot product sees: f16/bf16-rounded for F16/BF16 weights. */
  const activation = (type: GGMLType, x: number): number =>
    type === GGMLType.F16 ? f16Round(x) : type === GGMLType.BF16 ? bf16Round(x) : x;

  /** Slot s's row of a K or V cache, dequantized (f16 and the block types exactly). */
  const readKVRow = (layer: KVLayer, cache: Tensor, slot: number): Float32Array => {
    const rb = kvRowBytes(layer.type, layer.kvDim);
    return dequantize(kvElementType(layer.type), u8View(cache, 'KV cache', slot * rb, rb), layer.kvDim);
  };

  const checkKVLayer = (layer: KVLayer, headDim: number, what: string) => {
    const problem = kvCacheTypeProblem(layer.type, headDim);
    if (problem) throw new BackendError(problem.code === 'INVALID' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED_TYPE', `${what}: ${problem.message}`);
  };

  const backend: Backend = {
    name: 'reference',
    nThreads: 1,

    capabilities: { weightTypes: WEIGHT_TYPES, maxTensorBytes: MAX_TENSOR_BYTES, memoryBytes: Number.MAX_SAFE_INTEGER, kvTypes: new Set(KV_CACHE_TYPES), kvParts: 1 },

    allocate(type, shape) {
      if (disposed) throw new BackendError('DISPOSED', 'the reference backend was disposed');
      const bytes = tensorBytes(type, shape);
      if (bytes > MAX_TENSOR_BYTES) throw new BackendError('OUT_OF_MEMORY', `a tensor of ${bytes} bytes is larger than one ArrayBuffer holds (${MAX_TENSOR_BYTES})`);
      buffers.push(new ArrayBuffer(Math.max(bytes, 4)));
      return { buffer: buffers.length - 1, offset: 0, bytes, type, shape };
    },
    upload(dst, data, byteOffset = 0) {
      const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      u8View(dst, 'upload', byteOffset, src.length).set(src);
    },
    async uploadFrom(dst, source: ByteSource, sourceOffset) {
      await source.readInto(sourceOffset, u8View(dst, 'uploadFrom'));
    },
    async read(src, byteOffset = 0, bytes = src.bytes - byteOffset) {
      return u8View(src, 'read', byteOffset, bytes).slice();
    },
    copy(dst, dstOffset, src, srcOffset, bytes) {
      u8View(dst, 'copy destination', dstOffset, bytes).set(u8View(src, 'copy source', srcOffset, bytes));
    },

    matmul(out, w, x, nTokens) {
      checkWeight(w, 'matmul weight');
      const xs = f32View(x, nTokens * w.cols, 'matmul x').map((v) => activation(w.type, v));
      const result = new Float64Array(nTokens * w.rows);
      for (let r = 0; r < w.rows; r++) {
        const row = weightRow(w, r);
        for (let t = 0; t < nTokens; t++) {
          let acc = 0;
          for (let c = 0; c < w.cols; c++) acc += row[c] * xs[t * w.cols + c];
          result[t * w.rows + r] = acc;
        }
      }
      f32View(out, nTokens * w.rows, 'matmul out').set(result);
    },

    matmulShared(parts, x, nTokens) {
      for (const p of parts) backend.matmul(p.out, p.w, x, nTokens);
    },

    matmulRouted(out, w, nExperts, x, routing, inputPerSlot) {
      checkWeight(w, 'matmulRouted weight');
      const { nTokens, used } = routing;
      if (!Number.isInteger(nExperts) || nExperts < 1 || w.rows % nExperts !== 0) throw new RangeError(`matmulRouted: ${w.rows} rows do not split into ${nExperts} experts`);
      const rows = w.rows / nExperts;
      const ids = i32View(routing.ids, nTokens * used, 'matmulRouted ids').slice();
      const xs = f32View(x, (inputPerSlot ? nTokens * used : nTokens) * w.cols, 'matmulRouted x').map((v) => activation(w.type, v));
      const result = new Float64Array(nTokens * used * rows);
      for (let t = 0; t < nTokens; t++) {
        for (let j = 0; j < used; j++) {
          const e = ids[t * used + j];
          if (!(e >= 0 && e < nExperts)) throw new BackendError('INVALID_ARGUMENT', `matmulRouted: token ${t} slot ${j} names expert ${e} of ${nExperts}`);
          const xo = (inputPerSlot ? t * used + j : t) * w.cols;
          for (let r = 0; r < rows; r++) {
            const row = weightRow(w, e * rows + r);
            let acc = 0;
            for (let c = 0; c < w.cols; c++) acc += row[c] * xs[xo + c];
            result[(t * used + j) * rows + r] = acc;
          }
        }
      }
      f32View(out, nTokens * used * rows, 'matmulRouted out').set(result);
    },

    routeExperts(routing, logits, nExperts, normalize) {
      const { nTokens, used } = routing;
      if (!Number.isInteger(used) || used < 1 || used > nExperts) throw new RangeError(`routeExperts: ${used} experts of ${nExperts}`);
      const l = f32View(logits, nTokens * nExperts, 'routeExperts logits').slice();
      const ids = i32View(routing.ids, nTokens * used, 'routeExperts ids');
      const weights = f32View(routing.weights, nTokens * used, 'routeExperts weights');
      for (let t = 0; t < nTokens; t++) {
        const row = Array.from(l.subarray(t * nExperts, (t + 1) * nExperts));
        const max = Math.max(...row);
        const e = row.map((v) => Math.exp(v - max));
        const sum = e.reduce((a, b) => a + b, 0);
        const order = e.map((_, i) => i).sort((a, b) => e[b] - e[a] || a - b).slice(0, used);
        const chosen = order.map((i) => e[i] / sum);
        const total = Math.max(chosen.reduce((a, b) => a + b, 0), 6.103515625e-5);
        order.forEach((id, j) => {
          ids[t * used + j] = id;
          weights[t * used + j] = normalize ? chosen[j] / total : chosen[j];
        });
      }
    },

    combineExperts(out, y, routing, n) {
      const { nTokens, used } = routing;
      const ys = f32View(y, nTokens * used * n, 'combineExperts y').slice();
      const w = f32View(routing.weights, nTokens * used, 'combineExperts weights').slice();
      const o = f32View(out, nTokens * n, 'combineExperts out');
      for (let t = 0; t < nTokens; t++) {
        for (let i = 0; i < n; i++) {
          let acc = 0;
          for (let j = 0; j < used; j++) acc += ys[(t * used + j) * n + i] * w[t * used + j];
          o[t * n + i] = acc;
        }
      }
    },

    getRows(out, table, ids, nTokens) {
      checkWeight(table, 'getRows table');
      const idv = i32View(ids, nTokens, 'getRows ids').slice();
      const rows: Float32Array[] = [];
      for (let t = 0; t < nTokens; t++) {
        const id = idv[t];
        if (id < 0 || id >= table.rows) throw new RangeError(`getRows: id ${id} outside 0..${table.rows - 1}`);
        rows.push(weightRow(table, id));
      }
      const o = f32View(out, nTokens * table.cols, 'getRows out');
      rows.forEach((row, t) => o.set(row, t * table.cols));
    },

    rmsNorm(out, x, weight, n, nTokens, eps) {
      const xs = f32View(x, n * nTokens, 'rmsNorm x').slice();
      const wv = f32View(weight, n, 'rmsNorm weight').slice();
      const o = f32View(out, n * nTokens, 'rmsNorm out');
      for (let t = 0; t < nTokens; t++) {
        let ss = 0;
        for (let i = 0; i < n; i++) ss += xs[t * n + i] * xs[t * n + i];
        const inv = 1 / Math.sqrt(ss / n + eps);
        for (let i = 0; i < n; i++) o[t * n + i] = xs[t * n + i] * inv * wv[i];
      }
    },

    rope(x, nTokens, nHeads, headDim, positions, p, freqFactors) {
      if (p.ropeDims % 2 !== 0 || p.ropeDims > headDim || p.ropeDims <= 0) {
        throw new RangeError(`rope: ropeDims ${p.ropeDims} must be even and in 2..headDim (${headDim})`);
      }
      const pos = i32View(positions, nTokens, 'rope positions').slice();
      const factors = freqFactors ? f32View(freqFactors, p.ropeDims / 2, 'rope frequency factors').slice() : undefined;
      const v = f32View(x, nTokens * nHeads * headDim, 'rope x');
      const half = p.ropeDims / 2;
      for (let t = 0; t < nTokens; t++) {
        for (let h = 0; h < nHeads; h++) {
          const base = (t * nHeads + h) * headDim;
          for (let i = 0; i < half; i++) {
            const { cos, sin } = ropeAngle(pos[t], i, p, factors?.[i]);
            // normal: adjacent pairs (2i, 2i+1); NeoX: split halves (i, i + ropeDims/2)
            const a = base + (p.neox ? i : 2 * i);
            const b = base + (p.neox ? i + half : 2 * i + 1);
            const x0 = v[a], x1 = v[b];
            v[a] = x0 * cos - x1 * sin;
            v[b] = x0 * sin + x1 * cos;
          }
          // dims ropeDims..headDim-1 pass through untouched
        }
      }
    },

    swiglu(out, gate, up, count) {
      const g = f32View(gate, count, 'swiglu gate').slice();
      const u = f32View(up, count, 'swiglu up').slice();
      const o = f32View(out, count, 'swiglu out');
      for (let i = 0; i < count; i++) o[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    },

    geglu(out, gate, up, count) {
      const g = f32View(gate, count, 'geglu gate').slice();
      const u = f32View(up, count, 'geglu up').slice();
      const o = f32View(out, count, 'geglu out');
      for (let i = 0; i < count; i++) o[i] = ggmlGelu(g[i]) * u[i];
    },

    gelu(out, x, count) {
      const xs = f32View(x, count, 'gelu x').slice();
      const o = f32View(out, count, 'gelu out');
      for (let i = 0; i < count; i++) o[i] = ggmlGelu(xs[i]);
    },

    sigmoid(out, x, count) {
      const xs = f32View(x, count, 'sigmoid x').slice();
      const o = f32View(out, count, 'sigmoid out');
      for (let i = 0; i < count; i++) o[i] = 1 / (1 + Math.exp(-xs[i]));
    },

    layerNorm(out, x, weight, bias, n, nTokens, eps) {
      const xs = f32View(x, n * nTokens, 'layerNorm x').slice();
      const wv = f32View(weight, n, 'layerNorm weight').slice();
      const bv = f32View(bias, n, 'layerNorm bias').slice();
      const o = f32View(out, n * nTokens, 'layerNorm out');
      for (let t = 0; t < nTokens; t++) {
        const row = xs.subarray(t * n, (t + 1) * n);
        const mean = row.reduce((a, v) => a + v, 0) / n;
        const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
        const inv = 1 / Math.sqrt(variance + eps);
        for (let i = 0; i < n; i++) o[t * n + i] = (row[i] - mean) * inv * wv[i] + bv[i];
      }
    },

    scale(out, x, count, factor) {
      const xs = f32View(x, count, 'scale x').slice();
      const o = f32View(out, count, 'scale out');
      const f = Math.fround(factor); // ggml's factor is a float
      for (let i = 0; i < count; i++) o[i] = xs[i] * f;
    },

    softcap(out, x, count, cap) {
      if (!(cap > 0 && Number.isFinite(cap))) throw new BackendError('INVALID_ARGUMENT', `softcap: cap ${cap} must be a finite number > 0`);
      const xs = f32View(x, count, 'softcap x').slice();
      const o = f32View(out, count, 'softcap out');
      for (let i = 0; i < count; i++) o[i] = cap * Math.tanh(xs[i] / cap);
    },

    argmax(out, x, n, nRows) {
      const xs = f32View(x, n * nRows, 'argmax x');
      const o = i32View(out, nRows, 'argmax out');
      for (let r = 0; r < nRows; r++) {
        let best = 0;
        for (let i = 1; i < n; i++) if (xs[r * n + i] > xs[r * n + best]) best = i;
        o[r] = best;
      }
    },

    topK(ids, values, x, n, nRows, k) {
      checkTopK(n, nRows, k);
      const xs = f32View(x, n * nRows, 'topK x').slice(), xBits = new Int32Array(xs.buffer);
      const oi = i32View(ids, k * nRows, 'topK ids'), ovBits = i32View(values, k * nRows, 'topK values'); // values keep x's bits (a NaN's payload too)
      // NaN first, then larger values (0 === -0), then the lower index
      const before = (a: number, b: number) => (Number.isNaN(a) ? 0 : 1) - (Number.isNaN(b) ? 0 : 1) || (a > b ? -1 : a < b ? 1 : 0);
      for (let r = 0; r < nRows; r++) {
        const row = xs.subarray(r * n, (r + 1) * n);
        const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => before(row[a], row[b]) || a - b);
        for (let j = 0; j < k; j++) {
          oi[r * k + j] = order[j];
          ovBits[r * k + j] = xBits[r * n + order[j]];
        }
      }
    },

    add(out, a, b, count) {
      const av = f32View(a, count, 'add a').slice();
      const bv = f32View(b, count, 'add b').slice();
      const o = f32View(out, count, 'add out');
      for (let i = 0; i < count; i++) o[i] = av[i] + bv[i];
    },

    addBias(out, x, bias, n, nTokens) {
      const xs = f32View(x, n * nTokens, 'addBias x').slice();
      const bv = f32View(bias, n, 'addBias bias').slice();
      const o = f32View(out, n * nTokens, 'addBias out');
      for (let t = 0; t < nTokens; t++) for (let i = 0; i < n; i++) o[t * n + i] = xs[t * n + i] + bv[i];
    },

    storeKV(layer, k, v, slots, nTokens) {
      checkKVLayer(layer, layer.kvDim, 'storeKV');
      const ks = f32View(k, nTokens * layer.kvDim, 'storeKV k').slice();
      const vs = f32View(v, nTokens * layer.kvDim, 'storeKV v').slice();
      const sl = i32View(slots, nTokens, 'storeKV slots').slice();
      const rb = kvRowBytes(layer.type, layer.kvDim), type = kvElementType(layer.type);
      const nSlots = Math.floor(Math.min(layer.k.bytes, layer.v.bytes) / rb);
      for (let t = 0; t < nTokens; t++) {
        const s = sl[t];
        if (!(s >= 0 && s < nSlots)) throw new BackendError('INVALID_ARGUMENT', `storeKV: slot ${s} outside 0..${nSlots - 1}`);
        // the reference quantizers (f16: round to nearest even; q8_0 / q4_0: ggml's quantize_row_*_ref)
        quantizeRow(type, ks, t * layer.kvDim, layer.kvDim, u8View(layer.k, 'K cache', s * rb, rb));
        quantizeRow(type, vs, t * layer.kvDim, layer.kvDim, u8View(layer.v, 'V cache', s * rb, rb));
      }
    },

    attention(args: AttentionArgs) {
      const { nTokens, nHeads, nKvHeads, headDim, scale, layer } = args;
      checkKVLayer(layer, headDim, 'attention');
      const softcap = args.softcap ?? 0;
      const score = (dot: number) => (softcap > 0 ? softcap * Math.tanh((dot * scale) / softcap) : dot * scale);
      if (nKvHeads <= 0 || nHeads % nKvHeads !== 0) throw new RangeError(`attention: nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
      if (layer.kvDim !== nKvHeads * headDim) throw new RangeError(`attention: kvDim ${layer.kvDim} != nKvHeads * headDim`);
      const dim = nHeads * headDim;
      const q = f32View(args.q, nTokens * dim, 'attention q').slice();
      const info = i32View(args.tokenInfo, 3 * nTokens, 'attention tokenInfo').slice();
      // ALiBi: score + slope_h * -|query position - key position|
      const slopes = args.alibi ? alibiSlopes(args.alibi.maxBias, nHeads) : undefined;
      const queryPos = args.alibi ? i32View(args.alibi.positions, nTokens, 'attention ALiBi positions').slice() : undefined;
      const bias = (t: number, h: number, key: number) => (slopes ? slopes[h] * -Math.abs(queryPos![t] - key) : 0);
      const result = new Float64Array(nTokens * dim);
      const group = nHeads / nKvHeads;
      const oneRow = layer.type === 'f16' && headDim % 16 !== 0;
      const quantK = layer.type === 'q8_0' || layer.type === 'q4_0';
      /** A query head row as K's dot product sees it: quantized to Q8_0 (and read back) over a block-type cache. */
      const qBlocks = new Uint8Array(quantK ? (headDim / 32) * 34 : 0);
      const queryRow = (at: number): Float32Array => {
        const row = q.subarray(at, at + headDim);
        if (!quantK) return row;
        quantizeRow(GGMLType.Q8_0, row, 0, headDim, qBlocks);
        return dequantize(GGMLType.Q8_0, qBlocks, headDim);
      };
      for (let t = 0; t < nTokens; t++) {
        // keys first..end-1; the block table is read only from the block holding `first`
        const tableStart = info[3 * t], first = info[3 * t + 1], end = info[3 * t + 2];
        if (first < 0 || end <= first) throw new RangeError(`attention: token ${t} has key range [${first}, ${end})`);
        const entries = Math.ceil(end / layer.blockSize);
        if (!(tableStart >= 0 && tableStart + entries <= args.blockTables.bytes / 4)) {
          throw new BackendError('INVALID_ARGUMENT', `attention: token ${t}'s block table [${tableStart}, ${tableStart + entries}) is outside the block tables`);
        }
        const table = i32View(args.blockTables, tableStart + entries, 'attention block tables').slice(tableStart);
        const nKeys = end - first;
        const slots = new Int32Array(nKeys);
        for (let j = 0; j < nKeys; j++) {
          const p = first + j, block = table[Math.floor(p / layer.blockSize)];
          if (block < 0) throw new RangeError(`attention: token ${t} reads key ${p}, whose block was released (${block})`);
          slots[j] = block * layer.blockSize + (p % layer.blockSize);
        }
        const kRows = Array.from(slots, (s) => readKVRow(layer, layer.k, s));
        const vRows = Array.from(slots, (s) => readKVRow(layer, layer.v, s));
        for (let h = 0; h < nHeads; h++) {
          const kvh = Math.floor(h / group);
          if (oneRow) {
            // one pass, as ggml's one-row kernel: f16 Q, and the running V sum rounded to f16
            // after every rescale and every added term
            const qh = Array.from({ length: headDim }, (_, i) => f16Round(q[t * dim + h * headDim + i]));
            const acc = new Float64Array(headDim);
            let m = -Infinity, sum = 0;
            for (let p = 0; p < nKeys; p++) {
              let dot = 0;
              for (let i = 0; i < headDim; i++) dot += qh[i] * kRows[p][kvh * headDim + i];
              const s = score(dot) + bias(t, h, first + p);
              let ms = 1, vs = 1;
              if (s > m) {
                ms = Math.exp(m - s);
                m = s;
                for (let i = 0; i < headDim; i++) acc[i] = f16Round(acc[i] * ms);
              } else vs = Math.exp(s - m);
              for (let i = 0; i < headDim; i++) acc[i] = f16Round(acc[i] + vRows[p][kvh * headDim + i] * vs);
              sum = sum * ms + vs;
            }
            for (let i = 0; i < headDim; i++) result[t * dim + h * headDim + i] = acc[i] / sum;
            continue;
          }
          const scores = new Float64Array(nKeys);
          const qh = queryRow(t * dim + h * headDim);
          let max = -Infinity;
          for (let p = 0; p < nKeys; p++) {
            let dot = 0;
            for (let i = 0; i < headDim; i++) dot += qh[i] * kRows[p][kvh * headDim + i];
            scores[p] = score(dot) + bias(t, h, first + p);
            if (scores[p] > max) max = scores[p];
          }
          let sum = 0;
          for (let p = 0; p < nKeys; p++) {
            scores[p] = Math.exp(scores[p] - max);
            sum += scores[p];
          }
          for (let i = 0; i < headDim; i++) {
            let acc = 0;
            for (let p = 0; p < nKeys; p++) acc += scores[p] * vRows[p][kvh * headDim + i];
            result[t * dim + h * headDim + i] = acc / sum;
          }
        }
      }
      f32View(args.out, nTokens * dim, 'attention out').set(result);
    },

    async dispose() {
      disposed = true;
      buffers.length = 1;
    },
  };
  return backend;
}
