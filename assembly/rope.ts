// Rotary position embedding as ggml's rope (ggml_rope_cache_init + rope_yarn): normal layout
// rotates pairs (2i, 2i+1), NeoX rotates (i, i + ropeDims/2); theta_i = pos * base^(-2i/ropeDims)
// built by repeated f32 multiplication, optional frequency factors (theta_i / f_i), linear scaling (freqScale) and YaRN ramp mixing.
// All transcendental functions are AssemblyScript's own (musl ports), so every runtime agrees.
import { ROPE_ATTN_FACTOR, ROPE_BETA_FAST, ROPE_BETA_SLOW, ROPE_EXT_FACTOR, ROPE_FREQ_BASE, ROPE_FREQ_FACTORS, ROPE_FREQ_SCALE, ROPE_HEAD_DIM, ROPE_NEOX, ROPE_N_CTX_ORIG, ROPE_N_DIMS, ROPE_N_HEADS, ROPE_N_TOKENS, ROPE_POSITIONS, ROPE_X } from './abi';
import { arg, argf, splitAt } from './common';

const PI_F32: f32 = 3.14159265358979323846;

function yarnCorrDim(nDims: i32, nCtxOrig: i32, nRot: f32, base: f32): f32 {
  return (<f32>nDims * Mathf.log(<f32>nCtxOrig / (nRot * 2 * PI_F32))) / (2 * Mathf.log(base));
}

/**
 * ROPE_* args (abi.ts; f32 for the float parameters).
 * In place; split by tokens (each thread derives its tokens' angles itself).
 */
export function rope(args: usize, ith: i32, nth: i32): void {
  const x = <usize>arg(args, ROPE_X);
  const nTokens = arg(args, ROPE_N_TOKENS);
  const nHeads = arg(args, ROPE_N_HEADS);
  const headDim = arg(args, ROPE_HEAD_DIM);
  const positions = <usize>arg(args, ROPE_POSITIONS);
  const nDims = arg(args, ROPE_N_DIMS);
  const freqBase = argf(args, ROPE_FREQ_BASE);
  const freqScale = argf(args, ROPE_FREQ_SCALE);
  const neox = arg(args, ROPE_NEOX) != 0;
  const extFactor = argf(args, ROPE_EXT_FACTOR);
  const attnFactor = argf(args, ROPE_ATTN_FACTOR);
  const betaFast = argf(args, ROPE_BETA_FAST);
  const betaSlow = argf(args, ROPE_BETA_SLOW);
  const nCtxOrig = arg(args, ROPE_N_CTX_ORIG);
  const factors = <usize>arg(args, ROPE_FREQ_FACTORS);

  const thetaScale = Mathf.pow(freqBase, <f32>-2.0 / <f32>nDims);
  const low = max<f32>(0, Mathf.floor(yarnCorrDim(nDims, nCtxOrig, betaFast, freqBase)));
  const high = min<f32>(<f32>(nDims - 1), Mathf.ceil(yarnCorrDim(nDims, nCtxOrig, betaSlow, freqBase)));
  let mscale = attnFactor;
  if (extFactor != 0) mscale *= <f32>1.0 + <f32>0.1 * Mathf.log(<f32>1.0 / freqScale);
  const half = nDims >> 1;
  const rowStride = <usize>headDim << 2;

  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const base = x + <usize>t * <usize>nHeads * rowStride;
    let theta = <f32>load<i32>(positions + (<usize>t << 2));
    for (let i0 = 0; i0 < nDims; i0 += 2) {
      // rope_yarn on theta / factor
      const thetaExtrap = factors != 0 ? theta / load<f32>(factors + (<usize>(i0 >> 1) << 2)) : theta;
      const thetaInterp = freqScale * thetaExtrap;
      let th = thetaInterp;
      if (extFactor != 0) {
        const y = (<f32>(i0 >> 1) - low) / max<f32>(0.001, high - low);
        const rampMix = (<f32>1.0 - min<f32>(1, max<f32>(0, y))) * extFactor;
        th = thetaInterp * (<f32>1.0 - rampMix) + thetaExtrap * rampMix;
      }
      const c = Mathf.cos(th) * mscale;
      const s = Mathf.sin(th) * mscale;
      const ia = neox ? i0 >> 1 : i0;
      const ib = neox ? (i0 >> 1) + half : i0 + 1;
      for (let h = 0; h < nHeads; h++) {
        const pa = base + <usize>h * rowStride + (<usize>ia << 2);
        const pb = base + <usize>h * rowStride + (<usize>ib << 2);
        const x0 = load<f32>(pa);
        const x1 = load<f32>(pb);
        store<f32>(pa, x0 * c - x1 * s);
        store<f32>(pb, x0 * s + x1 * c);
      }
      theta *= thetaScale;
    }
  }
}
