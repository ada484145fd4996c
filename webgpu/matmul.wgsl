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
