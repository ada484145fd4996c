// Scalar conversions between float32 and the narrow float formats ggml stores: IEEE half (f16),
// bfloat16 and the e8m0 power-of-two scale of MXFP4. Encoders round exactly as ggml's portable C
// code does, so quantized scales come out bit-identical to files written by ggml.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The IEEE-754 binary32 bit pattern of x (after rounding x to float32). */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The float32 whose bit pattern is `bits`. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

/**
 * float32 → f16 bits, round to nearest even, overflow to ±inf, exact for f16 subnormals.
 * NaN becomes the quiet NaN 0x7e00 with the sign kept, as ggml's portable converter does.
 */
export function f32ToF16(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00);
  // float32 subnormals are below 2^-126, far under half of f16's smallest subnormal (2^-24).
  if (exp === 0) return sign;
  const e = exp - 127 + 15; // f16 biased exponent
  const m = mant | 0x800000; // 24-bit significand with the implicit bit
  // Drop 13 bits for a normal f16; more when the result is subnormal (e < 1).
  const shift = e >= 1 ? 13 : 13 + 1 - e;
  if (shift > 25) return sign; // below half of the smallest subnormal: rounds to zero
  let q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (q & 1) === 1)) q++;
  // For normals q carries the implicit bit (0x400) into the exponent field; a rounding carry
  // moves to the next binade (or to inf) on its own. For subnormals q may reach 0x400 = min normal.
  const h = e >= 1 ? ((e - 1) << 10) + q : q;
  return sign | (h >= 0x7c00 ? 0x7c00 : h);
}

let f16Table: Float32Array | undefined;

function f16ToF32Slow(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** All 65536 f16 values as float32 (built on first use; 256 KiB). */
export function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16ToF32Slow(h);
    f16Table = t;
  }
  return f16Table;
}

/** f16 bits → float32 value (exact). */
export function f16ToF32(h: number): number {
  return (f16Table ?? f16ToF32Table())[h & 0xffff]!;
}

/**
 * float32 → bfloat16 bits the way ggml does it: round to nearest even on the upper 16 bits,
 * subnormals kept (not flushed), NaN forced quiet by setting bit 6 of the result.
 */
export function f32ToBf16(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits → float32 value (exact: bf16 is the top half of a float32). */
export function bf16ToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/**
 * e8m0 (an 8-bit biased exponent, bias 127) → 2^(e-127). ggml maps e = 0 to 2^-127 (a float32
 * subnormal) and does not treat 0xff as NaN: it yields +inf, so we do the same.
 */
export function e8m0ToF32(e: number): number {
  e &= 0xff;
  return f32FromBits(e === 0 ? 0x00400000 : e << 23);
}

/**
 * Half of e8m0ToF32: 2^(e-128). MXFP4 stores its E2M1 values doubled (kvalues_mxfp4 are integers),
 * so ggml scales them by half the block's e8m0 scale.
 */
export function e8m0ToF32Half(e: number): number {
  e &= 0xff;
  return f32FromBits(e < 2 ? 0x00200000 << e : (e - 1) << 23);
}
