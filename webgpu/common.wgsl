// Helpers every kernel may use. Exact conversions are written out with integer operations rather
// than left to pack2x16float / unpack2x16float, whose rounding and subnormal handling the WGSL
// spec leaves to the implementation: the cache and the F16 weight path must round to nearest even
// as the CPU backends do, on every GPU.

/** The index of this workgroup in a grid laid out by the host as (x up to 65535, y). */
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

/** IEEE binary16 bits to f32, exactly (subnormals included). */
fn f16_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8; // m * 2^-24, exact
    return bitcast<f32>(bitcast<u32>(v) | sign);
  }
  if (e == 31u) {
    return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
  }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

/** f32 to binary16 bits, rounded to nearest even; overflow gives infinity. */
fn f32_to_f16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | 0x7e00u; }
  if (a >= 0x477ff000u) { return sign | 0x7c00u; }
  if (a < 0x38800000u) {
    // below 2^-14: an f16 subnormal, units of 2^-24
    let e = a >> 23u;
    if (e < 102u) { return sign; }
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    var q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u) == 1u)) { q = q + 1u; }
    return sign | q;
  }
  var h = (a - 0x38000000u) >> 13u;
  let rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }
  return sign | h;
}

fn round_f16(x: f32) -> f32 { return f16_to_f32(f32_to_f16(x)); }

/** x rounded to bfloat16 (nearest even), as an f32. */
fn round_bf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return x; }
  let r = (b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u;
  return bitcast<f32>(r);
}

/** sign-extended byte */
fn sext8(v: u32) -> i32 { return bitcast<i32>(v << 24u) >> 24u; }

// sin and cos with our own range reduction and polynomials: WGSL only promises 2^-11 absolute
// error for the built-ins (and nothing outside [-pi, pi]), and RoPE angles reach 1e5 radians.
// Cody-Waite reduction by pi/2 in three parts whose products with the quadrant are exact.
const PIO2_1: f32 = 1.5703125;
const PIO2_2: f32 = 4.825592041015625e-4;
const PIO2_3: f32 = 1.2675908e-6;

fn sin_poly(r: f32) -> f32 {
  let r2 = r * r;
  return r + r * r2 * (-1.6666667e-1 + r2 * (8.3333337e-3 + r2 * (-1.9841270e-4 + r2 * 2.7557314e-6)));
}
fn cos_poly(r: f32) -> f32 {
  let r2 = r * r;
  return 1.0 + r2 * (-0.5 + r2 * (4.1666668e-2 + r2 * (-1.3888889e-3 + r2 * (2.4801587e-5 - r2 * 2.7557319e-7))));
}
/** (cos x, sin x) */
fn cos_sin(x: f32) -> vec2<f32> {
  let k = round(x * 0.63661977236758134);
  let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
  let q = u32(i32(k) & 3);
  let s = sin_poly(r);
  let c = cos_poly(r);
  if (q == 0u) { return vec2<f32>(c, s); }
  if (q == 1u) { return vec2<f32>(-s, c); }
  if (q == 2u) { return vec2<f32>(-c, -s); }
  return vec2<f32>(s, -c);
}

/** tanh without the cancellation of the exp form near 0. */
fn tanh_f32(x: f32) -> f32 {
  let a = abs(x);
  var t: f32;
  if (a < 0.55) {
    let x2 = a * a;
    t = a + a * x2 * (-3.3333334e-1 + x2 * (1.3333334e-1 + x2 * (-5.3968254e-2 + x2 * (2.1869488e-2 + x2 * (-8.8632355e-3 + x2 * (3.5921280e-3 - x2 * 1.4558344e-3))))));
  } else if (a > 9.5) { // 1 - tanh < 2^-26: rounds to 1
    t = 1.0;
  } else {
    t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  }
  return select(t, -t, x < 0.0);
}

// ---- ggml's reference block quantizers (quantize_row_q8_0_ref / q4_0_ref), bit for bit: the
// quantized KV cache and the queries that dot it (store_kv_blocks.wgsl, attention.wgsl).

/** a * b - f32(a * b), exactly (Dekker's product on Veltkamp halves; p = f32(a * b)). */
fn prod_err(a: f32, b: f32, p: f32) -> f32 {
  let ca = 4097.0 * a;
  let ah = ca - (ca - a);
  let al = a - ah;
  let cb = 4097.0 * b;
  let bh = cb - (cb - b);
  let bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

/** |a - q b|, q's residual, for a quotient q near a / b (a - f32(q b) is then exact). */
fn quot_residual(a: f32, b: f32, q: f32) -> f32 {
  let p = q * b;
  return abs((a - p) - prod_err(q, b, p));
}

/**
 * a / b (a >= 0, b > 0, finite) rounded to nearest as IEEE division: WGSL lets division be 2.5 ulp
 * off, which would move a quantization scale and with it whole levels. The quotient and its two
 * neighbours are judged by their exact residuals.
 */
fn div_rn(a: f32, b: f32) -> f32 {
  let q = a / b;
  if (q == 0.0 || q > 3.0e38) { return q; }
  let up = bitcast<f32>(bitcast<u32>(q) + 1u);
  let down = bitcast<f32>(bitcast<u32>(q) - 1u);
  var best = q;
  var r = quot_residual(a, b, q);
  let ru = quot_residual(a, b, up);
  if (ru < r) { best = up; r = ru; }
  let rd = quot_residual(a, b, down);
  if (rd < r) { best = down; }
  return best;
}

/** C roundf: half away from zero (v - trunc(v) is exact). */
fn round_away(v: f32) -> f32 {
  let t = trunc(v);
  return select(t, t + sign(v), abs(v - t) >= 0.5);
}

/** Q8_0's scale d = amax / 127 and multiplier 1 / d (0 for an all-zero block). */
fn q8_0_scale(amax: f32) -> vec2<f32> {
  let d = div_rn(amax, 127.0);
  return vec2<f32>(d, select(0.0, div_rn(1.0, d), d != 0.0));
}

/** Q8_0's level of x: roundf(x / d) as i32. */
fn q8_0_level(x: f32, id: f32) -> i32 { return i32(round_away(x * id)); }

/** Q4_0's scale d = max / -8 (max: the signed value of largest magnitude; exact) and 1 / d. */
fn q4_0_scale(mx: f32) -> vec2<f32> {
  let d = mx * -0.125;
  return vec2<f32>(d, select(0.0, -div_rn(1.0, abs(d)) * sign(mx), d != 0.0));
}

/** Q4_0's code of x: min(15, trunc(x / d + 8.5)). */
fn q4_0_code(x: f32, id: f32) -> u32 { return min(15u, u32(x * id + 8.5)); }

/**
 * Attention's fold of two online-softmax states with maxes m1 and m2: each state's rescale to the
 * larger max. One function for attention.wgsl and attention_fold.wgsl, so both fold with the same bits.
 */
fn fold_factors(m1: f32, m2: f32) -> vec2<f32> {
  let m = max(m1, m2);
  return vec2<f32>(exp(m1 - m), exp(m2 - m));
}

/** A folded sum (of weights or of one output dim): a rescaled by f.x plus b by f.y. */
fn fold_add(a: f32, b: f32, f: vec2<f32>) -> f32 {
  return a * f.x + b * f.y;
}
