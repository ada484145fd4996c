// Rotary position embedding as ggml's rope (ggml_rope_cache_init + rope_yarn): normal layout
// rotates pairs (2i, 2i+1), NeoX rotates (i, i + ropeDims/2); theta_i = pos * base^(-2i/ropeDims)
// built by repeated f32 multiplication, optional linear scaling (freqScale) and YaRN ramp mixing.
// All transcendental functions are AssemblyScript's own (musl ports), so every runtime agrees.
import { arg, argf, splitAt } from './common';

const PI_F32: f32 = 3.14159265358979323846;

function yarnCorrDim(nDims: i32, nCtxOrig: i32, nRot: f32, base: f32): f32 {
  return (<f32>nDims * Mathf.log(<f32>nCtxOrig / (nRot * 2 * PI_F32))) / (2 * Mathf.log(base));
}

/**
 * args: [op, x, nTokens, nHeads, headDim, positions, ropeDims, freqBase, freqScale, neox,
 *        extFactor, attnFactor, betaFast, betaSlow, nCtxOrig] (f32 for the float parameters).
 * In place; split by tokens (each thread derives its tokens' angles itself).
 */
export function rope(args: usize, ith: i32, nth: i32): void {
  const x = <usize>arg(args, 1);
  const nTokens = arg(args, 2);
  const nHeads = arg(args, 3);
  const headDim = arg(args, 4);
  const positions = <usize>arg(args, 5);
  const nDims = arg(args, 6);
  const freqBase = argf(args, 7);
  const freqScale = argf(args, 8);
  const neox = arg(args, 9) != 0;
  const extFactor = argf(args, 10);
  const attnFactor = argf(args, 11);
  const betaFast = argf(args, 12);
  const betaSlow = argf(args, 13);
  const nCtxOrig = arg(args, 14);

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
      // rope_yarn
      const thetaInterp = freqScale * theta;
      let th = thetaInterp;
      if (extFactor != 0) {
        const y = (<f32>(i0 >> 1) - low) / max<f32>(0.001, high - low);
        const rampMix = (<f32>1.0 - min<f32>(1, max<f32>(0, y))) * extFactor;
        th = thetaInterp * (<f32>1.0 - rampMix) + theta * rampMix;
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
