// RMSNorm and LayerNorm (as ggml_norm: mean, then the variance of x - mean, two passes), one
// workgroup per row, then times weight (+ bias). The variant sets LAYER_NORM and bias_at.
//   rms:   out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight
//   layer: out[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias
var<workgroup> partial: array<f32, WG>;

/** The sum of v over the workgroup by a fixed tree, its strides below `width` by subgroup shuffles (the same pairs: lanes*.wgsl). */
fn workgroup_sum(lid: u32, width: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s >= width; s = s >> 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (width > 1u) {
    var sum = partial[lid];
    for (var s = min(WG, width) / 2u; s > 0u; s = s >> 1u) { sum = lane_add(sum, s); }
    if (lid == 0u) { partial[0] = sum; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
  let lid = lanes.lid;
  let t = group_index(wid, nwg);
  if (t >= P.groups) { return; }
  let width = lane_width(lanes);
  let base = t * P.n;
  var mean = 0.0;
  if (LAYER_NORM) {
    var s = 0.0;
    for (var i = lid; i < P.n; i += WG) { s += x_f(base + i); }
    mean = workgroup_sum(lid, width, s) / f32(P.n);
  }
  var s2 = 0.0;
  for (var i = lid; i < P.n; i += WG) {
    let d = x_f(base + i) - mean;
    s2 += d * d;
  }
  let inv = 1.0 / sqrt(workgroup_sum(lid, width, s2) / f32(P.n) + bitcast<f32>(P.eps));
  for (var i = lid; i < P.n; i += WG) {
    let v = (x_f(base + i) - mean) * inv * weight_f(i);
    out_setf(base + i, select(v, v + bias_at(i), LAYER_NORM));
  }
}
