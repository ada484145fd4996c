// Test fixture: a small, valid GGUF file (written with our writer) covering every value type,
// string arrays, nested arrays up to the nesting limit and F32/F16/Q8_0 tensors including a 4-D
// one, plus a layout walker that records where each field of a known-good file lies, so corrupt
// variants can target exact structural boundaries.
import { GGUFValueType } from '../src/gguf/constants.js';
import type { GGUFArray, GGUFEntry } from '../src/gguf/reader.js';
import { writeGGUF, type GGUFWriteTensor } from '../src/gguf/writer.js';
import { GGMLType } from '../src/tensor/ggml-types.js';

const T = GGUFValueType;

function u8arr(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function arr(elementType: GGUFValueType, values: GGUFArray['values']): GGUFArray {
  return { elementType, values };
}

export function fixtureMetadata(): [string, GGUFEntry][] {
  const deep = arr(T.ARRAY, [arr(T.ARRAY, [arr(T.ARRAY, [arr(T.UINT8, new Uint8Array([1, 2, 3]))])])]);
  return [
    ['general.architecture', { type: T.STRING, value: 'llama' }],
    ['general.alignment', { type: T.UINT32, value: 32 }],
    ['test.u8', { type: T.UINT8, value: 200 }],
    ['test.i8', { type: T.INT8, value: -100 }],
    ['test.u16', { type: T.UINT16, value: 60000 }],
    ['test.i16', { type: T.INT16, value: -30000 }],
    ['test.u32', { type: T.UINT32, value: 4000000000 }],
    ['test.i32', { type: T.INT32, value: -2000000000 }],
    ['test.f32', { type: T.FLOAT32, value: Math.fround(1e-5) }],
    ['test.f64', { type: T.FLOAT64, value: Math.PI }],
    ['test.u64', { type: T.UINT64, value: 18446744073709551615n }],
    ['test.i64', { type: T.INT64, value: -5 }],
    ['test.bool', { type: T.BOOL, value: true }],
    ['test.text', { type: T.STRING, value: 'héllo wörld — GGUF ✓' }],
    ['test.bools', { type: T.ARRAY, value: arr(T.BOOL, [true, false, true, true]) }],
    ['test.strings', { type: T.ARRAY, value: arr(T.STRING, ['alpha', 'beta', '', 'ünïcødé', '\uFEFFbom']) }],
    ['test.floats', { type: T.ARRAY, value: arr(T.FLOAT32, new Float32Array([0.5, -1.25, 3e38, Number.NEGATIVE_INFINITY])) }],
    ['test.i64s', { type: T.ARRAY, value: arr(T.INT64, new BigInt64Array([-(1n << 63n), 0n, (1n << 63n) - 1n])) }],
    ['test.nested', { type: T.ARRAY, value: arr(T.ARRAY, [arr(T.UINT32, new Uint32Array([1, 2])), arr(T.STRING, ['x', 'yz'])]) }],
    ['test.deep', { type: T.ARRAY, value: deep }],
    ['test.dup_a', { type: T.UINT32, value: 7 }],
    ['test.dup_b', { type: T.UINT32, value: 8 }],
  ];
}

export function fixtureTensors(): GGUFWriteTensor[] {
  return [
    { name: 'tok.a', dims: [64, 8], type: GGMLType.F32, data: u8arr(64 * 8 * 4, 1) },
    { name: 'tok.b', dims: [16, 3], type: GGMLType.F16, data: u8arr(16 * 3 * 2, 2) },
    { name: 'tok.c', dims: [64, 2], type: GGMLType.Q8_0, data: u8arr(2 * 2 * 34, 3) },
    { name: 'tok.d', dims: [2, 2, 2, 2], type: GGMLType.F32, data: u8arr(16 * 4, 4) },
  ];
}

export function buildFixture(): Uint8Array {
  return writeGGUF(fixtureMetadata(), fixtureTensors());
}

export type FieldKind =
  | 'magic' | 'version' | 'tensor_count' | 'kv_count'
  | 'key_len' | 'key' | 'value_type' | 'scalar' | 'str_len' | 'str'
  | 'arr_type' | 'arr_count' | 'arr_data'
  | 'name_len' | 'name' | 'n_dims' | 'dim' | 'ggml_type' | 'offset'
  | 'padding' | 'data';

export interface Field {
  kind: FieldKind;
  /** Key or tensor name the field belongs to, with a path for array parts. */
  label: string;
  offset: number;
  size: number;
  /** For arr_count fields: the element count, the smallest encoding of one element, and where the array ends. */
  array?: { count: number; minElementBytes: number; end: number };
}

const FIXED: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Record the position of every field of a known-good GGUF file (trusted input: no checks). */
export function walkLayout(bytes: Uint8Array): Field[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder('utf-8', { ignoreBOM: true });
  const fields: Field[] = [];
  let p = 0;
  const take = (kind: FieldKind, label: string, size: number): number => {
    fields.push({ kind, label, offset: p, size });
    p += size;
    return p - size;
  };
  const u64 = (at: number) => Number(v.getBigUint64(at, true));
  const str = (label: string, lenKind: FieldKind, kind: FieldKind): string => {
    const n = u64(take(lenKind, label, 8));
    const at = take(kind, label, n);
    return dec.decode(bytes.subarray(at, at + n));
  };
  const value = (type: number, label: string): void => {
    if (type === T.STRING) { str(label, 'str_len', 'str'); return; }
    if (type !== T.ARRAY) { take('scalar', label, FIXED[type]); return; }
    const et = v.getUint32(take('arr_type', label, 4), true);
    const count = u64(take('arr_count', label, 8));
    const countField = fields[fields.length - 1];
    if (et === T.STRING || et === T.ARRAY) {
      for (let i = 0; i < count; i++) value(et, `${label}[${i}]`);
    } else {
      take('arr_data', label, count * FIXED[et]);
    }
    const minElementBytes = et === T.STRING ? 8 : et === T.ARRAY ? 12 : FIXED[et];
    countField.array = { count, minElementBytes, end: p };
  };
  take('magic', '', 4);
  take('version', '', 4);
  const nt = u64(take('tensor_count', '', 8));
  const nkv = u64(take('kv_count', '', 8));
  let alignment = 32;
  for (let i = 0; i < nkv; i++) {
    const key = str(`#${i}`, 'key_len', 'key');
    const type = v.getUint32(take('value_type', key, 4), true);
    const start = p;
    value(type, key);
    if (key === 'general.alignment') alignment = v.getUint32(start, true);
  }
  const infos: { name: string; nBytes: number; offset: number }[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str(`#${i}`, 'name_len', 'name');
    const nd = v.getUint32(take('n_dims', name, 4), true);
    for (let d = 0; d < nd; d++) take('dim', `${name}/${d}`, 8);
    take('ggml_type', name, 4);
    const offset = u64(take('offset', name, 8));
    infos.push({ name, nBytes: 0, offset });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  if (nt > 0 && dataStart > p) take('padding', 'header', dataStart - p);
  for (let i = 0; i < infos.length; i++) {
    const end = i + 1 < infos.length ? dataStart + infos[i + 1].offset : bytes.length;
    p = dataStart + infos[i].offset;
    take('data', infos[i].name, end - p);
  }
  return fields;
}

/** The one field matching kind and label (throws if absent, so a layout change fails loudly). */
export function field(fields: Field[], kind: FieldKind, label: string): Field {
  const f = fields.find((x) => x.kind === kind && x.label === label);
  if (!f) throw new Error(`fixture has no ${kind} field "${label}"`);
  return f;
}
