// Lane reductions without subgroups (kernels.ts includes this or lanes_subgroups.wgsl, which
// defines the same names): a kernel's entry point takes its local_invocation_index through Lanes,
// and lane_width() says below which stride its lane tree may shuffle instead of going through
// workgroup memory: 1 here, so every stride goes through workgroup memory.
struct Lanes {
  @builtin(local_invocation_index) lid: u32,
}

/** The shuffle width of this workgroup (1: none). A workgroup barrier, taken by every invocation. */
fn lane_width(l: Lanes) -> u32 {
  workgroupBarrier();
  return 1u;
}

// never called with a width of 1
fn lane_add(v: f32, s: u32) -> f32 { return v; }
fn lane_add4(v: vec4<f32>, s: u32) -> vec4<f32> { return v; }
