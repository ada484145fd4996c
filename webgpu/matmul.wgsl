// out[slot][r] = sum_c W[expert_of(slot) * rows + r][c] * act(x[xrow][c]). An item is one row and
// TT consecutive slots (a register tile: each weight value is dequantized once for TT tokens).
// Plain matmul: a slot is a token. Routed (ggml's mul_mat_id, TT = 1): a slot is (token, chosen
// expert), x is the token's row or, with per_slot, the slot's own row. Every output is summed the
// same way whatever TT, the batch and the threads: each of TPR lanes sums every TPR-th block of the
// row in order (each block's dot product from the variant's block_dot), then a fixed tree adds the
// TPR lanes, at each stride s = TPR / 2 .. 1 lane l < s adding lane l + s; so a token's row has the
// same bits alone as in any batch (TPR depends on the row length only).
// TPT threads share an item, thread t holding lanes t, t + TPT, ... (LPT of them: neighbouring
// threads read neighbouring blocks): the tree's strides of TPT and more add within the thread, the
// rest across threads (strides below lane_width() by subgroup shuffles, the same pairs: lanes*.wgsl).
// GPUs take TPT = TPR; adapters that run invocations on a CPU take TPT = 1 (no barrier or
// workgroup memory: kernels.ts). A workgroup holds WG / TPT items.
// A weight split over buffers runs once per part: rows are the part's, written at row_base of
// out_rows per slot.
// Dot products of one block of w with QK activations from x: the block's scale read once, its codes
// a word at a time from aligned loads (blocks are only 2-byte aligned: each code word is two
// neighbours funnel-shifted, without a branch on the alignment; types without a block_dot here
// dequantize element by element: kernels.ts).

/** Word i of the bytes of w from byte b on (b even), read from the aligned words w0 = w_raw(a), w1 = w_raw(a + 1). */
fn funnel(w0: u32, w1: u32, sh: u32) -> u32 { return select((w0 >> sh) | (w1 << (32u - sh)), w0, sh == 0u); }

fn block_dot_q4_0(blk: u32, xb: u32) -> f32 {
  let o = P.w_b + blk + 2u;
  let a = o >> 2u;
  let sh = (o & 3u) * 8u;
  var lo = w_raw(a);
  var s = 0.0;
  for (var i = 0u; i < 4u; i++) {
    let hi = w_raw(a + i + 1u);
    let q = funnel(lo, hi, sh);
    lo = hi;
    for (var k = 0u; k < 4u; k++) {
      let byte = (q >> (8u * k)) & 0xffu;
      let j = 4u * i + k;
      s += f32(i32(byte & 15u) - 8) * x_f(xb + j) + f32(i32(byte >> 4u) - 8) * x_f(xb + j + 16u);
    }
  }
  return s * w_f16(blk);
}

fn block_dot_q8_0(blk: u32, xb: u32) -> f32 {
  let o = P.w_b + blk + 2u;
  let a = o >> 2u;
  let sh = (o & 3u) * 8u;
  var lo = w_raw(a);
  var s = 0.0;
  for (var i = 0u; i < 8u; i++) {
    let hi = w_raw(a + i + 1u);
    let q = funnel(lo, hi, sh);
    lo = hi;
    for (var k = 0u; k < 4u; k++) {
      s += f32(sext8((q >> (8u * k)) & 0xffu)) * x_f(xb + 4u * i + k);
    }
  }
  return s * w_f16(blk);
}

/** The 4 bytes of w at byte b (b even) as a little-endian word: two aligned loads, funnel-shifted. */
fn w_word(b: u32) -> u32 {
  let o = P.w_b + b;
  return funnel(w_raw(o >> 2u), w_raw((o >> 2u) + 1u), (o & 3u) * 8u);
}

// Q4_1, Q5_0, Q5_1 and IQ4_NL scale every element as their deq_* (dequant.wgsl) do, with the same
// f32 steps in the same order: element 16 half + j of a block is the low (half 0) or high nibble of
// code byte j.
// Q4_1 and Q5_1 (with fifth bits: bit j of the word at byte 4 for element j), codes from byte `codes`.
fn block_dot_min_nibbles(blk: u32, xb: u32, codes: u32, fifth_bits: bool) -> f32 {
  let d = w_f16(blk);
  let m = w_f16(blk + 2u);
  var qh = 0u;
  if (fifth_bits) { qh = w_word(blk + 4u); }
  var s = 0.0;
  for (var half = 0u; half < 2u; half++) {
    for (var i = 0u; i < 4u; i++) {
      let q = w_word(blk + codes + 4u * i) >> (4u * half);
      for (var k = 0u; k < 4u; k++) {
        let j = 16u * half + 4u * i + k;
        let code = ((q >> (8u * k)) & 15u) | (((qh >> j) & 1u) << 4u);
        s += (f32(code) * d + m) * x_f(xb + j);
      }
    }
  }
  return s;
}
fn block_dot_q4_1(blk: u32, xb: u32) -> f32 { return block_dot_min_nibbles(blk, xb, 4u, false); }
fn block_dot_q5_1(blk: u32, xb: u32) -> f32 { return block_dot_min_nibbles(blk, xb, 8u, true); }

fn block_dot_q5_0(blk: u32, xb: u32) -> f32 {
  let d = w_f16(blk);
  let qh = w_word(blk + 2u);
  var s = 0.0;
  for (var half = 0u; half < 2u; half++) {
    for (var i = 0u; i < 4u; i++) {
      let q = w_word(blk + 6u + 4u * i) >> (4u * half);
      for (var k = 0u; k < 4u; k++) {
        let j = 16u * half + 4u * i + k;
        let code = ((q >> (8u * k)) & 15u) | (((qh >> j) & 1u) << 4u);
        s += (f32(i32(code) - 16) * d) * x_f(xb + j);
      }
    }
  }
  return s;
}

fn block_dot_iq4_nl(blk: u32, xb: u32) -> f32 {
  let d = w_f16(blk);
  var s = 0.0;
  for (var half = 0u; half < 2u; half++) {
    for (var i = 0u; i < 4u; i++) {
      let q = w_word(blk + 2u + 4u * i) >> (4u * half);
      for (var k = 0u; k < 4u; k++) {
        s += (d * f32(KVALUES_IQ4NL[(q >> (8u * k)) & 15u])) * x_f(xb + 16u * half + 4u * i + k);
      }
    }
  }
  return s;
}

// The K-quants scale every element as their deq_* (dequant.wgsl) do, with the same f32
// steps in the same order: the sub-block's scale and min worked out once instead of per element.
fn block_dot_q2_k(blk: u32, xb: u32) -> f32 {
  let d = w_f16(blk + 80u);
  let dmin = w_f16(blk + 82u);
  var s = 0.0;
  for (var n = 0u; n < 2u; n++) {
    for (var g = 0u; g < 4u; g++) {
      for (var half = 0u; half < 2u; half++) {
        // elements 128 n + 32 g + 16 half ..: bits 2 g of code bytes 32 n + 16 half ..
        let sc = w_u8(blk + n * 8u + g * 2u + half);
        let dl = d * f32(sc & 15u);
        let ml = dmin * f32(sc >> 4u);
        let xs = xb + n * 128u + g * 32u + half * 16u;
        for (var i = 0u; i < 4u; i++) {
          let q = w_word(blk + 16u + n * 32u + 16u * half + 4u * i) >> (2u * g);
          for (var k = 0u; k < 4u; k++) {
            s += (dl * f32((q >> (8u * k)) & 3u) - ml) * x_f(xs + 4u * i + k);
          }
        }
      }
    }
  }
  return s;
}

fn block_dot_q3_k(blk: u32, xb: u32) -> f32 {
  let d = w_f16(blk + 108u);
  var s = 0.0;
  for (var n = 0u; n < 2u; n++) {
    for (var g = 0u; g < 4u; g++) {
      for (var half = 0u; half < 2u; half++) {
        // as Q2_K, minus 4 where bit 4 n + g of the element's hmask byte is clear
        let dl = d * f32(scale_q3_k(blk + 96u, n * 8u + g * 2u + half));
        let xs = xb + n * 128u + g * 32u + half * 16u;
        for (var i = 0u; i < 4u; i++) {
          let q = w_word(blk + 32u + n * 32u + 16u * half + 4u * i) >> (2u * g);
          let hm = w_word(blk + 16u * half + 4u * i) >> (4u * n + g);
          for (var k = 0u; k < 4u; k++) {
            let hi = select(4, 0, ((hm >> (8u * k)) & 1u) != 0u);
            s += (dl * f32(i32((q >> (8u * k)) & 3u) - hi)) * x_f(xs + 4u * i + k);
          }
        }
      }
    }
  }
  return s;
}

// Q4_K and Q5_K (with fifth bits: for element l of sub-block 2 pair + half, bit 2 pair + half of
// byte l of the 32 at byte 16), codes from byte `codes`.
fn block_dot_q45_k(blk: u32, xb: u32, codes: u32, fifth_bits: bool) -> f32 {
  let d = w_f16(blk);
  let dmin = w_f16(blk + 2u);
  var s = 0.0;
  for (var pair = 0u; pair < 4u; pair++) {
    for (var half = 0u; half < 2u; half++) {
      // elements 64 pair + 32 half ..: the low (half 0) or high nibbles of the pair's 32 code bytes
      let sm = scale_min_k4(blk + 4u, pair * 2u + half);
      let dl = d * f32(sm.x);
      let ml = dmin * f32(sm.y);
      let xs = xb + pair * 64u + half * 32u;
      for (var i = 0u; i < 8u; i++) {
        let q = w_word(blk + codes + pair * 32u + 4u * i) >> (4u * half);
        var h = 0u;
        if (fifth_bits) { h = w_word(blk + 16u + 4u * i) >> (2u * pair + half); }
        for (var k = 0u; k < 4u; k++) {
          let code = ((q >> (8u * k)) & 15u) | (((h >> (8u * k)) & 1u) << 4u);
          s += (dl * f32(code) - ml) * x_f(xs + 4u * i + k);
        }
      }
    }
  }
  return s;
}
fn block_dot_q4_k(blk: u32, xb: u32) -> f32 { return block_dot_q45_k(blk, xb, 16u, false); }
fn block_dot_q5_k(blk: u32, xb: u32) -> f32 { return block_dot_q45_k(blk, xb, 48u, true); }

fn block_dot_q6_k(blk: u32, xb: u32) -> f32 {
  let d = w_f16(blk + 208u);
  var s = 0.0;
  for (var n = 0u; n < 2u; n++) {
    for (var quarter = 0u; quarter < 4u; quarter++) {
      for (var l16 = 0u; l16 < 2u; l16++) {
        // elements 128 n + 32 quarter + 16 l16 ..: one scale; low bits from ql, high bits from qh
        let dl = d * f32(sext8(w_u8(blk + 192u + n * 8u + l16 + 2u * quarter)));
        let xs = xb + n * 128u + quarter * 32u + l16 * 16u;
        for (var i = 0u; i < 4u; i++) {
          let ql = w_word(blk + n * 64u + (quarter & 1u) * 32u + l16 * 16u + 4u * i) >> (4u * (quarter / 2u));
          let qh = w_word(blk + 128u + n * 32u + l16 * 16u + 4u * i) >> (2u * quarter);
          for (var k = 0u; k < 4u; k++) {
            let code = ((ql >> (8u * k)) & 15u) | (((qh >> (8u * k)) & 3u) << 4u);
            s += (dl * f32(i32(code) - 32)) * x_f(xs + 4u * i + k);
          }
        }
      }
    }
  }
  return s;
}

const LPT: u32 = TPR / TPT;

var<workgroup> partial: array<array<f32, TT>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
  let lid = lanes.lid;
  let item = group_index(wid, nwg) * (WG / TPT) + lid / TPT; // (slot group, row)
  let t = lid % TPT;
  let groups = (P.slots + TT - 1u) / TT;
  let r = item % P.rows;
  let slot0 = (item / P.rows) * TT;
  // acc[k]: lane t + k TPT
  var acc: array<array<f32, TT>, LPT>;
  if (item < groups * P.rows) {
    let e = expert_of(slot0);
    if (e < P.n_experts) {
      let wrow = e * P.rows + r;
      let nb = P.cols / QK;
      for (var b0 = t; b0 < nb; b0 += TPR) {
        for (var k = 0u; k < LPT; k++) {
          let b = b0 + k * TPT;
          if (b < nb) {
            let blk = wrow * P.row_bytes + b * BLOCK_BYTES;
            for (var c = 0u; c < TT; c++) {
              let slot = slot0 + c;
              if (slot < P.slots) {
                let xrow = select(slot / P.used, slot, P.per_slot == 1u);
                acc[k][c] += block_dot(blk, xrow * P.cols + b * QK);
              }
            }
          }
        }
      }
    }
  }
  // the tree's strides of TPT and more: lanes of this thread
  for (var s = LPT / 2u; s > 0u; s = s >> 1u) {
    for (var k = 0u; k < s; k++) {
      for (var c = 0u; c < TT; c++) { acc[k][c] += acc[k + s][c]; }
    }
  }
  var sum = acc[0];
  if (TPT > 1u) {
    partial[lid] = sum;
    let width = lane_width(lanes);
    for (var s = TPT / 2u; s >= width; s = s >> 1u) {
      if (t < s) {
        for (var c = 0u; c < TT; c++) { partial[lid][c] += partial[lid + s][c]; }
      }
      workgroupBarrier();
    }
    sum = partial[lid];
    for (var s = min(TPT, width) / 2u; s > 0u; s = s >> 1u) {
      for (var c = 0u; c < TT; c++) { sum[c] = lane_add(sum[c], s); }
    }
  }
  if (t == 0u && item < groups * P.rows) {
    for (var c = 0u; c < TT; c++) {
      let slot = slot0 + c;
      if (slot < P.slots) { out_setf(slot * P.out_rows + P.row_base + r, sum[c]); }
    }
  }
}
