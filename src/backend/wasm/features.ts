// Which kernel build to run. The relaxed-SIMD build is used only when the runtime validates it AND
// it computes a known answer exactly: some runtimes accept the opcodes but get the relaxed dot
// product wrong (Node 20 behind --experimental-wasm-relaxed-simd returns doubled sums).
import { BackendError } from '../errors.js';
import { KERNELS_BASELINE_B64, KERNELS_RELAXED_B64 } from './kernels.generated.js';
import { decodeBase64, findMemoryImport, withUnsharedMemory } from './wasm-binary.js';

export type KernelBuild = 'baseline' | 'relaxed';

export interface KernelChoice {
  readonly build: KernelBuild;
  /** The module bytes (importing a shared memory). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Why this build: for logs and diagnostics. */
  readonly reason: string;
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly reason: string;
}

const PROBE_VECTORS = 8;

/** Deterministic probe inputs: activations over the full i8 range, weights over 0..127. */
function probeInputs(): { a: Int8Array; w: Uint8Array } {
  const a = new Int8Array(16 * PROBE_VECTORS);
  const w = new Uint8Array(16 * PROBE_VECTORS);
  let x = 0x12345678;
  for (let i = 0; i < a.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    a[i] = (x >>> 16) & 0xff; // wraps into -128..127
    w[i] = (x >>> 8) & 0x7f;
  }
  // extremes: every product at its largest magnitude, both signs
  a.fill(-128, 0, 16);
  w.fill(127, 0, 16);
  a.fill(127, 16, 32);
  w.fill(127, 16, 32);
  return { a, w };
}

/**
 * Instantiate `bytes` on a small private memory and check its probeDot export against exact
 * integer dot products. Works for either build (the baseline emulates the instruction).
 */
export async function probeKernels(bytes: Uint8Array<ArrayBuffer>): Promise<ProbeResult> {
  if (!WebAssembly.validate(bytes)) return { ok: false, reason: 'WebAssembly.validate rejected the module' };
  let exports: WebAssembly.Exports;
  let memory: WebAssembly.Memory;
  try {
    const unshared = withUnsharedMemory(bytes);
    const imp = findMemoryImport(unshared);
    const min = imp?.minPages ?? 1;
    memory = new WebAssembly.Memory({ initial: min + 1, maximum: imp?.maxPages ?? min + 1 });
    const { instance } = await WebAssembly.instantiate(unshared, { env: { memory } });
    exports = instance.exports;
  } catch (e) {
    return { ok: false, reason: `instantiation failed: ${(e as Error).message}` };
  }
  const base = memory.buffer.byteLength - 65536; // the page added above, past all static data
  const { a, w } = probeInputs();
  new Int8Array(memory.buffer, base, a.length).set(a);
  new Uint8Array(memory.buffer, base + 4096, w.length).set(w);
  try {
    (exports.probeDot as (a: number, w: number, out: number, n: number) => void)(base, base + 4096, base + 8192, PROBE_VECTORS);
  } catch (e) {
    return { ok: false, reason: `probe trapped: ${(e as Error).message}` };
  }
  const got = new Int32Array(memory.buffer, base + 8192, 4 * PROBE_VECTORS);
  for (let v = 0; v < PROBE_VECTORS; v++) {
    let want = 0;
    for (let i = 0; i < 16; i++) want += a[16 * v + i]! * w[16 * v + i]!;
    const sum = got[4 * v]! + got[4 * v + 1]! + got[4 * v + 2]! + got[4 * v + 3]!;
    if (sum !== want) return { ok: false, reason: `known-answer probe ${v}: got ${sum}, expected ${want}` };
  }
  return { ok: true, reason: 'validated and passed the known-answer probe' };
}

export interface KernelSources {
  readonly baseline: Uint8Array<ArrayBuffer>;
  readonly relaxed: Uint8Array<ArrayBuffer>;
}

let builtIn: KernelSources | undefined;

/** The two builds compiled into the library (decoded once). */
export function builtInKernels(): KernelSources {
  builtIn ??= { baseline: decodeBase64(KERNELS_BASELINE_B64), relaxed: decodeBase64(KERNELS_RELAXED_B64) };
  return builtIn;
}

/**
 * Pick the build. 'auto': relaxed when it passes probeKernels, else baseline. true: relaxed or a
 * BackendError. false: baseline.
 */
export async function chooseKernels(pref: 'auto' | boolean = 'auto', sources: KernelSources = builtInKernels()): Promise<KernelChoice> {
  if (pref === false) return { build: 'baseline', bytes: sources.baseline, reason: 'relaxed SIMD disabled by option' };
  const probe = await probeKernels(sources.relaxed);
  if (probe.ok) return { build: 'relaxed', bytes: sources.relaxed, reason: `relaxed SIMD ${probe.reason}` };
  if (pref === true) throw new BackendError('RELAXED_SIMD_UNAVAILABLE', `relaxed SIMD requested but unusable: ${probe.reason}`);
  return { build: 'baseline', bytes: sources.baseline, reason: `relaxed SIMD unusable (${probe.reason})` };
}
