// RMSNorm as ggml computes it: sum of squares in f64, mean rounded to f32,
// scale = 1/sqrtf(mean + eps), out = (x * scale) * weight. LayerNorm (BERT) as ggml_norm followed
// by ggml_mul and ggml_add: the mean from an f64 sum, the variance of the f32 differences from an
// f64 sum, scale = 1/sqrtf(var + eps), out = ((x - mean) * scale) * weight + bias.
import { NORM_BIAS, NORM_EPS, NORM_N, NORM_N_TOKENS, NORM_OUT, NORM_WEIGHT, NORM_X } from './abi';
import { arg, argf, splitAt } from './common';

/** NORM_* args (abi.ts); split by tokens. out may equal x. */
export function rmsNorm(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, NORM_OUT);
  const x = <usize>arg(args, NORM_X);
  const w = <usize>arg(args, NORM_WEIGHT);
  const n = arg(args, NORM_N);
  const nTokens = arg(args, NORM_N_TOKENS);
  const eps = argf(args, NORM_EPS);
  const n4 = n & ~3;
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const xr = x + <usize>t * <usize>n * 4;
    const orow = out + <usize>t * <usize>n * 4;
    // squares in f32, summed in f64: lanes (4i, 4i+1) and (4i+2, 4i+3) in two f64x2 accumulators
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
    for (let i = 0; i < n4; i += 4) {
      const v = v128.load(xr + (<usize>i << 2));
      const sq = f32x4.mul(v, v);
      s0 = f64x2.add(s0, f64x2.promote_low_f32x4(sq));
      s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i64x2.shuffle(sq, sq, 1, 0)));
    }
    const s = f64x2.add(s0, s1);
    let sum = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
    for (let i = n4; i < n; i++) {
      const v = load<f32>(xr + (<usize>i << 2));
      sum += <f64>(v * v);
    }
    const mean = <f32>(sum / <f64>n);
    const scale: f32 = <f32>1.0 / Mathf.sqrt(mean + eps);
    const sv = f32x4.splat(scale);
    for (let i = 0; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(orow + o, f32x4.mul(f32x4.mul(v128.load(xr + o), sv), v128.load(w + o)));
    }
    for (let i = n4; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(orow + o, (load<f32>(xr + o) * scale) * load<f32>(w + o));
    }
  }
}

/** NORM_* args with NORM_BIAS (abi.ts); split by tokens. out may equal x. */
export function layerNorm(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, NORM_OUT);
  const x = <usize>arg(args, NORM_X);
  const w = <usize>arg(args, NORM_WEIGHT);
  const b = <usize>arg(args, NORM_BIAS);
  const n = arg(args, NORM_N);
  const nTokens = arg(args, NORM_N_TOKENS);
  const eps = argf(args, NORM_EPS);
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const xr = x + <usize>t * <usize>n * 4;
    const orow = out + <usize>t * <usize>n * 4;
    let sum: f64 = 0;
    for (let i = 0; i < n; i++) sum += <f64>load<f32>(xr + (<usize>i << 2));
    const mean: f32 = <f32>sum / <f32>n;
    let sq: f64 = 0;
    for (let i = 0; i < n; i++) {
      const d: f32 = load<f32>(xr + (<usize>i << 2)) - mean;
      sq += <f64>(d * d);
    }
    const variance = <f32>(sq / <f64>n);
    const scale: f32 = <f32>1.0 / Mathf.sqrt(variance + eps);
    for (let i = 0; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(orow + o, ((load<f32>(xr + o) - mean) * scale) * load<f32>(w + o) + load<f32>(b + o));
    }
  }
}
