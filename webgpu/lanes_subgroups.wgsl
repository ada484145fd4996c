// Lane reductions with subgroups (the adapter's `subgroups` feature; kernels.ts puts `enable
// subgroups;` first). A lane tree adds, at each stride s = TPR / 2 .. 1 and each lane l < s,
// v[l] + v[l + s]; the butterfly v + subgroupShuffleXor(v, s) adds at lane l < s exactly that pair
// (and at l >= s the same pair commuted, which no lane below s ever reads), so a kernel keeps the
// workgroup-memory steps for strides of at least lane_width() and shuffles below it: the bits are
// those of the tree alone. That needs the partner lane l ^ s to be local invocation lid ^ s, which
// WGSL does not promise: each workgroup checks it on its own subgroups, every time (the subgroup
// size may differ between pipelines, even between subgroups of one dispatch), and takes the width
// of its narrowest subgroup whose invocations are lid = base + subgroup_invocation_id with base a
// multiple of its count of invocations, a power of two from 4 to 128; any other subgroup makes it 1
// (the tree alone).
struct Lanes {
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sg_id: u32,
}

var<workgroup> lane_narrowest: atomic<u32>;
var<workgroup> lane_width_all: u32;

/** The shuffle width of this workgroup (1: none). A workgroup barrier, taken by every invocation. */
fn lane_width(l: Lanes) -> u32 {
  let base = l.lid - l.sg_id;
  // all subgroup operations first, in uniform control flow (&& would skip some)
  let n = subgroupAdd(1u);
  let low = subgroupMin(base);
  let high = subgroupMax(base);
  let last = subgroupMax(l.sg_id);
  let ok = low == high && last == n - 1u && n >= 4u && n <= 128u && (n & (n - 1u)) == 0u && base % n == 0u;
  // the narrowest width is the largest 256 / width (portable: no workgroupUniformLoad of an atomic)
  atomicMax(&lane_narrowest, 256u / select(1u, n, ok));
  workgroupBarrier();
  if (l.lid == 0u) { lane_width_all = 256u / atomicLoad(&lane_narrowest); }
  return workgroupUniformLoad(&lane_width_all);
}

/** v[l] + v[l ^ s] (s below the width). */
fn lane_add(v: f32, s: u32) -> f32 { return v + subgroupShuffleXor(v, s); }
fn lane_add4(v: vec4<f32>, s: u32) -> vec4<f32> { return v + subgroupShuffleXor(v, s); }
