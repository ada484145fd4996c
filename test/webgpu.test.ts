// The WebGPU backend end to end (on SwiftShader through the npm webgpu package in CI; the op-level
// conformance is in backend-ops.test.ts): llama2.c's greedy reference runs reproduced token for
// token; quantized models' logits against the reference backend, which computes with the same
// unquantized activations; the engine's batching on it; typed errors without an adapter; the tiled
// mat x mat kernel against the mat x vec kernel, bit for bit.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { asF32, asWeight, kvElementType, kvRowBytes, rowsPerPart, subTensor, type Backend, type Tensor, type WeightTensor } from '../src/backend/backend.js';
import { KVCache } from '../src/kv/kv-cache.js';
import { copyBlockRows } from '../src/kv/copy-block.js';
import { BackendError } from '../src/backend/errors.js';
import { acquireGPU } from '../src/backend/webgpu/gpu.js';
import { tiledVariant, WEBGPU_WEIGHT_TYPES, type MatvecSplit } from '../src/backend/webgpu/kernels.js';
import { SHADERS } from '../src/backend/webgpu/shaders.generated.js';
import { createWebGPUBackend, type WebGPUBackend } from '../src/backend/webgpu/webgpu-backend.js';
import { GGMLType, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { createEngine } from '../src/engine/engine.js';
import { loadModel } from '../src/model/model.js';
import { randomBlocks, rng, uniform } from './helpers/random-tensors.js';
import { executable } from './helpers/runtimes.js';
import { LAVAPIPE_ICD, useSoftwareVulkanUnlessSet } from './helpers/webgpu.js';

useSoftwareVulkanUnlessSet();

const MODELS = '../shared/models';
const REFERENCE = `${MODELS}/reference/stories260K_greedy_llama2c_run.txt`;
const haveShared = existsSync(REFERENCE);
if (!haveShared) console.warn('webgpu: ../shared/models is absent, skipping the model tests');

function referenceRuns(): { prompt: string; steps: number; text: string }[] {
  return readFileSync(REFERENCE, 'utf8').split('### prompt: ').slice(1).map((section) => {
    const [header, ...body] = section.split('\n');
    const [prompt, command] = header.split(' | ');
    return { prompt, steps: Number(/-n (\d+)/.exec(command)![1]), text: body.join('\n').trim() };
  });
}

describe.skipIf(!haveShared)('WebGPU models', () => {
  // The first run whole with f32 K/V (256 positions), otherwise the first 64 tokens of each run
  // (a software adapter takes tens of milliseconds a token).
  for (const kvCacheType of ['f32', 'f16'] as const) {
    it(`F32 stories260K reproduces llama2.c's greedy runs token for token (${kvCacheType} KV)`, async () => {
      const model = await loadModel(`${MODELS}/stories260K.gguf`, { backend: 'webgpu', kvCacheType });
      try {
        expect(model.backend.name).toBe('webgpu');
        for (const [k, run] of referenceRuns().entries()) {
          const prompt = model.tokenizer.encode(run.prompt, { addSpecial: true });
          const n = run.steps - prompt.length + 1;
          const whole = kvCacheType === 'f32' && k === 0;
          const r = await model.generate(prompt, { temperature: 0, maxTokens: whole ? n : Math.min(n, 64), ignoreEos: true }).result;
          const bos = model.tokenizer.bosId!;
          const upToBos = r.tokens.includes(bos) ? r.tokens.slice(0, r.tokens.indexOf(bos)) : r.tokens;
          const text = model.tokenizer.decode([...prompt, ...upToBos], { skipSpecial: true }).trim();
          if (whole) expect(text).toBe(run.text);
          else expect(run.text.startsWith(text), `${JSON.stringify(text)} begins llama2.c's text`).toBe(true);
        }
      } finally {
        await model.dispose();
      }
    }, 300_000);
  }

  // Bounds: Q8_0/Q4_0 differ by f32 summation order only; F16 weights round their activations to
  // f16 on both sides, where a one-ulp difference upstream may flip a rounding (2^-11 of a product).
  for (const [file, bound] of [['stories260K-q8_0.gguf', 2e-3], ['stories260K-q4_0.gguf', 2e-3], ['stories260K-f16.gguf', 3e-2]] as const) {
    it(`${file}: every position's logits as the reference backend's (same f32 activations)`, async () => {
      const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.';
      const logits = [];
      for (const backend of ['webgpu', 'reference'] as const) {
        const model = await loadModel(`${MODELS}/${file}`, { backend, kvCacheType: 'f32' });
        try {
          logits.push(await model.evaluate(model.tokenizer.encode(text, { addSpecial: true })));
        } finally {
          await model.dispose();
        }
      }
      const [gpu, ref] = logits;
      expect(gpu.length).toBe(ref.length);
      let maxDelta = 0, top1 = 0;
      gpu.forEach((row, p) => {
        const argmax = (r: Float32Array) => r.reduce((best, v, i) => (v > r[best] ? i : best), 0);
        if (argmax(row) === argmax(ref[p])) top1++;
        row.forEach((v, i) => { maxDelta = Math.max(maxDelta, Math.abs(v - ref[p][i])); });
      });
      expect(maxDelta).toBeLessThan(bound); // far below one quantization step of these weights (~0.1)
      expect(top1).toBe(gpu.length);
    }, 300_000);
  }

  it('weights and KV cache past the binding limit run split over buffers, and logits in passes of the head, with the same logits bit for bit', async () => {
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside. One day she saw a big red ball.';
    for (const file of ['stories260K.gguf', 'stories260K-q8_0.gguf']) {
      const logits = [];
      // 64 KiB bindings: the 512-row embedding table and output head (128 KiB as F32) take 2-3 buffers
      // each, the logits of 64 tokens (128 KiB) come from two passes of the head, and each layer's
      // K and V (1024 f32 slots of 128 bytes) take two buffers
      for (const maxBindingBytes of [undefined, 64 * 1024]) {
        const backend = await createWebGPUBackend({ maxBindingBytes });
        const model = await loadModel(`${MODELS}/${file}`, { backend, kvCacheType: 'f32', maxBatchTokens: 64, contextLength: 1024, kvCacheTokens: 1024 });
        try {
          const tokens = model.tokenizer.encode(text, { addSpecial: true });
          expect(model.graph.logitsRows).toBe(maxBindingBytes ? 32 : 64);
          expect(tokens.length).toBeGreaterThan(32);
          logits.push(await model.evaluate(tokens));
        } finally {
          await model.dispose();
          await backend.dispose();
        }
      }
      expect(logits[1]).toEqual(logits[0]);
    }
  }, 300_000);

  it('the engine batches 8 requests on it (greedy and seeded): each gives what it gives alone, bit for bit', async () => {
    const model = await loadModel(`${MODELS}/stories260K-q8_0.gguf`, { backend: 'webgpu' });
    try {
      const engine = await createEngine(model, { maxSequences: 8, prefixCacheEntries: 0 });
      const prompts = ['Once upon a time', 'The cat sat', 'Lily and Tom went to the park', 'One day', 'The sun was', 'A little bird', 'Tim had a big', 'She looked at the'];
      const requests = prompts.map((prompt, i) => ({ prompt, temperature: i % 2 ? 0.8 : 0, seed: i, maxTokens: 16, ignoreEos: true, logprobs: true }));
      const alone = [];
      for (const r of requests) alone.push(await engine.generate(r).result);
      const together = await Promise.all(requests.map((r) => engine.generate(r).result));
      expect(together.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));
      // batch invariance: the same log-probabilities bit for bit
      expect(together.map((r) => r.completions[0].logprobs)).toEqual(alone.map((r) => r.completions[0].logprobs));
    } finally {
      await model.dispose();
    }
  }, 300_000);

  it('top-k requests batched on it (k of 1 to 256, with a greedy one) draw from their read-back candidates what whole rows give', async () => {
    const model = await loadModel(`${MODELS}/stories260K-q8_0.gguf`, { backend: 'webgpu' });
    try {
      const engine = await createEngine(model, { maxSequences: 6, prefixCacheEntries: 0 });
      const prompts = ['Once upon a time', 'The cat sat', 'Lily and Tom went to the park', 'One day', 'The sun was', 'A little bird'];
      const requests = prompts.map((prompt, i) => ({ prompt, temperature: i === 5 ? 0 : 1.1, topK: [5, 40, 256, 1, 40, 40][i], seed: i, maxTokens: 16, ignoreEos: true }));
      const topK = vi.spyOn(model.backend, 'topK');
      const fast = await Promise.all(requests.map((r) => engine.generate(r).result));
      expect(topK).toHaveBeenCalled();
      topK.mockRestore();
      // a processor that changes nothing: whole rows
      const whole = await Promise.all(requests.map((r) => engine.generate({ ...r, logitsProcessors: () => [{ process() {} }] }).result));
      expect(fast.map((r) => r.tokens)).toEqual(whole.map((r) => r.tokens));
    } finally {
      await model.dispose();
    }
  }, 300_000);
});

describe.skipIf(!haveShared)('WebGPU device loss', () => {
  it('fails the requests in flight and later ones with DEVICE_LOST, never a hang', async () => {
    const model = await loadModel(`${MODELS}/stories260K.gguf`, { backend: 'webgpu' });
    try {
      const g = model.generate('Once upon a time', { temperature: 0, maxTokens: 200, ignoreEos: true });
      let pieces = 0;
      const lost = (async () => {
        for await (const _ of g) if (++pieces === 3) (model.backend as { device?: GPUDevice }).device!.destroy();
      })();
      await expect(lost).rejects.toMatchObject({ code: 'DEVICE_LOST' });
      await expect(g.result).rejects.toMatchObject({ code: 'DEVICE_LOST' });
      expect(pieces).toBeLessThan(200);
      await expect(model.generate('The cat', { maxTokens: 4 }).result).rejects.toMatchObject({ code: 'DEVICE_LOST' });
    } finally {
      await model.dispose();
    }
  }, 120_000);
});

describe('WebGPU tiled matmul (prompts and batches)', () => {
  // A batch of at least half a tile of tokens runs matmul_tiled.wgsl, one token the mat x vec
  // kernel of matmul.wgsl: each token's row of the batch must be that token's row alone, bit for
  // bit (the engine's batch invariance rests on it). Shapes leave partial tiles everywhere: rows and
  // tokens not multiples of the tile (16 or 32), blocks not multiples of a chunk, lanes without a
  // block in the last chunk; both lane counts (4 lanes for rows of <= 64 blocks, 16 above).
  let backend: Backend | undefined;
  const gpu = async () => (backend ??= await createWebGPUBackend());
  afterAll(async () => backend?.dispose());

  async function batchAndAlone(be: Backend, type: GGMLType, rows: number, cols: number, nTokens: number, weights: Uint8Array, x: Float32Array) {
    const w = asWeight(be.allocate(type, [cols, rows], 'weight'), cols, rows) as WeightTensor;
    be.upload(w, weights);
    const xt = be.allocate(GGMLType.F32, [nTokens * cols]);
    be.upload(xt, x);
    const out = be.allocate(GGMLType.F32, [nTokens * rows]);
    be.matmul(out, w, xt, nTokens);
    const batch = asF32(await be.read(out));
    const alone = new Float32Array(nTokens * rows);
    const one = be.allocate(GGMLType.F32, [rows]);
    for (let t = 0; t < nTokens; t++) {
      be.matmul(one, w, subTensor(xt, 4 * t * cols, GGMLType.F32, [cols]), 1);
      alone.set(asF32(await be.read(one)), t * rows);
    }
    return { batch, alone };
  }

  /** The first output whose bits differ, as "token t row r: got / want", or undefined. */
  function firstDifference(got: Float32Array, want: Float32Array, rows: number): string | undefined {
    const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(want.buffer, want.byteOffset, want.length);
    const i = a.findIndex((v, k) => v !== b[k]);
    return i < 0 ? undefined : `token ${Math.floor(i / rows)} row ${i % rows}: ${got[i]} vs ${want[i]}`;
  }

  for (const type of WEBGPU_WEIGHT_TYPES) {
    const qk = typeTraits(type)!.blockSize;
    // float types: blocks of one value, so 45 and 133 columns; the rest: 5 and 67 blocks
    const shapes = [
      { rows: 37, cols: qk === 1 ? 45 : 5 * qk, nTokens: 37 },
      { rows: 19, cols: qk === 1 ? 133 : 67 * qk, nTokens: 11 },
    ];
    it(`${typeName(type)}: each token of a batch has the bits it has alone (${shapes.map((s) => `${s.rows}x${s.cols} x ${s.nTokens} tokens`).join(', ')})`, async () => {
      const be = await gpu();
      for (const [i, { rows, cols, nTokens }] of shapes.entries()) {
        const tiled = tiledVariant(type, cols);
        expect(nTokens).toBeGreaterThanOrEqual(tiled.minTokens); // the batch takes the tiled kernel
        expect(nTokens % tiled.tile).not.toBe(0);
        const r = rng(5000 + 100 * type + i);
        const { batch, alone } = await batchAndAlone(be, type, rows, cols, nTokens, randomBlocks(type, rows, cols, r), uniform(nTokens * cols, r));
        expect(alone.some((v) => v !== 0)).toBe(true);
        expect(firstDifference(batch, alone, rows), `${typeName(type)} ${rows}x${cols}, ${nTokens} tokens`).toBeUndefined();
      }
    }, 120_000);
  }

  it('weights split over buffers (past the binding limit): the same bits per part as unsplit and as each token alone', async () => {
    const cases = [
      // F32: 40 + 10 rows per part (32000-byte bindings), 16 lanes, 3 token tiles of 16
      { type: GGMLType.F32, rows: 50, cols: 200, nTokens: 40, limit: 32000 },
      // Q8_0: 73 + 27 rows per part (160000-byte bindings), 4 lanes, a tile of 32 tokens holding 19
      { type: GGMLType.Q8_0, rows: 100, cols: 2048, nTokens: 19, limit: 160000 },
    ];
    for (const [i, { type, rows, cols, nTokens, limit }] of cases.entries()) {
      const r = rng(6000 + i);
      const weights = randomBlocks(type, rows, cols, r), x = uniform(nTokens * cols, r);
      const split = await createWebGPUBackend({ maxBindingBytes: limit });
      try {
        const w = split.allocate(type, [cols, rows], 'weight');
        expect(split.capabilities.maxTensorBytes).toBeLessThan(w.bytes); // it is split
        expect(nTokens).toBeGreaterThanOrEqual(tiledVariant(type, cols).minTokens);
        const parts = await batchAndAlone(split, type, rows, cols, nTokens, weights, x);
        const whole = await batchAndAlone(await gpu(), type, rows, cols, nTokens, weights, x);
        expect(firstDifference(parts.batch, parts.alone, rows), `${typeName(type)} split: batch vs alone`).toBeUndefined();
        expect(firstDifference(parts.batch, whole.batch, rows), `${typeName(type)} split vs unsplit`).toBeUndefined();
      } finally {
        await split.dispose();
      }
    }
  }, 120_000);
});

/** Uploads to a backend: new f32 and i32 tensors holding the given values. */
function uploader(be: Backend): { f32: (data: Float32Array) => Tensor; i32: (data: number[]) => Tensor } {
  const put = (type: GGMLType, data: Float32Array | Int32Array) => {
    const t = be.allocate(type, [data.length]);
    be.upload(t, data);
    return t;
  };
  return { f32: (data) => put(GGMLType.F32, data), i32: (data) => put(GGMLType.I32, new Int32Array(data)) };
}

describe('WebGPU KV cache past the binding limit', () => {
  // A layer's K and V over the largest binding are split by whole slots into up to kvParts buffers,
  // which storeKV, attention and block copies bind together. 8000-byte bindings split each cache
  // type into 3 parts (f32 31 slots a part, f16 62, q8_0 117, q4_0 222), none a whole number of
  // 16-slot blocks, so blocks straddle parts; every slot is written and read, and must have the
  // bits one buffer gives.
  const LIMIT = 8000, KV_HEADS = 2, HEAD_DIM = 32, HEADS = 4, BLOCK = 16, TOKENS = 15;
  const kvDim = KV_HEADS * HEAD_DIM;
  let whole: WebGPUBackend | undefined, split: WebGPUBackend | undefined;
  afterAll(async () => {
    await whole?.dispose();
    await split?.dispose();
  });

  for (const type of ['f32', 'f16', 'q8_0', 'q4_0'] as const) {
    it(`${type}: storeKV, attention and block copies over 3 buffers give one buffer's bits`, async () => {
      whole ??= await createWebGPUBackend();
      split ??= await createWebGPUBackend({ maxBindingBytes: LIMIT });
      expect(split.capabilities.kvParts).toBeGreaterThanOrEqual(3);
      const perPart = rowsPerPart(kvRowBytes(type, kvDim), LIMIT);
      const nBlocks = Math.ceil((2.5 * perPart) / BLOCK), nSlots = nBlocks * BLOCK;
      expect(Math.ceil(nSlots / perPart)).toBe(3);
      expect(perPart % BLOCK).not.toBe(0);
      expect(KVCache.maxBlocks({ kvDim, blockSize: BLOCK, type }, split.capabilities)).toBe(Math.floor((split.capabilities.kvParts * perPart) / BLOCK));
      const r = rng(7100 + kvDim + type.length);
      // every slot once, in a random order, TOKENS at a time
      const order = Array.from({ length: nSlots }, (_, i) => i).sort(() => r() - 0.5);
      const batches = [];
      for (let i = 0; i < nSlots; i += TOKENS) {
        const slots = order.slice(i, i + TOKENS);
        batches.push({ slots, k: uniform(slots.length * kvDim, r), v: uniform(slots.length * kvDim, r) });
      }
      // a table over every block in a random order; queries over its first keys, all, and a window
      const table = Array.from({ length: nBlocks }, (_, i) => i).sort(() => r() - 0.5);
      const info = Array.from({ length: TOKENS }, (_, t) => {
        const end = t === 0 ? nSlots : Math.max(1, Math.floor(r() * nSlots));
        return [0, t % 3 === 2 ? Math.max(0, end - 100) : 0, end];
      }).flat();
      const q = uniform(TOKENS * HEADS * HEAD_DIM, r);
      const results = [];
      for (const be of [whole, split]) {
        const elementType = kvElementType(type);
        const layer = { k: be.allocate(elementType, [kvDim, nSlots]), v: be.allocate(elementType, [kvDim, nSlots]), type, blockSize: BLOCK, kvDim };
        const { f32, i32 } = uploader(be);
        for (const b of batches) be.storeKV(layer, f32(b.k), f32(b.v), i32(b.slots), b.slots.length);
        // copies across parts: a block into one that straddles two parts, a straddling one back, part of one
        copyBlockRows(be, [layer], 0, Math.floor(perPart / BLOCK), BLOCK);
        copyBlockRows(be, [layer], Math.floor((2 * perPart) / BLOCK), 1, BLOCK);
        copyBlockRows(be, [layer], nBlocks - 1, 2, 5);
        // plain and with ALiBi (the most bindings: 6 besides K's and V's parts)
        const args = { q: f32(q), nTokens: TOKENS, nHeads: HEADS, nKvHeads: KV_HEADS, headDim: HEAD_DIM, scale: 1 / Math.sqrt(HEAD_DIM), layer, blockTables: i32(table), tokenInfo: i32(info) };
        const out = be.allocate(GGMLType.F32, [TOKENS * HEADS * HEAD_DIM]), outAlibi = be.allocate(GGMLType.F32, [TOKENS * HEADS * HEAD_DIM]);
        be.attention({ ...args, out });
        be.attention({ ...args, out: outAlibi, alibi: { maxBias: 8, positions: i32(info.filter((_, i) => i % 3 === 2).map((end) => end - 1)) } });
        results.push({ k: await be.read(layer.k), v: await be.read(layer.v), out: [...asF32(await be.read(out)), ...asF32(await be.read(outAlibi))] });
      }
      const [one, parts] = results;
      expect(one.out.some((v) => v !== 0)).toBe(true);
      expect(Buffer.compare(parts.k, one.k), 'K cache bytes').toBe(0);
      expect(Buffer.compare(parts.v, one.v), 'V cache bytes').toBe(0);
      expect(parts.out).toEqual(one.out);
    }, 120_000);
  }

  it('a pool past kvParts buffers is refused before anything is allocated; one that fits is split', async () => {
    split ??= await createWebGPUBackend({ maxBindingBytes: LIMIT });
    const most = KVCache.maxBlocks({ kvDim, blockSize: BLOCK, type: 'f32' }, split.capabilities);
    const allocate = vi.spyOn(split, 'allocate');
    const shape = { nLayers: 2, kvDim, headDim: HEAD_DIM, blockSize: BLOCK, type: 'f32' as const };
    expect(() => new KVCache(split!, { ...shape, nBlocks: most + 1 })).toThrow(expect.objectContaining({ code: 'TOO_LARGE' }));
    expect(allocate).not.toHaveBeenCalled();
    allocate.mockRestore();
    const kv = new KVCache(split, { ...shape, nBlocks: most });
    expect(kv.capacityTokens).toBeGreaterThan(rowsPerPart(kvRowBytes('f32', kvDim), LIMIT) * (split.capabilities.kvParts - 1));
  });
});

describe('WebGPU split attention (flash decoding)', () => {
  // A decode step with few (token, head) rows splits each token's keys into 256-key segments, a
  // workgroup each, and folds them in a second pass; one pass folds the same segments in order.
  // Ranges over 1000 keys (from 0, and a window from 300 whose first blocks are released), 257
  // keys (a segment and one key), a range inside one segment and one key: bit for bit the same.
  const HEADS = 8, KV_HEADS = 2, BLOCK = 32, N_BLOCKS = 32;
  const ranges = [[0, 1000], [300, 1000], [0, 257], [200, 256], [0, 1]];
  for (const type of ['f32', 'f16', 'q8_0', 'q4_0'] as const) {
    it(`${type} cache: split and one pass give the same bits (head dims 64 and 128; plain, softcap, ALiBi)`, async () => {
      const onePass = await createWebGPUBackend({ attentionSplit: false });
      const split = await createWebGPUBackend();
      try {
        const allocate = vi.spyOn(split, 'allocate');
        for (const headDim of [64, 128]) {
          const kvDim = KV_HEADS * headDim, nSlots = N_BLOCKS * BLOCK, nTokens = ranges.length;
          const r = rng(7300 + headDim + type.length);
          const k = uniform(nSlots * kvDim, r, -1, 1), v = uniform(nSlots * kvDim, r, -1, 1), q = uniform(nTokens * HEADS * headDim, r, -3, 3);
          const table = Array.from({ length: N_BLOCKS }, (_, i) => i).sort(() => r() - 0.5);
          // the second table releases the blocks wholly before key 300
          const tables = [...table, ...table.map((b, i) => (i < Math.floor(300 / BLOCK) ? -1 : b))];
          const info = ranges.flatMap(([first, end], t) => [t === 1 ? N_BLOCKS : 0, first!, end!]);
          const outs = [];
          const partials: number[] = []; // what split's attention calls allocated: its partials (f32 counts)
          for (const be of [onePass, split]) {
            const { f32, i32 } = uploader(be);
            const elementType = kvElementType(type);
            const layer = { k: be.allocate(elementType, [kvDim, nSlots]), v: be.allocate(elementType, [kvDim, nSlots]), type, blockSize: BLOCK, kvDim };
            be.storeKV(layer, f32(k), f32(v), i32(Array.from({ length: nSlots }, (_, i) => i)), nSlots);
            const args = { q: f32(q), nTokens, nHeads: HEADS, nKvHeads: KV_HEADS, headDim, scale: 1 / Math.sqrt(headDim), layer, blockTables: i32(tables), tokenInfo: i32(info) };
            const result: number[] = [];
            for (const extra of [{}, { softcap: 2 }, { alibi: { maxBias: 8, positions: i32(ranges.map(([, end]) => end! - 1)) } }]) {
              const out = be.allocate(GGMLType.F32, [nTokens * HEADS * headDim]);
              const before = allocate.mock.calls.length;
              be.attention({ ...args, ...extra, out });
              partials.push(...allocate.mock.calls.slice(before).map(([, shape]) => shape[0]!).filter((n) => n !== HEADS)); // ALiBi's slopes aside
              result.push(...asF32(await be.read(out)));
            }
            outs.push(result);
          }
          expect(outs[0]!.every((x) => Number.isFinite(x)) && outs[0]!.some((x) => x !== 0)).toBe(true);
          expect(outs[1], `head dim ${headDim}`).toEqual(outs[0]);
          // it split: attention allocated the partials (40 rows x 4 segments, the most a range spans; 64 first, then more for 128)
          expect(partials.length, 'partials allocated').toBe(1);
          expect(partials[0]).toBeGreaterThanOrEqual(nTokens * HEADS * 4 * (headDim + 3));
        }
      } finally {
        await onePass.dispose();
        await split.dispose();
      }
    }, 120_000);
  }
});

describe('WebGPU subgroups', () => {
  // The matmul kernels' lane trees (and the norms' row sums: backend-ops) shuffle within subgroups
  // where the device has them, with the same pairs as through workgroup memory: every result must
  // have the same bits with the feature on and off. Dawn on SwiftShader (CI) offers subgroups of 4:
  // rows of up to 64 blocks (4 lanes) reduce by shuffles alone, longer rows (16 lanes) half through
  // workgroup memory. A device without the feature fails here (required: true), never skips.
  const backends: Partial<Record<'on' | 'off', WebGPUBackend>> = {};
  const both = async () => {
    // mat x vec split by lanes (the GPU layout) so that its lane tree runs across threads
    backends.on ??= await createWebGPUBackend({ features: { subgroups: true }, matvecSplit: 'lanes' });
    backends.off ??= await createWebGPUBackend({ features: { subgroups: false }, matvecSplit: 'lanes' });
    expect(backends.on.features.subgroups).toBe(true);
    expect(backends.off.features.subgroups).toBe(false);
    return [backends.on, backends.off] as const;
  };
  afterAll(async () => {
    await backends.on?.dispose();
    await backends.off?.dispose();
  });

  async function matmulOnce(be: Backend, type: GGMLType, rows: number, cols: number, nTokens: number, weights: Uint8Array, x: Float32Array): Promise<Uint32Array> {
    const w = asWeight(be.allocate(type, [cols, rows], 'weight'), cols, rows) as WeightTensor;
    be.upload(w, weights);
    const xt = be.allocate(GGMLType.F32, [nTokens * cols]);
    be.upload(xt, x);
    const out = be.allocate(GGMLType.F32, [nTokens * rows]);
    be.matmul(out, w, xt, nTokens);
    const f = asF32(await be.read(out));
    return new Uint32Array(f.buffer, f.byteOffset, f.length);
  }

  for (const type of WEBGPU_WEIGHT_TYPES) {
    const qk = typeTraits(type)!.blockSize;
    it(`${typeName(type)}: matmul has the same bits with subgroups on and off (1 token, 5 tokens, a tiled batch; 4 and 16 lanes)`, async () => {
      const [on, off] = await both();
      for (const [i, cols] of [qk === 1 ? 45 : 5 * qk, qk === 1 ? 133 : 67 * qk].entries()) {
        const rows = 19;
        for (const nTokens of [1, 5, tiledVariant(type, cols).minTokens + 3]) {
          const r = rng(7000 + 100 * type + 10 * i + nTokens);
          const weights = randomBlocks(type, rows, cols, r), x = uniform(nTokens * cols, r);
          const a = await matmulOnce(on, type, rows, cols, nTokens, weights, x);
          const b = await matmulOnce(off, type, rows, cols, nTokens, weights, x);
          expect(a.some((v) => v !== 0)).toBe(true);
          const k = a.findIndex((v, j) => v !== b[j]);
          expect(k, `${typeName(type)} ${rows}x${cols}, ${nTokens} tokens: output ${k} differs`).toBe(-1);
        }
      }
    }, 120_000);
  }

  it.skipIf(!haveShared)('stories260K (F32, Q8_0): the logits of a prompt and of greedy steps have the same bits with subgroups on and off', async () => {
    const [on, off] = await both();
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside.';
    for (const file of ['stories260K.gguf', 'stories260K-q8_0.gguf']) {
      const runs = [];
      for (const backend of [on, off]) {
        const model = await loadModel(`${MODELS}/${file}`, { backend, kvCacheType: 'f32', contextLength: 256 });
        try {
          const prompt = model.tokenizer.encode(text, { addSpecial: true });
          const logits = await model.evaluate(prompt);
          // decode steps: one token at a time (mat x vec), their log-probabilities read back whole
          const engine = await createEngine(model, { maxSequences: 1, prefixCacheEntries: 0 });
          const greedy = await engine.generate({ prompt: 'Once upon a time', temperature: 0, maxTokens: 24, ignoreEos: true, logprobs: true }).result;
          runs.push({ logits, tokens: greedy.tokens, logprobs: greedy.completions[0].logprobs });
        } finally {
          await model.dispose();
        }
      }
      const bits = (rows: Float32Array[]) => rows.map((row) => Array.from(new Uint32Array(row.buffer, row.byteOffset, row.length)));
      expect(bits(runs[0].logits), file).toEqual(bits(runs[1].logits));
      expect(runs[0].tokens, file).toEqual(runs[1].tokens);
      expect(runs[0].logprobs, file).toEqual(runs[1].logprobs);
    }
  }, 300_000);

  it('the workgroups of both matmul kernels (64 and 256 invocations; the norm kernel has 64) shuffle here (lane_width above 1), so the tests above compare two paths', async () => {
    const [on] = await both();
    const device = on.device;
    for (const size of [64, 256]) { // matmul.wgsl's and matmul_tiled.wgsl's workgroups
      const module = device.createShaderModule({
        code: `enable subgroups;\n${SHADERS['lanes_subgroups']}
@group(0) @binding(0) var<storage, read_write> widths: array<u32>;
@compute @workgroup_size(${size}) fn main(@builtin(workgroup_id) wid: vec3<u32>, lanes: Lanes) {
  let w = lane_width(lanes);
  if (lanes.lid == 0u) { widths[wid.x] = w; }
}`,
      });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const out = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const back = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
      pass.dispatchWorkgroups(4);
      pass.end();
      encoder.copyBufferToBuffer(out, 0, back, 0, 16);
      device.queue.submit([encoder.finish()]);
      await back.mapAsync(GPUMapMode.READ);
      const widths = Array.from(new Uint32Array(back.getMappedRange().slice(0)));
      back.unmap();
      for (const w of widths) expect([4, 8, 16, 32, 64, 128], `workgroup of ${size}: widths ${widths}`).toContain(w);
    }
  });

  it('requiring subgroups of a device created without them is a typed error', async () => {
    const [, off] = await both();
    await expect(createWebGPUBackend({ device: off.device, features: { subgroups: true } })).rejects.toMatchObject({ code: 'NO_ADAPTER' });
  });
});

describe('WebGPU mat x vec thread layouts', () => {
  // matmul.wgsl spreads a row's lanes over threads two ways, picked by adapter: a thread per lane
  // (GPUs) or one thread for all of a row's lanes (software adapters). Both must sum in the same
  // order: the same bits for every weight type, both lane counts, 1, 3 and 5 tokens (register tiles
  // of 1 and 4 slots, a partial one) and the routed kernel (experts chosen per token).
  const layouts: Partial<Record<MatvecSplit, WebGPUBackend>> = {};
  const both = async () => {
    layouts.lanes ??= await createWebGPUBackend({ matvecSplit: 'lanes' });
    layouts.row ??= await createWebGPUBackend({ matvecSplit: 'row' });
    return [layouts.lanes, layouts.row] as const;
  };
  afterAll(async () => {
    await layouts.lanes?.dispose();
    await layouts.row?.dispose();
  });

  /** Bits of a matmul (or, with `experts`, a routed matmul over nExperts stacked experts choosing `experts` per token). */
  async function run(be: Backend, type: GGMLType, rows: number, cols: number, nTokens: number, weights: Uint8Array, x: Float32Array, nExperts = 1, experts?: Int32Array): Promise<Uint32Array> {
    const w = asWeight(be.allocate(type, [cols, rows * nExperts], 'weight'), cols, rows * nExperts) as WeightTensor;
    be.upload(w, weights);
    const xt = be.allocate(GGMLType.F32, [nTokens * cols]);
    be.upload(xt, x);
    const slots = experts ? experts.length : nTokens;
    const out = be.allocate(GGMLType.F32, [slots * rows]);
    if (experts) {
      const ids = be.allocate(GGMLType.I32, [slots]);
      be.upload(ids, new Uint8Array(experts.buffer));
      const weightsT = be.allocate(GGMLType.F32, [slots]);
      be.matmulRouted(out, w, nExperts, xt, { ids, weights: weightsT, nTokens, used: slots / nTokens }, false);
    } else be.matmul(out, w, xt, nTokens);
    const f = asF32(await be.read(out));
    return new Uint32Array(f.buffer, f.byteOffset, f.length);
  }

  for (const type of WEBGPU_WEIGHT_TYPES) {
    const qk = typeTraits(type)!.blockSize;
    it(`${typeName(type)}: a thread per lane and a thread per row give the same bits (1, 3, 5 tokens and routed; 4 and 16 lanes)`, async () => {
      const [lanes, row] = await both();
      for (const [i, cols] of [qk === 1 ? 45 : 5 * qk, qk === 1 ? 133 : 67 * qk].entries()) {
        const rows = 19;
        for (const nTokens of [1, 3, 5]) {
          const r = rng(9000 + 100 * type + 10 * i + nTokens);
          const routed = nTokens === 3;
          const experts = routed ? Int32Array.from({ length: 2 * nTokens }, (_, k) => (k * 5 + 1) % 3) : undefined;
          const nExperts = routed ? 3 : 1;
          const weights = randomBlocks(type, rows * nExperts, cols, r), x = uniform(nTokens * cols, r);
          const a = await run(lanes, type, rows, cols, nTokens, weights, x, nExperts, experts);
          const b = await run(row, type, rows, cols, nTokens, weights, x, nExperts, experts);
          expect(a.some((v) => v !== 0)).toBe(true);
          const k = a.findIndex((v, j) => v !== b[j]);
          expect(k, `${typeName(type)} ${rows}x${cols}, ${nTokens} tokens${routed ? ' routed' : ''}: output ${k} differs`).toBe(-1);
        }
      }
    }, 120_000);
  }
});

describe('WebGPU shader-f16', () => {
  // With the feature, the kernels read f16 values (F16 weights, block scales, f16 and block KV
  // caches) through array<f16> views and the hardware converts them: the bits must be those of the
  // integer path, f16 subnormals included. SwiftShader lacks the feature, so this runs in Deno on
  // lavapipe (both installed by .ci/run: missing, it fails rather than skips).
  it('F16 and block weights (getRows, mat x vec, tiled) and f16/q8_0/q4_0 KV attention: the same bits with and without it', () => {
    const deno = executable('deno');
    expect(deno.path, deno.reason).toBeDefined();
    expect(existsSync(LAVAPIPE_ICD), `${LAVAPIPE_ICD} (apt-get install mesa-vulkan-drivers)`).toBe(true);
    const { VK_ICD_FILENAMES: _, ...env } = process.env;
    const r = spawnSync(deno.path!, ['run', '-A', '--unstable-sloppy-imports', 'test/deno/shader-f16-parity.ts'], { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8', timeout: 240_000, env: { ...env, VK_ICD_FILENAMES: LAVAPIPE_ICD } });
    const line = r.stdout?.split('\n').find((l) => l.startsWith('WASMFORGE_F16 '));
    expect(line, `deno printed no result (status ${r.status}): ${r.stderr?.slice(-2000)}`).toBeDefined();
    const result = JSON.parse(line!.slice('WASMFORGE_F16 '.length)) as { adapter: string; on: { shaderF16: boolean }; off: { shaderF16: boolean }; cases: { name: string; nonzero: boolean; difference?: string }[] };
    expect(result.on.shaderF16, `${result.adapter} offers shader-f16`).toBe(true);
    expect(result.off.shaderF16).toBe(false);
    expect(result.cases.length).toBe(12 * 4 + 3 * 2);
    expect(result.cases.filter((c) => !c.nonzero).map((c) => c.name)).toEqual([]);
    expect(result.cases.filter((c) => c.difference).map((c) => `${c.name}: ${c.difference}`)).toEqual([]);
  }, 300_000);
});

describe('WebGPU without an adapter', () => {
  it('is a typed NO_ADAPTER error, not a crash', async () => {
    const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
    await expect(acquireGPU({ gpu: noAdapter })).rejects.toThrow(BackendError);
    await expect(acquireGPU({ gpu: noAdapter })).rejects.toMatchObject({ code: 'NO_ADAPTER' });
  });
});
