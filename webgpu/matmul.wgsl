// out[slot][r] = sum_c W[expert_of(slot) * rows + r][c] * act(x[xrow][c]). A thread owns one row,
// one lane of TPR and TT consecutive slots (a register tile: each weight value is dequantized once
// for TT tokens); a workgroup holds WG / TPR such (row, slot group) items. Plain matmul: a slot is a
// token. Routed (ggml's mul_mat_id, TT = 1): a slot is (token, chosen expert), x is the token's row
// or, with per_slot, the slot's own row. Every output is summed the same way whatever TT and the
// batch: its lane sums every TPR-th block of the row in order (each block's dot product from the
// variant's block_dot), then a fixed tree adds the TPR lanes (its strides below lane_width() by
// subgroup shuffles, the same pairs: lanes*.wgsl),
// so a token's row has the same bits alone as in any batch (TPR depends on the row length only).
// A weight split over buffers runs once per part: rows are the part's, written at row_base of
// out_rows per slot.
// Dot products of one block of w with QK activations from x: the block's scale read once, codes a
// word at a time (types without one dequantize element by element: kernels.ts).
fn block_dot_q4_0(blk: u32, xb: u32) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < 4u; i++) {
    let q = w_word2(blk + 2u + 4u * i);
    for (var k = 0u; k < 4u; k++) {
      let byte = (q >> (8u * k)) & 0xffu;
      let j = 4u * i + k;
      s += f32(i32(byte & 15u) - 8) * x_f(xb + j) + f32(i32(byte >> 4u) - 8) * x_f(xb + j + 16u);
    }
  }
  return s * w_f16(blk);
}

fn block_dot_q8_0(blk: u32, xb: u32) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < 8u; i++) {
    let q = w_word2(blk + 2u + 4u * i);
    for (var k = 0u; k < 4u; k++) {
      s += f32(sext8((q >> (8u * k)) & 0xffu)) * x_f(xb + 4u * i + k);
    }
  }
  return s * w_f16(blk);
}

var<workgroup> partial: array<array<f32, TT>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
  let lid = lanes.lid;
  let item = group_index(wid, nwg) * (WG / TPR) + lid / TPR; // (slot group, row)
  let lane = lid % TPR;
  let groups = (P.slots + TT - 1u) / TT;
  let r = item % P.rows;
  let slot0 = (item / P.rows) * TT;
  var acc: array<f32, TT>;
  if (item < groups * P.rows) {
    let e = expert_of(slot0);
    if (e < P.n_experts) {
      let wrow = e * P.rows + r;
      let nb = P.cols / QK;
      for (var b = lane; b < nb; b += TPR) {
        let blk = wrow * P.row_bytes + b * BLOCK_BYTES;
        for (var c = 0u; c < TT; c++) {
          let slot = slot0 + c;
          if (slot < P.slots) {
            let xrow = select(slot / P.used, slot, P.per_slot == 1u);
            acc[c] += block_dot(blk, xrow * P.cols + b * QK);
          }
        }
      }
    }
  }
  partial[lid] = acc;
  let width = lane_width(lanes);
  for (var s = TPR / 2u; s >= width; s = s >> 1u) {
    if (lane < s) {
      for (var c = 0u; c < TT; c++) { partial[lid][c] += partial[lid + s][c]; }
    }
    workgroupBarrier();
  }
  var sum = partial[lid];
  for (var s = min(TPR, width) / 2u; s > 0u; s = s >> 1u) {
    for (var c = 0u; c < TT; c++) { sum[c] = lane_add(sum[c], s); }
  }
  if (lane == 0u && item < groups * P.rows) {
    for (var c = 0u; c < TT; c++) {
      let slot = slot0 + c;
      if (slot < P.slots) { out_setf(slot * P.out_rows + P.row_base + r, sum[c]); }
    }
  }
}
