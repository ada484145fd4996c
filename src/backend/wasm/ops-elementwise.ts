// The WASM backend's element-wise, normalization and reduction ops: rmsNorm, rope, swiglu, geglu, scale, softcap, argmax, topK, add, addBias, silu, gelu.
import { BackendError } from '../errors.js';
import { checkTopK, type Backend, type RopeParams, type Tensor } from '../backend.js';
import { checkInt, MIN_WORK, type OpContext } from './dispatch.js';
import * as K from './kernels.generated.js';

type ElementwiseOps = Pick<Backend, 'rmsNorm' | 'layerNorm' | 'rope' | 'swiglu' | 'geglu' | 'gelu' | 'sigmoid' | 'scale' | 'softcap' | 'argmax' | 'topK' | 'add' | 'addBias'> & {
  silu(out: Tensor, x: Tensor, count: number): void;
};

export function elementwiseOps({ mem, dispatch }: OpContext): ElementwiseOps {
  const elementwise = (op: number, out: Tensor, a: Tensor, b: Tensor | undefined, count: number, minWork: number, param = 0): void => {
    checkInt('count', count, 0);
    if (count === 0) return;
    const c = dispatch.cmd(op);
    if (b) {
      c.i[K.BINARY_OUT] = mem.at(out, 'output', 4 * count);
      c.i[K.BINARY_A] = mem.at(a, 'input', 4 * count);
      c.i[K.BINARY_B] = mem.at(b, 'second input', 4 * count);
      c.i[K.BINARY_COUNT] = count;
    } else {
      c.i[K.UNARY_OUT] = mem.at(out, 'output', 4 * count);
      c.i[K.UNARY_X] = mem.at(a, 'input', 4 * count);
      c.i[K.UNARY_COUNT] = count;
      c.f[K.UNARY_PARAM] = param;
    }
    dispatch.run(count, minWork, Math.ceil(count / 16));
  };

  /** OP_RMS_NORM, or OP_LAYER_NORM with its bias: rows of n, split by tokens. */
  const norm = (op: number, what: string, out: Tensor, x: Tensor, weight: Tensor, bias: Tensor | undefined, n: number, nTokens: number, eps: number): void => {
    checkInt('n', n, 1);
    checkInt('nTokens', nTokens, 0);
    if (nTokens === 0) return;
    const c = dispatch.cmd(op);
    c.i[K.NORM_OUT] = mem.at(out, `${what} output`, 4 * n * nTokens);
    c.i[K.NORM_X] = mem.at(x, `${what} input`, 4 * n * nTokens);
    c.i[K.NORM_WEIGHT] = mem.at(weight, `${what} weight`, 4 * n);
    if (bias) c.i[K.NORM_BIAS] = mem.at(bias, `${what} bias`, 4 * n);
    c.i[K.NORM_N] = n;
    c.i[K.NORM_N_TOKENS] = nTokens;
    c.f[K.NORM_EPS] = eps;
    dispatch.run((bias ? 2 : 1) * n * nTokens, MIN_WORK.elementwise, nTokens);
  };

  return {
    rmsNorm: (out, x, weight, n, nTokens, eps) => norm(K.OP_RMS_NORM, 'rmsNorm', out, x, weight, undefined, n, nTokens, eps),
    layerNorm: (out, x, weight, bias, n, nTokens, eps) => norm(K.OP_LAYER_NORM, 'layerNorm', out, x, weight, bias, n, nTokens, eps),

    rope(x, nTokens, nHeads, headDim, positions, p: RopeParams, freqFactors) {
      checkInt('nTokens', nTokens, 0);
      checkInt('nHeads', nHeads, 1);
      checkInt('headDim', headDim, 2);
      if (p.ropeDims % 2 !== 0 || p.ropeDims < 2 || p.ropeDims > headDim) {
        throw new BackendError('INVALID_ARGUMENT', `rope: ropeDims ${p.ropeDims} must be even and in 2..headDim (${headDim})`);
      }
      if (nTokens === 0) return;
      const c = dispatch.cmd(K.OP_ROPE);
      c.i[K.ROPE_X] = mem.at(x, 'rope input', 4 * nTokens * nHeads * headDim);
      c.i[K.ROPE_N_TOKENS] = nTokens;
      c.i[K.ROPE_N_HEADS] = nHeads;
      c.i[K.ROPE_HEAD_DIM] = headDim;
      c.i[K.ROPE_POSITIONS] = mem.at(positions, 'rope positions', 4 * nTokens);
      c.i[K.ROPE_N_DIMS] = p.ropeDims;
      c.f[K.ROPE_FREQ_BASE] = p.freqBase;
      c.f[K.ROPE_FREQ_SCALE] = p.freqScale;
      c.i[K.ROPE_NEOX] = p.neox ? 1 : 0;
      c.f[K.ROPE_EXT_FACTOR] = p.extFactor;
      c.f[K.ROPE_ATTN_FACTOR] = p.attnFactor;
      c.f[K.ROPE_BETA_FAST] = p.betaFast;
      c.f[K.ROPE_BETA_SLOW] = p.betaSlow;
      c.i[K.ROPE_N_CTX_ORIG] = p.nCtxOrig;
      c.i[K.ROPE_FREQ_FACTORS] = freqFactors ? mem.at(freqFactors, 'rope frequency factors', 4 * (p.ropeDims / 2)) : 0;
      dispatch.run(nTokens * (p.ropeDims / 2) * (nHeads + 50), MIN_WORK.elementwise, nTokens);
    },

    swiglu: (out, gate, up, count) => elementwise(K.OP_SWIGLU, out, gate, up, count, MIN_WORK.transcendental),
    geglu: (out, gate, up, count) => elementwise(K.OP_GEGLU, out, gate, up, count, MIN_WORK.transcendental),
    scale(out, x, count, factor) {
      if (!Number.isFinite(factor)) throw new BackendError('INVALID_ARGUMENT', `scale: factor ${factor} is not finite`);
      elementwise(K.OP_SCALE, out, x, undefined, count, MIN_WORK.elementwise, factor);
    },
    softcap(out, x, count, cap) {
      if (!(cap > 0 && Number.isFinite(cap))) throw new BackendError('INVALID_ARGUMENT', `softcap: cap ${cap} must be a finite number > 0`);
      elementwise(K.OP_SOFTCAP, out, x, undefined, count, MIN_WORK.transcendental, cap);
    },
    argmax(out, x, n, nRows) {
      checkInt('n', n, 1);
      checkInt('nRows', nRows, 0);
      if (nRows === 0) return;
      const c = dispatch.cmd(K.OP_ARGMAX);
      c.i[K.ARGMAX_OUT] = mem.at(out, 'argmax output', 4 * nRows);
      c.i[K.ARGMAX_X] = mem.at(x, 'argmax input', 4 * n * nRows);
      c.i[K.ARGMAX_N] = n;
      c.i[K.ARGMAX_ROWS] = nRows;
      dispatch.run(n * nRows, MIN_WORK.elementwise, nRows);
    },
    topK(ids, values, x, n, nRows, k) {
      checkTopK(n, nRows, k);
      if (nRows === 0) return;
      const c = dispatch.cmd(K.OP_TOP_K);
      c.i[K.TOPK_IDS] = mem.at(ids, 'topK ids', 4 * k * nRows);
      c.i[K.TOPK_VALUES] = mem.at(values, 'topK values', 4 * k * nRows);
      c.i[K.TOPK_X] = mem.at(x, 'topK input', 4 * n * nRows);
      c.i[K.TOPK_N] = n;
      c.i[K.TOPK_ROWS] = nRows;
      c.i[K.TOPK_K] = k;
      dispatch.run(n * nRows, MIN_WORK.elementwise, nRows);
    },
    add: (out, a, b, count) => elementwise(K.OP_ADD, out, a, b, count, MIN_WORK.elementwise),
    silu: (out, x, count) => elementwise(K.OP_SILU, out, x, undefined, count, MIN_WORK.transcendental),
    sigmoid: (out, x, count) => elementwise(K.OP_SIGMOID, out, x, undefined, count, MIN_WORK.transcendental),
    gelu: (out, x, count) => elementwise(K.OP_GELU, out, x, undefined, count, MIN_WORK.transcendental),

    addBias(out, x, bias, n, nTokens) {
      checkInt('n', n, 1);
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const c = dispatch.cmd(K.OP_ADD_BIAS);
      c.i[K.BIAS_OUT] = mem.at(out, 'addBias output', 4 * n * nTokens);
      c.i[K.BIAS_X] = mem.at(x, 'addBias input', 4 * n * nTokens);
      c.i[K.BIAS_BIAS] = mem.at(bias, 'addBias bias', 4 * n);
      c.i[K.BIAS_N] = n;
      c.i[K.BIAS_N_TOKENS] = nTokens;
      dispatch.run(n * nTokens, MIN_WORK.elementwise, nTokens);
    },

  };
}
