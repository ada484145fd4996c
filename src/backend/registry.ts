/// <reference types="@webgpu/types" />
// Which backend runs a model: loadModel's `backend` option names one, or passes an instance.
// 'auto' picks the best available here and logs why: WebGPU on a hardware adapter the runtime
// itself offers (navigator.gpu: browsers, Deno), else WASM. Software adapters (lavapipe,
// SwiftShader) and Node's optional Dawn package are used only when 'webgpu' is asked for by name:
// on a CPU they are slower than the WASM kernels. Backends load lazily, so a bundle that never asks
// for one never runs its set-up.
import { log } from '../log.js';
import type { Backend } from './backend.js';
import { BackendError } from './errors.js';

export const BACKEND_KINDS = ['auto', 'wasm', 'webgpu', 'reference'] as const;
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
      const found = await hardwareAdapter();
      if (typeof found !== 'string') {
        try {
          const { createWebGPUBackend } = await import('./webgpu/webgpu-backend.js');
          const backend = await createWebGPUBackend({ gpu: found.gpu, adapter: found.adapter });
          log.info(`backend auto: webgpu on ${backend.adapter}`);
          return backend;
        } catch (err) {
          log.info(`backend auto: wasm (the WebGPU backend failed to start: ${(err as Error).message})`);
        }
      } else log.debug(`backend auto: wasm (${found})`);
      return createBackend('wasm', options);
    }
    case 'webgpu': {
      const { createWebGPUBackend } = await import('./webgpu/webgpu-backend.js');
      return createWebGPUBackend();
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

/** A hardware adapter of the runtime's navigator.gpu, or why auto should not take WebGPU here. */
async function hardwareAdapter(): Promise<{ gpu: GPU; adapter: GPUAdapter } | string> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) return 'no navigator.gpu';
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return 'navigator.gpu offers no adapter';
    const { adapterName, softwareAdapter } = await import('./webgpu/gpu.js');
    if (softwareAdapter(adapter)) return `the adapter is a software renderer (${adapterName(adapter)})`;
    return { gpu, adapter };
  } catch (err) {
    return `requestAdapter failed: ${(err as Error).message}`;
  }
}
