// Reference dequantization: plain scalar code, one function per ggml block layout (ggml-common.h).
// It is the yardstick the fast kernels are tested against, so it favours being obviously right.
// Each float operation is rounded to float32 in the same order as ggml's dequantize_row_* so the
// output is bit-identical to ggml's, not merely close.
import { TensorTypeError } from './errors.js';
import { GGMLType, typeName, typeTraits } from './ggml-types.js';
import { e8m0ToF32Half, f16ToF32Table, f32FromBits } from './half.js';

const fr = Math.fround;

/** IQ4_NL's non-linear 4-bit code book (kvalues_iq4nl). */
export const KVALUES_IQ4NL: Int8Array = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

/** MXFP4's E2M1 values, doubled so they are integers (kvalues_mxfp4); scaled by half the e8m0 scale. */
export const KVALUES_MXFP4: Int8Array = Int8Array.of(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);

/** Decodes one block starting at byte `o` of `q` into `y[i .. i + blockSize)`. */
type BlockDecoder = (q: Uint8Array, o: number, y: Float32Array, i: number, f16: Float32Array) => void;

const u16 = (q: Uint8Array, o: number): number => q[o]! | (q[o + 1]! << 8);
const u32 = (q: Uint8Array, o: number): number => (q[o]! | (q[o + 1]! << 8) | (q[o + 2]! << 16) | (q[o + 3]! << 24)) >>> 0;
const i8 = (b: number): number => (b << 24) >> 24;

/**
 * The 6-bit scale and min of sub-block j (0..7) in the 12 packed bytes at q[o..o+12) used by Q4_K
 * and Q5_K (ggml's get_scale_min_k4): sub-blocks 0-3 sit in the low 6 bits of bytes 0-3 (scales)
 * and 4-7 (mins); sub-blocks 4-7 keep their low 4 bits in bytes 8-11 and their top 2 bits in the
 * spare top bits of bytes 0-7.
 */
export function scaleMinK4(j: number, q: Uint8Array, o: number): [scale: number, min: number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/** The signed 6-bit scale of sub-block j (0..15) in Q3_K's 12 packed scale bytes at q[o..o+12). */
export function scaleQ3K(j: number, q: Uint8Array, o: number): number {
  const low = j < 8 ? q[o + j]! & 0xf : q[o + j - 8]! >> 4;
  const high = (q[o + 8 + (j % 4)]! >> (2 * Math.floor(j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

const decoders = new Map<GGMLType, BlockDecoder>([
  [GGMLType.F32, (q, o, y, i) => { y[i] = f32FromBits(u32(q, o)); }],
  [GGMLType.F16, (q, o, y, i, f16) => { y[i] = f16[u16(q, o)]!; }],
  [GGMLType.BF16, (q, o, y, i) => { y[i] = f32FromBits(u16(q, o) << 16); }],

  // d: f16, qs[32]: int8
  [GGMLType.Q8_0, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    for (let j = 0; j < 32; j++) y[i + j] = fr(i8(q[o + 2 + j]!) * d);
  }],

  // d: f16, qs[16]: element j in the low nibble of byte j, element j+16 in its high nibble
  [GGMLType.Q4_0, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    for (let j = 0; j < 16; j++) {
      const b = q[o + 2 + j]!;
      y[i + j] = fr(((b & 0xf) - 8) * d);
      y[i + j + 16] = fr(((b >> 4) - 8) * d);
    }
  }],

  // d: f16, m: f16, qs[16]
  [GGMLType.Q4_1, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    const m = f16[u16(q, o + 2)]!;
    for (let j = 0; j < 16; j++) {
      const b = q[o + 4 + j]!;
      y[i + j] = fr(fr((b & 0xf) * d) + m);
      y[i + j + 16] = fr(fr((b >> 4) * d) + m);
    }
  }],

  // d: f16, qh: u32 (bit j = 5th bit of element j), qs[16]
  [GGMLType.Q5_0, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    const qh = u32(q, o + 2);
    for (let j = 0; j < 16; j++) {
      const b = q[o + 6 + j]!;
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      y[i + j] = fr((((b & 0xf) | h0) - 16) * d);
      y[i + j + 16] = fr((((b >> 4) | h1) - 16) * d);
    }
  }],

  // d: f16, m: f16, qh: u32, qs[16]
  [GGMLType.Q5_1, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    const m = f16[u16(q, o + 2)]!;
    const qh = u32(q, o + 4);
    for (let j = 0; j < 16; j++) {
      const b = q[o + 8 + j]!;
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      y[i + j] = fr(fr(((b & 0xf) | h0) * d) + m);
      y[i + j + 16] = fr(fr(((b >> 4) | h1) * d) + m);
    }
  }],

  // scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d: f16, dmin: f16
  [GGMLType.Q2_K, (q, o, y, i, f16) => {
    const d = f16[u16(q, o + 80)]!;
    const dmin = f16[u16(q, o + 82)]!;
    let qo = o + 16;
    let is = 0;
    for (let n = 0; n < 256; n += 128) {
      for (let shift = 0; shift < 8; shift += 2) {
        for (let half = 0; half < 2; half++) {
          const sc = q[o + is++]!;
          const dl = fr(d * (sc & 0xf));
          const ml = fr(dmin * (sc >> 4));
          for (let l = 0; l < 16; l++) y[i++] = fr(fr(dl * ((q[qo + 16 * half + l]! >> shift) & 3)) - ml);
        }
      }
      qo += 32;
    }
  }],

  // hmask[32] (bit b of byte l = high bit of element 32*b + l), qs[64], scales[12], d: f16
  [GGMLType.Q3_K, (q, o, y, i, f16) => {
    const d = f16[u16(q, o + 108)]!;
    let qo = o + 32;
    let is = 0;
    let m = 1;
    for (let n = 0; n < 256; n += 128) {
      for (let shift = 0; shift < 8; shift += 2) {
        for (let half = 0; half < 2; half++) {
          const dl = fr(d * scaleQ3K(is++, q, o + 96));
          for (let l = 0; l < 16; l++) {
            const low = (q[qo + 16 * half + l]! >> shift) & 3;
            const hi = q[o + 16 * half + l]! & m ? 0 : 4;
            y[i++] = fr(dl * (low - hi));
          }
        }
        m <<= 1;
      }
      qo += 32;
    }
  }],

  // d: f16, dmin: f16, scales[12] (6-bit, packed), qs[128]
  [GGMLType.Q4_K, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    const dmin = f16[u16(q, o + 2)]!;
    let qo = o + 16;
    for (let is = 0; is < 8; is += 2) {
      const [s1, m1] = scaleMinK4(is, q, o + 4);
      const [s2, m2] = scaleMinK4(is + 1, q, o + 4);
      const d1 = fr(d * s1), mm1 = fr(dmin * m1);
      const d2 = fr(d * s2), mm2 = fr(dmin * m2);
      for (let l = 0; l < 32; l++) y[i++] = fr(fr(d1 * (q[qo + l]! & 0xf)) - mm1);
      for (let l = 0; l < 32; l++) y[i++] = fr(fr(d2 * (q[qo + l]! >> 4)) - mm2);
      qo += 32;
    }
  }],

  // d: f16, dmin: f16, scales[12], qh[32], qs[128]
  [GGMLType.Q5_K, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    const dmin = f16[u16(q, o + 2)]!;
    const qh = o + 16;
    let ql = o + 48;
    let u1 = 1, u2 = 2;
    for (let is = 0; is < 8; is += 2) {
      const [s1, m1] = scaleMinK4(is, q, o + 4);
      const [s2, m2] = scaleMinK4(is + 1, q, o + 4);
      const d1 = fr(d * s1), mm1 = fr(dmin * m1);
      const d2 = fr(d * s2), mm2 = fr(dmin * m2);
      for (let l = 0; l < 32; l++) y[i++] = fr(fr(d1 * ((q[ql + l]! & 0xf) + (q[qh + l]! & u1 ? 16 : 0))) - mm1);
      for (let l = 0; l < 32; l++) y[i++] = fr(fr(d2 * ((q[ql + l]! >> 4) + (q[qh + l]! & u2 ? 16 : 0))) - mm2);
      ql += 32;
      u1 <<= 2;
      u2 <<= 2;
    }
  }],

  // ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16]: int8, d: f16
  [GGMLType.Q6_K, (q, o, y, i, f16) => {
    const d = f16[u16(q, o + 208)]!;
    let ql = o, qh = o + 128, sc = o + 192;
    for (let n = 0; n < 256; n += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = q[qh + l]!;
        const q1 = ((q[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((q[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((q[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((q[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        y[i + l] = fr(fr(d * i8(q[sc + is]!)) * q1);
        y[i + l + 32] = fr(fr(d * i8(q[sc + is + 2]!)) * q2);
        y[i + l + 64] = fr(fr(d * i8(q[sc + is + 4]!)) * q3);
        y[i + l + 96] = fr(fr(d * i8(q[sc + is + 6]!)) * q4);
      }
      i += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }],

  // d: f32, qs[256]: int8, bsums[16]: int16 (sums of 16 quants; not needed to dequantize)
  [GGMLType.Q8_K, (q, o, y, i) => {
    const d = f32FromBits(u32(q, o));
    for (let j = 0; j < 256; j++) y[i + j] = fr(d * i8(q[o + 4 + j]!));
  }],

  // d: f16, qs[16]: indices into kvalues_iq4nl, same nibble split as Q4_0
  [GGMLType.IQ4_NL, (q, o, y, i, f16) => {
    const d = f16[u16(q, o)]!;
    for (let j = 0; j < 16; j++) {
      const b = q[o + 2 + j]!;
      y[i + j] = fr(d * KVALUES_IQ4NL[b & 0xf]!);
      y[i + j + 16] = fr(d * KVALUES_IQ4NL[b >> 4]!);
    }
  }],

  // e: e8m0 scale, qs[16]: E2M1 indices, same nibble split as Q4_0
  [GGMLType.MXFP4, (q, o, y, i) => {
    const d = e8m0ToF32Half(q[o]!);
    for (let j = 0; j < 16; j++) {
      const b = q[o + 1 + j]!;
      y[i + j] = fr(KVALUES_MXFP4[b & 0xf]! * d);
      y[i + j + 16] = fr(KVALUES_MXFP4[b >> 4]! * d);
    }
  }],
]);

/** Types `dequantize` accepts. */
export const DEQUANTIZABLE_TYPES: readonly GGMLType[] = [...decoders.keys()];

export function canDequantize(type: GGMLType): boolean {
  return decoders.has(type);
}

function decoderFor(type: GGMLType): BlockDecoder {
  const dec = decoders.get(type);
  if (!dec) throw new TensorTypeError('UNSUPPORTED_TYPE', `cannot dequantize tensor type ${typeName(type)}`);
  return dec;
}

/**
 * Dequantize `nElements` values from `src` (raw little-endian bytes of whole blocks, starting at
 * `srcOffset`) into `out[outOffset ..]`. nElements must be a whole number of blocks.
 */
export function dequantizeRow(
  type: GGMLType,
  src: Uint8Array,
  srcOffset: number,
  nElements: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const dec = decoderFor(type);
  const { blockSize, blockBytes, name } = typeTraits(type)!;
  if (!Number.isSafeInteger(nElements) || nElements < 0 || nElements % blockSize !== 0) {
    throw new TensorTypeError('BAD_LENGTH', `${name}: ${nElements} elements is not a whole number of ${blockSize}-element blocks`);
  }
  const nBlocks = nElements / blockSize;
  const need = nBlocks * blockBytes;
  if (!Number.isSafeInteger(srcOffset) || srcOffset < 0 || src.length - srcOffset < need) {
    throw new TensorTypeError(
      'SHORT_INPUT',
      `${name}: ${nElements} elements need ${need} bytes at offset ${srcOffset} but the source holds ${src.length} bytes`,
    );
  }
  if (!Number.isSafeInteger(outOffset) || outOffset < 0 || out.length - outOffset < nElements) {
    throw new TensorTypeError('SHORT_OUTPUT', `${name}: output has room for ${out.length - outOffset} of ${nElements} elements`);
  }
  const f16 = f16ToF32Table();
  for (let b = 0; b < nBlocks; b++) dec(src, srcOffset + b * blockBytes, out, outOffset + b * blockSize, f16);
}

/** Dequantize the first `nElements` values of `src` into `out` (a new array when not given). */
export function dequantize(type: GGMLType, src: Uint8Array, nElements: number, out?: Float32Array): Float32Array {
  decoderFor(type);
  if (!Number.isSafeInteger(nElements) || nElements < 0) {
    throw new TensorTypeError('BAD_LENGTH', `${typeName(type)}: element count ${nElements} is not a non-negative integer`);
  }
  const result = out ?? new Float32Array(nElements);
  dequantizeRow(type, src, 0, nElements, result, 0);
  return result;
}
