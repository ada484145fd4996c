// out[r] = the first index of the largest value of row r: one workgroup per row.
var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = group_index(wid, nwg);
  if (r >= P.groups) { return; }
  var bv = x_f(r * P.n);
  var bi = 0u;
  for (var i = lid; i < P.n; i += WG) {
    let v = x_f(r * P.n + i);
    if (v > bv) { bv = v; bi = i; }
  }
  best_value[lid] = bv;
  best_index[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let v = best_value[lid + s];
      let i = best_index[lid + s];
      if (v > best_value[lid] || (v == best_value[lid] && i < best_index[lid])) {
        best_value[lid] = v;
        best_index[lid] = i;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out_set(r, best_index[0]); }
}
