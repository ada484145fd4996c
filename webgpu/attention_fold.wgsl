// The second pass of split attention (attention.wgsl, SPLIT): one workgroup per (token, head)
// folds the row's P.slots segment states from part, in order, as the one-pass kernel folds them,
// and writes the normalized output. A state is (started, max, sum, output[head_dim]).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = group_index(wid, nwg);
  if (o >= P.groups) { return; }
  let hd = P.head_dim;
  let stride = hd + 3u;
  let base = o * P.slots * stride;
  for (var i = lid; i < hd; i += WG) {
    var have = false;
    var m = 0.0;
    var sum = 0.0;
    var acc = 0.0;
    for (var s = 0u; s < P.slots; s++) {
      let b = base + s * stride;
      if (part_f(b) == 0.0) { continue; }
      let m2 = part_f(b + 1u);
      let sum2 = part_f(b + 2u);
      let acc2 = part_f(b + 3u + i);
      if (!have) {
        m = m2;
        sum = sum2;
        acc = acc2;
        have = true;
      } else {
        let f = fold_factors(m, m2);
        acc = fold_add(acc, acc2, f);
        sum = fold_add(sum, sum2, f);
        m = max(m, m2);
      }
    }
    out_setf(o * hd + i, select(0.0, acc / sum, sum > 0.0));
  }
}
