// GGUF v2/v3 reader. The file is untrusted: every count, length, type id, dimension, offset and
// size is checked against the bytes that actually remain before anything is allocated or read.
// Only the header is read here; tensor data is read later straight into its destination.
import { readRange, type ByteSource } from '../io/byte-source.js';
import { GGMLType, typeTraits } from '../tensor/ggml-types.js';
import { FIXED_VALUE_BYTES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFValueType } from './constants.js';
import { GGUFError } from './errors.js';

export type TypedNumberArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/** An array value: numbers come back as the matching typed array, strings and bools as plain arrays. */
export interface GGUFArray {
  readonly elementType: GGUFValueType;
  readonly values: TypedNumberArray | string[] | boolean[] | GGUFArray[];
}

/** 64-bit integers are numbers when they fit in 2^53, bigints otherwise. */
export type GGUFValue = number | bigint | boolean | string | GGUFArray;

export interface GGUFEntry {
  readonly type: GGUFValueType;
  readonly value: GGUFValue;
}

export interface GGUFTensorInfo {
  readonly name: string;
  /** ggml order: dims[0] is the row length (contiguous). */
  readonly dims: readonly number[];
  readonly type: GGMLType;
  /** Offset relative to the start of the data section. */
  readonly offset: number;
  /** Absolute offset in the file. */
  readonly fileOffset: number;
  readonly nElements: number;
  readonly nBytes: number;
}

export interface GGUFFile {
  readonly version: number;
  readonly alignment: number;
  readonly metadata: ReadonlyMap<string, GGUFEntry>;
  readonly tensors: readonly GGUFTensorInfo[];
  readonly tensorsByName: ReadonlyMap<string, GGUFTensorInfo>;
  /** Absolute offset of the (aligned) tensor data section. */
  readonly dataOffset: number;
  readonly fileSize: number;
}

const MAX_NESTING = 4;
const MAX_DIMS = 4;
const MAX_TENSOR_NAME = 63; // ggml's GGML_MAX_NAME (64) including the terminating NUL
const CHUNK = 1 << 18;
const utf8Encoder = new TextEncoder();
// ignoreBOM: a default TextDecoder strips a leading U+FEFF, which would turn a real token such as
// Llama 2's "\uFEFF" into an empty string.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** Sequential reader over the header, fetching the source in chunks as it goes. */
class HeaderCursor {
  private buf: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly source: ByteSource) {}

  get remaining(): number {
    return this.source.size - this.pos;
  }

  /** Make sure n bytes at pos are buffered, or fail naming what was being read. */
  async need(n: number, what: string): Promise<void> {
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    if (n > this.remaining) {
      throw new GGUFError('TRUNCATED', `file ends while reading ${what}: need ${n} bytes at offset ${this.pos}, file size ${this.source.size}`);
    }
    const length = Math.min(Math.max(n, CHUNK), this.remaining);
    this.buf = await readRange(this.source, this.pos, length);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    return this.view.getUint32(this.at(4), true);
  }

  /** A u64 that must be a safe integer (counts, lengths, dims, offsets). */
  async u64(what: string): Promise<number> {
    await this.need(8, what);
    const v = this.view.getBigUint64(this.at(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GGUFError('COUNT_TOO_LARGE', `${what} is ${v}, larger than the file could hold (${this.source.size} bytes)`);
    }
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const length = await this.u64(`${what} length`);
    if (length > this.remaining) {
      throw new GGUFError('STRING_TOO_LONG', `${what} claims ${length} bytes but only ${this.remaining} remain in the file`);
    }
    await this.need(length, what);
    const o = this.at(length);
    return utf8.decode(this.buf.subarray(o, o + length));
  }

  /** Read `count` fixed-size elements into a typed array (copied, little-endian). */
  async fixedArray(type: GGUFValueType, count: number, what: string): Promise<TypedNumberArray | boolean[]> {
    const size = FIXED_VALUE_BYTES[type]!;
    const bytes = count * size;
    await this.need(bytes, what);
    const o = this.at(bytes);
    const raw = this.buf.slice(o, o + bytes); // aligned copy
    switch (type) {
      case GGUFValueType.UINT8: return raw;
      case GGUFValueType.INT8: return new Int8Array(raw.buffer);
      case GGUFValueType.UINT16: return new Uint16Array(raw.buffer);
      case GGUFValueType.INT16: return new Int16Array(raw.buffer);
      case GGUFValueType.UINT32: return new Uint32Array(raw.buffer);
      case GGUFValueType.INT32: return new Int32Array(raw.buffer);
      case GGUFValueType.FLOAT32: return new Float32Array(raw.buffer);
      case GGUFValueType.FLOAT64: return new Float64Array(raw.buffer);
      case GGUFValueType.UINT64: return new BigUint64Array(raw.buffer);
      case GGUFValueType.INT64: return new BigInt64Array(raw.buffer);
      case GGUFValueType.BOOL: {
        // Same rule as a scalar bool: any byte but 0 or 1 is corruption, not "true".
        const bad = raw.findIndex((b) => b > 1);
        if (bad >= 0) throw new GGUFError('INVALID_VALUE', `${what}[${bad}]: bool byte is ${raw[bad]}, expected 0 or 1`);
        return Array.from(raw, (b) => b === 1);
      }
    }
    throw new GGUFError('UNKNOWN_VALUE_TYPE', `${what}: value type ${type}`);
  }

  async scalar(type: GGUFValueType, what: string): Promise<number | bigint | boolean> {
    const size = FIXED_VALUE_BYTES[type]!;
    await this.need(size, what);
    const o = this.at(size);
    const v = this.view;
    switch (type) {
      case GGUFValueType.UINT8: return v.getUint8(o);
      case GGUFValueType.INT8: return v.getInt8(o);
      case GGUFValueType.UINT16: return v.getUint16(o, true);
      case GGUFValueType.INT16: return v.getInt16(o, true);
      case GGUFValueType.UINT32: return v.getUint32(o, true);
      case GGUFValueType.INT32: return v.getInt32(o, true);
      case GGUFValueType.FLOAT32: return v.getFloat32(o, true);
      case GGUFValueType.FLOAT64: return v.getFloat64(o, true);
      case GGUFValueType.BOOL: {
        const b = v.getUint8(o);
        if (b > 1) throw new GGUFError('INVALID_VALUE', `${what}: bool byte is ${b}, expected 0 or 1`);
        return b === 1;
      }
      case GGUFValueType.UINT64: return narrow(v.getBigUint64(o, true));
      case GGUFValueType.INT64: return narrow(v.getBigInt64(o, true));
    }
    throw new GGUFError('UNKNOWN_VALUE_TYPE', `${what}: value type ${type}`);
  }
}

function narrow(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function checkValueType(type: number, what: string): GGUFValueType {
  if (!Number.isInteger(type) || type < 0 || type > GGUFValueType.FLOAT64) {
    throw new GGUFError('UNKNOWN_VALUE_TYPE', `${what} has unknown value type ${type}`);
  }
  return type as GGUFValueType;
}

/** Smallest encoded size of one element of this type, used to bound counts before allocating. */
function minElementBytes(type: GGUFValueType): number {
  if (type === GGUFValueType.STRING) return 8;
  if (type === GGUFValueType.ARRAY) return 12;
  return FIXED_VALUE_BYTES[type]!;
}

async function readValue(cur: HeaderCursor, type: GGUFValueType, what: string, depth: number): Promise<GGUFValue> {
  if (type === GGUFValueType.STRING) return cur.string(what);
  if (type !== GGUFValueType.ARRAY) return cur.scalar(type, what);
  if (depth >= MAX_NESTING) throw new GGUFError('NESTING_TOO_DEEP', `${what}: arrays nested deeper than ${MAX_NESTING}`);
  const elementType = checkValueType(await cur.u32(`${what} element type`), `${what} element`);
  const count = await cur.u64(`${what} count`);
  if (count * minElementBytes(elementType) > cur.remaining) {
    throw new GGUFError('COUNT_TOO_LARGE', `${what} claims ${count} elements but only ${cur.remaining} bytes remain`);
  }
  if (elementType === GGUFValueType.STRING) {
    const values: string[] = new Array(count);
    for (let i = 0; i < count; i++) values[i] = await cur.string(`${what}[${i}]`);
    return { elementType, values };
  }
  if (elementType === GGUFValueType.ARRAY) {
    const values: GGUFArray[] = new Array(count);
    for (let i = 0; i < count; i++) {
      values[i] = (await readValue(cur, GGUFValueType.ARRAY, `${what}[${i}]`, depth + 1)) as GGUFArray;
    }
    return { elementType, values };
  }
  const values = await cur.fixedArray(elementType, count, what);
  if (elementType === GGUFValueType.BOOL && (values as boolean[]).length !== count) throw new GGUFError('TRUNCATED', what);
  return { elementType, values } as GGUFArray;
}

function checkedProduct(dims: number[], name: string): number {
  let n = 1;
  for (const d of dims) {
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new GGUFError('ELEMENT_OVERFLOW', `tensor "${name}": element count of dims [${dims.join(', ')}] overflows`);
    }
  }
  return n;
}

/** Parse the GGUF header (metadata and tensor infos) from any byte source. */
export async function readGGUF(source: ByteSource): Promise<GGUFFile> {
  const cur = new HeaderCursor(source);
  const magic = await cur.u32('magic');
  if (magic !== GGUF_MAGIC) {
    throw new GGUFError('BAD_MAGIC', `${source.name}: not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF")`);
  }
  const version = await cur.u32('version');
  if (version === 0x02000000 || version === 0x03000000) {
    throw new GGUFError('BIG_ENDIAN', `${source.name}: big-endian GGUF files are not supported`);
  }
  if (version !== 2 && version !== 3) {
    throw new GGUFError('UNSUPPORTED_VERSION', `${source.name}: GGUF version ${version} is not supported (2 and 3 are)`);
  }
  const tensorCount = await cur.u64('tensor count');
  const kvCount = await cur.u64('metadata count');
  // Bound counts by the smallest possible encoding of each entry before looping over them.
  if (kvCount * 13 > cur.remaining) {
    throw new GGUFError('COUNT_TOO_LARGE', `metadata count ${kvCount} cannot fit in the ${cur.remaining} bytes that remain`);
  }
  if (tensorCount * 32 > cur.remaining) {
    throw new GGUFError('COUNT_TOO_LARGE', `tensor count ${tensorCount} cannot fit in the ${cur.remaining} bytes that remain`);
  }

  const metadata = new Map<string, GGUFEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = await cur.string(`metadata key #${i}`);
    if (metadata.has(key)) throw new GGUFError('DUPLICATE_KEY', `metadata key "${key}" appears twice`);
    const type = checkValueType(await cur.u32(`type of "${key}"`), `metadata "${key}"`);
    metadata.set(key, { type, value: await readValue(cur, type, `metadata "${key}"`, 0) });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignEntry = metadata.get('general.alignment');
  if (alignEntry) {
    const a = alignEntry.value;
    if (alignEntry.type !== GGUFValueType.UINT32 || typeof a !== 'number' || a === 0 || (a & (a - 1)) !== 0) {
      throw new GGUFError('BAD_ALIGNMENT', `general.alignment must be a non-zero power of two u32, got ${String(a)}`);
    }
    alignment = a;
  }

  const infos: Omit<GGUFTensorInfo, 'fileOffset'>[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = await cur.string(`tensor #${i} name`);
    // ggml's limit is in bytes: count UTF-8 bytes, not UTF-16 code units.
    const nameBytes = utf8Encoder.encode(name).length;
    if (nameBytes > MAX_TENSOR_NAME) {
      throw new GGUFError('NAME_TOO_LONG', `tensor #${i} name is ${nameBytes} bytes, the limit is ${MAX_TENSOR_NAME}`);
    }
    if (names.has(name)) throw new GGUFError('DUPLICATE_TENSOR', `tensor "${name}" appears twice`);
    names.add(name);
    const nDims = await cur.u32(`tensor "${name}" n_dims`);
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw new GGUFError('TOO_MANY_DIMS', `tensor "${name}" has ${nDims} dimensions (1 to ${MAX_DIMS} allowed)`);
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const size = await cur.u64(`tensor "${name}" dim ${d}`);
      if (size > source.size * 8) {
        throw new GGUFError('BAD_DIMENSION', `tensor "${name}" dim ${d} is ${size}, larger than the file could hold`);
      }
      dims.push(size);
    }
    const typeId = await cur.u32(`tensor "${name}" type`);
    const traits = typeTraits(typeId);
    if (!traits) throw new GGUFError('UNKNOWN_TENSOR_TYPE', `tensor "${name}" has unknown ggml type id ${typeId}`);
    const offset = await cur.u64(`tensor "${name}" offset`);
    const nElements = checkedProduct(dims, name);
    if (dims[0] % traits.blockSize !== 0) {
      throw new GGUFError('BAD_ROW_SIZE', `tensor "${name}" row length ${dims[0]} is not a multiple of ${traits.name}'s block size ${traits.blockSize}`);
    }
    if (offset % alignment !== 0) {
      throw new GGUFError('MISALIGNED_TENSOR', `tensor "${name}" offset ${offset} is not a multiple of the alignment ${alignment}`);
    }
    const nBytes = (nElements / traits.blockSize) * traits.blockBytes;
    infos.push({ name, dims, type: typeId as GGMLType, offset, nElements, nBytes });
  }

  const dataOffset = Math.ceil(cur.pos / alignment) * alignment;
  const tensors: GGUFTensorInfo[] = infos.map((t) => ({ ...t, fileOffset: dataOffset + t.offset }));
  for (const t of tensors) {
    if (t.fileOffset + t.nBytes > source.size) {
      throw new GGUFError('TENSOR_OUT_OF_BOUNDS',
        `${source.name}: tensor "${t.name}" spans bytes ${t.fileOffset}..${t.fileOffset + t.nBytes} but the file has ${source.size}`);
    }
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1], next = sorted[i];
    if (next.offset < prev.offset + prev.nBytes) {
      throw new GGUFError('TENSORS_OVERLAP',
        `tensor "${next.name}" at data offset ${next.offset} overlaps "${prev.name}" (${prev.offset}..${prev.offset + prev.nBytes})`);
    }
  }

  return {
    version,
    alignment,
    metadata,
    tensors,
    tensorsByName: new Map(tensors.map((t) => [t.name, t])),
    dataOffset,
    fileSize: source.size,
  };
}
