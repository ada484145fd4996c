// Seeded test data for the backend suites: uniform values, valid random weight blocks, and the
// weight types every backend is held to.
import { f32ToF16Bits } from '../../src/backend/reference/half.js';
import { GGMLType, typeTraits } from '../../src/tensor/ggml-types.js';
import { canQuantize, quantize } from '../../src/tensor/quantize.js';

/** mulberry32: a seeded generator of uniform numbers in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const uniform = (n: number, r: () => number, lo = -1, hi = 1): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());

export function shuffle<T>(a: T[], r: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export const FLOAT_TYPES: readonly GGMLType[] = [GGMLType.F32, GGMLType.F16, GGMLType.BF16];
/** Every weight type the backends run: the float types, the 32-blocks and the k-quants. */
export const WEIGHT_TYPES: readonly GGMLType[] = [
  ...FLOAT_TYPES, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.IQ4_NL,
  GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
];

/** Byte offsets of the f16 scale fields in each block type (ggml-common.h). */
const F16_FIELDS: Partial<Record<GGMLType, number[]>> = {
  [GGMLType.Q4_0]: [0], [GGMLType.Q4_1]: [0, 2], [GGMLType.Q5_0]: [0], [GGMLType.Q5_1]: [0, 2],
  [GGMLType.Q8_0]: [0], [GGMLType.IQ4_NL]: [0], [GGMLType.Q2_K]: [80, 82], [GGMLType.Q3_K]: [108],
  [GGMLType.Q4_K]: [0, 2], [GGMLType.Q5_K]: [0, 2], [GGMLType.Q6_K]: [208],
};

/**
 * Random but valid blocks: random quant bytes (every bit pattern of scales and quants is legal)
 * with each f16 scale set to a finite value of either sign in [1e-3, 2e-2]; float types get
 * values in [-1, 1].
 */
export function randomBlocks(type: GGMLType, rows: number, cols: number, r: () => number): Uint8Array {
  const { blockBytes, blockSize } = typeTraits(type)!;
  const out = Uint8Array.from({ length: (rows * cols / blockSize) * blockBytes }, () => Math.floor(r() * 256));
  const sane = () => f32ToF16Bits((r() < 0.5 ? -1 : 1) * (1e-3 + r() * 1.9e-2));
  const put16 = (o: number, h: number) => { out[o] = h & 0xff; out[o + 1] = h >> 8; };
  if (type === GGMLType.F32) {
    const dv = new DataView(out.buffer);
    for (let i = 0; i < rows * cols; i++) dv.setFloat32(4 * i, 2 * r() - 1, true);
  } else if (type === GGMLType.F16) {
    for (let i = 0; i < rows * cols; i++) put16(2 * i, f32ToF16Bits(2 * r() - 1));
  } else if (type === GGMLType.BF16) {
    const f = new Float32Array(1), u = new Uint32Array(f.buffer);
    for (let i = 0; i < rows * cols; i++) { f[0] = 2 * r() - 1; put16(2 * i, u[0] >>> 16); }
  } else {
    const fields = F16_FIELDS[type];
    if (!fields) throw new Error(`randomBlocks: no scale layout for type ${type}`);
    for (let b = 0; b < out.length / blockBytes; b++) for (const o of fields) put16(b * blockBytes + o, sane());
  }
  return out;
}

/** Weights as a model would have them: f32 rows of varied scale with a few outliers, quantized by src/tensor/quantize. */
export function modelLikeWeights(type: GGMLType, rows: number, cols: number, r: () => number): Uint8Array {
  const f = new Float32Array(rows * cols);
  for (let row = 0; row < rows; row++) {
    const s = 0.02 + r() * 0.2;
    for (let c = 0; c < cols; c++) f[row * cols + c] = s * (2 * r() - 1) * (r() < 0.01 ? 8 : 1);
  }
  return canQuantize(type) ? quantize(type, f, cols) : randomBlocks(type, rows, cols, r);
}
