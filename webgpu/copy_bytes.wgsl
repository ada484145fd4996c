// dst[dst_byte ..] = src[src_byte ..], `bytes` bytes at any alignment: one thread per destination
// word, merging the bytes it owns into the word (no two threads share a word).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let first_word = (P.dst_b + P.dst_byte) / 4u;
  let word = first_word + g;
  var v = dst_raw(word);
  for (var k = 0u; k < 4u; k++) {
    let at = word * 4u + k; // absolute byte in the destination buffer
    let rel = at - (P.dst_b + P.dst_byte);
    if (at >= P.dst_b + P.dst_byte && rel < P.bytes) {
      let b = src_u8(P.src_byte + rel);
      v = (v & ~(0xffu << (8u * k))) | (b << (8u * k));
    }
  }
  dst_raw_set(word, v);
}
