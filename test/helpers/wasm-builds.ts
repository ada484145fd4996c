// The WASM kernels as the tests need them: built when a fresh clone has none (they are a build
// product, gitignored), and the test-only relaxed-emulated build (the relaxed-SIMD code paths with
// the one relaxed instruction emulated exactly), which runtimes without relaxed SIMD can still run.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KernelSources } from '../../src/backend/wasm/features.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const GENERATED = join(REPO_ROOT, 'src/backend/wasm/kernels.generated.ts');
const EMULATED = join(REPO_ROOT, 'build/wasm/kernels-relaxed-emulated.wasm');

/** Build the kernels if they are missing; call before importing anything under src/backend/wasm/. */
export function ensureWasmKernels(): void {
  if (!existsSync(GENERATED) || !existsSync(EMULATED)) {
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts/build-wasm.js')], { cwd: REPO_ROOT, stdio: 'inherit' });
  }
}

/** The relaxed-emulated module bytes. */
export function emulatedRelaxedBuild(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(readFileSync(EMULATED));
}

/** Kernel sources that make createWasmBackend run the relaxed-emulated build whichever it picks. */
export function emulatedKernels(): KernelSources {
  const bytes = emulatedRelaxedBuild();
  return { baseline: bytes, relaxed: bytes };
}
