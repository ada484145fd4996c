// ids[r][j] and values[r][j] (x's bits) = the k largest values of row r of x ([groups][n] f32),
// largest first, equal values by the lower index, a NaN above every number: one workgroup per row.
// Values are compared as order keys (rank_key). A radix select, 8 bits a pass from the top (a
// histogram of the keys that share the prefix found so far), finds the k-th largest key T and how
// many of the keys equal to T are kept; the gather takes every key above T, and the first of those
// equal to T in index order (each thread walks a span of the row; a span's place among the ties is
// the sum of the spans before it); a bitonic sort of MAX_TOP_K slots (a power of two) puts them in order.
const BINS: u32 = 256u;

var<workgroup> hist: array<atomic<u32>, BINS>;
var<workgroup> sel_key: array<u32, MAX_TOP_K>;
var<workgroup> sel_idx: array<u32, MAX_TOP_K>;
var<workgroup> span_ties: array<u32, WG>;
var<workgroup> above: atomic<u32>;
/** The key prefix found so far, its mask, and how many of the keys with that prefix are kept. */
var<workgroup> found: array<u32, 3>;

/** A value's place in the order as an unsigned key, larger first: NaN on top, -0 as 0. */
fn rank_key(bits: u32) -> u32 {
  let a = bits & 0x7fffffffu;
  if (a > 0x7f800000u) { return 0xffffffffu; }
  if (a == 0u) { return 0x80000000u; }
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = group_index(wid, nwg);
  if (r >= P.groups) { return; }
  let n = P.n;
  let k = P.k;
  let base = r * n;
  if (lid == 0u) {
    found[0] = 0u;
    found[1] = 0u;
    found[2] = k;
    atomicStore(&above, 0u);
  }
  for (var step = 0u; step < 4u; step++) {
    let shift = 24u - 8u * step;
    for (var b = lid; b < BINS; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    let prefix = found[0];
    let mask = found[1];
    for (var i = lid; i < n; i += WG) {
      let key = rank_key(x_w(base + i));
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 0xffu], 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) {
      // from the top bin down, the one that holds the kept keys' last
      var need = found[2];
      var d = BINS - 1u;
      loop {
        let h = atomicLoad(&hist[d]);
        if (h >= need || d == 0u) { break; }
        need -= h;
        d -= 1u;
      }
      found[0] = prefix | (d << shift);
      found[1] = mask | (0xffu << shift);
      found[2] = need;
    }
    workgroupBarrier();
  }
  let t_key = found[0];
  let ties = found[2];
  let span = (n + WG - 1u) / WG;
  let lo = min(n, lid * span);
  let hi = min(n, lo + span);
  var mine = 0u;
  for (var i = lo; i < hi; i++) {
    let key = rank_key(x_w(base + i));
    if (key > t_key) {
      let s = atomicAdd(&above, 1u);
      sel_key[s] = key;
      sel_idx[s] = i;
    } else if (key == t_key) {
      mine += 1u;
    }
  }
  span_ties[lid] = mine;
  workgroupBarrier();
  var at = 0u;
  for (var j = 0u; j < lid; j++) { at += span_ties[j]; }
  let first = k - ties; // the keys above T fill the slots before
  for (var i = lo; i < hi && at < ties; i++) {
    if (rank_key(x_w(base + i)) == t_key) {
      sel_key[first + at] = t_key;
      sel_idx[first + at] = i;
      at += 1u;
    }
  }
  for (var j = k + lid; j < MAX_TOP_K; j += WG) { // padding, below every key
    sel_key[j] = 0u;
    sel_idx[j] = 0xffffffffu;
  }
  workgroupBarrier();
  // bitonic sort, best first: (key descending, index ascending)
  for (var size = 2u; size <= MAX_TOP_K; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      for (var t = lid; t < MAX_TOP_K / 2u; t += WG) {
        let i = 2u * t - (t & (stride - 1u));
        let j = i + stride;
        let ki = sel_key[i];
        let kj = sel_key[j];
        let ii = sel_idx[i];
        let ij = sel_idx[j];
        let j_better = kj > ki || (kj == ki && ij < ii);
        let i_better = ki > kj || (ki == kj && ii < ij);
        if (select(i_better, j_better, (i & size) == 0u)) {
          sel_key[i] = kj;
          sel_key[j] = ki;
          sel_idx[i] = ij;
          sel_idx[j] = ii;
        }
      }
      workgroupBarrier();
    }
  }
  for (var j = lid; j < k; j += WG) {
    let i = sel_idx[j];
    ids_set(r * k + j, i);
    values_set(r * k + j, x_w(base + i));
  }
}
