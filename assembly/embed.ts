// getRows: embedding lookup, one table row per token dequantized to f32. Each decoder performs
// ggml's dequantize_row_* float operations in ggml's order, so rows match the reference
// dequantizer (src/tensor/dequant.ts) bit for bit.
import { arg, f16ToF32, packedHead, splitAt } from './common';
import {
  GET_ROWS_COLS, GET_ROWS_IDS, GET_ROWS_INTERLEAVED, GET_ROWS_N_TOKENS, GET_ROWS_OUT, GET_ROWS_ROW_BYTES, GET_ROWS_TABLE, GET_ROWS_TYPE, T_BF16, T_F16, T_F32, T_IQ4_NL, T_Q2_K, T_Q3_K, T_Q4_0, T_Q4_1, T_Q4_K, T_Q5_0, T_Q5_1, T_Q5_K, T_Q6_K, T_Q8_0,
} from './abi';

const IQ4NL = memory.data<i8>([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);

@inline function h(p: usize): f32 {
  return f16ToF32(load<u16>(p));
}
@inline function st(y: usize, i: i32, v: f32): void {
  store<f32>(y + (<usize>i << 2), v);
}

// Blocks by their fields' addresses (scale at dp, min at mp, codes at q): the file's layout keeps a
// block's fields together, the interleaved one (packedHead) puts four rows' scales side by side.

function blockQ8_0(dp: usize, q: usize, y: usize): void {
  const d = h(dp);
  for (let j = 0; j < 32; j++) st(y, j, <f32>load<i8>(q + j) * d);
}

function blockQ4(dp: usize, mp: usize, q: usize, y: usize, withMin: bool): void {
  const d = h(dp);
  const m = withMin ? h(mp) : 0;
  for (let j = 0; j < 16; j++) {
    const v = <i32>load<u8>(q + j);
    if (withMin) {
      st(y, j, <f32>(v & 15) * d + m);
      st(y, j + 16, <f32>(v >> 4) * d + m);
    } else {
      st(y, j, <f32>((v & 15) - 8) * d);
      st(y, j + 16, <f32>((v >> 4) - 8) * d);
    }
  }
}

function rowQ8_0(q: usize, y: usize, nb: i32): void {
  for (let b = 0; b < nb; b++, q += 34) blockQ8_0(q, q + 2, y + (<usize>b << 7));
}

function rowQ4(q: usize, y: usize, nb: i32, withMin: bool): void {
  const bb: usize = withMin ? 20 : 18;
  for (let b = 0; b < nb; b++, q += bb) blockQ4(q, q + 2, q + (withMin ? 4 : 2), y + (<usize>b << 7), withMin);
}

function rowQ5(q: usize, y: usize, nb: i32, withMin: bool): void {
  const bb: usize = withMin ? 24 : 22;
  const ho: usize = withMin ? 4 : 2;
  for (let b = 0; b < nb; b++, q += bb) {
    const d = h(q);
    const m = withMin ? h(q + 2) : 0;
    const qh = load<u32>(q + ho);
    for (let j = 0; j < 16; j++) {
      const v = <i32>load<u8>(q + ho + 4 + j);
      const c0 = (v & 15) | (<i32>((qh >> j) & 1) << 4);
      const c1 = (v >> 4) | (<i32>((qh >> (j + 16)) & 1) << 4);
      if (withMin) {
        st(y, (b << 5) + j, <f32>c0 * d + m);
        st(y, (b << 5) + j + 16, <f32>c1 * d + m);
      } else {
        st(y, (b << 5) + j, <f32>(c0 - 16) * d);
        st(y, (b << 5) + j + 16, <f32>(c1 - 16) * d);
      }
    }
  }
}

function rowIQ4_NL(q: usize, y: usize, nb: i32): void {
  for (let b = 0; b < nb; b++, q += 18) {
    const d = h(q);
    for (let j = 0; j < 16; j++) {
      const v = <usize>load<u8>(q + 2 + j);
      st(y, (b << 5) + j, d * <f32>load<i8>(IQ4NL + (v & 15)));
      st(y, (b << 5) + j + 16, d * <f32>load<i8>(IQ4NL + (v >> 4)));
    }
  }
}

function rowQ2_K(q: usize, y: usize, nb: i32): void {
  for (let b = 0; b < nb; b++, q += 84) {
    const d = h(q + 80);
    const dmin = h(q + 82);
    let i = b << 8;
    for (let g = 0; g < 16; g++) {
      // group g = 8n + 2j + c: bits 2j of qs[32n + 16c + l]
      const n = g >> 3, j = (g >> 1) & 3, c = g & 1;
      const sc = <i32>load<u8>(q + g);
      const dl = d * <f32>(sc & 15);
      const ml = dmin * <f32>(sc >> 4);
      const qp = q + 16 + (<usize>n << 5) + (<usize>c << 4);
      for (let l = 0; l < 16; l++) st(y, i++, dl * <f32>((<i32>load<u8>(qp + l) >> (j << 1)) & 3) - ml);
    }
  }
}

function rowQ3_K(q: usize, y: usize, nb: i32): void {
  for (let b = 0; b < nb; b++, q += 110) {
    const d = h(q + 108);
    let i = b << 8;
    for (let g = 0; g < 16; g++) {
      const n = g >> 3, j = (g >> 1) & 3, c = g & 1;
      const low4: i32 = g < 8 ? <i32>load<u8>(q + 96 + g) & 15 : <i32>load<u8>(q + 96 + g - 8) >> 4;
      const high2: i32 = (<i32>load<u8>(q + 104 + (g & 3)) >> ((g >> 2) << 1)) & 3;
      const dl = d * <f32>((low4 | (high2 << 4)) - 32);
      const qp = q + 32 + (<usize>n << 5) + (<usize>c << 4);
      const hp = q + (<usize>c << 4);
      const hbit = (n << 2) + j;
      for (let l = 0; l < 16; l++) {
        const low = (<i32>load<u8>(qp + l) >> (j << 1)) & 3;
        const hi = (<i32>load<u8>(hp + l) >> hbit) & 1 ? 0 : 4;
        st(y, i++, dl * <f32>(low - hi));
      }
    }
  }
}

@inline function k4Scale(q: usize, j: i32): i32 {
  if (j < 4) return <i32>load<u8>(q + j) & 63;
  return (<i32>load<u8>(q + j + 4) & 15) | ((<i32>load<u8>(q + j - 4) >> 6) << 4);
}
@inline function k4Min(q: usize, j: i32): i32 {
  if (j < 4) return <i32>load<u8>(q + j + 4) & 63;
  return (<i32>load<u8>(q + j + 4) >> 4) | ((<i32>load<u8>(q + j) >> 6) << 4);
}

function rowQ45_K(q: usize, y: usize, nb: i32, five: bool): void {
  const bb: usize = five ? 176 : 144;
  for (let b = 0; b < nb; b++, q += bb) {
    const d = h(q);
    const dmin = h(q + 2);
    const qs = q + (five ? 48 : 16);
    let i = b << 8;
    for (let sb = 0; sb < 8; sb++) {
      const d1 = d * <f32>k4Scale(q + 4, sb);
      const m1 = dmin * <f32>k4Min(q + 4, sb);
      const qp = qs + (<usize>(sb >> 1) << 5);
      const shift = (sb & 1) << 2;
      for (let l = 0; l < 32; l++) {
        let c = (<i32>load<u8>(qp + l) >> shift) & 15;
        if (five) c += ((<i32>load<u8>(q + 16 + l) >> sb) & 1) << 4;
        st(y, i++, d1 * <f32>c - m1);
      }
    }
  }
}

function rowQ6_K(q: usize, y: usize, nb: i32): void {
  for (let b = 0; b < nb; b++, q += 210) {
    const d = h(q + 208);
    for (let n = 0; n < 2; n++) {
      const ql = q + (<usize>n << 6);
      const qh = q + 128 + (<usize>n << 5);
      const sc = q + 192 + (<usize>n << 3);
      const i = (b << 8) + (n << 7);
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hb = <i32>load<u8>(qh + l);
        const a = <i32>load<u8>(ql + l);
        const c = <i32>load<u8>(ql + l + 32);
        st(y, i + l, (d * <f32>load<i8>(sc + is)) * <f32>(((a & 15) | ((hb & 3) << 4)) - 32));
        st(y, i + l + 32, (d * <f32>load<i8>(sc + is + 2)) * <f32>(((c & 15) | (((hb >> 2) & 3) << 4)) - 32));
        st(y, i + l + 64, (d * <f32>load<i8>(sc + is + 4)) * <f32>(((a >> 4) | (((hb >> 4) & 3) << 4)) - 32));
        st(y, i + l + 96, (d * <f32>load<i8>(sc + is + 6)) * <f32>(((c >> 4) | (((hb >> 6) & 3) << 4)) - 32));
      }
    }
  }
}

/** Dequantize one row of `cols` elements of `type` at q into f32 at y. Returns false for an unknown type. */
export function dequantRow(type: i32, q: usize, y: usize, cols: i32): bool {
  switch (type) {
    case T_F32: memory.copy(y, q, <usize>cols << 2); break;
    case T_F16: for (let i = 0; i < cols; i++) st(y, i, h(q + (<usize>i << 1))); break;
    case T_BF16: for (let i = 0; i < cols; i++) store<u32>(y + (<usize>i << 2), <u32>load<u16>(q + (<usize>i << 1)) << 16); break;
    case T_Q8_0: rowQ8_0(q, y, cols >> 5); break;
    case T_Q4_0: rowQ4(q, y, cols >> 5, false); break;
    case T_Q4_1: rowQ4(q, y, cols >> 5, true); break;
    case T_Q5_0: rowQ5(q, y, cols >> 5, false); break;
    case T_Q5_1: rowQ5(q, y, cols >> 5, true); break;
    case T_IQ4_NL: rowIQ4_NL(q, y, cols >> 5); break;
    case T_Q2_K: rowQ2_K(q, y, cols >> 8); break;
    case T_Q3_K: rowQ3_K(q, y, cols >> 8); break;
    case T_Q4_K: rowQ45_K(q, y, cols >> 8, false); break;
    case T_Q5_K: rowQ45_K(q, y, cols >> 8, true); break;
    case T_Q6_K: rowQ6_K(q, y, cols >> 8); break;
    default: return false;
  }
  return true;
}

/** GET_ROWS_* args (abi.ts); split by tokens. */
/** Values per block of a quantized type. */
@inline function blockValues(type: i32): i32 {
  return type == T_Q2_K || type == T_Q3_K || type == T_Q4_K || type == T_Q5_K || type == T_Q6_K ? 256 : 32;
}

export function getRows(args: usize, ith: i32, nth: i32): void {
  const type = arg(args, GET_ROWS_TYPE);
  const table = <usize>arg(args, GET_ROWS_TABLE);
  const cols = arg(args, GET_ROWS_COLS);
  const rowBytes = <usize>arg(args, GET_ROWS_ROW_BYTES);
  const ids = <usize>arg(args, GET_ROWS_IDS);
  const nTokens = arg(args, GET_ROWS_N_TOKENS);
  const out = <usize>arg(args, GET_ROWS_OUT);
  const interleaved = arg(args, GET_ROWS_INTERLEAVED) != 0;
  const t1 = splitAt(nTokens, ith + 1, nth);
  for (let t = splitAt(nTokens, ith, nth); t < t1; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    const y = out + <usize>t * (<usize>cols << 2);
    if (interleaved) {
      // Row id's blocks are 4 blocks apart inside its group (OP_INTERLEAVE_ROWS): one block at a time.
      const per = blockValues(type), bb = rowBytes / <usize>(cols / per), hb = packedHead(type);
      const k = id & 3;
      const group = table + (id & ~3) * rowBytes;
      for (let b = 0; b < cols / per; b++) {
        const gb = group + <usize>b * 4 * bb, yb = y + (<usize>(b * per) << 2);
        // packed heads: row k's codes at k * c, its scale after the four rows' codes (its min 8 on)
        const c = bb - hb, head = gb + 4 * c + 2 * k;
        if (type == T_Q8_0 && hb != 0) blockQ8_0(head, gb + k * c, yb);
        else if (hb != 0) blockQ4(head, head + 8, gb + k * c, yb, type == T_Q4_1);
        else dequantRow(type, gb + k * bb, yb, per);
      }
    } else dequantRow(type, table + id * rowBytes, y, cols);
  }
}
