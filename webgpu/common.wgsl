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
