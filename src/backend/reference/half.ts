// IEEE 754 binary16 conversions for the test oracle, written from the format's definition with
// plain arithmetic (no bit tricks on the f16 side) so they are easy to check by eye.
// Kept separate from any src/ helper on purpose: the oracle must not share code with what it checks.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round a non-negative value to the nearest integer, ties to even (exact for < 2^52). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** f32 value (rounded to f32 first) to f16 bits, round to nearest even, overflow to infinity. */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp32 = (bits >>> 23) & 0xff;
  if (exp32 === 0xff) return (bits & 0x7fffff) !== 0 ? 0x7e00 : sign | 0x7c00;
  const a = Math.abs(f32[0]);
  if (a < 2 ** -14) {
    // Subnormal range: quantum 2^-24. n can reach 1024, which is exactly the smallest normal.
    return sign | roundHalfEven(a / 2 ** -24);
  }
  const e = exp32 - 127; // a is an f32 normal here since a >= 2^-14
  const n = roundHalfEven(a / 2 ** (e - 10)); // 1024..2048 significand steps
  const h = ((e + 15) << 10) + (n - 1024); // n = 2048 carries into the exponent
  return h >= 0x7c00 ? sign | 0x7c00 : sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** bf16 bits (upper half of an f32) to a number. */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}
