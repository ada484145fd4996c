// Typed access to GGUF metadata: a wrong or missing value is a GGUFError naming the key.
import { GGUFValueType } from './constants.js';
import { GGUFError } from './errors.js';
import type { GGUFArray, GGUFFile, TypedNumberArray } from './reader.js';

type Meta = GGUFFile['metadata'];

const INTEGER_TYPES = new Set([
  GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
  GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
]);

export function has(meta: Meta, key: string): boolean {
  return meta.has(key);
}

export function getString(meta: Meta, key: string): string;
export function getString(meta: Meta, key: string, fallback: string): string;
export function getString(meta: Meta, key: string, fallback?: string): string | undefined;
export function getString(meta: Meta, key: string, ...rest: [string?]): string | undefined {
  const e = meta.get(key);
  if (!e) return missing(key, rest);
  if (e.type !== GGUFValueType.STRING) throw wrongType(key, 'a string', e.type);
  return e.value as string;
}

/** Any numeric scalar (integer or float) as a JS number. */
export function getNumber(meta: Meta, key: string): number;
export function getNumber(meta: Meta, key: string, fallback: number): number;
export function getNumber(meta: Meta, key: string, fallback?: number): number | undefined;
export function getNumber(meta: Meta, key: string, ...rest: [number?]): number | undefined {
  const e = meta.get(key);
  if (!e) return missing(key, rest);
  if (typeof e.value === 'bigint') throw new GGUFError('INVALID_VALUE', `metadata "${key}" is ${e.value}, too large`);
  if (typeof e.value !== 'number') throw wrongType(key, 'a number', e.type);
  return e.value;
}

/** A non-negative integer scalar within [min, max]. */
export function getCount(meta: Meta, key: string, opts: { min?: number; max?: number; fallback?: number } = {}): number {
  const e = meta.get(key);
  if (!e) {
    if (opts.fallback !== undefined) return opts.fallback;
    throw new GGUFError('MISSING_KEY', `required metadata "${key}" is missing`);
  }
  if (!INTEGER_TYPES.has(e.type) || typeof e.value !== 'number') throw wrongType(key, 'an integer', e.type);
  const v = e.value;
  const min = opts.min ?? 0, max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (v < min || v > max) throw new GGUFError('INVALID_VALUE', `metadata "${key}" is ${v}, expected ${min}..${max}`);
  return v;
}

export function getBool(meta: Meta, key: string, fallback?: boolean): boolean | undefined {
  const e = meta.get(key);
  if (!e) return fallback;
  if (e.type !== GGUFValueType.BOOL) throw wrongType(key, 'a bool', e.type);
  return e.value as boolean;
}

export function getArray(meta: Meta, key: string): GGUFArray | undefined {
  const e = meta.get(key);
  if (!e) return undefined;
  if (e.type !== GGUFValueType.ARRAY) throw wrongType(key, 'an array', e.type);
  return e.value as GGUFArray;
}

export function getStringArray(meta: Meta, key: string): string[] | undefined {
  const a = getArray(meta, key);
  if (!a) return undefined;
  if (a.elementType !== GGUFValueType.STRING) throw wrongType(key, 'an array of strings', a.elementType);
  return a.values as string[];
}

export function getNumberArray(meta: Meta, key: string): TypedNumberArray | undefined {
  const a = getArray(meta, key);
  if (!a) return undefined;
  if (a.elementType === GGUFValueType.STRING || a.elementType === GGUFValueType.ARRAY || a.elementType === GGUFValueType.BOOL) {
    throw wrongType(key, 'an array of numbers', a.elementType);
  }
  return a.values as TypedNumberArray;
}

function missing<T>(key: string, rest: [T?]): T | undefined {
  if (rest.length > 0) return rest[0];
  throw new GGUFError('MISSING_KEY', `required metadata "${key}" is missing`);
}

function wrongType(key: string, expected: string, actual: GGUFValueType): GGUFError {
  return new GGUFError('WRONG_TYPE', `metadata "${key}" should be ${expected}, found ${GGUFValueType[actual] ?? actual}`);
}
