// JSON Schema → GBNF, with llama.cpp's json-schema-to-grammar semantics as the reference: the same
// primitives (strings with JSON escapes, numbers with at most 16 integer / fraction digits), the
// same optional whitespace (`space`), properties in declaration order with the required ones first
// and the optional ones as nested optional chains, `{"type": "object"}` alone accepting any object
// while a schema with `properties` allows no others unless `additionalProperties` says so. A
// keyword this converter does not handle is a GrammarError naming it, never silently dropped;
// annotations (title, description, examples, ...) are ignored.
import { GrammarError } from './errors.js';

type Schema = boolean | Record<string, unknown>;

const SPACE = '| " " | "\\n"{1,2} [ \\t]{0,20}';

const PRIMITIVES: Record<string, [string, string[]]> = {
  boolean: ['("true" | "false")', []],
  'decimal-part': ['[0-9]{1,16}', []],
  'integral-part': ['[0] | [1-9] [0-9]{0,15}', []],
  number: ['("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?', ['integral-part', 'decimal-part']],
  integer: ['("-"? integral-part)', ['integral-part']],
  value: ['object | array | string | number | boolean | null', ['object', 'array', 'string', 'number', 'boolean', 'null']],
  object: ['"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"', ['string', 'value']],
  array: ['"[" space ( value ("," space value)* )? space "]"', ['value']],
  uuid: ['"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\\""', []],
  char: ['[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})', []],
  string: ['"\\"" char* "\\""', ['char']],
  null: ['"null"', []],
  // Days that exist in every year (no February 29th: a leap-year rule would be large; the dates made are all valid).
  date: ['[0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) | "02" "-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) )', []],
  time: ['([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', []],
  'date-time': ['date "T" time', ['date', 'time']],
  'date-string': ['"\\"" date "\\""', ['date']],
  'time-string': ['"\\"" time "\\""', ['time']],
  'date-time-string': ['"\\"" date-time "\\""', ['date-time']],
};

/** Keywords that only describe: ignored. */
const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly', '$defs', 'definitions', 'strict']);
/** Keywords this converter understands, by what they apply to. */
const HANDLED = new Set([
  'type', 'nullable', 'enum', 'const', 'anyOf', 'oneOf', 'allOf', '$ref',
  'properties', 'required', 'additionalProperties',
  'items', 'prefixItems', 'minItems', 'maxItems',
  'minLength', 'maxLength', 'pattern', 'format',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
]);
const FORMATS = new Set(['date', 'time', 'date-time', 'uuid']);

export function jsonSchemaToGBNF(schema: unknown): string {
  const rules = new GrammarRules();
  const top = rules.schema(schema, '');
  if (top !== 'root') rules.set('root', top);
  return rules.text();
}

/**
 * Rules of one GBNF grammar being assembled: JSON schemas go in under names of their own (so one
 * grammar can hold several, as a tool-call grammar holds each tool's arguments) beside rules
 * written by hand.
 */
export class GrammarRules {
  private readonly rules = new Map<string, string>([['space', SPACE]]);

  /** The rule matching JSON valid under `schema`, named after `hint` ('' names it root). */
  schema(schema: unknown, hint: string): string {
    if (!isSchema(schema)) throw new GrammarError('INVALID_SCHEMA', `a JSON schema must be an object or a boolean, got ${typeof schema}`);
    return new Converter(schema, this.rules).visitRoot(hint);
  }

  /** A rule written in GBNF; returns its (unique) name. */
  add(hint: string, body: string): string {
    const name = uniqueName(this.rules, hint);
    this.rules.set(name, body);
    return name;
  }

  set(name: string, body: string): void {
    this.rules.set(name, body);
  }

  text(): string {
    return [...this.rules].map(([name, body]) => `${name} ::= ${body}`).join('\n') + '\n';
  }
}

function uniqueName(rules: Map<string, string>, hint: string): string {
  const base = hint.replace(/[^a-zA-Z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'root';
  let name = base, k = 0;
  while (rules.has(name) || name in PRIMITIVES) name = `${base}-${++k}`;
  return name;
}

class Converter {
  /** $ref targets being converted or done: name of their rule. */
  private readonly refs = new Map<string, string>();

  constructor(
    private readonly root: Schema,
    private readonly rules: Map<string, string>,
  ) {}

  visitRoot(hint: string): string {
    return this.visit(this.root, hint, '#');
  }

  /** A unique rule name from a path-like hint. */
  private name(hint: string): string {
    return uniqueName(this.rules, hint);
  }

  private add(hint: string, body: string): string {
    const name = this.name(hint);
    this.rules.set(name, body);
    return name;
  }

  private primitive(name: string): string {
    if (!this.rules.has(name)) {
      const [body, deps] = PRIMITIVES[name]!;
      this.rules.set(name, body);
      for (const d of deps) this.primitive(d);
    }
    return name;
  }

  /** The rule for `schema`, named after `hint`; `path` is its JSON pointer (for messages). */
  private visit(schema: Schema, hint: string, path: string): string {
    if (schema === true) return this.primitive('value');
    if (schema === false) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: the schema false matches nothing`);
    for (const key of Object.keys(schema)) {
      if (!HANDLED.has(key) && !ANNOTATIONS.has(key)) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: keyword "${key}" is not supported`);
    }
    const s = schema;
    if (s.$ref !== undefined) return this.ref(s.$ref, path);
    if (s.nullable === true) {
      const { nullable: _, ...rest } = s;
      return this.add(hint, `${this.visit(rest, `${hint}-nonnull`, path)} | ${this.primitive('null')}`);
    }
    if (s.const !== undefined) return this.add(hint, literal(JSON.stringify(s.const)));
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0) throw new GrammarError('INVALID_SCHEMA', `${path}/enum: must be a non-empty array`);
      return this.add(hint, `(${s.enum.map((v) => literal(JSON.stringify(v))).join(' | ')})`);
    }
    for (const k of ['anyOf', 'oneOf'] as const) {
      if (s[k] !== undefined) {
        const list = this.list(s[k], `${path}/${k}`);
        return this.add(hint, list.map((sub, i) => this.visit(sub, `${hint}-${i}`, `${path}/${k}/${i}`)).join(' | '));
      }
    }
    if (s.allOf !== undefined) return this.visit(this.mergeAllOf(s, path), hint, path);
    const type = s.type;
    if (Array.isArray(type)) {
      if (type.length === 0) throw new GrammarError('INVALID_SCHEMA', `${path}/type: an empty list of types`);
      // Each type keeps only the keywords that apply to it (JSON Schema applies them by instance type).
      return this.add(hint, type.map((t) => this.visit(keywordsFor(s, t as string), `${hint}-${t}`, path)).join(' | '));
    }
    if (type === undefined) {
      if (s.properties !== undefined || s.additionalProperties !== undefined || s.required !== undefined) return this.visit({ ...s, type: 'object' }, hint, path);
      if (s.items !== undefined || s.prefixItems !== undefined) return this.visit({ ...s, type: 'array' }, hint, path);
      return this.primitive('value');
    }
    this.checkApplies(s, type as string, path);
    switch (type) {
      case 'object': return this.object(s, hint, path);
      case 'array': return this.array(s, hint, path);
      case 'string': return this.string(s, hint, path);
      case 'integer': return this.integer(s, hint, path);
      case 'number': return this.primitive('number');
      case 'boolean': return this.primitive('boolean');
      case 'null': return this.primitive('null');
      default: throw new GrammarError('INVALID_SCHEMA', `${path}/type: unknown type ${JSON.stringify(type)}`);
    }
  }

  /** Keywords that belong to another type than the schema's are an error, not a silent no-op. */
  private checkApplies(s: Record<string, unknown>, type: string, path: string): void {
    for (const [owner, keys] of Object.entries(KEYWORDS_OF)) {
      if (owner === type) continue;
      for (const k of keys) {
        if (s[k] === undefined) continue;
        if (type === 'number' && owner === 'integer') throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: "${k}" on a number is not supported (ranges are expressible for integers only)`);
        throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: "${k}" does not apply to type "${type}"`);
      }
    }
  }

  private list(v: unknown, path: string): Schema[] {
    if (!Array.isArray(v) || v.length === 0 || !v.every(isSchema)) throw new GrammarError('INVALID_SCHEMA', `${path}: must be a non-empty array of schemas`);
    return v as Schema[];
  }

  private ref(ref: unknown, path: string): string {
    if (typeof ref !== 'string' || !ref.startsWith('#')) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/$ref: only local references ("#/...") are supported, got ${JSON.stringify(ref)}`);
    const known = this.refs.get(ref);
    if (known) return known;
    let target: unknown = this.root;
    for (const part of ref.slice(1).split('/').filter((p) => p !== '')) {
      const key = decodeURIComponent(part).replace(/~1/g, '/').replace(/~0/g, '~');
      target = typeof target === 'object' && target !== null ? (target as Record<string, unknown>)[key] : undefined;
    }
    if (!isSchema(target)) throw new GrammarError('INVALID_SCHEMA', `${path}/$ref: ${ref} does not point to a schema`);
    // Name it before visiting, so a recursive reference finds the name.
    const name = this.name(ref.split('/').pop() || 'ref');
    this.refs.set(ref, name);
    this.rules.set(name, ''); // reserved
    const body = this.visit(target, `${name}-body`, ref);
    this.rules.set(name, body);
    return name;
  }

  /** allOf of object schemas: one object with every property and requirement. */
  private mergeAllOf(s: Record<string, unknown>, path: string): Record<string, unknown> {
    const { allOf, ...rest } = s;
    const merged: Record<string, unknown> = { ...rest, type: 'object', properties: { ...(rest.properties as object) }, required: [...((rest.required as string[]) ?? [])] };
    for (const [i, part0] of this.list(allOf, `${path}/allOf`).entries()) {
      let part = part0;
      for (let hops = 0; typeof part === 'object' && typeof part.$ref === 'string' && hops < 32; hops++) part = this.resolve(part.$ref as string, `${path}/allOf/${i}`);
      if (typeof part !== 'object' || (part.type !== undefined && part.type !== 'object') || part.properties === undefined) {
        throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/allOf/${i}: allOf is supported for object schemas with properties only`);
      }
      Object.assign(merged.properties as object, part.properties);
      (merged.required as string[]).push(...((part.required as string[]) ?? []));
      if (part.additionalProperties !== undefined) merged.additionalProperties = part.additionalProperties;
    }
    return merged;
  }

  private resolve(ref: string, path: string): Schema {
    let target: unknown = this.root;
    for (const part of ref.slice(1).split('/').filter((p) => p !== '')) target = (target as Record<string, unknown>)?.[part];
    if (!isSchema(target)) throw new GrammarError('INVALID_SCHEMA', `${path}/$ref: ${ref} does not point to a schema`);
    return target;
  }

  private object(s: Record<string, unknown>, hint: string, path: string): string {
    const props = s.properties ?? {};
    if (typeof props !== 'object' || props === null || Array.isArray(props)) throw new GrammarError('INVALID_SCHEMA', `${path}/properties: must be an object`);
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) throw new GrammarError('INVALID_SCHEMA', `${path}/required: must be an array of strings`);
    let additional: Schema | undefined = s.additionalProperties as Schema | undefined;
    if (additional !== undefined && !isSchema(additional)) throw new GrammarError('INVALID_SCHEMA', `${path}/additionalProperties: must be a boolean or a schema`);
    if (additional === undefined && s.properties === undefined) additional = true; // {"type": "object"}: any object
    if (additional === false) additional = undefined;
    const names = Object.keys(props);
    if (names.length === 0 && additional === true) return this.primitive('object');
    for (const r of required) if (!names.includes(r) && additional === undefined) throw new GrammarError('INVALID_SCHEMA', `${path}/required: "${r}" is not among the properties`);
    const prefix = hint ? `${hint}-` : '';
    const kv = new Map<string, string>();
    for (const n of names) {
      const value = this.visit((props as Record<string, Schema>)[n]!, `${prefix}${n}`, `${path}/properties/${n}`);
      kv.set(n, this.add(`${prefix}${n}-kv`, `${literal(JSON.stringify(n))} space ":" space ${value}`));
    }
    const req = names.filter((n) => required.includes(n));
    const opt = names.filter((n) => !required.includes(n));
    if (additional !== undefined) {
      const value = additional === true ? this.primitive('value') : this.visit(additional, `${prefix}additional-value`, `${path}/additionalProperties`);
      const key = names.length === 0 ? this.primitive('string') : this.add(`${prefix}additional-k`, this.notStrings(names));
      kv.set('*', this.add(`${prefix}additional-kv`, `${key} ":" space ${value}`));
      opt.push('*');
    }
    if (req.length === 0 && opt.length === 0) return this.add(hint, '"{" space "}"');
    let body = `"{" space ${req.map((n) => kv.get(n)).join(' "," space ')}`;
    if (opt.length > 0) {
      // Each optional property may start the optional part; the ones after it each may follow.
      const chain = (keys: string[], firstOptional: boolean): string => {
        const [k, ...more] = keys;
        const rule = kv.get(k!)!;
        const comma = `( "," space ${rule} )`;
        let out = firstOptional ? `${comma}${k === '*' ? '*' : '?'}` : `${rule}${k === '*' ? ` ${comma}*` : ''}`;
        if (more.length > 0) out += ` ${this.add(`${prefix}${k === '*' ? 'additional' : k}-rest`, chain(more, true))}`;
        return out;
      };
      const starts = opt.map((_, i) => chain(opt.slice(i), false)).join(' | ');
      body += req.length > 0 ? ` ( "," space ( ${starts} ) )?` : ` ( ${starts} )?`;
    }
    return this.add(hint, `${body} space "}"`);
  }

  /** A JSON string that is none of `names` (the key of an additional property). */
  private notStrings(names: string[]): string {
    // A trie of the names; at each node the next character may leave every name, or follow one.
    interface Node { children: Map<string, Node>; end: boolean }
    const root: Node = { children: new Map(), end: false };
    for (const n of names) {
      let node = root;
      for (const ch of n) {
        let next = node.children.get(ch);
        if (!next) node.children.set(ch, (next = { children: new Map(), end: false }));
        node = next;
      }
      node.end = true;
    }
    const char = this.primitive('char');
    const visit = (node: Node): string => {
      const alts: string[] = [];
      const chars = [...node.children.keys()];
      for (const [ch, child] of node.children) alts.push(`${literal(ch)} (${visit(child)})`);
      // Leave the names here: any other character, then anything.
      if (chars.length > 0) alts.push(`[^"${chars.map(classEscape).join('')}] ${char}*`);
      // The key may also end here, unless a name ends here.
      if (!node.end) alts.push('');
      return alts.map((a) => a || '""').join(' | ');
    };
    return `"\\"" (${visit(root)}) "\\""`;
  }

  private array(s: Record<string, unknown>, hint: string, path: string): string {
    const min = count(s.minItems, `${path}/minItems`) ?? 0;
    const max = count(s.maxItems, `${path}/maxItems`);
    if (max !== undefined && max < min) throw new GrammarError('INVALID_SCHEMA', `${path}: maxItems ${max} is below minItems ${min}`);
    const prefix = hint ? `${hint}-` : '';
    const tuple = Array.isArray(s.items) ? s.items : s.prefixItems;
    if (tuple !== undefined) {
      const items = this.list(tuple, `${path}/prefixItems`);
      if (!Array.isArray(s.items) && s.items !== undefined && s.items !== false) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/items: items after prefixItems are not supported (only items: false)`);
      if (s.minItems !== undefined || s.maxItems !== undefined) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: minItems / maxItems with a tuple are not supported`);
      const parts = items.map((it, i) => this.visit(it, `${prefix}tuple-${i}`, `${path}/prefixItems/${i}`));
      return this.add(hint, `"[" space ${parts.join(' "," space ')} space "]"`);
    }
    const items = s.items ?? true;
    if (!isSchema(items)) throw new GrammarError('INVALID_SCHEMA', `${path}/items: must be a schema`);
    if (items === true && min === 0 && max === undefined) return this.primitive('array');
    const item = this.visit(items, `${prefix}item`, `${path}/items`);
    return this.add(hint, `"[" space ${repetition(item, min, max, '"," space')} space "]"`);
  }

  private string(s: Record<string, unknown>, hint: string, path: string): string {
    if (s.pattern !== undefined) {
      if (s.format !== undefined || s.minLength !== undefined || s.maxLength !== undefined) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: pattern together with format or lengths is not supported`);
      if (typeof s.pattern !== 'string') throw new GrammarError('INVALID_SCHEMA', `${path}/pattern: must be a string`);
      return this.add(hint, `"\\"" ${patternToGBNF(s.pattern, path)} "\\""`);
    }
    if (s.format !== undefined) {
      if (typeof s.format !== 'string' || !FORMATS.has(s.format)) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/format: ${JSON.stringify(s.format)} is not supported (${[...FORMATS].join(', ')} are)`);
      return this.primitive(s.format === 'uuid' ? 'uuid' : `${s.format}-string`);
    }
    const min = count(s.minLength, `${path}/minLength`) ?? 0;
    const max = count(s.maxLength, `${path}/maxLength`);
    if (min === 0 && max === undefined) return this.primitive('string');
    if (max !== undefined && max < min) throw new GrammarError('INVALID_SCHEMA', `${path}: maxLength ${max} is below minLength ${min}`);
    return this.add(hint, `"\\"" ${repetition(this.primitive('char'), min, max)} "\\""`);
  }

  private integer(s: Record<string, unknown>, hint: string, path: string): string {
    let lo: number | undefined, hi: number | undefined;
    const bound = (k: string) => {
      const v = s[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new GrammarError('INVALID_SCHEMA', `${path}/${k}: must be a number`);
      return v;
    };
    const min = bound('minimum'), max = bound('maximum'), xmin = bound('exclusiveMinimum'), xmax = bound('exclusiveMaximum');
    if (min !== undefined) lo = Math.ceil(min);
    if (xmin !== undefined) lo = Math.max(lo ?? -Infinity, Math.floor(xmin) + 1);
    if (max !== undefined) hi = Math.floor(max);
    if (xmax !== undefined) hi = Math.min(hi ?? Infinity, Math.ceil(xmax) - 1);
    if (lo === undefined && hi === undefined) return this.primitive('integer');
    if (lo !== undefined && hi !== undefined && hi < lo) throw new GrammarError('INVALID_SCHEMA', `${path}: no integer lies in [${lo}, ${hi}]`);
    for (const v of [lo, hi]) if (v !== undefined && !Number.isSafeInteger(v)) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: integer bound ${v} is beyond 2^53`);
    return this.add(hint, `(${integerRange(lo, hi)})`);
  }
}

/** The keywords owned by one instance type. */
const KEYWORDS_OF: Record<string, string[]> = {
  object: ['properties', 'required', 'additionalProperties'], array: ['items', 'prefixItems', 'minItems', 'maxItems'],
  string: ['minLength', 'maxLength', 'pattern', 'format'], integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
};

/** A schema of several types narrowed to one: without the keywords of the others. */
function keywordsFor(s: Record<string, unknown>, type: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...s, type };
  for (const [owner, keys] of Object.entries(KEYWORDS_OF)) {
    if (owner === type || (owner === 'integer' && type === 'number')) continue;
    for (const k of keys) delete out[k];
  }
  return out;
}

function isSchema(v: unknown): v is Schema {
  return typeof v === 'boolean' || (typeof v === 'object' && v !== null && !Array.isArray(v));
}

function count(v: unknown, path: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0) throw new GrammarError('INVALID_SCHEMA', `${path}: must be an integer >= 0`);
  if ((v as number) > 10_000) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}: ${v} is more than the 10000 repetitions a grammar may spell out`);
  return v as number;
}

/** item, min..max times (max undefined: no limit), separated by `sep`. */
function repetition(item: string, min: number, max: number | undefined, sep = ''): string {
  if (max === 0) return '""';
  const next = `( ${sep ? `${sep} ` : ''}${item} )`;
  // After the first item: the rest of the count.
  const rest = (lo: number, hi: number | undefined) => (hi === undefined ? `${next}{${lo},}` : hi === 0 ? '' : `${next}{${lo},${hi}}`);
  if (min === 0) return `( ${item} ${rest(0, max === undefined ? undefined : max - 1)} )?`;
  return `${item} ${rest(min - 1, max === undefined ? undefined : max - 1)}`;
}

/** A GBNF string literal. */
export function literal(text: string): string {
  return `"${text.replace(/[\\"\n\r]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r' })[c]!)}"`;
}

function classEscape(ch: string): string {
  return ch.replace(/[\\\]\[^-]/g, (c) => `\\${c}`).replace('\n', '\\n').replace('\r', '\\r');
}

/** Decimal integers in [lo, hi] (either side open) as a GBNF expression, without leading zeros. */
export function integerRange(lo: number | undefined, hi: number | undefined): string {
  const alts: string[] = [];
  // Negative part: "-" then magnitudes in [max(1, -hi), -lo].
  if (lo === undefined || lo < 0) {
    const magLo = hi !== undefined && hi < 0 ? -hi : 1;
    const magHi = lo === undefined ? undefined : -lo;
    alts.push(`"-" (${naturalRange(magLo, magHi)})`);
  }
  if (hi === undefined || hi >= 0) {
    const a = Math.max(lo ?? 0, 0);
    alts.push(naturalRange(a, hi));
  }
  return alts.join(' | ');
}

/** Naturals in [lo, hi] (hi open when undefined), no leading zeros. */
function naturalRange(lo: number, hi: number | undefined): string {
  const alts: string[] = [];
  const width = (n: number) => String(n).length;
  const top = hi === undefined ? undefined : hi;
  for (let w = width(lo); top === undefined ? w <= width(lo) : w <= width(top); w++) {
    const from = w === width(lo) ? lo : 10 ** (w - 1);
    const to = top !== undefined && w === width(top) ? top : 10 ** w - 1;
    alts.push(...sameWidth(String(from).padStart(w, '0'), String(to).padStart(w, '0')));
  }
  // Open above: any number with more digits than lo.
  if (hi === undefined) alts.push(`[1-9] [0-9]{${width(lo)},15}`);
  return alts.join(' | ');
}

/** Digit strings of one width between a and b (inclusive), as alternatives. */
function sameWidth(a: string, b: string): string[] {
  if (a.length === 1) return [a === b ? `"${a}"` : `[${a}-${b}]`];
  if (a[0] === b[0]) return sameWidth(a.slice(1), b.slice(1)).map((rest) => `"${a[0]}" (${rest})`);
  const out: string[] = [];
  const restLen = a.length - 1;
  const allLow = '0'.repeat(restLen), allHigh = '9'.repeat(restLen);
  let first = Number(a[0]), last = Number(b[0]);
  if (a.slice(1) !== allLow) {
    out.push(...sameWidth(a.slice(1), allHigh).map((rest) => `"${a[0]}" (${rest})`));
    first++;
  }
  const lastFull = b.slice(1) === allHigh;
  if (!lastFull) last--;
  if (first <= last) out.push(`${first === last ? `"${first}"` : `[${first}-${last}]`} [0-9]{${restLen}}`);
  if (!lastFull) out.push(...sameWidth(allLow, b.slice(1)).map((rest) => `"${b[0]}" (${rest})`));
  return out;
}

/**
 * A regular expression (JSON Schema's pattern, anchored with ^...$ as llama.cpp requires) as GBNF:
 * literals, ., [classes] with \d \w \s, groups and (?:...), |, * + ? and {m,n}. Anything else
 * (backreferences, lookaround, unanchored patterns) is a GrammarError naming it.
 */
export function patternToGBNF(pattern: string, path = '#'): string {
  if (!pattern.startsWith('^') || !pattern.endsWith('$')) throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/pattern: only patterns anchored with ^ and $ are supported, got ${JSON.stringify(pattern)}`);
  const src = [...pattern.slice(1, -1)];
  let i = 0;
  const fail = (what: string): never => {
    throw new GrammarError('UNSUPPORTED_SCHEMA', `${path}/pattern ${JSON.stringify(pattern)}: ${what}`);
  };
  const CLASS: Record<string, string> = { d: '0-9', w: 'a-zA-Z0-9_', s: ' \\t\\n\\r' };
  // Inside a JSON string the pattern's characters appear escaped; keep to characters that need no escaping.
  const char = (c: string) => (c === '"' || c === '\\' ? fail(`the character ${c} needs JSON escaping, which patterns do not support`) : literal(c));
  const alternation = (): string => {
    const alts = [sequence()];
    while (src[i] === '|') {
      i++;
      alts.push(sequence());
    }
    return alts.length === 1 ? alts[0]! : `(${alts.map((a) => a || '""').join(' | ')})`;
  };
  const sequence = (): string => {
    const items: string[] = [];
    while (i < src.length && src[i] !== '|' && src[i] !== ')') {
      let atom: string;
      const c = src[i++]!;
      if (c === '(') {
        if (src[i] === '?') {
          if (src[i + 1] !== ':') fail('only (?:...) groups are supported');
          i += 2;
        }
        atom = `(${alternation() || '""'})`;
        if (src[i++] !== ')') fail('unbalanced parentheses');
      } else if (c === '[') {
        let body = '';
        if (src[i] === '^') body += src[i++];
        while (i < src.length && src[i] !== ']') {
          const d = src[i++]!;
          if (d === '\\') {
            const e = src[i++]!;
            body += CLASS[e] ?? (/[\\\]\[\-^ntr]/.test(e) ? `\\${e}` : /[.*+?(){}|/$]/.test(e) ? e : fail(`escape \\${e} in a class is not supported`));
          } else if (d === '"') fail('the character " needs JSON escaping, which patterns do not support');
          else body += d;
        }
        if (src[i++] !== ']') fail('unterminated character class');
        atom = `[${body}]`;
      } else if (c === '.') atom = '[^"\\\\\\n]';
      else if (c === '\\') {
        const e = src[i++];
        if (e === undefined) fail('trailing backslash');
        atom = CLASS[e!] ? `[${CLASS[e!]}]` : /[DWS]/.test(e!) ? fail(`\\${e} is not supported`) : e === 'n' ? '"\\n"' : e === 't' ? '"\\t"' : /[0-9bBkp]/.test(e!) ? fail(`\\${e} is not supported`) : char(e!);
      } else if ('*+?{'.includes(c)) return fail(`nothing to repeat before "${c}"`);
      else if (c === '^' || c === '$') return fail('anchors inside the pattern are not supported');
      else atom = char(c);
      // Quantifier.
      const q = src[i];
      if (q === '*' || q === '+' || q === '?') {
        i++;
        atom = `${atom}${q}`;
      } else if (q === '{') {
        const close = src.indexOf('}', i);
        if (close < 0) fail('unterminated {');
        const m = /^(\d+)(,(\d*))?$/.exec(src.slice(i + 1, close).join(''));
        if (!m) fail(`bad repetition {${src.slice(i + 1, close).join('')}}`);
        i = close + 1;
        atom = `${atom}{${m![1]}${m![2] !== undefined ? `,${m![3]}` : ''}}`;
      }
      if (src[i] === '?' && /[*+?}]$/.test(atom)) fail('lazy quantifiers are not supported');
      items.push(atom);
    }
    return items.join(' ');
  };
  const out = alternation();
  if (i < src.length) fail('unbalanced parentheses');
  return out ? `(${out})` : '""';
}
