// safetensors (Hugging Face's tensor format): an 8-byte little-endian header length, a UTF-8 JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then
// the data, offsets relative to its start. The header is untrusted input under the same rules as a
// GGUF file: its length, every dtype, shape and offset are checked against the bytes there are
// before anything else is read, and every problem is a SafetensorsError naming the tensor.
import type { ByteSource } from '../io/byte-source.js';
import { readRange } from '../io/byte-source.js';
import { SafetensorsError } from './errors.js';

/** The format's dtypes and their element sizes in bytes. */
export const SAFETENSORS_DTYPES = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** Row-major, outermost first (as PyTorch writes it; the reverse of ggml's order). */
  readonly shape: readonly number[];
  /** Absolute byte offset in the file, and length. */
  readonly fileOffset: number;
  readonly nBytes: number;
}

export interface SafetensorsFile {
  readonly tensors: readonly SafetensorsTensor[];
  readonly tensorsByName: ReadonlyMap<string, SafetensorsTensor>;
  readonly metadata: ReadonlyMap<string, string>;
  readonly dataOffset: number;
}

/** The format caps the header at 100 MB. */
const MAX_HEADER = 100_000_000;

export async function readSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const name = source.name;
  if (source.size < 8) throw new SafetensorsError('TRUNCATED', `${name}: ${source.size} bytes, shorter than the 8-byte header length`);
  const lenBytes = await readRange(source, 0, 8);
  const view = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const headerLength = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (headerLength < 2 || headerLength > MAX_HEADER) throw new SafetensorsError('BAD_HEADER_LENGTH', `${name}: header length ${headerLength}, expected 2..${MAX_HEADER}`);
  if (8 + headerLength > source.size) throw new SafetensorsError('TRUNCATED', `${name}: the header announces ${headerLength} bytes, the file has ${source.size - 8} after the length`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await readRange(source, 8, headerLength)));
  } catch (err) {
    throw new SafetensorsError('BAD_HEADER', `${name}: the header is not UTF-8 JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError('BAD_HEADER', `${name}: the header must be a JSON object`);
  const dataOffset = 8 + headerLength;
  const dataSize = source.size - dataOffset;
  const metadata = new Map<string, string>();
  const tensors: SafetensorsTensor[] = [];
  for (const [key, entry] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new SafetensorsError('BAD_METADATA', `${name}: __metadata__ must be an object of strings`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new SafetensorsError('BAD_METADATA', `${name}: __metadata__ "${k}" is not a string`);
        metadata.set(k, v);
      }
      continue;
    }
    const where = `${name}: tensor "${key}"`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new SafetensorsError('BAD_HEADER', `${where} must be an object {dtype, shape, data_offsets}`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPES)) throw new SafetensorsError('UNKNOWN_DTYPE', `${where} has dtype ${JSON.stringify(dtype)}, not one of ${Object.keys(SAFETENSORS_DTYPES).join(', ')}`);
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError('BAD_SHAPE', `${where} has shape ${JSON.stringify(shape)}, expected up to 8 non-negative integers`);
    }
    let elements = 1;
    for (const d of shape as number[]) {
      elements *= d;
      if (!Number.isSafeInteger(elements)) throw new SafetensorsError('BAD_SHAPE', `${where}: shape ${JSON.stringify(shape)} has too many elements`);
    }
    const nBytes = elements * SAFETENSORS_DTYPES[dtype as SafetensorsDtype];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError('BAD_OFFSETS', `${where} has data_offsets ${JSON.stringify(offsets)}, expected [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin || end > dataSize) throw new SafetensorsError('BAD_OFFSETS', `${where}: data_offsets [${begin}, ${end}] are not inside the ${dataSize} data bytes`);
    if (end - begin !== nBytes) throw new SafetensorsError('BAD_OFFSETS', `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, its ${dtype} shape ${JSON.stringify(shape)} needs ${nBytes}`);
    tensors.push({ name: key, dtype: dtype as SafetensorsDtype, shape: shape as number[], fileOffset: dataOffset + begin, nBytes });
  }
  // No two tensors may share bytes.
  const sorted = [...tensors].filter((t) => t.nBytes > 0).sort((a, b) => a.fileOffset - b.fileOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!, t = sorted[i]!;
    if (t.fileOffset < prev.fileOffset + prev.nBytes) throw new SafetensorsError('OVERLAP', `${name}: tensors "${prev.name}" and "${t.name}" share bytes`);
  }
  return { tensors, tensorsByName: new Map(tensors.map((t) => [t.name, t])), metadata, dataOffset };
}
