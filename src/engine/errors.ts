import { WasmforgeError } from '../errors.js';

export type EngineErrorCode =
  /** The queue of waiting requests is full: retry later. */
  | 'OVERLOADED'
  /** The request's timeoutMs passed before it finished. */
  | 'TIMEOUT'
  /** The request's AbortSignal fired (or cancel() was called). */
  | 'ABORTED'
  | 'DISPOSED'
  /** The prompt does not fit the context or the whole KV pool. */
  | 'PROMPT_TOO_LONG'
  | 'INVALID_REQUEST'
  | 'INVALID_OPTION'
  /** A configuration the runtime cannot honour (e.g. a sliding-window context shift for a model without a sliding window). */
  | 'UNSUPPORTED'
  /** Saved KV state bytes that are malformed (truncated, not a state, an unknown version). */
  | 'INVALID_STATE'
  /** Saved KV state of another model or KV layout. */
  | 'STATE_MISMATCH'
  /** A speculative request's draft model has another vocabulary than the model (size or tokens). */
  | 'DRAFT_MISMATCH'
  /** The backend's device was lost (WebGPU: driver reset, device destroyed): every request fails with this until the model is loaded again. */
  | 'DEVICE_LOST'
  /** A forward pass failed; the requests in it fail with this, the engine goes on. */
  | 'INTERNAL';

export class EngineError extends WasmforgeError<EngineErrorCode> {
  override readonly name = 'EngineError';
}
