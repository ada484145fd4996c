// RoPE in place, as ggml's rope_yarn: one thread per (token, head, pair). theta_i = pos * scale^i by
// i f32 multiplications (ggml's order), divided by the pair's frequency factor.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let half = P.rope_dims / 2u;
  let i = g % half;
  let h = (g / half) % P.n_heads;
  let t = g / (half * P.n_heads);
  let theta_scale = bitcast<f32>(P.theta_scale);
  var theta = f32(positions_i(t));
  for (var k = 0u; k < i; k++) { theta *= theta_scale; }
  let extrap = theta / factor(i);
  let interp = bitcast<f32>(P.freq_scale) * extrap;
  var th = interp;
  let ext = bitcast<f32>(P.ext_factor);
  if (ext != 0.0) {
    let low = bitcast<f32>(P.low);
    let high = bitcast<f32>(P.high);
    let y = (f32(i) - low) / max(0.001, high - low);
    let mix = (1.0 - min(1.0, max(0.0, y))) * ext;
    th = interp * (1.0 - mix) + extrap * mix;
  }
  let mscale = bitcast<f32>(P.mscale);
  let cs = cos_sin(th);
  let c = cs.x * mscale;
  let s = cs.y * mscale;
  let base = (t * P.n_heads + h) * P.head_dim;
  let ia = base + select(2u * i, i, P.neox == 1u);
  let ib = base + select(2u * i + 1u, i + half, P.neox == 1u);
  let x0 = x_f(ia);
  let x1 = x_f(ib);
  x_setf(ia, x0 * c - x1 * s);
  x_setf(ib, x0 * s + x1 * c);
}
