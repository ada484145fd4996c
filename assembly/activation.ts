// Element-wise ops: SwiGLU, GeGLU, SiLU, GELU (tanh form), scale, softcap, add, add bias. Vector lanes and the scalar
// tail use the same lane math (expv), so an element's value does not depend on its position.
import {
  BIAS_BIAS, BIAS_N, BIAS_N_TOKENS, BIAS_OUT, BIAS_X, BINARY_A, BINARY_B, BINARY_COUNT, BINARY_OUT, UNARY_COUNT, UNARY_OUT, UNARY_PARAM, UNARY_X,
} from './abi';
import { arg, argf, expv, roundF16x4, splitAt } from './common';

/** Thread ith's element range [start, end) of count, cut at multiples of 16. */
@inline function rangeStart(count: i32, ith: i32, nth: i32): i32 {
  return min(count, splitAt((count + 15) >> 4, ith, nth) << 4);
}

@inline function siluv(x: v128): v128 {
  // x / (1 + exp(-x))
  return f32x4.div(x, f32x4.add(f32x4.splat(1), expv(f32x4.neg(x))));
}

// GELU, tanh approximation: 0.5x(1 + tanh(y)) = x / (1 + exp(-2y)), y = sqrt(2/pi)(x + 0.044715x^3)
const GELU_K: f32 = 1.5957691216057308; // 2 * sqrt(2/pi)
const GELU_A: f32 = 0.044715;

@inline function geluv(x: v128): v128 {
  const x3 = f32x4.mul(f32x4.mul(x, x), x);
  const y = f32x4.mul(f32x4.splat(GELU_K), f32x4.add(x, f32x4.mul(f32x4.splat(GELU_A), x3)));
  return f32x4.div(x, f32x4.add(f32x4.splat(1), expv(f32x4.neg(y))));
}

/** Lane 0: tails run the vector math on a splat so they match the vector lanes bit for bit. */
@inline function lane(v: v128): f32 {
  return f32x4.extract_lane(v, 0);
}

/**
 * GELU as ggml's CPU backend computes it (GGML_GELU_FP16): through a table over f16 inputs with f16
 * outputs, so x is rounded to f16 and so is the result; x <= -10 gives 0 and x >= 10 gives x.
 */
@inline function geluF16v(x: v128): v128 {
  const y = roundF16x4(geluv(roundF16x4(x)));
  const big = f32x4.ge(x, f32x4.splat(10));
  const low = f32x4.le(x, f32x4.splat(-10));
  return v128.andnot(v128.bitselect(x, y, big), low);
}

// The activations the unary and gated kernels apply, chosen by a constant so each exported kernel
// inlines its own (one loop for all of them, no per-element dispatch once inlined).
const SILU = 0;
const GELU = 1; // geluF16v: ggml's CPU GELU
const SIGMOID = 2;

@inline function activate(act: i32, x: v128): v128 {
  if (act == SILU) return siluv(x);
  if (act == GELU) return geluF16v(x);
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), expv(f32x4.neg(x)))); // sigmoid
}

/** UNARY_* args: out = act(x). */
@inline function unary(args: usize, ith: i32, nth: i32, act: i32): void {
  const out = <usize>arg(args, UNARY_OUT);
  const x = <usize>arg(args, UNARY_X);
  const count = arg(args, UNARY_COUNT);
  const i1 = rangeStart(count, ith + 1, nth);
  let i = rangeStart(count, ith, nth);
  for (; i + 4 <= i1; i += 4) v128.store(out + (<usize>i << 2), activate(act, v128.load(x + (<usize>i << 2))));
  for (; i < i1; i++) store<f32>(out + (<usize>i << 2), lane(activate(act, f32x4.splat(load<f32>(x + (<usize>i << 2))))));
}

/** BINARY_* args: out = act(gate) * up. out may equal gate. */
@inline function gated(args: usize, ith: i32, nth: i32, act: i32): void {
  const out = <usize>arg(args, BINARY_OUT);
  const g = <usize>arg(args, BINARY_A);
  const u = <usize>arg(args, BINARY_B);
  const count = arg(args, BINARY_COUNT);
  const i1 = rangeStart(count, ith + 1, nth);
  let i = rangeStart(count, ith, nth);
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(activate(act, v128.load(g + o)), v128.load(u + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, lane(activate(act, f32x4.splat(load<f32>(g + o)))) * load<f32>(u + o));
  }
}

/** out = silu(gate) * up (SwiGLU). */
export function swiglu(args: usize, ith: i32, nth: i32): void {
  gated(args, ith, nth, SILU);
}

/** out = gelu(gate) * up (GeGLU: gemma's feed-forward). */
export function geglu(args: usize, ith: i32, nth: i32): void {
  gated(args, ith, nth, GELU);
}

/** out = silu(x). */
export function silu(args: usize, ith: i32, nth: i32): void {
  unary(args, ith, nth, SILU);
}

/** out = gelu(x) (BERT's feed-forward). */
export function gelu(args: usize, ith: i32, nth: i32): void {
  unary(args, ith, nth, GELU);
}

/** out = sigmoid(x) = 1 / (1 + exp(-x)) (qwen2moe's shared-expert gate). */
export function sigmoid(args: usize, ith: i32, nth: i32): void {
  unary(args, ith, nth, SIGMOID);
}

/** UNARY_* args: out = x * UNARY_PARAM. */
export function scale(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, UNARY_OUT);
  const x = <usize>arg(args, UNARY_X);
  const count = arg(args, UNARY_COUNT);
  const f = argf(args, UNARY_PARAM);
  const fv = f32x4.splat(f);
  const i1 = rangeStart(count, ith + 1, nth);
  let i = rangeStart(count, ith, nth);
  for (; i + 4 <= i1; i += 4) v128.store(out + (<usize>i << 2), f32x4.mul(v128.load(x + (<usize>i << 2)), fv));
  for (; i < i1; i++) store<f32>(out + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * f);
}

/**
 * UNARY_* args: out = cap * tanh(x * (1 / cap)), cap = UNARY_PARAM, in ggml's order (scale by the
 * f32 reciprocal, tanh, scale back): gemma 2's final logit soft-capping.
 */
export function softcap(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, UNARY_OUT);
  const x = <usize>arg(args, UNARY_X);
  const count = arg(args, UNARY_COUNT);
  const cap = argf(args, UNARY_PARAM);
  const inv = <f32>1 / cap;
  const i1 = rangeStart(count, ith + 1, nth);
  for (let i = rangeStart(count, ith, nth); i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, Mathf.tanh(load<f32>(x + o) * inv) * cap);
  }
}

/** BINARY_* args: out = a + b. */
export function add(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, BINARY_OUT);
  const a = <usize>arg(args, BINARY_A);
  const b = <usize>arg(args, BINARY_B);
  const count = arg(args, BINARY_COUNT);
  const i1 = rangeStart(count, ith + 1, nth);
  let i = rangeStart(count, ith, nth);
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** BIAS_* args: out[t] = x[t] + bias; split by tokens. */
export function addBias(args: usize, ith: i32, nth: i32): void {
  const out = <usize>arg(args, BIAS_OUT);
  const x = <usize>arg(args, BIAS_X);
  const bias = <usize>arg(args, BIAS_BIAS);
  const n = arg(args, BIAS_N);
  const nTokens = arg(args, BIAS_N_TOKENS);
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const row = <usize>t * <usize>n * 4;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + row + o, f32x4.add(v128.load(x + row + o), v128.load(bias + o)));
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(out + row + o, load<f32>(x + row + o) + load<f32>(bias + o));
    }
  }
}
