import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dequantize, dequantizeRow, DEQUANTIZABLE_TYPES } from '../src/tensor/dequant.js';
import { TensorTypeError } from '../src/tensor/errors.js';
import { GGMLType, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { bf16ToF32, e8m0ToF32, e8m0ToF32Half, f16ToF32, f32ToBf16, f32ToF16 } from '../src/tensor/half.js';
import { canQuantize, QUANTIZABLE_TYPES, quantize, quantizeRow } from '../src/tensor/quantize.js';

// ---------------------------------------------------------------- helpers

const f16le = (h: number): number[] => [h & 0xff, h >> 8];
const f32le = (x: number): number[] => Array.from(new Uint8Array(Float32Array.of(x).buffer));
const byte = (v: number): number => v & 0xff;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectTensorError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TensorTypeError);
    expect((e as TensorTypeError).code).toBe(code);
    expect((e as Error).message.length).toBeGreaterThan(10);
    return;
  }
  throw new Error(`expected a TensorTypeError ${code}`);
}

// The code books from ggml-common.h, copied independently of src/.
const IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6];

// ---------------------------------------------------------------- f16 / bf16 / e8m0

describe('half precision conversions', () => {
  it('f32 → f16 on edge values', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff], // max finite
      [65519.996, 0x7bff], // just below the tie with 65536: stays finite
      [65520, 0x7c00], // tie between 65504 and 65536 (even → inf)
      [1e6, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [NaN, 0x7e00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24 → even (0)
      [Math.fround(2 ** -25 * (1 + 2 ** -20)), 0x0001], // just above the tie
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 ulps → even (2)
      [2 ** -14 - 2 ** -25, 0x0400], // subnormal/normal tie → even (0x400)
      [1e-10, 0x0000],
      [-1e-10, 0x8000],
      [1 + 2 ** -11, 0x3c00], // tie → even
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even
      [1 + 2 ** -11 + 2 ** -23, 0x3c01], // above the tie
      [-(1 + 2 ** -11 - 2 ** -23), 0xbc00], // below the tie
      [2047.5, 0x6800], // tie between 2047 (odd mantissa) and 2048 → 2048
    ];
    for (const [x, h] of cases) expect(f32ToF16(x), `f32ToF16(${x})`).toBe(h);
  });

  it('f16 → f32 on edge values', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x0400)).toBe(2 ** -14);
    expect(f16ToF32(0x3555)).toBe(Math.fround(1365 / 4096)); // 0.333251953125
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0x7e00)).toBeNaN();
    expect(f16ToF32(0xfc01)).toBeNaN();
  });

  it('every finite f16 survives f16 → f32 → f16', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN payloads collapse to 0x7e00
      if (f32ToF16(f16ToF32(h)) !== h) throw new Error(`round trip of 0x${h.toString(16)} gave 0x${f32ToF16(f16ToF32(h)).toString(16)}`);
    }
  });

  it('f32 → f16 rounds to the nearest f16 (checked against neighbours on random floats)', () => {
    const r = rng(7);
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround((r() - 0.5) * 2 ** Math.floor(r() * 44 - 26));
      const h = f32ToF16(x);
      const v = f16ToF32(h);
      // No other f16 is strictly closer: compare with the next one up and down in magnitude.
      const mag = h & 0x7fff;
      for (const n of [mag - 1, mag + 1]) {
        if (n < 0 || n >= 0x7c00) continue;
        const w = f16ToF32((h & 0x8000) | n);
        expect(Math.abs(w - x)).toBeGreaterThanOrEqual(Math.abs(v - x));
      }
    }
  });

  it('f32 → bf16 rounds like ggml (nearest even, subnormals kept, NaN quiet)', () => {
    const fromBits = (u: number) => new Float32Array(Uint32Array.of(u).buffer)[0]!;
    const cases: [number, number][] = [
      [1, 0x3f80],
      [-3, 0xc040],
      [-0, 0x8000],
      [1 + 2 ** -8, 0x3f80], // tie → even
      [1 + 3 * 2 ** -8, 0x3f82], // tie → even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [fromBits(0x7f7fffff), 0x7f80], // max float rounds up to inf
      [fromBits(0x00010000), 0x0001], // subnormal kept, not flushed
      [fromBits(0x7fc00000), 0x7fc0],
      [fromBits(0x7f800001), 0x7fc0], // signalling NaN made quiet, never turned into inf
      [fromBits(0xff800001), 0xffc0],
    ];
    for (const [x, h] of cases) expect(f32ToBf16(x), `f32ToBf16(${x})`).toBe(h);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc040)).toBe(-3);
    expect(bf16ToF32(0x0001)).toBe(fromBits(0x00010000));
    expect(bf16ToF32(0x7fc0)).toBeNaN();
  });

  it('e8m0 scales', () => {
    expect(e8m0ToF32(127)).toBe(1);
    expect(e8m0ToF32(130)).toBe(8);
    expect(e8m0ToF32(0)).toBe(2 ** -127);
    expect(e8m0ToF32(254)).toBe(2 ** 127);
    expect(e8m0ToF32(255)).toBe(Infinity); // ggml does not decode 0xff as NaN
    expect(e8m0ToF32Half(128)).toBe(1);
    expect(e8m0ToF32Half(127)).toBe(0.5);
    expect(e8m0ToF32Half(1)).toBe(2 ** -127);
    expect(e8m0ToF32Half(0)).toBe(2 ** -128);
  });
});

// ---------------------------------------------------------------- hand-built blocks

describe('dequantize hand-built blocks', () => {
  const check = (type: GGMLType, bytes: number[], expected: number[]) => {
    const { blockSize, blockBytes } = typeTraits(type)!;
    expect(bytes.length % blockBytes, `${typeName(type)} test block size`).toBe(0);
    expect(expected.length).toBe((bytes.length / blockBytes) * blockSize);
    expect(Array.from(dequantize(type, Uint8Array.from(bytes), expected.length))).toEqual(expected);
  };

  it('F32, F16, BF16', () => {
    check(GGMLType.F32, [...f32le(1.5), ...f32le(-2), ...f32le(3.25e-20)], [1.5, -2, Math.fround(3.25e-20)]);
    check(
      GGMLType.F16,
      [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x3800].flatMap(f16le),
      [1, -2, 65504, 2 ** -24, Infinity, -Infinity, 0.5],
    );
    check(GGMLType.BF16, [0x3f80, 0xc040, 0x4049].flatMap(f16le), [1, -3, 3.140625]);
  });

  it('Q8_0: d then 32 int8', () => {
    const qs = range(32).map((j) => j * 8 - 128);
    check(GGMLType.Q8_0, [...f16le(0x3800), ...qs.map(byte)], qs.map((q) => q * 0.5));
  });

  it('Q4_0: element j in the low nibble of byte j, element j+16 in its high nibble', () => {
    const bytes = range(16).map((j) => j | ((15 - j) << 4));
    const expected = [...range(16).map((j) => (j - 8) * 2), ...range(16).map((j) => (15 - j - 8) * 2)];
    check(GGMLType.Q4_0, [...f16le(0x4000), ...bytes], expected);
  });

  it('Q4_1: d, m, nibbles', () => {
    const bytes = range(16).map((j) => j | ((j ^ 5) << 4));
    const expected = [...range(16).map((j) => j * 0.5 - 1), ...range(16).map((j) => (j ^ 5) * 0.5 - 1)];
    check(GGMLType.Q4_1, [...f16le(0x3800), ...f16le(0xbc00), ...bytes], expected);
  });

  const qh32 = 0xa5c30f1e;
  const qhBit = (k: number) => (qh32 >>> k) & 1;

  it('Q5_0: fifth bit of element k is bit k of qh', () => {
    const bytes = range(16).map((j) => j | ((15 - j) << 4));
    const expected = [
      ...range(16).map((j) => (j | (qhBit(j) << 4)) - 16),
      ...range(16).map((j) => ((15 - j) | (qhBit(j + 16) << 4)) - 16),
    ];
    check(GGMLType.Q5_0, [...f16le(0x3c00), ...f32leU(qh32), ...bytes], expected);
  });

  it('Q5_1: d, m, qh, nibbles', () => {
    const bytes = range(16).map((j) => ((j * 7) & 15) | (((j * 3) & 15) << 4));
    const expected = [
      ...range(16).map((j) => (((j * 7) & 15) | (qhBit(j) << 4)) * 0.25 + 2),
      ...range(16).map((j) => (((j * 3) & 15) | (qhBit(j + 16) << 4)) * 0.25 + 2),
    ];
    check(GGMLType.Q5_1, [...f16le(0x3400), ...f16le(0x4000), ...f32leU(qh32), ...bytes], expected);
  });

  // In the K-quants below, element e's 2-bit (Q2_K/Q3_K) quant sits in byte 32*(e>>7) + (e&31) at
  // bit 2*((e>>5)&3), and sub-block scales cover consecutive runs of 16 (or 32) elements.
  const twoBit = (qs: number[], e: number) => (qs[32 * (e >> 7) + (e & 31)]! >> (2 * ((e >> 5) & 3))) & 3;

  it('Q2_K: 4-bit scale and min per 16, 2-bit quants', () => {
    const scales = range(16).map((k) => ((k % 15) + 1) | ((k % 4) << 4));
    const qs = range(64).map((b) => (b * 37 + 11) & 0xff);
    const expected = range(256).map((e) => 0.5 * (scales[e >> 4]! & 15) * twoBit(qs, e) - 0.25 * (scales[e >> 4]! >> 4));
    check(GGMLType.Q2_K, [...scales, ...qs, ...f16le(0x3800), ...f16le(0x3400)], expected);
  });

  it('Q3_K: signed 6-bit scales, hmask high bit, 2-bit low bits', () => {
    const sc6 = range(16).map((s) => s * 4 - 32 + (s % 3)); // -32..31
    const packed = new Array<number>(12).fill(0);
    sc6.forEach((v, s) => {
      const u = v + 32;
      if (s < 8) packed[s] |= u & 15;
      else packed[s - 8] |= (u & 15) << 4;
      packed[8 + (s % 4)] |= (u >> 4) << (2 * (s >> 2));
    });
    const hmask = range(32).map((b) => (b * 29 + 3) & 0xff);
    const qs = range(64).map((b) => (b * 53 + 7) & 0xff);
    const expected = range(256).map((e) => {
      const high = (hmask[e & 31]! >> (e >> 5)) & 1;
      return 0.25 * sc6[e >> 4]! * (twoBit(qs, e) - (high ? 0 : 4));
    });
    check(GGMLType.Q3_K, [...hmask, ...qs, ...packed, ...f16le(0x3400)], expected);
  });

  // Q4_K/Q5_K 6-bit scales and mins, packed as ggml-common.h documents.
  const sc6 = range(8).map((s) => (s * 9 + 5) % 64);
  const mn6 = range(8).map((s) => (s * 13 + 2) % 64);
  const packK4 = (): number[] => {
    const p = new Array<number>(12).fill(0);
    for (let s = 0; s < 4; s++) {
      p[s] = sc6[s]! | ((sc6[s + 4]! >> 4) << 6);
      p[s + 4] = mn6[s]! | ((mn6[s + 4]! >> 4) << 6);
      p[s + 8] = (sc6[s + 4]! & 15) | ((mn6[s + 4]! & 15) << 4);
    }
    return p;
  };
  const nibble = (qs: number[], e: number) => {
    const b = qs[32 * (e >> 6) + (e & 31)]!;
    return (e >> 5) & 1 ? b >> 4 : b & 15;
  };

  it('Q4_K: 6-bit packed scales/mins per 32, nibbles', () => {
    const qs = range(128).map((b) => (b * 71 + 13) & 0xff);
    const expected = range(256).map((e) => 0.5 * sc6[e >> 5]! * nibble(qs, e) - 0.125 * mn6[e >> 5]!);
    check(GGMLType.Q4_K, [...f16le(0x3800), ...f16le(0x3000), ...packK4(), ...qs], expected);
  });

  it('Q5_K: fifth bit of element e is bit e>>5 of qh[e&31]', () => {
    const qh = range(32).map((b) => (b * 97 + 5) & 0xff);
    const qs = range(128).map((b) => (b * 71 + 13) & 0xff);
    const expected = range(256).map((e) => {
      const q = nibble(qs, e) + 16 * ((qh[e & 31]! >> (e >> 5)) & 1);
      return 0.5 * sc6[e >> 5]! * q - 0.125 * mn6[e >> 5]!;
    });
    check(GGMLType.Q5_K, [...f16le(0x3800), ...f16le(0x3000), ...packK4(), ...qh, ...qs], expected);
  });

  it('Q6_K: ql low nibbles, qh 2-bit pairs, int8 scales per 16', () => {
    const ql = range(128).map((b) => (b * 31 + 17) & 0xff);
    const qh = range(64).map((b) => (b * 43 + 9) & 0xff);
    const sc = range(16).map((s) => s * 16 - 120);
    const expected = range(256).map((e) => {
      const n = e >> 7, k = (e & 127) >> 5, l = e & 31;
      const lb = ql[64 * n + l + (k & 1) * 32]!;
      const low = k < 2 ? lb & 15 : lb >> 4;
      const high = (qh[32 * n + l]! >> (2 * k)) & 3;
      return 0.125 * sc[e >> 4]! * ((low | (high << 4)) - 32);
    });
    check(GGMLType.Q6_K, [...ql, ...qh, ...sc.map(byte), ...f16le(0x3000)], expected);
  });

  it('Q8_K: f32 d, int8 quants, bsums ignored', () => {
    const qs = range(256).map((j) => ((j * 7 - 100) << 24) >> 24);
    const bsums = new Array<number>(32).fill(0xab);
    check(GGMLType.Q8_K, [...f32le(0.25), ...qs.map(byte), ...bsums], qs.map((q) => q * 0.25));
  });

  it('IQ4_NL: nibbles index kvalues_iq4nl', () => {
    const bytes = range(16).map((j) => j | ((15 - j) << 4));
    const expected = [...range(16).map((j) => IQ4NL[j]! * 0.5), ...range(16).map((j) => IQ4NL[15 - j]! * 0.5)];
    check(GGMLType.IQ4_NL, [...f16le(0x3800), ...bytes], expected);
  });

  it('MXFP4: e8m0 scale and E2M1 nibbles', () => {
    const bytes = range(16).map((j) => j | ((15 - j) << 4));
    // e = 127 is scale 1: the nibbles decode to the plain E2M1 values; e = 130 scales them by 8.
    const plain = [...range(16).map((j) => E2M1[j]!), ...range(16).map((j) => E2M1[15 - j]!)];
    check(GGMLType.MXFP4, [127, ...bytes, 130, ...bytes], [...plain, ...plain.map((v) => v * 8)]);
  });

  it('dequantizeRow reads at a byte offset and writes at an element offset', () => {
    const block = [...f16le(0x3c00), ...range(32).map((j) => byte(j - 16))];
    const src = Uint8Array.from([0xee, 0xee, 0xee, ...block]);
    const out = new Float32Array(40).fill(7);
    dequantizeRow(GGMLType.Q8_0, src, 3, 32, out, 5);
    expect(Array.from(out.subarray(5, 37))).toEqual(range(32).map((j) => j - 16));
    expect(out[4]).toBe(7);
    expect(out[37]).toBe(7);
  });
});

function f32leU(u: number): number[] {
  return [u & 0xff, (u >>> 8) & 0xff, (u >>> 16) & 0xff, u >>> 24];
}

// ---------------------------------------------------------------- bit-exactness against ggml

/**
 * A fixed input built from integers only, so ggml can be fed the identical floats: bell-shaped
 * values, an all-positive super-block (min path), a coarse lattice (rounding ties everywhere) and
 * heavy-tailed cubes, one kind per 256 elements.
 */
function goldenInput(n: number): Float32Array {
  let s = 2024;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 16) % 2001;
  };
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = next() + next() + next() - 3000;
    switch ((i >> 8) % 4) {
      case 0: x[i] = g / 977; break;
      case 1: x[i] = (g + 3000) / 97; break;
      case 2: x[i] = g / 16; break;
      default: x[i] = (g * g * g) / 1e9;
    }
  }
  return x;
}

// sha256 of ggml's quantize_row_<type>_ref(goldenInput(4096)) and of dequantize_row_<type> applied
// to those bytes (float32 little-endian), computed with ggml's own libggml-base (the build shipped
// in node-llama-cpp) through ctypes.
const GGML_QUANT_SHA256: [GGMLType, string][] = [
  [GGMLType.Q8_0, '797c17fdfc8558c564e5cfce9d46dd643524beb36953291900f193f537b8f6fb'],
  [GGMLType.Q4_0, '12f7f155f2811b2275214f0bd2dc545cb8505ce4e19c7aa5169419c430447ec7'],
  [GGMLType.Q4_1, 'a269140a81dfcc58cbba43df3b0a7aa05a89c7e306b9e0e4464fd9c56d64d85b'],
  [GGMLType.Q5_0, '3ccda8bcbea646595f67c75dee8f6646586ef5150f924d392acbe1bc46adea8e'],
  [GGMLType.Q5_1, 'ef4fd3b8a37d39c969c24e65c378a70ab1393eaced35663ecabecaf06c021131'],
  [GGMLType.Q2_K, '373e090c39ab9718375871c20ad35759e5b79564ead03904b227bc91ee66f778'],
  [GGMLType.Q3_K, '1e80ab6716783856f791a5920f428ed3ab02f69be4412a4ddd6e118e9388c05b'],
  [GGMLType.Q4_K, 'fb09234a39ca04b2a3aaf5feb8709d2686c4e4afdf740733d9883dca0ae45433'],
  [GGMLType.Q5_K, '068252993015bd532caf837332f54a33a5bc9677d1d4cf36cb949ea064377605'],
  [GGMLType.Q6_K, 'e5bc5e98757844ed14ddb62c2d177e0bd9eb7c73c1628db8df53e090058acdee'],
  [GGMLType.Q8_K, 'e8fff50d4cccc241ed6facaca15ddd70bd82774dcf2d4319c2fd028fc666b1b1'],
  [GGMLType.IQ4_NL, '3977c839ea66fafa95f1979b58bad3a0ffda1e485954acaad9968a52fe14c3fa'],
  [GGMLType.MXFP4, 'c6707d6edbd2df731372faee9e47f254f5114ce3c2575259377eedd2fdafa416'],
];
const GGML_DEQUANT_SHA256 = new Map<GGMLType, string>([
  [GGMLType.Q8_0, '139aef5a38f7e4dd1c4ffad6ceb4fa5be602f213ab346f76bc48051f66893445'],
  [GGMLType.Q4_0, '5fbb757ba8b78d211533817204e84144d7b43a650c8c0b39f2795df7a2d34fa7'],
  [GGMLType.Q4_1, '3be003bcd96cacfb136076c6f74406157beac17226fbdcdbb20c967f86bc59f7'],
  [GGMLType.Q5_0, '088961bb7177d89d8623df7d9be81128be7544e21a31e55596d5b6320d5df9e7'],
  [GGMLType.Q5_1, '2e4d90fd1c4c9b7118ee05fa47ee7142b60d67f838adedf5d973d3c916af7522'],
  [GGMLType.Q2_K, 'e27e1115b4174a5bf72dedbe48b3568eaf3869979b9ff2300f462378ce73f7cd'],
  [GGMLType.Q3_K, 'a1fcd3eb6786dd3251d01bfc10ce1eb389df657d1568a2db0eebe501981c5b7f'],
  [GGMLType.Q4_K, '1b4611ad7b2ce019a715afb7bd49ed3a2f9cd2ae07daeb69fb674cbeddab6c0b'],
  [GGMLType.Q5_K, '55b1a11aa228c2dfc470de0e4aa679b505edba9f358414080d90691f693923bf'],
  [GGMLType.Q6_K, '624ff09b718c9b29467c82c6c7fbabc2ffbf9dcef946176896666028f517d023'],
  [GGMLType.Q8_K, '72a7a3d5921dbc0a1b7aadddfaf78b2fb91429d2b91b50cd1f3d353958e81285'],
  [GGMLType.IQ4_NL, 'e5488866a497ffeb73e2bb936b8350ef3ae506e9120d9e4210f8fc495eb20f14'],
  [GGMLType.MXFP4, '532a2246200118219284ba8d1acdc82d1b3dd10b0a9d75dbf0c4fdf4047a0cfd'],
]);

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('bit-exact with ggml on a fixed input', () => {
  const x = goldenInput(4096);
  for (const [type, hash] of GGML_QUANT_SHA256) {
    it(`${typeName(type)} quantize and dequantize`, () => {
      const q = quantize(type, x, 256);
      expect(sha256(q), 'quantized bytes').toBe(hash);
      const y = dequantize(type, q, x.length);
      expect(sha256(new Uint8Array(y.buffer)), 'dequantized floats').toBe(GGML_DEQUANT_SHA256.get(type));
    });
  }
});

// ---------------------------------------------------------------- round trips

/**
 * Worst |x - dequant(quant(x))| allowed in a block, as a fraction of the block's largest |x|.
 * Linear types follow from the step size d: Q8_0 d/2 = amax/254 plus f16 rounding of d (2^-11);
 * Q4_0/Q5_0 map the extreme to -8/-16, so the far side clips by one step (amax/8, amax/16); Q4_1/Q5_1
 * half a step of the range (≤ 2 amax) over 15/31, plus f16 rounding of d and m; Q8_K d/2 = amax/254
 * with an f32 d. MXFP4's grid tops out at 6/8 of the next power of two, so up to amax/4 clips.
 * The K-quants and IQ4_NL fit scales by search, so their bounds are empirical (about 1.3x the worst
 * seen over many seeds of this data).
 */
const MAX_ERR: [GGMLType, number][] = [
  [GGMLType.Q8_0, 1 / 254 + 2 ** -11],
  [GGMLType.Q4_0, 1 / 8 + 2 ** -9],
  [GGMLType.Q4_1, 1 / 15 + 2 ** -9],
  [GGMLType.Q5_0, 1 / 16 + 2 ** -10],
  [GGMLType.Q5_1, 1 / 31 + 2 ** -9],
  [GGMLType.Q8_K, 1 / 254 + 2 ** -20],
  [GGMLType.MXFP4, 1 / 4 + 2 ** -20],
  [GGMLType.Q2_K, 0.48],
  [GGMLType.Q3_K, 0.26],
  [GGMLType.Q4_K, 0.1],
  [GGMLType.Q5_K, 0.057],
  [GGMLType.Q6_K, 0.026],
  [GGMLType.IQ4_NL, 0.16],
];

describe('quantize → dequantize round trips', () => {
  const blocks = 48;
  const x = new Float32Array(256 * blocks);
  const r = rng(20240601);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  for (let b = 0; b < blocks; b++) {
    // Scales keep f16 block scales in the normal range, where the bounds above hold.
    const scale = 2 ** (r() * 8 - 2);
    const shift = b % 3 === 0 ? scale * 1.5 : 0; // some blocks off-centre, for the min-based types
    for (let i = 0; i < 256; i++) x[b * 256 + i] = gauss() * scale + shift;
  }

  it('covers every quantizable type', () => {
    expect(new Set([...MAX_ERR.map(([t]) => t), GGMLType.F32, GGMLType.F16, GGMLType.BF16])).toEqual(new Set(QUANTIZABLE_TYPES));
    for (const t of QUANTIZABLE_TYPES) expect(DEQUANTIZABLE_TYPES).toContain(t);
  });

  for (const [type, bound] of MAX_ERR) {
    it(`${typeName(type)} stays within ${bound.toFixed(4)} of each block's max |x|`, () => {
      const { blockSize, blockBytes } = typeTraits(type)!;
      const q = quantize(type, x, 512);
      expect(q.length).toBe((x.length / blockSize) * blockBytes);
      const y = dequantize(type, q, x.length);
      let worst = 0;
      for (let b = 0; b < x.length / blockSize; b++) {
        let amax = 0, emax = 0;
        for (let i = b * blockSize; i < (b + 1) * blockSize; i++) {
          amax = Math.max(amax, Math.abs(x[i]!));
          emax = Math.max(emax, Math.abs(y[i]! - x[i]!));
        }
        worst = Math.max(worst, emax / amax);
      }
      expect(worst).toBeLessThanOrEqual(bound);
      expect(worst).toBeGreaterThan(0); // these types are lossy on this data
    });
  }

  it('F32 is exact, F16 within 2^-11 relative, BF16 within 2^-8 relative', () => {
    expect(dequantize(GGMLType.F32, quantize(GGMLType.F32, x, 256), x.length)).toEqual(x);
    const h = dequantize(GGMLType.F16, quantize(GGMLType.F16, x, 256), x.length);
    const b = dequantize(GGMLType.BF16, quantize(GGMLType.BF16, x, 256), x.length);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(h[i]! - x[i]!)).toBeLessThanOrEqual(Math.max(Math.abs(x[i]!) * 2 ** -11, 2 ** -25));
      expect(Math.abs(b[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
    }
  });

  it('all-zero input quantizes to zeros and back', () => {
    const z = new Float32Array(512);
    for (const type of QUANTIZABLE_TYPES) {
      expect(Array.from(dequantize(type, quantize(type, z, 256), 512)).every((v) => v === 0), typeName(type)).toBe(true);
    }
  });

  it('quantizeRow writes at offsets and agrees with quantize', () => {
    const whole = quantize(GGMLType.Q4_K, x.subarray(0, 512), 256);
    const out = new Uint8Array(10 + whole.length);
    quantizeRow(GGMLType.Q4_K, x, 256, 256, out, 10);
    expect(Array.from(out.subarray(10, 10 + 144))).toEqual(Array.from(whole.subarray(144, 288)));
  });
});

// ---------------------------------------------------------------- errors

describe('typed errors', () => {
  it('unsupported types', () => {
    expectTensorError(() => dequantize(GGMLType.IQ2_XXS, new Uint8Array(66), 256), 'UNSUPPORTED_TYPE');
    expectTensorError(() => dequantize(12345 as GGMLType, new Uint8Array(4), 1), 'UNSUPPORTED_TYPE');
    expectTensorError(() => quantize(GGMLType.Q8_1, new Float32Array(32), 32), 'UNSUPPORTED_TYPE');
    expect(canQuantize(GGMLType.IQ4_XS)).toBe(false);
    expect(canQuantize(GGMLType.Q4_K)).toBe(true);
  });

  it('lengths that are not whole blocks or rows', () => {
    expectTensorError(() => dequantize(GGMLType.Q4_0, new Uint8Array(36), 33), 'BAD_LENGTH');
    expectTensorError(() => dequantize(GGMLType.Q6_K, new Uint8Array(210), -256), 'BAD_LENGTH');
    expectTensorError(() => quantize(GGMLType.Q4_K, new Float32Array(512), 128), 'BAD_LENGTH');
    expectTensorError(() => quantize(GGMLType.Q8_0, new Float32Array(96), 64), 'BAD_LENGTH');
    expectTensorError(() => quantize(GGMLType.F16, new Float32Array(4), 0), 'BAD_LENGTH');
  });

  it('sources and destinations that are too short', () => {
    expectTensorError(() => dequantize(GGMLType.Q8_0, new Uint8Array(67), 64), 'SHORT_INPUT');
    expectTensorError(() => dequantize(GGMLType.F32, new Uint8Array(7), 2), 'SHORT_INPUT');
    expectTensorError(() => dequantize(GGMLType.Q8_0, new Uint8Array(68), 64, new Float32Array(32)), 'SHORT_OUTPUT');
    expectTensorError(() => quantizeRow(GGMLType.Q8_0, new Float32Array(32), 0, 64, new Uint8Array(68)), 'SHORT_INPUT');
    expectTensorError(() => quantizeRow(GGMLType.Q8_0, new Float32Array(64), 0, 64, new Uint8Array(67)), 'SHORT_OUTPUT');
  });

  it('non-finite values for block types', () => {
    const x = new Float32Array(256);
    x[100] = NaN;
    expectTensorError(() => quantize(GGMLType.Q4_K, x, 256), 'NON_FINITE');
    x[100] = -Infinity;
    expectTensorError(() => quantize(GGMLType.Q8_0, x, 256), 'NON_FINITE');
    // Element types store them as they are.
    expect(dequantize(GGMLType.F16, quantize(GGMLType.F16, x, 256), 256)[100]).toBe(-Infinity);
  });
});
