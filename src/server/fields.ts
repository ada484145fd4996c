// Reading an untrusted JSON request body field by field. Each accessor returns the value when it is
// absent-or-valid and throws a 400 naming the field and the value otherwise; `null` counts as
// absent (OpenAI clients send it for "default"). Fields nobody reads are ignored, as OpenAI does.
import { invalidField } from './errors.js';

type Json = unknown;

/** A short rendering of a bad value for an error message. */
export function show(value: Json): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export class Fields {
  private readonly body: Record<string, Json>;

  constructor(
    body: Json,
    /** Where these fields sit in the request ("" for the top level, "stream_options." inside one). */
    private readonly prefix = '',
  ) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw invalidField(prefix.replace(/\.$/, '') || 'body', `${prefix ? `\`${prefix.replace(/\.$/, '')}\`` : 'the request body'} must be a JSON object, got ${show(body)}`);
    }
    this.body = body as Record<string, Json>;
  }

  /** The dotted name of a field, as error messages and `param` give it. */
  name(field: string): string {
    return this.prefix + field;
  }

  has(field: string): boolean {
    return this.body[field] !== undefined && this.body[field] !== null;
  }

  raw(field: string): Json {
    return this.has(field) ? this.body[field] : undefined;
  }

  fail(field: string, expected: string): never {
    throw invalidField(this.name(field), `\`${this.name(field)}\` must be ${expected}, got ${show(this.body[field])}`);
  }

  required<T>(field: string, read: (f: string) => T | undefined, what: string): T {
    if (!this.has(field)) throw invalidField(this.name(field), `\`${this.name(field)}\` is required (${what})`, 'missing_required_parameter');
    return read(field) as T;
  }

  number(field: string, range: { min?: number; max?: number; integer?: boolean; exclusiveMin?: boolean } = {}): number | undefined {
    const v = this.raw(field);
    if (v === undefined) return undefined;
    const { min, max, integer, exclusiveMin } = range;
    const ok = typeof v === 'number' && Number.isFinite(v) && (!integer || Number.isInteger(v)) &&
      (min === undefined || (exclusiveMin ? v > min : v >= min)) && (max === undefined || v <= max);
    if (!ok) {
      const bounds = min !== undefined && max !== undefined ? ` in ${exclusiveMin ? '(' : '['}${min}, ${max}]` : min !== undefined ? ` ${exclusiveMin ? '>' : '>='} ${min}` : max !== undefined ? ` <= ${max}` : '';
      this.fail(field, `${integer ? 'an integer' : 'a number'}${bounds}`);
    }
    return v as number;
  }

  integer(field: string, range: { min?: number; max?: number } = {}): number | undefined {
    return this.number(field, { ...range, integer: true });
  }

  boolean(field: string): boolean | undefined {
    const v = this.raw(field);
    if (v !== undefined && typeof v !== 'boolean') this.fail(field, 'a boolean');
    return v as boolean | undefined;
  }

  string(field: string, options: { nonEmpty?: boolean } = {}): string | undefined {
    const v = this.raw(field);
    if (v !== undefined && (typeof v !== 'string' || (options.nonEmpty && v === ''))) this.fail(field, options.nonEmpty ? 'a non-empty string' : 'a string');
    return v as string | undefined;
  }

  oneOf<T extends string>(field: string, values: readonly T[]): T | undefined {
    const v = this.raw(field);
    if (v !== undefined && !values.includes(v as T)) this.fail(field, `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);
    return v as T | undefined;
  }

  object(field: string): Fields | undefined {
    const v = this.raw(field);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object');
    return new Fields(v, `${this.name(field)}.`);
  }

  array(field: string, options: { min?: number; max?: number } = {}): Json[] | undefined {
    const v = this.raw(field);
    if (v === undefined) return undefined;
    const { min = 0, max = Infinity } = options;
    if (!Array.isArray(v) || v.length < min || v.length > max) {
      this.fail(field, `an array${max < Infinity ? ` of ${min}..${max}` : min > 0 ? ` of ${min} or more` : ''} items`);
    }
    return v as Json[];
  }

  /** A field that is set but not supported: a 400 saying so, never silently ignored. */
  unsupported(field: string, why: string, allowed: (v: Json) => boolean = () => false): void {
    const v = this.raw(field);
    if (v !== undefined && !allowed(v)) {
      throw invalidField(this.name(field), `\`${this.name(field)}\` ${why}`, 'unsupported_parameter');
    }
  }
}
