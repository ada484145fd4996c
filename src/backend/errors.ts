import { WasmforgeError } from '../errors.js';

export type BackendErrorCode =
  /** An allocation would pass the 4 GiB wasm32 limit, or the runtime refused to grow memory. */
  | 'OUT_OF_MEMORY'
  /** A weight type the backend has no kernel for. */
  | 'UNSUPPORTED_TYPE'
  /** Shapes or parameters that violate the contract (row size, block multiples, head counts...). */
  | 'INVALID_ARGUMENT'
  /** relaxedSimd: true was requested but the runtime cannot run the relaxed build correctly. */
  | 'RELAXED_SIMD_UNAVAILABLE'
  /** A kernel trapped or a worker failed. */
  | 'KERNEL_FAILED'
  /** The backend was disposed. */
  | 'DISPOSED'
  /** WebGPU: no GPU adapter here (no navigator.gpu, no Dawn package, or the adapter lacks what the kernels need). */
  | 'NO_ADAPTER'
  /** WebGPU: the device was lost (driver reset, another tab, destroy); work in flight fails with this. */
  | 'DEVICE_LOST';

/** Every backend problem surfaces as this one typed error: a code plus a message with the values. */
export class BackendError extends WasmforgeError<BackendErrorCode> {
  override readonly name = 'BackendError';
}
