// HTTP errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with the status
// that says what went wrong. Library errors map here in one place (httpErrorOf), so a bad request
// is always a 4xx naming what was wrong, and only a real fault is a 500.
import { ChatTemplateError } from '../chat/errors.js';
import { EngineError } from '../engine/errors.js';
import { GrammarError } from '../generation/constrained/errors.js';
import { WasmforgeError } from '../errors.js';
import { ModelError } from '../model/errors.js';
import { SamplingError } from '../sampling/sampler.js';
import { TokenizerError } from '../tokenizer/errors.js';

/** OpenAI's error types, plus llama.cpp server's for a server that is not ready. */
export type HttpErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'unavailable_error' | 'timeout_error';

export class HttpError extends WasmforgeError {
  override readonly name = 'HttpError';

  constructor(
    readonly status: number,
    readonly type: HttpErrorType,
    code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }

  body(): { error: { message: string; type: HttpErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 naming the field (`param`, dotted path as OpenAI writes it) that was wrong. */
export function invalidField(param: string, message: string, code = 'invalid_value'): HttpError {
  return new HttpError(400, 'invalid_request_error', code, message, param);
}

/** Seconds a client is told to wait when the queue is full. */
const RETRY_AFTER_S = '1';

/** The HTTP error for anything a request handler threw. */
export function httpErrorOf(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof EngineError) {
    switch (err.code) {
      case 'OVERLOADED':
        return new HttpError(503, 'unavailable_error', 'overloaded', err.message, null, { 'Retry-After': RETRY_AFTER_S }, { cause: err });
      case 'PROMPT_TOO_LONG':
        return new HttpError(400, 'invalid_request_error', 'context_length_exceeded', err.message, 'messages', {}, { cause: err });
      case 'INVALID_REQUEST':
      case 'UNSUPPORTED':
        return new HttpError(400, 'invalid_request_error', 'invalid_value', err.message, null, {}, { cause: err });
      case 'ABORTED': // the client went away (nginx's 499): no one reads this answer
        return new HttpError(499, 'invalid_request_error', 'client_closed', err.message, null, {}, { cause: err });
      case 'TIMEOUT':
        return new HttpError(504, 'timeout_error', 'timeout', err.message, null, {}, { cause: err });
      case 'DISPOSED':
        return new HttpError(503, 'unavailable_error', 'shutting_down', err.message, null, { 'Retry-After': RETRY_AFTER_S }, { cause: err });
      case 'DEVICE_LOST': // the replica cannot answer again until reloaded: a load balancer should go elsewhere
        return new HttpError(503, 'unavailable_error', 'device_lost', err.message, null, {}, { cause: err });
      default:
        break;
    }
  }
  // Sampling options, message lists, templates failing on the messages, token ids: the caller's input.
  if (err instanceof SamplingError || err instanceof TokenizerError || (err instanceof ChatTemplateError && err.code !== 'BAD_TEMPLATE')) {
    return new HttpError(400, 'invalid_request_error', 'invalid_value', err.message, null, {}, { cause: err });
  }
  if (err instanceof GrammarError) {
    return new HttpError(400, 'invalid_request_error', err.code.toLowerCase(), `the output constraint is not usable: ${err.message}`, null, {}, { cause: err });
  }
  if (err instanceof ModelError && err.code === 'UNSUPPORTED_OPERATION') {
    return new HttpError(400, 'invalid_request_error', 'unsupported', err.message, null, {}, { cause: err });
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new HttpError(500, 'server_error', 'internal_error', `the server failed: ${message}`, null, {}, { cause: err });
}
