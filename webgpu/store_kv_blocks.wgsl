// Write K and V rows ([nTokens][kvDim] f32) into a Q8_0 / Q4_0 cache at their slots by ggml's
// reference quantizers (common.wgsl): one thread per 32-value block of a token's row, K's and V's.
// Blocks are 34 / 18 bytes, so neighbouring blocks share words: each 16-bit half is written with
// atomic and/or (blocks start at even bytes, so no half straddles a word). A slot outside the cache
// is skipped. The variant defines BLOCK_BYTES and Q8 (true: Q8_0, false: Q4_0).

fn src_f(which: u32, i: u32) -> f32 {
  if (which == 0u) { return k_f(i); }
  return v_f(i);
}

/** The 16 bits at byte `at` (even) of the K (which 0) or V cache. */
fn put16(which: u32, at: u32, v: u32) {
  if (which == 0u) {
    let w = ((P.kc_b + at) >> 2u) - P.kc_w;
    let shift = ((P.kc_b + at) & 2u) * 8u;
    kc_and(w, ~(0xffffu << shift));
    kc_or(w, (v & 0xffffu) << shift);
  } else {
    let w = ((P.vc_b + at) >> 2u) - P.vc_w;
    let shift = ((P.vc_b + at) & 2u) * 8u;
    vc_and(w, ~(0xffffu << shift));
    vc_or(w, (v & 0xffffu) << shift);
  }
}

fn quant_block(which: u32, src: u32, dst: u32) {
  if (Q8) {
    var amax = 0.0;
    for (var j = 0u; j < 32u; j++) { amax = max(amax, abs(src_f(which, src + j))); }
    let s = q8_0_scale(amax);
    put16(which, dst, f32_to_f16(s.x));
    for (var j = 0u; j < 32u; j += 2u) {
      let lo = u32(q8_0_level(src_f(which, src + j), s.y)) & 0xffu;
      let hi = u32(q8_0_level(src_f(which, src + j + 1u), s.y)) & 0xffu;
      put16(which, dst + 2u + j, lo | (hi << 8u));
    }
  } else {
    var amax = 0.0;
    var mx = 0.0;
    for (var j = 0u; j < 32u; j++) {
      let v = src_f(which, src + j);
      if (amax < abs(v)) { amax = abs(v); mx = v; }
    }
    let s = q4_0_scale(mx);
    put16(which, dst, f32_to_f16(s.x));
    // byte j: value j in the low nibble, value j + 16 in the high one
    for (var j = 0u; j < 16u; j += 2u) {
      let b0 = q4_0_code(src_f(which, src + j), s.y) | (q4_0_code(src_f(which, src + j + 16u), s.y) << 4u);
      let b1 = q4_0_code(src_f(which, src + j + 1u), s.y) | (q4_0_code(src_f(which, src + j + 17u), s.y) << 4u);
      put16(which, dst + 2u + j, b0 | (b1 << 8u));
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  let nb = P.kv_dim / 32u;
  let t = g / nb;
  let b = g % nb;
  let slot = slots_i(t);
  if (slot < 0 || u32(slot) >= P.n_slots) { return; }
  let dst = (u32(slot) * nb + b) * BLOCK_BYTES;
  let src = t * P.kv_dim + b * 32u;
  quant_block(0u, src, dst);
  quant_block(1u, src, dst);
}
