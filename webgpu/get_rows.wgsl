// out[t][c] = row ids[t] of the table, dequantized; an id outside the table gives zeros. A table
// split over buffers runs once per part (rows row_base.. of the table): each writes only its ids.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let t = g / P.cols;
  let c = g % P.cols;
  let id = ids_i(t) - i32(P.row_base);
  let own = id >= 0 && u32(id) < P.rows;
  if (!own && P.only_own == 1u) { return; }
  var v = 0.0;
  if (own) {
    v = deq(u32(id) * P.row_bytes + (c / QK) * BLOCK_BYTES, c % QK);
  }
  out_setf(g, v);
}
