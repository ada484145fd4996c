// Reference quantizers that reproduce ggml's quantize_row_*_ref bit for bit. ggml computes in
// float32, so every float operation here is rounded with Math.fround in the same order as the C
// code (C evaluates a*b*c as (a*b)*c); a double computed in between would change which level a
// value near a rounding boundary lands on, and with it the bytes. Integer conversions follow C too:
// roundf rounds half away from zero, nearest_int rounds half to even (float trick), casts truncate.
import { KVALUES_IQ4NL, KVALUES_MXFP4, scaleMinK4, scaleQ3K } from './dequant.js';
import { TensorTypeError } from './errors.js';
import { GGMLType, typeName, typeTraits } from './ggml-types.js';
import { e8m0ToF32Half, f16ToF32, f32Bits, f32ToBf16, f32ToF16 } from './half.js';

const fr = Math.fround;

/** ggml's GROUP_MAX_EPS (1e-15f): below this a group counts as all zero. */
const GROUP_MAX_EPS = fr(1e-15);
const FLT_MAX = 3.4028234663852886e38;
const F0_1 = fr(0.1);

const nearestScratch = new Float32Array(1);
const nearestBits = new Int32Array(nearestScratch.buffer);

/**
 * ggml's nearest_int: adds 1.5*2^23 in float32 and reads the low mantissa bits, which rounds half
 * to even for |x| < 2^22. Emulated on the bits so even out-of-range inputs give ggml's result.
 */
function nearestInt(x: number): number {
  nearestScratch[0] = x + 12582912;
  return (nearestBits[0]! & 0x007fffff) - 0x00400000;
}

/** C roundf: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

function putU16(q: Uint8Array, o: number, v: number): void {
  q[o] = v & 0xff;
  q[o + 1] = (v >>> 8) & 0xff;
}

function putU32(q: Uint8Array, o: number, v: number): void {
  q[o] = v & 0xff;
  q[o + 1] = (v >>> 8) & 0xff;
  q[o + 2] = (v >>> 16) & 0xff;
  q[o + 3] = (v >>> 24) & 0xff;
}

/** Stores d as f16 at q[o] and returns the value a reader will see (GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(d))). */
function putF16(q: Uint8Array, o: number, d: number): number {
  const h = f32ToF16(d);
  putU16(q, o, h);
  return f16ToF32(h);
}

/** Quantizes the block x[xo .. xo + blockSize) into q[o .. o + blockBytes) (q starts zeroed). */
type BlockEncoder = (x: Float32Array, xo: number, q: Uint8Array, o: number) => void;

// ---------------------------------------------------------------- 32-element blocks

function encodeQ8_0(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
  const d = fr(amax / 127);
  const id = d ? fr(1 / d) : 0;
  putF16(q, o, d);
  for (let j = 0; j < 32; j++) q[o + 2 + j] = roundf(fr(x[xo + j]! * id)) & 0xff;
}

/** The signed value of largest magnitude (first one wins ties), as ggml's Q4_0/Q5_0/K-quants pick it. */
function signedAbsMax(x: ArrayLike<number>, xo: number, n: number): [amax: number, max: number] {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return [amax, max];
}

function encodeQ4_0(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const [, max] = signedAbsMax(x, xo, 32);
  // The extreme value maps to -8 exactly, so the full 16-level range is used on its side.
  const d = fr(max / -8);
  const id = d ? fr(1 / d) : 0;
  putF16(q, o, d);
  for (let j = 0; j < 16; j++) {
    const x0 = fr(x[xo + j]! * id);
    const x1 = fr(x[xo + 16 + j]! * id);
    const q0 = Math.min(15, Math.trunc(fr(x0 + 8.5)));
    const q1 = Math.min(15, Math.trunc(fr(x1 + 8.5)));
    q[o + 2 + j] = q0 | (q1 << 4);
  }
}

function minMax(x: Float32Array, xo: number, n: number): [min: number, max: number] {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

function encodeQ4_1(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const [min, max] = minMax(x, xo, 32);
  const d = fr(fr(max - min) / 15);
  const id = d ? fr(1 / d) : 0;
  putF16(q, o, d);
  putF16(q, o + 2, min);
  for (let j = 0; j < 16; j++) {
    const x0 = fr(fr(x[xo + j]! - min) * id);
    const x1 = fr(fr(x[xo + 16 + j]! - min) * id);
    const q0 = Math.min(15, Math.trunc(fr(x0 + 0.5)));
    const q1 = Math.min(15, Math.trunc(fr(x1 + 0.5)));
    q[o + 4 + j] = q0 | (q1 << 4);
  }
}

function encodeQ5_0(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const [, max] = signedAbsMax(x, xo, 32);
  const d = fr(max / -16);
  const id = d ? fr(1 / d) : 0;
  putF16(q, o, d);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const x0 = fr(x[xo + j]! * id);
    const x1 = fr(x[xo + 16 + j]! * id);
    const q0 = Math.min(31, Math.trunc(fr(x0 + 16.5)));
    const q1 = Math.min(31, Math.trunc(fr(x1 + 16.5)));
    q[o + 6 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
    qh |= ((q0 >> 4) & 1) << j;
    qh |= ((q1 >> 4) & 1) << (j + 16);
  }
  putU32(q, o + 2, qh);
}

function encodeQ5_1(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const [min, max] = minMax(x, xo, 32);
  const d = fr(fr(max - min) / 31);
  const id = d ? fr(1 / d) : 0;
  putF16(q, o, d);
  putF16(q, o + 2, min);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const x0 = fr(fr(x[xo + j]! - min) * id);
    const x1 = fr(fr(x[xo + 16 + j]! - min) * id);
    // ggml casts straight to uint8_t here (no MIN(31, ...)): x0 never exceeds 31 + rounding.
    const q0 = Math.trunc(fr(x0 + 0.5)) & 0xff;
    const q1 = Math.trunc(fr(x1 + 0.5)) & 0xff;
    q[o + 8 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
    qh |= ((q0 >> 4) & 1) << j;
    qh |= ((q1 >> 4) & 1) << (j + 16);
  }
  putU32(q, o + 4, qh);
}

/** Index of the code-book entry nearest to x; ties go to the larger value (ggml's best_index_int8). */
function bestIndexInt8(values: Int8Array, x: number): number {
  // values is sorted and has 16 entries: x picks entry i once it reaches the midpoint of i-1 and i.
  // Comparing 2x with the integer sum keeps the midpoint test exact.
  const x2 = fr(x + x);
  let idx = 0;
  for (let step = 8; step > 0; step >>= 1) {
    const j = idx + step;
    if (x2 >= values[j - 1]! + values[j]!) idx = j;
  }
  return idx;
}

const iq4Weight = new Float32Array(32);
const iq4L = new Uint8Array(32);

/** IQ4_NL's reference quantizer (quantize_row_iq4_nl_ref: weights x², one least-squares scale, no search). */
function encodeIQ4_NL(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const values = KVALUES_IQ4NL;
  for (let j = 0; j < 32; j++) iq4Weight[j] = x[xo + j]! * x[xo + j]!;
  const [amax, max] = signedAbsMax(x, xo, 32);
  let d = 0;
  if (amax < GROUP_MAX_EPS) {
    iq4L.fill(0);
  } else {
    // Map the extreme value onto values[0] (-127), then refit the scale by least squares.
    d = fr(max / values[0]!);
    const id = fr(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < 32; j++) {
      const l = bestIndexInt8(values, fr(id * x[xo + j]!));
      iq4L[j] = l;
      const v = values[l]!;
      const w = iq4Weight[j]!;
      sumqx = fr(sumqx + fr(fr(w * v) * x[xo + j]!));
      sumq2 = fr(sumq2 + fr(fr(w * v) * v));
    }
    d = sumq2 > 0 ? fr(sumqx / sumq2) : 0;
  }
  putF16(q, o, d);
  for (let j = 0; j < 16; j++) q[o + 2 + j] = iq4L[j]! | (iq4L[j + 16]! << 4);
}

/** Index of the MXFP4 value nearest to x at scale e; the first of equally near ones wins. */
function bestIndexMxfp4(x: number, e: number): number {
  let best = 0;
  let bestErr = Math.abs(fr(fr(KVALUES_MXFP4[0]! * e) - x));
  for (let i = 1; i < 16; i++) {
    const err = Math.abs(fr(fr(KVALUES_MXFP4[i]! * e) - x));
    if (err < bestErr) {
      best = i;
      bestErr = err;
    }
  }
  return best;
}

function encodeMXFP4(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) if (amax < Math.abs(x[xo + j]!)) amax = Math.abs(x[xo + j]!);
  // The largest E2M1 magnitude is 6 = 1.5 * 2^2, hence the exponent of amax minus 2. ggml casts the
  // float to uint8_t; for amax below 2^-125 that would be undefined, so the exponent is clamped to 0.
  const e = amax > 0 ? clamp(Math.floor(fr(Math.log2(amax))) - 2 + 127, 0, 255) : 0;
  const d = e8m0ToF32Half(e);
  q[o] = e;
  for (let j = 0; j < 16; j++) {
    q[o + 1 + j] = bestIndexMxfp4(x[xo + j]!, d) | (bestIndexMxfp4(x[xo + 16 + j]!, d) << 4);
  }
}

// ---------------------------------------------------------------- K-quant helpers (QK_K = 256)

/**
 * ggml's make_qkx2_quants: fits x[i] ≈ scale*L[i] - theMin with L in [0, nmax], minimizing the
 * weighted squared (or absolute, useMad) error over a small grid of candidate scales. Writes L and
 * returns [scale, theMin].
 */
function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
): [scale: number, theMin: number] {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = fr(sumW + w);
    sumX = fr(sumX + fr(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fr(iscale * fr(xi - min))), 0, nmax);
    L[lo + i] = l;
    let diff = fr(fr(fr(scale * l) + min) - xi);
    diff = useMad ? Math.abs(diff) : fr(diff * diff);
    bestError = fr(bestError + fr(weights[i]! * diff));
  }
  if (nstep < 1) return [scale, -min];
  for (let is = 0; is <= nstep; is++) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = clamp(nearestInt(fr(iscale * fr(xi - min))), 0, nmax);
      Laux[i] = l;
      const w = weights[i]!;
      const wl = fr(w * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * xi));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = useMad ? Math.abs(diff) : fr(diff * diff);
        curError = fr(curError + fr(weights[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/**
 * ggml's make_qx_quants with rmse_type 1 and no importance weights (weights x²): symmetric
 * x[i] ≈ scale*(L[i] - nmax) with L - nmax in [-nmax, nmax - 1], trying 18 nearby scales.
 */
function makeQxQuantsRmse1(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  const [amax, max] = signedAbsMax(x, xo, n);
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fr(iscale * xi)), -nmax, nmax - 1);
    L[lo + i] = l + nmax;
    const w = fr(xi * xi);
    sumlx = fr(sumlx + fr(fr(w * xi) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  let scale = suml2 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(F0_1 * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = clamp(nearestInt(fr(iscale * xi)), -nmax, nmax - 1);
      const w = fr(xi * xi);
      sumlx = fr(sumlx + fr(fr(w * xi) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + clamp(nearestInt(fr(iscale * x[xo + i]!)), -nmax, nmax - 1);
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

/**
 * ggml's make_q3_quants with do_rmse: symmetric levels in [-nmax, nmax-1] refined by up to five
 * passes of coordinate descent on the weighted (x²) least-squares fit. L ends up offset by nmax.
 */
function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  const [amax, max] = signedAbsMax(x, xo, n);
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fr(iscale * xi)), -nmax, nmax - 1);
    L[lo + i] = l;
    const w = fr(xi * xi);
    sumlx = fr(sumlx + fr(fr(w * xi) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const li = L[lo + i]!;
      const w = fr(xi * xi);
      let slx = fr(sumlx - fr(fr(w * xi) * li));
      if (slx > 0) {
        let sl2 = fr(suml2 - fr(fr(w * li) * li));
        const newL = clamp(nearestInt(fr(fr(xi * sl2) / slx)), -nmax, nmax - 1);
        if (newL !== li) {
          slx = fr(slx + fr(fr(w * xi) * newL));
          sl2 = fr(sl2 + fr(fr(w * newL) * newL));
          if (sl2 > 0 && fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2)) {
            L[lo + i] = newL;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] = L[lo + i]! + nmax;
  return suml2 > 0 ? fr(sumlx / suml2) : 0;
}

// Scratch shared by the K-quant encoders (the code is synchronous, so one set suffices).
const kL = new Uint8Array(256);
const kLs = new Int8Array(256);
const kLaux = new Uint8Array(32);
const kWeights = new Float32Array(32);
const kScales = new Float32Array(16);
const kMins = new Float32Array(16);

/** Packs 2-bit values L[0..256) four to a byte, in ggml's order (Q2_K and Q3_K). */
function pack2Bit(L: ArrayLike<number>, q: Uint8Array, o: number): void {
  for (let j = 0; j < 256; j += 128) {
    for (let l = 0; l < 32; l++) {
      q[o + j / 4 + l] = L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) | (L[j + l + 96]! << 6);
    }
  }
}

// block_q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82
function encodeQ2_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const L = kL;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) kWeights[l] = Math.abs(x[xo + 16 * j + l]!);
    const [scale, min] = makeQkx2Quants(16, 3, x, xo + 16 * j, kWeights, L, 16 * j, kLaux, -0.5, F0_1, 15, true);
    kScales[j] = scale;
    kMins[j] = min;
    if (scale > maxScale) maxScale = scale;
    if (min > maxMin) maxMin = min;
  }
  const sc = o;
  if (maxScale > 0) {
    const iscale = fr(15 / maxScale);
    for (let j = 0; j < 16; j++) q[sc + j] = nearestInt(fr(iscale * kScales[j]!)) & 0xff;
    putF16(q, o + 80, fr(maxScale / 15));
  } else {
    q.fill(0, sc, sc + 16);
    putF16(q, o + 80, 0);
  }
  if (maxMin > 0) {
    const iscale = fr(15 / maxMin);
    for (let j = 0; j < 16; j++) q[sc + j] = (q[sc + j]! | (nearestInt(fr(iscale * kMins[j]!)) << 4)) & 0xff;
    putF16(q, o + 82, fr(maxMin / 15));
  } else {
    putF16(q, o + 82, 0);
  }
  const dAll = f16ToF32(q[o + 80]! | (q[o + 81]! << 8));
  const mAll = f16ToF32(q[o + 82]! | (q[o + 83]! << 8));
  for (let j = 0; j < 16; j++) {
    const d = fr(dAll * (q[sc + j]! & 0xf));
    if (!d) continue; // keep the levels from the fit
    const dm = fr(mAll * (q[sc + j]! >> 4));
    for (let i = 0; i < 16; i++) {
      L[16 * j + i] = clamp(nearestInt(fr(fr(x[xo + 16 * j + i]! + dm) / d)), 0, 3);
    }
  }
  pack2Bit(L, q, o + 16);
}

// block_q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108
function encodeQ3_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const L = kLs;
  let maxScale = 0;
  let amax = 0;
  for (let j = 0; j < 16; j++) {
    const scale = makeQ3Quants(16, 4, x, xo + 16 * j, L, 16 * j);
    kScales[j] = scale;
    if (Math.abs(scale) > amax) {
      amax = Math.abs(scale);
      maxScale = scale;
    }
  }
  const sc = o + 96;
  q.fill(0, sc, sc + 12);
  if (maxScale) {
    const iscale = fr(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      // ggml stores nearest_int into an int8_t before clamping.
      const l = clamp((nearestInt(fr(iscale * kScales[j]!)) << 24) >> 24, -32, 31) + 32;
      if (j < 8) q[sc + j] = l & 0xf;
      else q[sc + j - 8] |= (l & 0xf) << 4;
      q[sc + 8 + (j % 4)] |= (l >> 4) << (2 * Math.floor(j / 4));
    }
    putF16(q, o + 108, fr(1 / iscale));
  } else {
    putF16(q, o + 108, 0);
  }
  const dAll = f16ToF32(q[o + 108]! | (q[o + 109]! << 8));
  for (let j = 0; j < 16; j++) {
    const d = fr(dAll * scaleQ3K(j, q, sc));
    if (!d) continue;
    for (let i = 0; i < 16; i++) {
      L[16 * j + i] = clamp(nearestInt(fr(x[xo + 16 * j + i]! / d)), -4, 3) + 4;
    }
  }
  // High bit of element j goes to bit j/32 of hmask byte j%32.
  q.fill(0, o, o + 32);
  for (let j = 0; j < 256; j++) {
    if (L[j]! > 3) {
      q[o + (j % 32)] |= 1 << (j >> 5);
      L[j] = L[j]! - 4;
    }
  }
  pack2Bit(L, q, o + 32);
}

/** Packs Q4_K/Q5_K's eight 6-bit scales and mins into 12 bytes at q[o] (inverse of scaleMinK4). */
function packScaleMinK4(ls: ArrayLike<number>, lm: ArrayLike<number>, q: Uint8Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      q[o + j] = ls[j]!;
      q[o + j + 4] = lm[j]!;
    } else {
      q[o + j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
      q[o + j - 4] |= (ls[j]! >> 4) << 6;
      q[o + j] |= (lm[j]! >> 4) << 6;
    }
  }
}

const kLsc = new Uint8Array(8);
const kLmn = new Uint8Array(8);

/**
 * Shared body of Q4_K (nmax 15) and Q5_K (nmax 31): per 32-element sub-block an asymmetric fit with
 * weights av_x + |x|, then 6-bit scales/mins relative to the block maxima, then requantization
 * against the rounded scales. Writes d, dmin and the packed scales; leaves the levels in kL.
 */
function encodeK4K5Scales(
  x: Float32Array,
  xo: number,
  q: Uint8Array,
  o: number,
  nmax: number,
  rmin: number,
  nstep: number,
): void {
  const L = kL;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + 32 * j + l]! * x[xo + 32 * j + l]!));
    const avX = fr(Math.sqrt(fr(sumX2 / 32)));
    for (let l = 0; l < 32; l++) kWeights[l] = avX + Math.abs(x[xo + 32 * j + l]!);
    const [scale, min] = makeQkx2Quants(32, nmax, x, xo + 32 * j, kWeights, L, 32 * j, kLaux, rmin, F0_1, nstep, false);
    kScales[j] = scale;
    kMins[j] = min;
    if (scale > maxScale) maxScale = scale;
    if (min > maxMin) maxMin = min;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    // uint8_t stores, then MIN(63, ...), as in ggml
    kLsc[j] = Math.min(63, nearestInt(fr(invScale * kScales[j]!)) & 0xff);
    kLmn[j] = Math.min(63, nearestInt(fr(invMin * kMins[j]!)) & 0xff);
  }
  q.fill(0, o + 4, o + 16);
  packScaleMinK4(kLsc, kLmn, q, o + 4);
  const dAll = putF16(q, o, fr(maxScale / 63));
  const mAll = putF16(q, o + 2, fr(maxMin / 63));
  for (let j = 0; j < 8; j++) {
    const [s, m] = scaleMinK4(j, q, o + 4);
    const d = fr(dAll * s);
    if (!d) continue;
    const dm = fr(mAll * m);
    for (let i = 0; i < 32; i++) {
      L[32 * j + i] = clamp(nearestInt(fr(fr(x[xo + 32 * j + i]! + dm) / d)), 0, nmax);
    }
  }
}

// block_q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16
function encodeQ4_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  encodeK4K5Scales(x, xo, q, o, 15, -1, 20);
  const L = kL;
  for (let j = 0, qo = o + 16; j < 256; j += 64, qo += 32) {
    for (let l = 0; l < 32; l++) q[qo + l] = L[j + l]! | (L[j + l + 32]! << 4);
  }
}

// block_q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
function encodeQ5_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  encodeK4K5Scales(x, xo, q, o, 31, -0.5, 15);
  const L = kL;
  const qh = o + 16;
  q.fill(0, qh, qh + 32);
  let m1 = 1, m2 = 2;
  for (let n = 0, ql = o + 48; n < 256; n += 64, ql += 32) {
    for (let j = 0; j < 32; j++) {
      let l1 = L[n + j]!;
      if (l1 > 15) {
        l1 -= 16;
        q[qh + j] |= m1;
      }
      let l2 = L[n + j + 32]!;
      if (l2 > 15) {
        l2 -= 16;
        q[qh + j] |= m2;
      }
      q[ql + j] = l1 | (l2 << 4);
    }
    m1 <<= 2;
    m2 <<= 2;
  }
}

// block_q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208
function encodeQ6_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const L = kL;
  let maxScale = 0;
  let maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuantsRmse1(16, 32, x, xo + 16 * ib, L, 16 * ib);
    kScales[ib] = scale;
    if (Math.abs(scale) > maxAbsScale) {
      maxAbsScale = Math.abs(scale);
      maxScale = scale;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    q.fill(0, o, o + 210);
    return;
  }
  const iscale = fr(-128 / maxScale);
  const dAll = putF16(q, o + 208, fr(1 / iscale));
  for (let ib = 0; ib < 16; ib++) q[o + 192 + ib] = Math.min(127, nearestInt(fr(iscale * kScales[ib]!))) & 0xff;
  for (let j = 0; j < 16; j++) {
    const d = fr(dAll * ((q[o + 192 + j]! << 24) >> 24));
    if (!d) continue;
    for (let i = 0; i < 16; i++) {
      L[16 * j + i] = clamp(nearestInt(fr(x[xo + 16 * j + i]! / d)), -32, 31) + 32;
    }
  }
  for (let j = 0, ql = o, qh = o + 128; j < 256; j += 128, ql += 64, qh += 32) {
    for (let l = 0; l < 32; l++) {
      const a = L[j + l]!, b = L[j + l + 32]!, c = L[j + l + 64]!, e = L[j + l + 96]!;
      q[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
      q[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
      q[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}

// block_q8_K: d (f32) @0, qs[256] @4, bsums[16] (int16) @260
function encodeQ8_K(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  const [amax, max] = signedAbsMax(x, xo, 256);
  if (!amax) {
    q.fill(0, o, o + 292);
    return;
  }
  // -127 rather than -128 so every quant fits in [-127, 127], as ggml's SIMD dot products need.
  const iscale = fr(-127 / max);
  for (let j = 0; j < 256; j++) q[o + 4 + j] = Math.min(127, nearestInt(fr(iscale * x[xo + j]!))) & 0xff;
  for (let j = 0; j < 16; j++) {
    let sum = 0;
    for (let i = 0; i < 16; i++) sum += (q[o + 4 + 16 * j + i]! << 24) >> 24;
    putU16(q, o + 260 + 2 * j, sum & 0xffff);
  }
  putU32(q, o, f32Bits(fr(1 / iscale)));
}

// ---------------------------------------------------------------- element types

function encodeF32(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  putU32(q, o, f32Bits(x[xo]!));
}
function encodeF16(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  putU16(q, o, f32ToF16(x[xo]!));
}
function encodeBF16(x: Float32Array, xo: number, q: Uint8Array, o: number): void {
  putU16(q, o, f32ToBf16(x[xo]!));
}

const encoders = new Map<GGMLType, BlockEncoder>([
  [GGMLType.F32, encodeF32],
  [GGMLType.F16, encodeF16],
  [GGMLType.BF16, encodeBF16],
  [GGMLType.Q8_0, encodeQ8_0],
  [GGMLType.Q4_0, encodeQ4_0],
  [GGMLType.Q4_1, encodeQ4_1],
  [GGMLType.Q5_0, encodeQ5_0],
  [GGMLType.Q5_1, encodeQ5_1],
  [GGMLType.Q2_K, encodeQ2_K],
  [GGMLType.Q3_K, encodeQ3_K],
  [GGMLType.Q4_K, encodeQ4_K],
  [GGMLType.Q5_K, encodeQ5_K],
  [GGMLType.Q6_K, encodeQ6_K],
  [GGMLType.Q8_K, encodeQ8_K],
  [GGMLType.IQ4_NL, encodeIQ4_NL],
  [GGMLType.MXFP4, encodeMXFP4],
]);

/** Types `quantize` can produce. */
export const QUANTIZABLE_TYPES: GGMLType[] = [...encoders.keys()];

export function canQuantize(type: GGMLType): boolean {
  return encoders.has(type);
}

/**
 * Quantize `nElements` values of `src` starting at `srcOffset` into `out` at byte `outOffset`.
 * nElements must be a whole number of blocks. Block types reject NaN and infinity (their scales
 * cannot hold them); F32/F16/BF16 store them as they are.
 */
export function quantizeRow(
  type: GGMLType,
  src: Float32Array,
  srcOffset: number,
  nElements: number,
  out: Uint8Array,
  outOffset = 0,
): void {
  const enc = encoders.get(type);
  if (!enc) throw new TensorTypeError('UNSUPPORTED_TYPE', `cannot quantize to tensor type ${typeName(type)}`);
  const { blockSize, blockBytes, name } = typeTraits(type)!;
  if (!Number.isSafeInteger(nElements) || nElements < 0 || nElements % blockSize !== 0) {
    throw new TensorTypeError('BAD_LENGTH', `${name}: ${nElements} elements is not a whole number of ${blockSize}-element blocks`);
  }
  if (!Number.isSafeInteger(srcOffset) || srcOffset < 0 || src.length - srcOffset < nElements) {
    throw new TensorTypeError('SHORT_INPUT', `${name}: need ${nElements} elements at offset ${srcOffset}, source has ${src.length}`);
  }
  const nBlocks = nElements / blockSize;
  if (!Number.isSafeInteger(outOffset) || outOffset < 0 || out.length - outOffset < nBlocks * blockBytes) {
    throw new TensorTypeError('SHORT_OUTPUT', `${name}: ${nElements} elements need ${nBlocks * blockBytes} bytes, output has ${out.length - outOffset}`);
  }
  if (blockSize > 1) {
    for (let i = srcOffset; i < srcOffset + nElements; i++) {
      if (!Number.isFinite(src[i]!)) {
        throw new TensorTypeError('NON_FINITE', `${name}: element ${i - srcOffset} is ${src[i]}; block quantizers need finite values`);
      }
    }
  }
  for (let b = 0; b < nBlocks; b++) enc(src, srcOffset + b * blockSize, out, outOffset + b * blockBytes);
}

/**
 * Quantize whole rows of `rowLength` elements (a multiple of the type's block size) and return the
 * raw little-endian bytes, laid out as ggml and GGUF store them.
 */
export function quantize(type: GGMLType, src: Float32Array, rowLength: number): Uint8Array {
  if (!encoders.has(type)) throw new TensorTypeError('UNSUPPORTED_TYPE', `cannot quantize to tensor type ${typeName(type)}`);
  const { blockSize, blockBytes, name } = typeTraits(type)!;
  if (!Number.isSafeInteger(rowLength) || rowLength <= 0 || rowLength % blockSize !== 0) {
    throw new TensorTypeError('BAD_LENGTH', `${name}: row length ${rowLength} is not a positive multiple of the block size ${blockSize}`);
  }
  if (src.length % rowLength !== 0) {
    throw new TensorTypeError('BAD_LENGTH', `${name}: ${src.length} elements is not a whole number of ${rowLength}-element rows`);
  }
  const out = new Uint8Array((src.length / blockSize) * blockBytes);
  quantizeRow(type, src, 0, src.length, out, 0);
  return out;
}
