// What only the WASM backend has, below the Backend contract: its one wasm memory (bump
// allocation, growth, the 4 GiB limit), the worker pool, dispose, and the choice between its
// kernel builds (known-answer probe, feature detection, relaxed vs baseline). Its ops are held to
// the contract, independent math and the reference backend in test/backend-ops.test.ts.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asF32, asWeight } from '../src/backend/backend.js';
import { BackendError } from '../src/backend/errors.js';
import type { WasmBackend } from '../src/backend/wasm/create-wasm-backend.js';
import { GGMLType, typeName, typeTraits } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';
import { FLOAT_TYPES, rng, uniform, WEIGHT_TYPES } from './helpers/random-tensors.js';
import { emulatedRelaxedBuild, ensureWasmKernels, REPO_ROOT } from './helpers/wasm-builds.js';

ensureWasmKernels();
const { createWasmBackend } = await import('../src/backend/wasm/create-wasm-backend.js');
const features = await import('../src/backend/wasm/features.js');

let oneThread: WasmBackend;
let threeThreads: WasmBackend;

beforeAll(async () => {
  oneThread = await createWasmBackend({ threads: 1 });
  threeThreads = await createWasmBackend({ threads: 3 });
});

afterAll(async () => {
  await oneThread?.dispose();
  await threeThreads?.dispose();
});

/** n f32 values at a new offset of the backend's memory. */
function putF32(be: WasmBackend, v: Float32Array): number {
  const ptr = be.alloc(v.length * 4);
  be.f32(ptr, v.length).set(v);
  return ptr;
}

describe('memory and workers', () => {
  it('threads share memory; 1 thread runs on a non-shared memory', () => {
    expect([oneThread.nThreads, oneThread.sharedMemory]).toEqual([1, false]);
    expect([threeThreads.nThreads, threeThreads.sharedMemory]).toEqual([3, true]);
  });

  it('many back-to-back dispatches on 3 threads stay consistent', () => {
    const be = threeThreads, n = 1 << 16;
    const a = be.tensorAt(putF32(be, new Float32Array(n).fill(1)), GGMLType.F32, [n]);
    const one = be.tensorAt(putF32(be, new Float32Array(n).fill(1)), GGMLType.F32, [n]);
    for (let i = 0; i < 300; i++) be.add(a, a, one, n);
    const v = be.f32(a.offset, n);
    expect([v[0], v[n - 1]]).toEqual([301, 301]);
    expect(v.every((x) => x === 301)).toBe(true);
  });

  it('alloc grows memory and reports OUT_OF_MEMORY with sizes before passing 4 GiB', async () => {
    const be = await createWasmBackend({ threads: 1 });
    try {
      const before = be.u8().length;
      const p = be.alloc(8 << 20);
      expect(be.u8().length).toBeGreaterThanOrEqual(p + (8 << 20));
      expect(be.u8().length).toBeGreaterThan(before);
      const sizeBefore = be.u8().length;
      let err: unknown;
      try {
        be.alloc(2 ** 32 - 1024);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BackendError);
      expect((err as BackendError).code).toBe('OUT_OF_MEMORY');
      expect((err as BackendError).message).toContain(String(2 ** 32 - 1024));
      expect(be.u8().length).toBe(sizeBefore); // nothing was allocated
    } finally {
      await be.dispose();
    }
  });

  it('dispose ends the workers; later ops throw DISPOSED', async () => {
    const be = await createWasmBackend({ threads: 2 });
    const t = be.tensorAt(putF32(be, new Float32Array(4)), GGMLType.F32, [4]);
    await be.dispose();
    expect(() => be.add(t, t, t, 4)).toThrow(BackendError);
    expect(() => be.add(t, t, t, 4)).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
  });
});

describe('kernel builds', () => {
  it('the known-answer probe passes on both shipped builds where they validate', async () => {
    expect((await features.probeKernels(features.builtInKernels().baseline)).ok).toBe(true);
    expect((await features.probeKernels(emulatedRelaxedBuild())).ok).toBe(true);
  });

  it('feature detection picks the baseline build where relaxed SIMD is missing or wrong', async () => {
    const relaxedValid = WebAssembly.validate(features.builtInKernels().relaxed);
    const choice = await features.chooseKernels('auto');
    if (!relaxedValid) {
      expect(choice.build).toBe('baseline');
      await expect(features.chooseKernels(true)).rejects.toMatchObject({ code: 'RELAXED_SIMD_UNAVAILABLE' });
    }
    expect((await features.chooseKernels(false)).build).toBe('baseline');
  });

  it.runIf(process.versions.node.startsWith('20.'))('Node 20 with --experimental-wasm-relaxed-simd validates the relaxed build but fails the probe', () => {
    const script = `
      import { builtInKernels, chooseKernels, probeKernels } from './src/backend/wasm/features.ts';
      const k = builtInKernels();
      const probe = await probeKernels(k.relaxed);
      const choice = await chooseKernels('auto');
      console.log(JSON.stringify({ valid: WebAssembly.validate(k.relaxed), probe, build: choice.build }));`;
    const out = execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8' });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    expect(r.valid).toBe(true);
    expect(r.probe.ok).toBe(false);
    expect(r.probe.reason).toMatch(/known-answer/);
    expect(r.build).toBe('baseline');
  });

  it('relaxed and baseline builds agree bit for bit where the relaxed build runs', async (ctx) => {
    if ((await features.chooseKernels('auto')).build !== 'relaxed') {
      ctx.skip(); // this runtime cannot run relaxed SIMD correctly; the emulated build covers its code paths (test/backend-ops.test.ts)
      return;
    }
    const relaxed = await createWasmBackend({ threads: 1, relaxedSimd: true });
    const baseline = await createWasmBackend({ threads: 1, relaxedSimd: false });
    try {
      for (const type of WEIGHT_TYPES) {
        const cols = FLOAT_TYPES.includes(type) ? 64 : typeTraits(type)!.blockSize * 2;
        const rows = 5, nTokens = 3;
        const weights = quantize(type, uniform(rows * cols, rng(77)), cols);
        const x = uniform(nTokens * cols, rng(78), -2, 2);
        const outs = await Promise.all([relaxed, baseline].map(async (be) => {
          const w = asWeight(be.allocate(type, [cols, rows]), cols, rows);
          be.upload(w, weights);
          const xt = be.allocate(GGMLType.F32, [cols, nTokens]), out = be.allocate(GGMLType.F32, [rows, nTokens]);
          be.upload(xt, x);
          be.matmul(out, w, xt, nTokens);
          return new Uint32Array(asF32(await be.read(out)).slice().buffer);
        }));
        expect(outs[0], typeName(type)).toEqual(outs[1]);
      }
    } finally {
      await relaxed.dispose();
      await baseline.dispose();
    }
  });
});
