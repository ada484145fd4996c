// The WebGPU kernels with and without shader-f16, on one adapter, must give the same bits: with the
// feature, f16 values (F16 weights, block scales, an f16 KV cache) become f32 by the hardware's
// conversion instead of integer bit work. Run by test/webgpu.test.ts in Deno on Mesa's lavapipe, the
// software adapter here that has the feature (Dawn's SwiftShader lacks it); Deno resolves the
// sources' .js specifiers with --unstable-sloppy-imports. Prints one line: WASMFORGE_F16 {json}.
import { asF32, asWeight, kvElementType, type Backend, type KVCacheType, type Tensor, type WeightTensor } from '../../src/backend/backend.js';
import { createWebGPUBackend, type WebGPUBackend } from '../../src/backend/webgpu/webgpu-backend.js';
import { GGMLType, typeName, typeTraits } from '../../src/tensor/ggml-types.js';
import { randomBlocks, rng, uniform } from '../helpers/random-tensors.js';

/** Where each type keeps its f16 fields inside a block (scales and mins); F16 is all f16. */
const F16_FIELDS: Partial<Record<GGMLType, readonly number[]>> = {
  [GGMLType.Q8_0]: [0], [GGMLType.Q4_0]: [0], [GGMLType.Q5_0]: [0], [GGMLType.IQ4_NL]: [0],
  [GGMLType.Q4_1]: [0, 2], [GGMLType.Q5_1]: [0, 2], [GGMLType.Q4_K]: [0, 2], [GGMLType.Q5_K]: [0, 2],
  [GGMLType.Q2_K]: [80, 82], [GGMLType.Q3_K]: [108], [GGMLType.Q6_K]: [208],
};

/** Random weights of `type` with an f16 field of every third block (every third F16 value) made subnormal, the case an inexact conversion gets wrong. */
function weightsWithSubnormals(type: GGMLType, rows: number, cols: number, r: () => number): Uint8Array {
  const bytes = randomBlocks(type, rows, cols, r);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const subnormal = () => (1 + Math.floor(r() * 0x3ff)) | (r() < 0.5 ? 0x8000 : 0);
  if (type === GGMLType.F16) {
    for (let at = 0; at < bytes.length; at += 6) view.setUint16(at, subnormal(), true);
    return bytes;
  }
  const { blockBytes } = typeTraits(type)!;
  for (let blk = 0; blk < bytes.length; blk += 3 * blockBytes) {
    for (const field of F16_FIELDS[type] ?? []) view.setUint16(blk + field, subnormal(), true);
  }
  return bytes;
}

function tensor(be: Backend, type: GGMLType, data: Float32Array | Int32Array): Tensor {
  const t = be.allocate(type, [data.length]);
  be.upload(t, data);
  return t;
}

/** Every result of one backend, by case name. */
async function run(be: WebGPUBackend): Promise<Map<string, Uint8Array>> {
  const results = new Map<string, Uint8Array>();
  const types = [GGMLType.F16, ...Object.keys(F16_FIELDS).map(Number)] as GGMLType[];
  for (const [i, type] of types.entries()) {
    const r = rng(900 + i);
    const qk = typeTraits(type)!.blockSize;
    const rows = 24, cols = qk === 1 ? 96 : qk === 32 ? 6 * 32 : 2 * qk;
    const w = asWeight(be.allocate(type, [cols, rows], 'weight'), cols, rows) as WeightTensor;
    be.upload(w, weightsWithSubnormals(type, rows, cols, r));
    const ids = tensor(be, GGMLType.I32, Int32Array.from({ length: rows }, (_, k) => (k * 7) % rows));
    const rowsOut = be.allocate(GGMLType.F32, [rows * cols]);
    be.getRows(rowsOut, w, ids, rows);
    results.set(`${typeName(type)} getRows`, await be.read(rowsOut));
    // mat x vec (1 and 3 tokens) and the tiled kernel (40 tokens)
    for (const nTokens of [1, 3, 40]) {
      const x = tensor(be, GGMLType.F32, uniform(nTokens * cols, r));
      const out = be.allocate(GGMLType.F32, [nTokens * rows]);
      be.matmul(out, w, x, nTokens);
      results.set(`${typeName(type)} matmul ${nTokens} tokens`, await be.read(out));
    }
  }
  // KV caches whose values or block scales are f16: stored, read back and attended over; a third of
  // the values small enough to be f16 subnormals
  const kvDim = 64, headDim = 32, blockSize = 16, nSlots = 64, nTokens = 8;
  for (const type of ['f16', 'q8_0', 'q4_0'] as KVCacheType[]) {
    const r = rng(960);
    const layer = { k: be.allocate(kvElementType(type), [kvDim, nSlots]), v: be.allocate(kvElementType(type), [kvDim, nSlots]), type, blockSize, kvDim };
    const scaled = (a: Float32Array) => a.map((v, k) => (k % 3 === 0 ? v * 3e-5 : v));
    const slots = Int32Array.from({ length: nSlots }, (_, k) => (k * 5) % nSlots);
    be.storeKV(layer, tensor(be, GGMLType.F32, scaled(uniform(nSlots * kvDim, r))), tensor(be, GGMLType.F32, scaled(uniform(nSlots * kvDim, r))), tensor(be, GGMLType.I32, slots), nSlots);
    const out = be.allocate(GGMLType.F32, [nTokens * 4 * headDim]);
    be.attention({
      q: tensor(be, GGMLType.F32, uniform(nTokens * 4 * headDim, r)), out, nTokens, nHeads: 4, nKvHeads: 2, headDim, scale: 1 / Math.sqrt(headDim), layer,
      blockTables: tensor(be, GGMLType.I32, Int32Array.from([3, 0, 2, 1])),
      // token t: table from entry 0, keys 0 .. 8t + 6
      tokenInfo: tensor(be, GGMLType.I32, Int32Array.from(Array.from({ length: nTokens }, (_, t) => [0, 0, 8 * t + 7]).flat())),
    });
    results.set(`${type} KV cache`, await be.read(layer.k));
    results.set(`${type} attention`, await be.read(out));
  }
  return results;
}

const on = await createWebGPUBackend({ features: { shaderF16: true } });
const off = await createWebGPUBackend({ features: { shaderF16: false } });
const [a, b] = [await run(on), await run(off)];
const cases = [...a.keys()].map((name) => {
  const x = asF32(a.get(name)!), y = asF32(b.get(name)!);
  const xi = new Uint32Array(x.buffer, x.byteOffset, x.length), yi = new Uint32Array(y.buffer, y.byteOffset, y.length);
  const at = xi.findIndex((v, k) => v !== yi[k]);
  return { name, values: x.length, nonzero: x.some((v) => v !== 0), difference: at < 0 ? undefined : `at ${at}: ${x[at]} with shader-f16, ${y[at]} without` };
});
console.log(`WASMFORGE_F16 ${JSON.stringify({ adapter: on.adapter, on: on.features, off: off.features, cases })}`);
await on.dispose();
await off.dispose();
