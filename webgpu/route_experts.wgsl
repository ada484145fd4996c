// Softmax gating and top-k per token (one thread per token): p = softmax(logits), the `used`
// largest p (most probable first, the lower id on ties), their weights p or p / sum(chosen p).
// No per-expert arrays (any expert count): pick j is the largest (p, -id) after pick j - 1 in
// that order, recomputing exp each pass (the same bits every pass).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = group_index(wid, nwg) * WG + lid;
  if (t >= P.count) { return; }
  let n = P.n_experts;
  let base = t * n;
  var mx = logits_f(base);
  for (var i = 1u; i < n; i++) { mx = max(mx, logits_f(base + i)); }
  var sum = 0.0;
  for (var i = 0u; i < n; i++) { sum += exp(logits_f(base + i) - mx); }
  var prev_v = 2.0; // above every exp(l - max) <= 1: the first pick may be anything
  var prev_i = 0u;
  var total = 0.0;
  for (var j = 0u; j < P.used; j++) {
    var bv = -1.0;
    var bi = 0u;
    for (var i = 0u; i < n; i++) {
      let v = exp(logits_f(base + i) - mx);
      let after = v < prev_v || (v == prev_v && i > prev_i);
      if (after && v > bv) { bv = v; bi = i; }
    }
    prev_v = bv;
    prev_i = bi;
    ids_set(t * P.used + j, bi);
    let p = bv / sum;
    weights_setf(t * P.used + j, p);
    total += p;
  }
  if (P.normalize == 1u) {
    let d = max(total, 6.103515625e-5);
    for (var j = 0u; j < P.used; j++) { weights_setf(t * P.used + j, weights_f(t * P.used + j) / d); }
  }
}
