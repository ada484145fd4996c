// Typed reading of untrusted JSON (tokenizer.json, tokenizer_config.json): every value is checked for its
// type and range where it is read, and every problem is a TokenizerError naming the file and the path.
import { TokenizerError } from '../errors.js';

export type JsonObject = Record<string, unknown>;

/** Components nest (Sequence in Sequence); real files go two levels deep. */
export const MAX_NESTING = 16;

export function invalid(path: string, what: string): TokenizerError {
  return new TokenizerError('INVALID_TOKENIZER_JSON', `${path}: ${what}`);
}

export function unsupported(path: string, what: string): TokenizerError {
  return new TokenizerError('UNSUPPORTED_COMPONENT', `${path}: ${what}`);
}

/** Parse JSON text, or take an already parsed value as it is. */
export function parseJson(input: unknown, file: string): unknown {
  if (typeof input !== 'string') return input;
  try {
    return JSON.parse(input);
  } catch (e) {
    throw invalid(file, `not valid JSON (${(e as Error).message})`);
  }
}

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

export function asObject(v: unknown, path: string): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(path, `should be an object, is ${describe(v)}`);
  return v as JsonObject;
}

export function asArray(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw invalid(path, `should be an array, is ${describe(v)}`);
  return v;
}

/** A string that is well-formed UTF-16 (serde refuses lone surrogates in JSON strings; so do we). */
export function asString(v: unknown, path: string): string {
  if (typeof v !== 'string') throw invalid(path, `should be a string, is ${describe(v)}`);
  if (!isWellFormed(v)) throw invalid(path, 'contains a lone surrogate');
  return v;
}

export function asBool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw invalid(path, `should be a boolean, is ${describe(v)}`);
  return v;
}

/** An integer in [min, max]. */
export function asInt(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(path, `should be an integer, is ${typeof v === 'number' ? v : describe(v)}`);
  if (v < min || v > max) throw invalid(path, `${v} is outside ${min}..${max}`);
  return v;
}

export function asNumber(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(path, `should be a finite number, is ${describe(v)}`);
  return v;
}

/** An own property (never one inherited from Object.prototype); undefined when absent or null. */
export function get(o: JsonObject, key: string): unknown {
  if (!Object.hasOwn(o, key)) return undefined;
  const v = o[key];
  return v === null ? undefined : v;
}

export function optString(o: JsonObject, key: string, path: string): string | undefined {
  const v = get(o, key);
  return v === undefined ? undefined : asString(v, `${path}.${key}`);
}

export function reqString(o: JsonObject, key: string, path: string): string {
  const v = get(o, key);
  if (v === undefined) throw invalid(`${path}.${key}`, 'is missing');
  return asString(v, `${path}.${key}`);
}

export function optBool(o: JsonObject, key: string, path: string, fallback: boolean): boolean {
  const v = get(o, key);
  return v === undefined ? fallback : asBool(v, `${path}.${key}`);
}

/** A one-character string (serde's `char`). */
export function reqChar(o: JsonObject, key: string, path: string): string {
  const s = reqString(o, key, path);
  if ([...s].length !== 1) throw invalid(`${path}.${key}`, `should be one character, is ${JSON.stringify(s)}`);
  return s;
}

export function isWellFormed(s: string): boolean {
  const native = (s as { isWellFormed?: () => boolean }).isWellFormed;
  if (native) return native.call(s);
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}
