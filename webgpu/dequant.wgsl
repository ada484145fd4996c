// One element of a weight block, dequantized with the same f32 steps as the reference
// dequantizer (src/tensor/dequant.ts), so getRows is bit-identical to it. `blk` is the block's
// byte offset inside the weight tensor `w`, `j` the element inside the block. Blocks are only
// 2-byte aligned (Q4_0: 18 bytes), so everything is read bytewise through w_u8.

fn w_u16(b: u32) -> u32 { return w_u8(b) | (w_u8(b + 1u) << 8u); }
fn w_u32(b: u32) -> u32 { return w_u16(b) | (w_u16(b + 2u) << 16u); }

// Float weights are 4-byte (F32) or 2-byte (F16, BF16) aligned: one word load per value.
fn w_half(b: u32) -> u32 { let o = P.w_b + b; return (w_raw(o >> 2u) >> ((o & 2u) * 8u)) & 0xffffu; }
fn deq_f32(blk: u32, j: u32) -> f32 { return bitcast<f32>(w_raw((P.w_b + blk) >> 2u)); }
fn deq_f16(blk: u32, j: u32) -> f32 { return w_f16(blk); }
fn deq_bf16(blk: u32, j: u32) -> f32 { return bitcast<f32>(w_half(blk) << 16u); }

/** The 4-bit code of element j (0..31) of a block whose 16 code bytes start at byte q. */
fn nibble32(q: u32, j: u32) -> u32 {
  let b = w_u8(q + (j & 15u));
  return select(b & 15u, b >> 4u, j >= 16u);
}

fn deq_q8_0(blk: u32, j: u32) -> f32 { return f32(sext8(w_u8(blk + 2u + j))) * w_f16(blk); }
fn deq_q4_0(blk: u32, j: u32) -> f32 { return f32(i32(nibble32(blk + 2u, j)) - 8) * w_f16(blk); }
fn deq_q4_1(blk: u32, j: u32) -> f32 { return f32(nibble32(blk + 4u, j)) * w_f16(blk) + w_f16(blk + 2u); }
fn deq_q5_0(blk: u32, j: u32) -> f32 {
  let h = (w_u32(blk + 2u) >> j) & 1u;
  return f32(i32(nibble32(blk + 6u, j) | (h << 4u)) - 16) * w_f16(blk);
}
fn deq_q5_1(blk: u32, j: u32) -> f32 {
  let h = (w_u32(blk + 4u) >> j) & 1u;
  return f32(nibble32(blk + 8u, j) | (h << 4u)) * w_f16(blk) + w_f16(blk + 2u);
}

const KVALUES_IQ4NL = array<i32, 16>(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
fn deq_iq4_nl(blk: u32, j: u32) -> f32 { return w_f16(blk) * f32(KVALUES_IQ4NL[nibble32(blk + 2u, j)]); }

// K-quants: 256 elements per block.

fn deq_q2_k(blk: u32, e: u32) -> f32 {
  let n = e / 128u;
  let r = e % 128u;
  let shift = (r / 32u) * 2u;
  let half = (r % 32u) / 16u;
  let l = r % 16u;
  let sc = w_u8(blk + n * 8u + (r / 32u) * 2u + half);
  let dl = w_f16(blk + 80u) * f32(sc & 15u);
  let ml = w_f16(blk + 82u) * f32(sc >> 4u);
  let q = (w_u8(blk + 16u + n * 32u + 16u * half + l) >> shift) & 3u;
  return dl * f32(q) - ml;
}

fn scale_q3_k(s: u32, j: u32) -> i32 {
  let low = select(w_u8(s + j - 8u) >> 4u, w_u8(s + j) & 15u, j < 8u);
  let high = (w_u8(s + 8u + (j % 4u)) >> (2u * (j / 4u))) & 3u;
  return i32(low | (high << 4u)) - 32;
}
fn deq_q3_k(blk: u32, e: u32) -> f32 {
  let n = e / 128u;
  let r = e % 128u;
  let group = r / 32u;
  let half = (r % 32u) / 16u;
  let l = r % 16u;
  let dl = w_f16(blk + 108u) * f32(scale_q3_k(blk + 96u, n * 8u + group * 2u + half));
  let low = (w_u8(blk + 32u + n * 32u + 16u * half + l) >> (group * 2u)) & 3u;
  let m = 1u << (n * 4u + group);
  let hi = select(4, 0, (w_u8(blk + 16u * half + l) & m) != 0u);
  return dl * f32(i32(low) - hi);
}

/** (scale, min) of sub-block j of the 12 packed bytes at s (ggml's get_scale_min_k4). */
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
  if (j < 4u) { return vec2<u32>(w_u8(s + j) & 63u, w_u8(s + j + 4u) & 63u); }
  return vec2<u32>((w_u8(s + j + 4u) & 15u) | ((w_u8(s + j - 4u) >> 6u) << 4u), (w_u8(s + j + 4u) >> 4u) | ((w_u8(s + j) >> 6u) << 4u));
}
fn deq_q4_k(blk: u32, e: u32) -> f32 {
  let pair = e / 64u;
  let r = e % 64u;
  let sub = pair * 2u + r / 32u;
  let sm = scale_min_k4(blk + 4u, sub);
  let b = w_u8(blk + 16u + pair * 32u + (r % 32u));
  let q = select(b & 15u, b >> 4u, r >= 32u);
  return (w_f16(blk) * f32(sm.x)) * f32(q) - w_f16(blk + 2u) * f32(sm.y);
}
fn deq_q5_k(blk: u32, e: u32) -> f32 {
  let pair = e / 64u;
  let r = e % 64u;
  let l = r % 32u;
  let sub = pair * 2u + r / 32u;
  let sm = scale_min_k4(blk + 4u, sub);
  let b = w_u8(blk + 48u + pair * 32u + l);
  let hbit = select(1u, 2u, r >= 32u) << (2u * pair);
  let q = select(b & 15u, b >> 4u, r >= 32u) + select(0u, 16u, (w_u8(blk + 16u + l) & hbit) != 0u);
  return (w_f16(blk) * f32(sm.x)) * f32(q) - w_f16(blk + 2u) * f32(sm.y);
}
fn deq_q6_k(blk: u32, e: u32) -> f32 {
  let n = e / 128u;
  let r = e % 128u;
  let quarter = r / 32u;
  let l = r % 32u;
  let ql = blk + n * 64u + l + select(0u, 32u, (quarter & 1u) == 1u);
  let low = select(w_u8(ql) & 15u, w_u8(ql) >> 4u, quarter >= 2u);
  let high = (w_u8(blk + 128u + n * 32u + l) >> (2u * quarter)) & 3u;
  let sc = sext8(w_u8(blk + 192u + n * 8u + (l >> 4u) + 2u * quarter));
  return (w_f16(blk + 208u) * f32(sc)) * f32(i32(low | (high << 4u)) - 32);
}
