// out[t][i] = sum over slots j, in order, of y[t][j][i] * w[t][j] (ggml's f32 steps): one thread per output.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let t = g / P.n;
  let i = g % P.n;
  var acc = 0.0;
  for (var j = 0u; j < P.used; j++) {
    acc += y_f((t * P.used + j) * P.n + i) * weights_f(t * P.used + j);
  }
  out_setf(g, acc);
}
