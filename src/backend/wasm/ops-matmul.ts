// The WASM backend's matmul and getRows: weights stay in their file type; activations are rounded
// (F16/BF16 weights) or quantized (block types) once into the scratch as the type table's
// vecDotType says, then every weight that reads them runs in one dispatch.
import { BackendError } from '../errors.js';
import type { Backend, MatmulPart, Tensor, WeightTensor } from '../backend.js';
import { GGMLType, rowBytes as typeRowBytes, typeName, typeTraits } from '../../tensor/ggml-types.js';
import { checkInt, MIN_WORK, type OpContext } from './dispatch.js';
import * as K from './kernels.generated.js';

/** Weight types the kernels take (assembly/matmul.ts and embed.ts). */
export const SUPPORTED = new Set<GGMLType>([
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0,
  GGMLType.Q5_1, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_NL,
]);

type ActFormat = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q8_k';

/**
 * What the kernels do to a weight type's activations, from the type table's vecDotType (the one
 * place it is defined: the matmul command carries the layout to the kernels as MATMUL_ACT): f16/bf16
 * rounding kept as f32, or Q8_0 blocks (with Q8_1's sums where the weights carry a min), or Q8_K blocks.
 */
export function actFormat(type: GGMLType): ActFormat {
  switch (typeTraits(type)?.vecDotType) {
    case GGMLType.F32: return 'f32';
    case GGMLType.F16: return 'f16';
    case GGMLType.BF16: return 'bf16';
    case GGMLType.Q8_K: return 'q8_k';
    case GGMLType.Q8_0: case GGMLType.Q8_1: return 'q8_0';
    default: throw new BackendError('UNSUPPORTED_TYPE', `${typeName(type)} is not a weight type`);
  }
}

export function matmulOps({ mem, dispatch, scratch, scratchBytes, weights }: OpContext): Pick<Backend, 'matmul' | 'matmulShared' | 'getRows'> {
  const checkWeight = (w: WeightTensor, what: string): void => {
    if (!SUPPORTED.has(w.type)) throw new BackendError('UNSUPPORTED_TYPE', `${what}: no kernel for ${typeName(w.type)}`);
    checkInt(`${what} rows`, w.rows, 1);
    checkInt(`${what} cols`, w.cols, 1);
    const fmt = actFormat(w.type);
    const blk = fmt === 'q8_k' ? 256 : fmt === 'q8_0' ? 32 : 1;
    if (w.cols % blk !== 0) throw new BackendError('INVALID_ARGUMENT', `${what}: ${typeName(w.type)} needs cols divisible by ${blk}, got ${w.cols}`);
    if (w.rowBytes !== typeRowBytes(w.type, w.cols)) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: rowBytes ${w.rowBytes} does not match ${typeName(w.type)} x ${w.cols}`);
    }
    mem.at(w, what, w.rows * w.rowBytes);
  };

  /**
   * One OP_MATMUL over up to MATMUL_MAX_PARTS weights of one type and width: the activations are
   * rounded or quantized once into the scratch, then the parts' row groups run as one dispatch.
   */
  const matmulChunk = (parts: readonly { w: WeightTensor; out: number }[], x: number, nTokens: number): void => {
    const w = parts[0]!.w;
    const fmt = actFormat(w.type);
    let qs = 0, d = 0, s = 0; // the quantized activations: quants, scales, sums
    if (fmt === 'f16' || fmt === 'bf16') {
      const r = dispatch.cmd(K.OP_ROUND_ACT);
      r.i[K.ROUND_X] = x;
      r.i[K.ROUND_COUNT] = nTokens * w.cols;
      r.i[K.ROUND_OUT] = scratch;
      r.i[K.ROUND_BF16] = fmt === 'bf16' ? 1 : 0;
      dispatch.run(nTokens * w.cols, MIN_WORK.elementwise, Math.ceil((nTokens * w.cols) / 16));
      x = scratch;
    } else if (fmt !== 'f32') {
      const bpb = fmt === 'q8_k' ? 256 : 32;
      const nb = (nTokens * w.cols) / bpb;
      qs = scratch;
      d = qs + Math.ceil((2 * nTokens * w.cols) / 64) * 64; // qs: i8, or i16 for some kernels
      s = d + Math.ceil((nb * 4) / 64) * 64;
      const q = dispatch.cmd(fmt === 'q8_k' ? K.OP_QUANT_Q8_K : K.OP_QUANT_Q8_0);
      q.i[K.QUANT_X] = x;
      q.i[K.QUANT_N_TOKENS] = nTokens;
      q.i[K.QUANT_COLS] = w.cols;
      q.i[K.QUANT_QS] = qs;
      q.i[K.QUANT_D] = d;
      q.i[K.QUANT_S] = s;
      q.i[K.QUANT_WEIGHT_TYPE] = w.type;
      dispatch.run(nTokens * w.cols, MIN_WORK.quant, nb);
    }
    const c = dispatch.cmd(K.OP_MATMUL);
    c.i[K.MATMUL_TYPE] = w.type;
    c.i[K.MATMUL_COLS] = w.cols;
    c.i[K.MATMUL_ROW_BYTES] = w.rowBytes;
    c.i[K.MATMUL_N_TOKENS] = nTokens;
    c.i[K.MATMUL_X] = x;
    c.i[K.MATMUL_QS] = qs;
    c.i[K.MATMUL_D] = d;
    c.i[K.MATMUL_S] = s;
    c.i[K.MATMUL_ACT] = fmt === 'q8_k' ? K.ACT_Q8_K : fmt === 'q8_0' ? K.ACT_Q8_0 : K.ACT_F32;
    c.i[K.MATMUL_N_PARTS] = parts.length;
    let rows = 0, groups = 0;
    parts.forEach((p, i) => {
      const at0 = K.MATMUL_PARTS + i * K.MATMUL_PART_SLOTS;
      c.i[at0 + K.MATMUL_PART_WEIGHT] = p.w.offset;
      c.i[at0 + K.MATMUL_PART_ROWS] = p.w.rows;
      c.i[at0 + K.MATMUL_PART_OUT] = p.out;
      c.i[at0 + K.MATMUL_PART_INTERLEAVED] = weights.layoutOf(p.w, `matmul weight ${i}`);
      rows += p.w.rows;
      groups += Math.ceil(p.w.rows / 4);
    });
    dispatch.run(rows * w.cols * nTokens, MIN_WORK.matmul, groups);
  };

  /** Parts sharing x and one weight type and width, a batch of tokens at a time through the scratch. */
  const matmulGroup = (group: readonly MatmulPart[], xt: Tensor, nTokens: number): void => {
    const w = group[0]!.w;
    const x = mem.at(xt, 'matmul input', 4 * nTokens * w.cols);
    const parts = group.map((p, i) => ({ w: p.w, out: mem.at(p.out, `matmul output ${i}`, 4 * nTokens * p.w.rows) }));
    const fmt = actFormat(w.type);
    if (fmt === 'f32') {
      matmulChunk(parts, x, nTokens);
      return;
    }
    const perToken = fmt === 'f16' || fmt === 'bf16' ? 4 * w.cols : 2 * w.cols + (w.cols / 32) * 8 + 192;
    const chunk = Math.floor(scratchBytes / perToken);
    if (chunk < 1) throw new BackendError('INVALID_ARGUMENT', `matmul: cols ${w.cols} too large for the activation scratch`);
    for (let t = 0; t < nTokens; t += chunk) {
      const n = Math.min(chunk, nTokens - t);
      matmulChunk(parts.map((p) => ({ w: p.w, out: p.out + t * p.w.rows * 4 })), x + t * w.cols * 4, n);
    }
  };

  const ops: Pick<Backend, 'matmul' | 'matmulShared' | 'getRows'> = {
    matmul(out, w, x, nTokens) {
      ops.matmulShared([{ out, w }], x, nTokens);
    },

    matmulShared(parts, x, nTokens) {
      checkInt('nTokens', nTokens, 0);
      parts.forEach((p, i) => checkWeight(p.w, `matmul weight ${i}`));
      if (nTokens === 0) return;
      // Parts of one type and width share an op (at most MATMUL_MAX_PARTS each), in order.
      const groups: MatmulPart[][] = [];
      for (const p of parts) {
        const g = groups.find((g) => g[0]!.w.type === p.w.type && g[0]!.w.cols === p.w.cols && g.length < K.MATMUL_MAX_PARTS);
        if (g) g.push(p);
        else groups.push([p]);
      }
      for (const g of groups) matmulGroup(g, x, nTokens);
    },

    getRows(out, table, ids, nTokens) {
      checkWeight(table, 'getRows');
      checkInt('nTokens', nTokens, 0);
      if (nTokens === 0) return;
      const idPtr = mem.at(ids, 'getRows ids', 4 * nTokens);
      const mem32 = mem.i32();
      for (let t = 0; t < nTokens; t++) {
        const id = mem32[(idPtr >> 2) + t]!;
        if (id < 0 || id >= table.rows) throw new BackendError('INVALID_ARGUMENT', `getRows: id ${id} outside 0..${table.rows - 1}`);
      }
      const c = dispatch.cmd(K.OP_GET_ROWS);
      c.i[K.GET_ROWS_TYPE] = table.type;
      c.i[K.GET_ROWS_TABLE] = mem.at(table, 'getRows table');
      c.i[K.GET_ROWS_COLS] = table.cols;
      c.i[K.GET_ROWS_ROW_BYTES] = table.rowBytes;
      c.i[K.GET_ROWS_IDS] = idPtr;
      c.i[K.GET_ROWS_N_TOKENS] = nTokens;
      c.i[K.GET_ROWS_OUT] = mem.at(out, 'getRows output', 4 * nTokens * table.cols);
      c.i[K.GET_ROWS_INTERLEAVED] = weights.layoutOf(table, 'getRows table');
      dispatch.run(nTokens * table.cols, MIN_WORK.elementwise, nTokens);
    },

  };
  return ops;
}
