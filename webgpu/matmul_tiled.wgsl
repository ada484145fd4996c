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
// into QK / JC pieces whose running sum carries over to the next chunk.
//
// A thread: one lane, RT rows x TT tokens (interleaved by SIDE so neighbouring threads read
// neighbouring tile rows). A split weight runs once per part, written at row_base of out_rows.

const RT: u32 = 4u;
const TT: u32 = 4u;
const TILE: u32 = SIDE * RT;
const TWG: u32 = TPR * SIDE * SIDE;
// elements per tile row in one chunk, and the row stride in workgroup memory (padded against bank conflicts)
const CE: u32 = CB * JC;
const STRIDE: u32 = CE + 1u;

var<workgroup> w_tile: array<f32, TILE * STRIDE>;
var<workgroup> x_tile: array<f32, TILE * STRIDE>;
var<workgroup> scale_tile: array<f32, TILE * CB>;
var<workgroup> partial: array<f32, TWG * TT>;

@compute @workgroup_size(TWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row_tiles = (P.rows + TILE - 1u) / TILE;
  let tile = group_index(wid, nwg);
  if (tile >= row_tiles * ((P.slots + TILE - 1u) / TILE)) { return; }
  let row0 = (tile % row_tiles) * TILE;
  let tok0 = (tile / row_tiles) * TILE;
  let lane = lid % TPR;
  let item = lid / TPR;
  let rg = item % SIDE; // tile rows rg + i * SIDE
  let tg = item / SIDE; // tile tokens tg + k * SIDE
  let nb = P.cols / QK;

  var acc: array<f32, RT * TT>;
  var s: array<f32, RT * TT>; // the running sum of the current block
  for (var b0 = 0u; b0 < nb; b0 += CB) {
    for (var o0 = 0u; o0 < QK; o0 += JC) {
      // stage blocks [b0, b0 + CB), walk positions [o0, o0 + JC) of each; zeros outside the matrix
      for (var e = lid; e < TILE * CE; e += TWG) {
        let lr = e / CE;
        let cb = (e % CE) / JC;
        let o = o0 + e % JC;
        let b = b0 + cb;
        var wv = 0.0;
        if (row0 + lr < P.rows && b < nb) { wv = tile_w((row0 + lr) * P.row_bytes + b * BLOCK_BYTES, o); }
        w_tile[lr * STRIDE + e % CE] = wv;
        var xv = 0.0;
        if (tok0 + lr < P.slots && b < nb) { xv = act(x_f((tok0 + lr) * P.cols + b * QK + walk_elem(o))); }
        x_tile[lr * STRIDE + e % CE] = xv;
      }
      if (HAS_SCALE && o0 == 0u) {
        for (var e = lid; e < TILE * CB; e += TWG) {
          let lr = e / CB;
          let b = b0 + e % CB;
          var d = 0.0;
          if (row0 + lr < P.rows && b < nb) { d = block_scale((row0 + lr) * P.row_bytes + b * BLOCK_BYTES); }
          scale_tile[e] = d;
        }
      }
      workgroupBarrier();
      for (var cb = lane; cb < CB && b0 + cb < nb; cb += TPR) {
        if (o0 == 0u) { s = array<f32, RT * TT>(); }
        for (var c = 0u; c < JC; c += STEP) {
          var wv: array<f32, RT * STEP>;
          var xv: array<f32, TT * STEP>;
          for (var u = 0u; u < STEP; u++) {
            for (var i = 0u; i < RT; i++) { wv[i * STEP + u] = w_tile[(rg + i * SIDE) * STRIDE + cb * JC + c + u]; }
            for (var k = 0u; k < TT; k++) { xv[k * STEP + u] = x_tile[(tg + k * SIDE) * STRIDE + cb * JC + c + u]; }
          }
          for (var i = 0u; i < RT; i++) {
            for (var k = 0u; k < TT; k++) {
              s[i * TT + k] += step_dot(wv[i * STEP], xv[k * STEP], wv[i * STEP + STEP - 1u], xv[k * STEP + STEP - 1u]);
            }
          }
        }
        if (o0 + JC == QK) {
          for (var i = 0u; i < RT; i++) {
            var d = 1.0;
            if (HAS_SCALE) { d = scale_tile[(rg + i * SIDE) * CB + cb]; }
            for (var k = 0u; k < TT; k++) { acc[i * TT + k] += scaled(s[i * TT + k], d); }
          }
        }
      }
      workgroupBarrier();
    }
  }

  // the TPR lanes of each output added by matmul.wgsl's tree, one tile row of this thread at a time
  for (var i = 0u; i < RT; i++) {
    for (var k = 0u; k < TT; k++) { partial[lid * TT + k] = acc[i * TT + k]; }
    workgroupBarrier();
    for (var h = TPR / 2u; h > 0u; h = h >> 1u) {
      if (lane < h) {
        for (var k = 0u; k < TT; k++) { partial[lid * TT + k] += partial[(lid + h) * TT + k]; }
      }
      workgroupBarrier();
    }
    let r = row0 + rg + i * SIDE;
    if (lane == 0u && r < P.rows) {
      for (var k = 0u; k < TT; k++) {
        let t = tok0 + tg + k * SIDE;
        if (t < P.slots) { out_setf(t * P.out_rows + P.row_base + r, partial[lid * TT + k]); }
      }
    }
  }
}
