// The single entry point: run thread ith's share (of nth) of the op described by the command
// block at args. Every op splits its output deterministically (see common.ts), so any nth gives
// bit-identical results.
import {
  OP_ADD, OP_ADD_BIAS, OP_ATTENTION, OP_GELU, OP_GET_ROWS, OP_MATMUL, OP_QUANT_Q8_0, OP_QUANT_Q8_K,
  OP_RMS_NORM, OP_ROPE, OP_ROUND_ACT, OP_SILU, OP_STORE_KV, OP_SWIGLU, OP_GEGLU, OP_SCALE, OP_SOFTCAP, OP_ARGMAX, OP_LAYER_NORM, OP_SIGMOID, OP_INTERLEAVE_ROWS, OP_TOP_K,
} from './abi';
import { add, addBias, geglu, gelu, scale, sigmoid, silu, softcap, swiglu } from './activation';
import { attention } from './attention';
import { getRows } from './embed';
import { storeKV } from './kv';
import { interleaveRows, matmul } from './matmul';
import { layerNorm, rmsNorm } from './norm';
import { quantQ8_0, quantQ8_K, roundAct } from './quantize';
import { argmax, topK } from './reduce';
import { rope } from './rope';

/** Returns 0, or -1 for an unknown op code. */
export function exec(args: usize, ith: i32, nth: i32): i32 {
  switch (load<i32>(args)) {
    case OP_QUANT_Q8_0: quantQ8_0(args, ith, nth); break;
    case OP_QUANT_Q8_K: quantQ8_K(args, ith, nth); break;
    case OP_ROUND_ACT: roundAct(args, ith, nth); break;
    case OP_MATMUL: matmul(args, ith, nth); break;
    case OP_GET_ROWS: getRows(args, ith, nth); break;
    case OP_RMS_NORM: rmsNorm(args, ith, nth); break;
    case OP_ROPE: rope(args, ith, nth); break;
    case OP_SWIGLU: swiglu(args, ith, nth); break;
    case OP_ADD: add(args, ith, nth); break;
    case OP_ADD_BIAS: addBias(args, ith, nth); break;
    case OP_STORE_KV: storeKV(args, ith, nth); break;
    case OP_ATTENTION: attention(args, ith, nth); break;
    case OP_SILU: silu(args, ith, nth); break;
    case OP_GELU: gelu(args, ith, nth); break;
    case OP_GEGLU: geglu(args, ith, nth); break;
    case OP_SCALE: scale(args, ith, nth); break;
    case OP_SOFTCAP: softcap(args, ith, nth); break;
    case OP_ARGMAX: argmax(args, ith, nth); break;
    case OP_TOP_K: topK(args, ith, nth); break;
    case OP_LAYER_NORM: layerNorm(args, ith, nth); break;
    case OP_SIGMOID: sigmoid(args, ith, nth); break;
    case OP_INTERLEAVE_ROWS: if (ith == 0) interleaveRows(args); break;
    default: return -1;
  }
  return 0;
}
