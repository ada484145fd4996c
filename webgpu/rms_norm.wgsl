// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight: one workgroup per row.
var<workgroup> partial: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = group_index(wid, nwg);
  if (t >= P.groups) { return; }
  let base = t * P.n;
  var ss = 0.0;
  for (var i = lid; i < P.n; i += WG) {
    let v = x_f(base + i);
    ss += v * v;
  }
  let inv = 1.0 / sqrt(workgroup_sum(lid, ss) / f32(P.n) + bitcast<f32>(P.eps));
  for (var i = lid; i < P.n; i += WG) {
    out_setf(base + i, x_f(base + i) * inv * weight_f(i));
  }
}
