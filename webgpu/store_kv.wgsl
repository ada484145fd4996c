// Write K and V rows ([nTokens][kvDim] f32) into the cache at their slots: one thread per element.
// An f16 cache packs two elements in a word that two threads share: they write their halves with
// atomic and/or. A slot outside the cache is skipped.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let t = g / P.kv_dim;
  let i = g % P.kv_dim;
  let slot = slots_i(t);
  if (slot < 0 || u32(slot) >= P.n_slots) { return; }
  let e = u32(slot) * P.kv_dim + i;
  store(e, k_f(g), v_f(g));
}
