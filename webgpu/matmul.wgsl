// out[slot][r] = sum_c W[expert_of(slot) * rows + r][c] * act(x[xrow][c]). A thread owns one row,
// one lane of TPR and TT consecutive slots (a register tile: each weight value is dequantized once
// for TT tokens); a workgroup holds WG / TPR such (row, slot group) items. Plain matmul: a slot is a
// token. Routed (ggml's mul_mat_id, TT = 1): a slot is (token, chosen expert), x is the token's row
// or, with per_slot, the slot's own row. Every output is summed the same way whatever TT and the
// batch: its lane sums every TPR-th block of the row in order, then a fixed tree adds the TPR lanes,
// so a token's row has the same bits alone as in any batch (TPR depends on the row length only).
// A weight split over buffers runs once per part: rows are the part's, written at row_base of
// out_rows per slot.
var<workgroup> partial: array<array<f32, TT>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
        for (var j = 0u; j < QK; j++) {
          let wv = deq(blk, j);
          for (var c = 0u; c < TT; c++) {
            let slot = slot0 + c;
            if (slot < P.slots) {
              let xrow = select(slot / P.used, slot, P.per_slot == 1u);
              acc[c] += wv * act(x_f(xrow * P.cols + b * QK + j));
            }
          }
        }
      }
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) {
      for (var c = 0u; c < TT; c++) { partial[lid][c] += partial[lid + s][c]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && item < groups * P.rows) {
    for (var c = 0u; c < TT; c++) {
      let slot = slot0 + c;
      if (slot < P.slots) { out_setf(slot * P.out_rows + P.row_base + r, partial[lid][c]); }
    }
  }
}
