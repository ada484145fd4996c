// out[t][r] = sum_c W[r][c] * act(x[t][c]) for batches (prompts): a workgroup computes a tile of
// TILE rows x TILE tokens. The weights and activations of the tile are staged in workgroup memory a
// chunk of columns at a time, each element read and dequantized once per workgroup, instead of
// every thread reading its rows' blocks and its tokens' activations from storage.
//
// The bits are matmul.wgsl's, so a token's row is the same alone (mat x vec) as in any batch:
// TPR is the same per row length, thread lane l sums the blocks b = l, l + TPR, ... in order, each
// block's dot product is the variant's block_dot in the same f32 steps (walk order: Q4_0 adds its
// two nibbles' products as a pair; the block scale multiplies the block's sum, as there), and the
// same fixed tree adds the TPR lanes. A chunk holds CB consecutive blocks (CB a multiple of TPR) of
// JC elements each: whole blocks for the float types (QK = 1), otherwise one block per lane cut
// into QK / JC pieces whose running sum carries over to the next chunk. (WGSL lets a compiler fuse
// a multiply and an add; the two kernels keep the same expressions so that it fuses both alike.)
//
// A thread: one lane, 4 rows x 4 tokens (rows rg, rg + SIDE, rg + 2 SIDE, rg + 3 SIDE: neighbouring
// threads read neighbouring tile rows; tokens 4 tg .. 4 tg + 3: a batch that fills part of the tile
// leaves whole threads idle, which skip the products), as vec4s over its 4 tokens: one vec4 of the
// activation tile and one of the weight tile feed 16 products, each component's steps the scalar ones.
// A split weight runs once per part, written at row_base of out_rows.

const TILE: u32 = SIDE * 4u;
const TWG: u32 = TPR * SIDE * SIDE;
// elements per tile row in one chunk, and the row stride in workgroup memory (padded against bank conflicts)
const CE: u32 = CB * JC;
const STRIDE: u32 = CE + 1u;

// [g * STRIDE + e]: element e of the chunk for tile rows g, g + SIDE, g + 2 SIDE, g + 3 SIDE, and for
// tile tokens 4 g .. 4 g + 3; each vec4 written whole by one thread
var<workgroup> w_tile: array<vec4<f32>, SIDE * STRIDE>;
var<workgroup> x_tile: array<vec4<f32>, SIDE * STRIDE>;
var<workgroup> scale_tile: array<vec4<f32>, SIDE * CB>;
var<workgroup> partial: array<vec4<f32>, TWG>;

/** Walk position o of block b of weight row `row` (0 outside the matrix). */
fn weight_at(row: u32, b: u32, o: u32, nb: u32) -> f32 {
  if (row >= P.rows || b >= nb) { return 0.0; }
  return tile_w(row * P.row_bytes + b * BLOCK_BYTES, o);
}
fn act_at(t: u32, b: u32, o: u32, nb: u32) -> f32 {
  if (t >= P.slots || b >= nb) { return 0.0; }
  return act(x_f(t * P.cols + b * QK + walk_elem(o)));
}
fn scale_at(row: u32, b: u32, nb: u32) -> f32 {
  if (row >= P.rows || b >= nb) { return 0.0; }
  return block_scale(row * P.row_bytes + b * BLOCK_BYTES);
}

@compute @workgroup_size(TWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lanes: Lanes) {
  let lid = lanes.lid;
  let row_tiles = (P.rows + TILE - 1u) / TILE;
  let tile = group_index(wid, nwg);
  if (tile >= row_tiles * ((P.slots + TILE - 1u) / TILE)) { return; }
  let row0 = (tile % row_tiles) * TILE;
  let tok0 = (tile / row_tiles) * TILE;
  let lane = lid % TPR;
  let item = lid / TPR;
  let rg = item % SIDE;
  let tg = item / SIDE;
  let nb = P.cols / QK;
  let has_tokens = tok0 + 4u * tg < P.slots; // else all four tokens are padding

  // acc_i: this lane's sums for row rg + i SIDE over the 4 tokens; s_i: the current block's
  var acc0 = vec4<f32>(); var acc1 = vec4<f32>(); var acc2 = vec4<f32>(); var acc3 = vec4<f32>();
  var s0 = vec4<f32>(); var s1 = vec4<f32>(); var s2 = vec4<f32>(); var s3 = vec4<f32>();
  for (var b0 = 0u; b0 < nb; b0 += CB) {
    for (var o0 = 0u; o0 < QK; o0 += JC) {
      // stage blocks [b0, b0 + CB), walk positions [o0, o0 + JC) of each
      for (var e = lid; e < SIDE * CE; e += TWG) {
        let g = e / CE;
        let b = b0 + (e % CE) / JC;
        let o = o0 + e % JC;
        let r = row0 + g;
        let t = tok0 + 4u * g;
        w_tile[g * STRIDE + e % CE] = vec4<f32>(weight_at(r, b, o, nb), weight_at(r + SIDE, b, o, nb), weight_at(r + 2u * SIDE, b, o, nb), weight_at(r + 3u * SIDE, b, o, nb));
        x_tile[g * STRIDE + e % CE] = vec4<f32>(act_at(t, b, o, nb), act_at(t + 1u, b, o, nb), act_at(t + 2u, b, o, nb), act_at(t + 3u, b, o, nb));
      }
      if (HAS_SCALE && o0 == 0u) {
        for (var e = lid; e < SIDE * CB; e += TWG) {
          let r = row0 + e / CB;
          let b = b0 + e % CB;
          scale_tile[e] = vec4<f32>(scale_at(r, b, nb), scale_at(r + SIDE, b, nb), scale_at(r + 2u * SIDE, b, nb), scale_at(r + 3u * SIDE, b, nb));
        }
      }
      workgroupBarrier();
      for (var cb = lane; cb < CB && b0 + cb < nb && has_tokens; cb += TPR) {
        if (o0 == 0u) { s0 = vec4<f32>(); s1 = vec4<f32>(); s2 = vec4<f32>(); s3 = vec4<f32>(); }
        let wb = rg * STRIDE + cb * JC;
        let xb = tg * STRIDE + cb * JC;
        for (var c = 0u; c < JC; c += STEP) {
          let w0 = w_tile[wb + c];
          let x0 = x_tile[xb + c];
          let w1 = w_tile[wb + c + STEP - 1u];
          let x1 = x_tile[xb + c + STEP - 1u];
          s0 += step_dot(w0.x, x0, w1.x, x1);
          s1 += step_dot(w0.y, x0, w1.y, x1);
          s2 += step_dot(w0.z, x0, w1.z, x1);
          s3 += step_dot(w0.w, x0, w1.w, x1);
        }
        if (o0 + JC == QK) {
          var d = vec4<f32>(1.0);
          if (HAS_SCALE) { d = scale_tile[rg * CB + cb]; }
          acc0 += scaled(s0, d.x);
          acc1 += scaled(s1, d.y);
          acc2 += scaled(s2, d.z);
          acc3 += scaled(s3, d.w);
        }
      }
      workgroupBarrier();
    }
  }

  // the TPR lanes of each output added by matmul.wgsl's tree (its strides below the width by
  // shuffles, as there), one row of this thread at a time
  let width = lane_width(lanes);
  for (var i = 0u; i < 4u; i++) {
    partial[lid] = select(select(acc3, acc2, i == 2u), select(acc1, acc0, i == 0u), i < 2u);
    workgroupBarrier();
    for (var h = TPR / 2u; h >= width; h = h >> 1u) {
      if (lane < h) { partial[lid] += partial[lid + h]; }
      workgroupBarrier();
    }
    var sum = partial[lid];
    for (var h = min(TPR, width) / 2u; h > 0u; h = h >> 1u) { sum = lane_add4(sum, h); }
    let r = row0 + rg + i * SIDE;
    if (lane == 0u && r < P.rows) {
      for (var k = 0u; k < 4u; k++) {
        let t = tok0 + 4u * tg + k;
        if (t < P.slots) { out_setf(t * P.out_rows + P.row_base + r, sum[k]); }
      }
    }
  }
}
