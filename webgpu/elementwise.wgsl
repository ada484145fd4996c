// Element-wise ops, one thread per element; the host picks one with the OP constant. f32 steps as
// ggml's CPU backend takes them (the factor of scale and 1/cap of softcap are f32 from the host).

/**
 * GELU as ggml's CPU table: f16-rounded input and output, 0 below -10, the input above 10. Its
 * 0.5 h (1 + tanh u) is written h / (1 + exp(-2u)): the same value without 1 + tanh's cancellation
 * for negative h, where the tail is far below tanh's last bit.
 */
fn ggml_gelu(x: f32) -> f32 {
  if (x <= -10.0) { return 0.0; }
  if (x >= 10.0) { return x; }
  let h = round_f16(x);
  let u = 0.7978845608028654 * h * (1.0 + 0.044715 * h * h);
  return round_f16(h / (1.0 + exp(-2.0 * u)));
}

fn apply(g: u32) {
  switch OP {
    case 0u: { // swiglu
      let v = a_f(g);
      out_setf(g, (v / (1.0 + exp(-v))) * b_f(g));
    }
    case 1u: { // geglu
      out_setf(g, ggml_gelu(a_f(g)) * b_f(g));
    }
    case 2u: { // gelu
      out_setf(g, ggml_gelu(a_f(g)));
    }
    case 3u: { // sigmoid
      out_setf(g, 1.0 / (1.0 + exp(-a_f(g))));
    }
    case 4u: { // scale
      out_setf(g, a_f(g) * bitcast<f32>(P.factor));
    }
    case 5u: { // softcap: cap * tanh(x * (1 / cap))
      out_setf(g, tanh_f32(a_f(g) * bitcast<f32>(P.factor)) * bitcast<f32>(P.cap));
    }
    case 6u: { // add
      out_setf(g, a_f(g) + b_f(g));
    }
    case 7u: { // addBias: b is a row of n
      out_setf(g, a_f(g) + b_f(g % P.n));
    }
    default: {}
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg) * WG + lid;
  if (g >= P.count) { return; }
  apply(g);
}
