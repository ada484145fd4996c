// out[slot][r] = sum_c W[expert_of(slot) * rows + r][c] * act(x[xrow][c]). A workgroup computes
// WG / TPR outputs, TPR threads each (TPR from the variant: fewer, fuller workgroups for short
// rows). Plain matmul: a slot is a token. Routed (ggml's mul_mat_id): a slot is (token, chosen
// expert), x is the token's row or, with per_slot, the slot's own row. Each thread sums every
// TPR-th block of the row in order, then a fixed tree adds the TPR partial sums: the result of a
// row does not depend on the batch around it.
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let lane = lid % TPR;
  var acc = 0.0;
  if (o < P.count) {
    let slot = o / P.rows;
    let r = o % P.rows;
    let e = expert_of(slot);
    let xrow = select(slot / P.used, slot, P.per_slot == 1u);
    if (e < P.n_experts) {
      let wrow = e * P.rows + r;
      let nb = P.cols / QK;
      for (var b = lane; b < nb; b += TPR) {
        let blk = wrow * P.row_bytes + b * BLOCK_BYTES;
        let xb = xrow * P.cols + b * QK;
        for (var j = 0u; j < QK; j++) {
          acc += deq(blk, j) * act(x_f(xb + j));
        }
      }
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (lane == 0u && o < P.count) { out_setf(o, partial[lid]); }
}
