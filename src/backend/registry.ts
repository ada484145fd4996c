// Which backend runs a model: loadModel's `backend` option names one, or passes an instance.
// 'auto' picks the best available here (today the WASM backend; the WebGPU backend joins it) and
// logs why. Backends load lazily, so a bundle that never asks for one never runs its set-up.
import { log } from '../log.js';
import type { Backend } from './backend.js';
import { BackendError } from './errors.js';

export const BACKEND_KINDS = ['auto', 'wasm', 'reference'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export interface CreateBackendOptions {
  /** WASM: threads including the calling one (default: hardware threads). */
  threads?: number;
  /** WASM: force the relaxed-SIMD build on or off (default: feature detection). */
  relaxedSimd?: 'auto' | boolean;
}

export async function createBackend(kind: BackendKind, options: CreateBackendOptions = {}): Promise<Backend> {
  switch (kind) {
    case 'auto': {
      const backend = await createBackend('wasm', options);
      log.debug(`backend auto: ${backend.name} (no GPU backend is built yet)`);
      return backend;
    }
    case 'wasm': {
      const { createWasmBackend } = await import('./wasm/create-wasm-backend.js');
      return createWasmBackend({ threads: options.threads, relaxedSimd: options.relaxedSimd });
    }
    case 'reference': {
      const { createReferenceBackend } = await import('./reference/reference-backend.js');
      return createReferenceBackend();
    }
    default:
      throw new BackendError('INVALID_ARGUMENT', `unknown backend ${JSON.stringify(kind)}; choose one of ${BACKEND_KINDS.join(', ')}, or pass a Backend`);
  }
}
