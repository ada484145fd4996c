// GGUF v3 writer. It accepts exactly the value shapes readGGUF returns (so anything read can be
// written back) and validates everything the reader would later reject, so a file we write is a
// file we, and llama.cpp, can read. Tensor data is never copied: encodeGGUF returns the header
// and the caller's data buffers interleaved with padding, ready to be streamed out in order.
import { typeTraits, type GGMLType } from '../tensor/ggml-types.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFValueType } from './constants.js';
import { GGUFError } from './errors.js';
import type { GGUFArray, GGUFEntry } from './reader.js';

export interface GGUFWriteTensor {
  name: string;
  /** ggml order: dims[0] is the row length (contiguous). */
  dims: number[];
  type: GGMLType;
  /** Exactly the tensor's encoded bytes (rows of blocks, as ggml stores them). */
  data: Uint8Array;
}

export interface GGUFWriteOptions {
  /**
   * Data alignment. Defaults to general.alignment from the metadata, else 32. When it differs
   * from 32 and the metadata does not declare it, a general.alignment u32 entry is appended so
   * readers find the data where it is.
   */
  alignment?: number;
}

const GGUF_VERSION = 3;
// Mirrors the reader's limits: deeper nesting, longer names or more dims would be rejected on read.
const MAX_NESTING = 4;
const MAX_DIMS = 4;
const MAX_TENSOR_NAME_BYTES = 63;
const MAX_ALIGNMENT = 2 ** 31; // general.alignment is a u32 power of two

const utf8 = new TextEncoder();
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const INT_RANGES: Partial<Record<GGUFValueType, [number, number]>> = {
  [GGUFValueType.UINT8]: [0, 0xff],
  [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff],
  [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff],
  [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
};
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** The typed array the reader returns for each numeric element type: those are copied as raw bytes. */
const NATIVE_ARRAY: Partial<Record<GGUFValueType, Function>> = {
  [GGUFValueType.UINT8]: Uint8Array,
  [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array,
  [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array,
  [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array,
  [GGUFValueType.FLOAT64]: Float64Array,
  [GGUFValueType.UINT64]: BigUint64Array,
  [GGUFValueType.INT64]: BigInt64Array,
};

function fail(message: string): never {
  throw new GGUFError('WRITE_ERROR', message);
}

function typeLabel(t: number): string {
  return GGUFValueType[t] ?? String(t);
}

/** Growable little-endian byte buffer for the header. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    const need = this.length + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length = need;
    return at;
  }

  // reserve() may replace the view, so take the offset before touching this.view.
  u8(v: number): void { const at = this.reserve(1); this.view.setUint8(at, v); }
  i8(v: number): void { const at = this.reserve(1); this.view.setInt8(at, v); }
  u16(v: number): void { const at = this.reserve(2); this.view.setUint16(at, v, true); }
  i16(v: number): void { const at = this.reserve(2); this.view.setInt16(at, v, true); }
  u32(v: number): void { const at = this.reserve(4); this.view.setUint32(at, v, true); }
  i32(v: number): void { const at = this.reserve(4); this.view.setInt32(at, v, true); }
  f32(v: number): void { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
  f64(v: number): void { const at = this.reserve(8); this.view.setFloat64(at, v, true); }
  u64(v: bigint | number): void { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: bigint | number): void { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }

  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }

  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }

  zeros(n: number): void {
    this.reserve(n); // fresh buffer space is already zero, and it is never reused
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function checkString(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string') fail(`${what} must be a string, got ${describe(s)}`);
  // TextEncoder would silently turn a lone surrogate into U+FFFD: refuse instead of writing something else.
  if (LONE_SURROGATE.test(s)) fail(`${what} is not well-formed Unicode (lone surrogate)`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  return typeof v;
}

function checkValueType(t: unknown, what: string): GGUFValueType {
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > GGUFValueType.FLOAT64) {
    fail(`${what} has unknown value type ${String(t)}`);
  }
  return t as GGUFValueType;
}

/** Write one scalar of a fixed-size type after checking that the JS value fits it exactly. */
function writeScalar(w: ByteWriter, type: GGUFValueType, v: unknown, what: string): void {
  const range = INT_RANGES[type];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      fail(`${what} must be an integer in ${range[0]}..${range[1]} for ${typeLabel(type)}, got ${String(v)}`);
    }
    switch (type) {
      case GGUFValueType.UINT8: return w.u8(v);
      case GGUFValueType.INT8: return w.i8(v);
      case GGUFValueType.UINT16: return w.u16(v);
      case GGUFValueType.INT16: return w.i16(v);
      case GGUFValueType.UINT32: return w.u32(v);
      default: return w.i32(v);
    }
  }
  switch (type) {
    case GGUFValueType.UINT64:
    case GGUFValueType.INT64: {
      const signed = type === GGUFValueType.INT64;
      let b: bigint;
      if (typeof v === 'bigint') b = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
      else fail(`${what} must be a safe integer or a bigint for ${typeLabel(type)}, got ${String(v)}`);
      if (signed ? b < I64_MIN || b > I64_MAX : b < 0n || b > U64_MAX) {
        fail(`${what} is ${b}, out of range for ${typeLabel(type)}`);
      }
      return signed ? w.i64(b) : w.u64(b);
    }
    case GGUFValueType.FLOAT32:
    case GGUFValueType.FLOAT64:
      // Any number is accepted: FLOAT32 rounds to nearest, as a float32 store does.
      if (typeof v !== 'number') fail(`${what} must be a number for ${typeLabel(type)}, got ${describe(v)}`);
      return type === GGUFValueType.FLOAT32 ? w.f32(v) : w.f64(v);
    case GGUFValueType.BOOL:
      if (typeof v !== 'boolean') fail(`${what} must be a boolean, got ${describe(v)}`);
      return w.u8(v ? 1 : 0);
  }
  fail(`${what}: ${typeLabel(type)} is not a scalar type`);
}

function writeValue(w: ByteWriter, type: GGUFValueType, v: unknown, what: string, depth: number): void {
  if (type === GGUFValueType.STRING) {
    checkString(v, what);
    return w.string(v);
  }
  if (type === GGUFValueType.ARRAY) return writeArray(w, v, what, depth);
  writeScalar(w, type, v, what);
}

function writeArray(w: ByteWriter, arr: unknown, what: string, depth: number): void {
  if (depth >= MAX_NESTING) fail(`${what}: arrays nested deeper than ${MAX_NESTING}`);
  if (typeof arr !== 'object' || arr === null || !('elementType' in arr) || !('values' in arr)) {
    fail(`${what} must be an array value { elementType, values }, got ${describe(arr)}`);
  }
  const { elementType: et, values } = arr as GGUFArray;
  const elementType = checkValueType(et, `${what} element`);
  const isTyped = ArrayBuffer.isView(values) && !(values instanceof DataView);
  if (!Array.isArray(values) && !isTyped) fail(`${what} values must be an array or a typed array, got ${describe(values)}`);
  const list = values as ArrayLike<unknown>;
  w.u32(elementType);
  w.u64(list.length);

  const native = NATIVE_ARRAY[elementType];
  if (native && values instanceof native) {
    const t = values as unknown as ArrayBufferView & { length: number; BYTES_PER_ELEMENT: number };
    if (LITTLE_ENDIAN || t.BYTES_PER_ELEMENT === 1) {
      w.bytes(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      return;
    }
  }
  if (isTyped && (elementType === GGUFValueType.STRING || elementType === GGUFValueType.ARRAY || elementType === GGUFValueType.BOOL)) {
    fail(`${what}: a ${describe(values)} cannot hold ${typeLabel(elementType)} elements`);
  }
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    if (elementType === GGUFValueType.STRING) {
      checkString(item, `${what}[${i}]`);
      w.string(item);
    } else if (elementType === GGUFValueType.ARRAY) {
      writeArray(w, item, `${what}[${i}]`, depth + 1);
    } else {
      // Plain arrays and typed arrays of another kind (e.g. Float64Array for FLOAT32) go element by
      // element, each checked to fit the element type.
      writeScalar(w, elementType, item, `${what}[${i}]`);
    }
  }
}

function checkAlignment(a: unknown, what: string): number {
  if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || a > MAX_ALIGNMENT || (a & (a - 1)) !== 0) {
    fail(`${what} must be a power of two between 1 and 2^31, got ${String(a)}`);
  }
  return a;
}

interface PlannedTensor {
  name: string;
  nameBytes: number;
  dims: number[];
  type: GGMLType;
  offset: number;
  data: Uint8Array;
}

function planTensors(tensors: GGUFWriteTensor[], alignment: number): { planned: PlannedTensor[]; dataSize: number } {
  if (!Array.isArray(tensors)) fail(`tensors must be an array, got ${describe(tensors)}`);
  const names = new Set<string>();
  const planned: PlannedTensor[] = [];
  let offset = 0;
  tensors.forEach((t, i) => {
    const label = `tensor #${i}`;
    if (typeof t !== 'object' || t === null) fail(`${label} must be an object, got ${describe(t)}`);
    checkString(t.name, `${label} name`);
    const nameBytes = utf8.encode(t.name).length;
    if (nameBytes > MAX_TENSOR_NAME_BYTES) {
      fail(`${label} name "${t.name}" is ${nameBytes} bytes, the limit is ${MAX_TENSOR_NAME_BYTES}`);
    }
    if (names.has(t.name)) fail(`tensor name "${t.name}" appears twice`);
    names.add(t.name);
    const what = `tensor "${t.name}"`;
    if (!Array.isArray(t.dims) || t.dims.length < 1 || t.dims.length > MAX_DIMS) {
      fail(`${what} must have 1 to ${MAX_DIMS} dims, got ${Array.isArray(t.dims) ? t.dims.length : describe(t.dims)}`);
    }
    let n = 1;
    for (const d of t.dims) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) fail(`${what} has invalid dim ${String(d)}`);
      n *= d;
      if (!Number.isSafeInteger(n)) fail(`${what}: element count of dims [${t.dims.join(', ')}] overflows`);
    }
    const traits = typeTraits(t.type);
    if (!traits) fail(`${what} has unknown ggml type ${String(t.type)}`);
    if (t.dims[0] % traits.blockSize !== 0) {
      fail(`${what} row length ${t.dims[0]} is not a multiple of ${traits.name}'s block size ${traits.blockSize}`);
    }
    const nBytes = (n / traits.blockSize) * traits.blockBytes;
    if (!(t.data instanceof Uint8Array)) fail(`${what} data must be a Uint8Array, got ${describe(t.data)}`);
    if (t.data.length !== nBytes) {
      fail(`${what} is ${traits.name} [${t.dims.join(', ')}] = ${nBytes} bytes, but its data has ${t.data.length}`);
    }
    planned.push({ name: t.name, nameBytes, dims: [...t.dims], type: t.type, offset, data: t.data });
    offset += nBytes;
    offset = Math.ceil(offset / alignment) * alignment;
    if (!Number.isSafeInteger(offset)) fail(`tensor data exceeds 2^53 bytes at "${t.name}"`);
  });
  return { planned, dataSize: offset };
}

/**
 * Encode a GGUF v3 file as a list of chunks to be written in order: the header (metadata and
 * tensor infos, padded to the data alignment), then each tensor's data followed by its padding.
 * Tensor data buffers are returned as given, not copied. Everything is validated first: on any
 * problem a GGUFError with code WRITE_ERROR is thrown and nothing is produced.
 */
export function encodeGGUF(
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: GGUFWriteTensor[],
  opts: GGUFWriteOptions = {},
): Uint8Array[] {
  const entries = [...metadata];
  const keys = new Set<string>();
  let declaredAlignment: number | undefined;
  for (const item of entries) {
    if (!Array.isArray(item) || item.length !== 2) fail(`metadata entries must be [key, entry] pairs, got ${describe(item)}`);
    const [key, entry] = item;
    checkString(key, 'metadata key');
    if (key.length === 0) fail('metadata key is empty');
    if (keys.has(key)) fail(`metadata key "${key}" appears twice`);
    keys.add(key);
    if (typeof entry !== 'object' || entry === null) fail(`metadata "${key}" must be { type, value }, got ${describe(entry)}`);
    if (key === 'general.alignment') {
      if (entry.type !== GGUFValueType.UINT32) fail(`general.alignment must be UINT32, got ${typeLabel(entry.type)}`);
      declaredAlignment = checkAlignment(entry.value, 'general.alignment');
    }
  }

  let alignment = declaredAlignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (opts.alignment !== undefined) {
    const a = checkAlignment(opts.alignment, 'alignment option');
    if (declaredAlignment !== undefined && declaredAlignment !== a) {
      fail(`alignment option ${a} contradicts general.alignment ${declaredAlignment} in the metadata`);
    }
    if (declaredAlignment === undefined && a !== GGUF_DEFAULT_ALIGNMENT) {
      entries.push(['general.alignment', { type: GGUFValueType.UINT32, value: a }]);
    }
    alignment = a;
  }

  const { planned, dataSize } = planTensors(tensors, alignment);

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(planned.length);
  w.u64(entries.length);
  for (const [key, entry] of entries) {
    const what = `metadata "${key}"`;
    w.string(key);
    const type = checkValueType(entry.type, what);
    w.u32(type);
    writeValue(w, type, entry.value, what, 0);
  }
  for (const t of planned) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(t.offset);
  }
  // A file without tensors has no data section, so nothing to align (as llama.cpp writes vocab-only files).
  if (planned.length > 0) w.zeros((alignment - (w.length % alignment)) % alignment);

  const chunks: Uint8Array[] = [w.result()];
  let zeros: Uint8Array | undefined;
  for (let i = 0; i < planned.length; i++) {
    const t = planned[i];
    if (t.data.length > 0) chunks.push(t.data);
    const end = i + 1 < planned.length ? planned[i + 1].offset : dataSize;
    const pad = end - (t.offset + t.data.length);
    if (pad > 0) {
      zeros ??= new Uint8Array(alignment);
      chunks.push(zeros.subarray(0, pad));
    }
  }
  return chunks;
}

/** encodeGGUF concatenated into one buffer (small files, tests). */
export function writeGGUF(
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: GGUFWriteTensor[],
  opts: GGUFWriteOptions = {},
): Uint8Array {
  const chunks = encodeGGUF(metadata, tensors, opts);
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
