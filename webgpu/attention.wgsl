// Attention of one (token, head) per workgroup over the paged cache, one pass with an online
// softmax: the WG threads score WG keys at a time, then every thread walks those scores in order,
// keeping the running max and sum and the output dims it owns (lid, lid + WG, ...). The walk's
// rescale factors for key k depend only on the scores before it, so thread k works them out first
// from the running max (one exp per key, not one per key and thread) and the walk reads them. Over an f16
// cache whose head dim is not a multiple of 16 it takes ggml's one-row steps: f16 queries and the
// running V sum rounded to f16 after every rescale and every added key. Over a Q8_0 / Q4_0 cache
// (QUANT_Q) the query is quantized to Q8_0 per 32-value block first (ggml's flash attention
// quantizes it to K's vec_dot_type; common.wgsl's reference quantizer) and cache_k / cache_v
// dequantize the blocks. The variant defines QUANT_Q, cache_k, cache_v, alibi_bias (0, or
// ALiBi's slope_h * -|query position - key position|) and DIMS_PER_THREAD (head dim / WG rounded up:
// each key's loop over a thread's dims is no longer than the head needs).
//
// Segments (flash decoding): except in the one-row steps, the keys are walked in segments of
// SEG_KEYS on a grid fixed by key position, each from an empty state, folded in order into the
// row's state (fold_factors / fold_add). So the segments of a row may run in workgroups of their
// own (SPLIT: a decode step with too few rows to fill the GPU): workgroup (row, slot) takes the
// row's slot-th segment and writes its state (started, max, sum, unnormalized output) to out, the
// partials, and attention_fold.wgsl folds them in the same order: the same bits either way.
var<workgroup> qs: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, WG>;
var<workgroup> slots: array<i32, WG>;
// each key's (ms, vs): the running sums' rescale and the key's own weight
var<workgroup> factors: array<vec2<f32>, WG>;
var<workgroup> key_range: vec3<u32>;


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let gi = group_index(wid, nwg);
  if (gi >= P.groups) { return; }
  // SPLIT: P.slots workgroups per row, one segment each
  let o = select(gi, gi / P.slots, SPLIT);
  let seg_slot = select(0u, gi % P.slots, SPLIT);
  let t = o / P.n_heads;
  let h = o % P.n_heads;
  let hd = P.head_dim;
  let kv_off = (h / (P.n_heads / P.n_kv_heads)) * hd;
  let one_row = P.one_row == 1u;
  let qbase = o * hd;
  for (var i = lid; i < hd; i += WG) {
    let v = q_f(qbase + i);
    qs[i] = select(v, round_f16(v), one_row);
  }
  if (QUANT_Q) {
    // one thread per block: the query as its Q8_0 levels times the f16 scale (what the integer dot sees)
    workgroupBarrier();
    if (lid < hd / 32u) {
      var amax = 0.0;
      for (var j = 0u; j < 32u; j++) { amax = max(amax, abs(qs[lid * 32u + j])); }
      let s = q8_0_scale(amax);
      let d = round_f16(s.x);
      for (var j = 0u; j < 32u; j++) { qs[lid * 32u + j] = f32(q8_0_level(qs[lid * 32u + j], s.y)) * d; }
    }
  }
  if (lid == 0u) {
    key_range = vec3<u32>(u32(info_i(3u * t)), u32(info_i(3u * t + 1u)), u32(info_i(3u * t + 2u)));
  }
  // one load for all: the key loop holds barriers, so its bounds must be uniform
  let range = workgroupUniformLoad(&key_range);
  let table = range.x;
  let first = range.y;
  let end = range.z;
  let bs = P.block_size;
  let scale = bitcast<f32>(P.scale);
  let softcap = bitcast<f32>(P.softcap);
  // the row's state (segments folded so far) and the segment's
  var acc_row: array<f32, DIMS_PER_THREAD>;
  var m_row = 0.0;
  var sum_row = 0.0;
  var have_row = false;
  var acc: array<f32, DIMS_PER_THREAD>;
  var m = 0.0;
  var sum = 0.0;
  var started = false;
  // segments [g0, g1) of the grid; the one-row steps walk the range as one
  var g0 = first / SEG_KEYS;
  var g1 = (end + SEG_KEYS - 1u) / SEG_KEYS;
  if (one_row) {
    g0 = 0u;
    g1 = 1u;
  }
  if (SPLIT) {
    g0 += seg_slot;
    g1 = min(g1, g0 + 1u);
  }
  for (var g = g0; g < g1; g++) {
    let lo = select(max(first, g * SEG_KEYS), first, one_row);
    let hi = select(min(end, (g + 1u) * SEG_KEYS), end, one_row);
    for (var d = 0u; d < DIMS_PER_THREAD; d++) { acc[d] = 0.0; }
    m = 0.0;
    sum = 0.0;
    started = false;
    for (var p0 = lo; p0 < hi; p0 += WG) {
      let p = p0 + lid;
      var s = 0.0;
      var slot = -1;
      if (p < hi) {
        let block = tables_i(table + p / bs);
        if (block >= 0) {
          slot = block * i32(bs) + i32(p % bs);
          let kb = u32(slot) * P.kv_dim + kv_off;
          var dot = 0.0;
          for (var i = 0u; i < hd; i++) { dot += qs[i] * cache_k(kb + i); }
          s = dot * scale;
          if (softcap > 0.0) { s = softcap * tanh_f32(s / softcap); }
          s = s + alibi_bias(h, t, p);
        }
      }
      scores[lid] = s;
      slots[lid] = slot;
      workgroupBarrier();
      let n = min(WG, hi - p0);
      if (lid < n && slot >= 0) {
        // the running max as the walk reaches this key: m, then the valid keys before it
        var seen = started;
        var pm = m;
        for (var j = 0u; j < lid; j++) {
          if (slots[j] < 0) { continue; }
          if (!seen) {
            pm = scores[j];
            seen = true;
          } else if (scores[j] > pm) {
            pm = scores[j];
          }
        }
        var ms = 1.0;
        var vs = 1.0;
        if (!seen) {
          ms = 0.0;
        } else if (s > pm) {
          ms = exp(pm - s);
        } else {
          vs = exp(s - pm);
        }
        factors[lid] = vec2<f32>(ms, vs);
      }
      workgroupBarrier();
      for (var k = 0u; k < n; k++) {
        if (slots[k] < 0) { continue; }
        let sk = scores[k];
        if (!started) {
          m = sk;
          started = true;
        } else if (sk > m) {
          m = sk;
        }
        let f = factors[k];
        let ms = f.x;
        let vs = f.y;
        let vb = u32(slots[k]) * P.kv_dim + kv_off;
        for (var d = 0u; d < DIMS_PER_THREAD; d++) {
          let i = lid + d * WG;
          if (i < hd) {
            if (one_row) {
              acc[d] = round_f16(acc[d] * ms);
              acc[d] = round_f16(acc[d] + cache_v(vb + i) * vs);
            } else {
              acc[d] = acc[d] * ms + cache_v(vb + i) * vs;
            }
          }
        }
        sum = sum * ms + vs;
      }
      workgroupBarrier();
    }
    if (!SPLIT && started) {
      if (!have_row) {
        acc_row = acc;
        m_row = m;
        sum_row = sum;
        have_row = true;
      } else {
        let f = fold_factors(m_row, m);
        for (var d = 0u; d < DIMS_PER_THREAD; d++) { acc_row[d] = fold_add(acc_row[d], acc[d], f); }
        sum_row = fold_add(sum_row, sum, f);
        m_row = max(m_row, m);
      }
    }
  }
  if (SPLIT) {
    // the segment's state: started, max, sum, then the unnormalized output
    let base = gi * (hd + 3u);
    if (lid == 0u) {
      out_setf(base, select(0.0, 1.0, started));
      out_setf(base + 1u, m);
      out_setf(base + 2u, sum);
    }
    for (var d = 0u; d < DIMS_PER_THREAD; d++) {
      let i = lid + d * WG;
      if (i < hd) { out_setf(base + 3u + i, acc[d]); }
    }
    return;
  }
  for (var d = 0u; d < DIMS_PER_THREAD; d++) {
    let i = lid + d * WG;
    if (i < hd) { out_setf(qbase + i, select(0.0, acc_row[d] / sum_row, sum_row > 0.0)); }
  }
}
