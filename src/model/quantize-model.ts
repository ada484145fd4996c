// Whole-model (re)quantization, the equivalent of `llama-quantize --pure`: every 2-D weight matrix
// goes to one target type, norms and other 1-D tensors are copied as they are, and all metadata
// (tokenizer included) is carried over with general.file_type / general.quantization_version
// updated. Tensors are converted and written one at a time, so peak memory is one tensor's source
// bytes, its f32 copy and its encoded result, whatever the model size.
//
// Also home of streamGGUF, the GGUF writer for tensors whose bytes are produced on demand (used
// here and by the synthetic model generator).
import { WasmforgeError } from '../errors.js';
import { GGUFValueType } from '../gguf/constants.js';
import type { GGUFEntry, GGUFFile } from '../gguf/reader.js';
import { readGGUF } from '../gguf/reader.js';
import { encodeGGUF, type GGUFWriteOptions, type GGUFWriteTensor } from '../gguf/writer.js';
import { readRange, type ByteSource } from '../io/byte-source.js';
import { canDequantize, dequantize } from '../tensor/dequant.js';
import { GGMLType, typeName, typeTraits } from '../tensor/ggml-types.js';
import { canQuantize, quantize } from '../tensor/quantize.js';

export type QuantizeModelErrorCode = 'UNSUPPORTED_TARGET' | 'UNSUPPORTED_SOURCE_TYPE' | 'BAD_TENSOR_DATA';

export class QuantizeModelError extends WasmforgeError<QuantizeModelErrorCode> {
  override readonly name = 'QuantizeModelError';
}

/** The targets `quantizeModel` offers, by their llama-quantize names (lower case). */
export const QUANTIZE_TARGETS: ReadonlyMap<string, GGMLType> = new Map([
  ['f32', GGMLType.F32],
  ['f16', GGMLType.F16],
  ['bf16', GGMLType.BF16],
  ['q8_0', GGMLType.Q8_0],
  ['q4_0', GGMLType.Q4_0],
  ['q4_1', GGMLType.Q4_1],
  ['q5_0', GGMLType.Q5_0],
  ['q5_1', GGMLType.Q5_1],
  ['q2_k', GGMLType.Q2_K],
  ['q3_k', GGMLType.Q3_K],
  ['q4_k', GGMLType.Q4_K],
  ['q5_k', GGMLType.Q5_K],
  ['q6_k', GGMLType.Q6_K],
  ['iq4_nl', GGMLType.IQ4_NL],
  ['mxfp4', GGMLType.MXFP4],
]);

/**
 * llama.cpp's LLAMA_FTYPE for a model whose matrices are all of one type. For K-quants the "_S"
 * variants are used: they are llama.cpp's "mostly this type" mixes, closest to a pure file.
 */
const LLAMA_FTYPE = new Map<GGMLType, number>([
  [GGMLType.F32, 0], // ALL_F32
  [GGMLType.F16, 1], // MOSTLY_F16
  [GGMLType.Q4_0, 2],
  [GGMLType.Q4_1, 3],
  [GGMLType.Q8_0, 7],
  [GGMLType.Q5_0, 8],
  [GGMLType.Q5_1, 9],
  [GGMLType.Q2_K, 10],
  [GGMLType.Q3_K, 11], // Q3_K_S
  [GGMLType.Q4_K, 14], // Q4_K_S
  [GGMLType.Q5_K, 16], // Q5_K_S
  [GGMLType.Q6_K, 18],
  [GGMLType.IQ4_NL, 25],
  [GGMLType.BF16, 32],
  [GGMLType.MXFP4, 38], // MOSTLY_MXFP4_MOE, the only MXFP4 ftype llama.cpp has
]);

/** ggml's GGML_QNT_VERSION, written by llama.cpp into every quantized file. */
export const GGML_QNT_VERSION = 2;

export function llamaFileType(type: GGMLType): number {
  const ftype = LLAMA_FTYPE.get(type);
  if (ftype === undefined) throw new QuantizeModelError('UNSUPPORTED_TARGET', `no llama.cpp file type for ${typeName(type)}`);
  return ftype;
}

/**
 * Whether llama-quantize would convert this tensor: weights (name ends in "weight") of 2 or more
 * dims, except norms, MoE router weights and the few small 2-D tensors it leaves alone.
 */
export function isQuantizableWeight(name: string, dims: readonly number[]): boolean {
  if (!name.endsWith('weight') || dims.length < 2) return false;
  const keep = ['_norm.weight', 'ffn_gate_inp.weight', 'ssm_conv1d.weight', 'attn_rel_b.weight', '.position_embd.'];
  if (keep.some((k) => name.includes(k))) return false;
  return name !== 'position_embd.weight' && name !== 'token_types.weight';
}

/** llama.cpp's fallback (llama_tensor_get_type) for rows that do not fill a K-quant's 256-blocks. */
const K_FALLBACK = new Map<GGMLType, GGMLType>([
  [GGMLType.Q2_K, GGMLType.IQ4_NL],
  [GGMLType.Q3_K, GGMLType.IQ4_NL],
  [GGMLType.Q4_K, GGMLType.Q5_0],
  [GGMLType.Q5_K, GGMLType.Q5_1],
  [GGMLType.Q6_K, GGMLType.Q8_0],
]);

const FLOAT_TYPES = new Set([GGMLType.F32, GGMLType.F16, GGMLType.BF16]);

/**
 * The type a weight matrix with rows of `rowLength` gets when the target is `target`: the target
 * if its blocks fit the rows; for K-quants llama.cpp's fallback (Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0,
 * Q2_K/Q3_K→IQ4_NL), else F16. llama.cpp refuses a 32-block target that does not fit; here such a
 * tensor stays as it is when it is already float (so an F32 ffn_down of 172 columns stays F32, as
 * in gguf-py's files), else becomes F16.
 */
export function tensorTypeFor(target: GGMLType, rowLength: number, sourceType: GGMLType): { type: GGMLType; fallback: boolean } {
  const fits = (t: GGMLType): boolean => rowLength % typeTraits(t)!.blockSize === 0;
  if (fits(target)) return { type: target, fallback: false };
  const next = K_FALLBACK.get(target);
  if (next !== undefined) return { type: fits(next) ? next : GGMLType.F16, fallback: true };
  return { type: FLOAT_TYPES.has(sourceType) ? sourceType : GGMLType.F16, fallback: true };
}

export interface TensorPlan {
  readonly name: string;
  readonly dims: readonly number[];
  readonly from: GGMLType;
  readonly to: GGMLType;
  /** converted: re-encoded; copied: bytes unchanged (not a weight matrix, or already the right type). */
  readonly action: 'converted' | 'copied';
  /** The target's blocks did not fit the rows, so `to` is a fallback type. */
  readonly fallback: boolean;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

export interface QuantizeModelOptions {
  /** Type for token_embd.weight (default: the target, subject to the same fallback). */
  tokenEmbeddingType?: GGMLType;
  /** Type for output.weight (default: the target, subject to the same fallback). */
  outputType?: GGMLType;
  /**
   * Type for float tensors that are not weight matrices (norms, biases, rope_freqs); default: as they
   * are. The Hugging Face converter writes them F32 whatever the source dtype.
   */
  vectorType?: GGMLType;
}

function tensorBytes(type: GGMLType, dims: readonly number[]): number {
  const { blockSize, blockBytes } = typeTraits(type)!;
  return (dims.reduce((a, b) => a * b, 1) / blockSize) * blockBytes;
}

function checkTarget(type: GGMLType, what: string): void {
  if (!LLAMA_FTYPE.has(type) || !canQuantize(type)) {
    throw new QuantizeModelError('UNSUPPORTED_TARGET', `${what} ${typeName(type)} is not a supported target (one of ${[...QUANTIZE_TARGETS.keys()].join(', ')})`);
  }
}

/** What `quantizeModel` will do to each tensor, without touching tensor data. */
export function planQuantization(gguf: GGUFFile, target: GGMLType, opts: QuantizeModelOptions = {}): TensorPlan[] {
  checkTarget(target, 'target type');
  if (opts.tokenEmbeddingType !== undefined) checkTarget(opts.tokenEmbeddingType, 'token embedding type');
  if (opts.outputType !== undefined) checkTarget(opts.outputType, 'output type');
  if (opts.vectorType !== undefined && !FLOAT_TYPES.has(opts.vectorType)) {
    throw new QuantizeModelError('UNSUPPORTED_TARGET', `vector type ${typeName(opts.vectorType)} must be F32, F16 or BF16`);
  }
  return gguf.tensors.map((t) => {
    let to = t.type;
    let fallback = false;
    if (isQuantizableWeight(t.name, t.dims)) {
      const want =
        t.name === 'token_embd.weight' ? (opts.tokenEmbeddingType ?? target) : t.name === 'output.weight' ? (opts.outputType ?? target) : target;
      ({ type: to, fallback } = tensorTypeFor(want, t.dims[0], t.type));
    } else if (opts.vectorType !== undefined && FLOAT_TYPES.has(t.type)) {
      to = opts.vectorType;
    }
    if (to !== t.type && !canDequantize(t.type)) {
      throw new QuantizeModelError('UNSUPPORTED_SOURCE_TYPE', `tensor "${t.name}" is ${typeName(t.type)}, which cannot be dequantized here`);
    }
    return {
      name: t.name,
      dims: t.dims,
      from: t.type,
      to,
      action: to === t.type ? 'copied' : 'converted',
      fallback,
      bytesBefore: t.nBytes,
      bytesAfter: tensorBytes(to, t.dims),
    };
  });
}

const BLOCK_TYPES_OK = (t: GGMLType): boolean => typeTraits(t)!.blockSize > 1;

/**
 * The input's metadata in its order, with general.file_type set for the target and
 * general.quantization_version set to 2 when any tensor is block-quantized (removed otherwise).
 */
export function quantizedMetadata(metadata: ReadonlyMap<string, GGUFEntry>, target: GGMLType, outTypes: Iterable<GGMLType>): [string, GGUFEntry][] {
  const quantized = [...outTypes].some(BLOCK_TYPES_OK);
  const out: [string, GGUFEntry][] = [];
  for (const [k, e] of metadata) {
    if (k === 'general.quantization_version') continue;
    if (k === 'general.file_type') continue;
    out.push([k, e]);
  }
  out.push(['general.file_type', { type: GGUFValueType.UINT32, value: llamaFileType(target) }]);
  if (quantized) out.push(['general.quantization_version', { type: GGUFValueType.UINT32, value: GGML_QNT_VERSION }]);
  return out;
}

/** A tensor to be written whose bytes are produced when the writer reaches it. */
export interface LazyTensor {
  readonly name: string;
  /** ggml order: dims[0] is the row length. */
  readonly dims: readonly number[];
  readonly type: GGMLType;
  /** The encoded bytes (exactly the size dims and type imply); called once, in file order. */
  data(): Uint8Array | Promise<Uint8Array>;
}

/**
 * Stream a GGUF file: the header is planned (and validated) by encodeGGUF from the tensors' shapes
 * alone, then each tensor's data() is called in order and handed to `write` with its padding, so
 * only one tensor's bytes exist at a time. Returns the number of bytes written.
 */
export async function streamGGUF(
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: readonly LazyTensor[],
  write: (chunk: Uint8Array) => Promise<void> | void,
  opts: GGUFWriteOptions = {},
): Promise<number> {
  const sizes = tensors.map((t) => {
    if (!typeTraits(t.type)) throw new QuantizeModelError('BAD_TENSOR_DATA', `tensor "${t.name}" has unknown ggml type ${t.type}`);
    return tensorBytes(t.type, t.dims);
  });
  // Stand-ins of the right length let encodeGGUF lay out the file without the data existing. They
  // share one buffer (never read), and each is its own object so the chunks can be matched back.
  const scratch = new ArrayBuffer(Math.max(0, ...sizes.filter(Number.isSafeInteger)));
  const standIns = new Map<Uint8Array, number>();
  const planned: GGUFWriteTensor[] = tensors.map((t, i) => {
    const data = new Uint8Array(scratch, 0, Number.isSafeInteger(sizes[i]) ? sizes[i] : 0);
    standIns.set(data, i);
    return { name: t.name, dims: [...t.dims], type: t.type, data };
  });
  const chunks = encodeGGUF(metadata, planned, opts);
  let next = 0;
  let written = 0;
  const produce = async (i: number): Promise<Uint8Array> => {
    const data = await tensors[i].data();
    if (!(data instanceof Uint8Array) || data.length !== sizes[i]) {
      throw new QuantizeModelError('BAD_TENSOR_DATA', `tensor "${tensors[i].name}" produced ${data?.length} bytes, expected ${sizes[i]}`);
    }
    return data;
  };
  for (const chunk of chunks) {
    const i = standIns.get(chunk);
    if (i === undefined) {
      await write(chunk);
      written += chunk.length;
      continue;
    }
    // Empty tensors have no chunk: still call their data() so producers see every tensor in order.
    while (next < i) await produce(next++);
    const data = await produce(next++);
    await write(data);
    written += data.length;
  }
  while (next < tensors.length) await produce(next++);
  return written;
}

export interface QuantizedModel {
  readonly metadata: [string, GGUFEntry][];
  readonly tensors: LazyTensor[];
  readonly plan: TensorPlan[];
}

/**
 * Plan the quantization of the model in `source` and return its metadata and lazy tensors: each
 * tensor's bytes are read from `source` and converted only when its data() is called. The source
 * must stay open until the tensors are written. `onTensor` is told about each tensor as it is done.
 */
export async function quantizeModel(
  source: ByteSource,
  target: GGMLType,
  opts: QuantizeModelOptions & { onTensor?: OnTensor } = {},
): Promise<QuantizedModel> {
  return quantizeGGUF(await readGGUF(source), source, target, opts);
}

/** Told about each tensor as its bytes are produced: its plan, its index, the milliseconds it took. */
export type OnTensor = (plan: TensorPlan, index: number, ms: number) => void;

/**
 * quantizeModel over a file description already read (a GGUF's, or a Hugging Face directory's from
 * openHFModel): tensor infos whose fileOffset points into `source`.
 */
export function quantizeGGUF(
  gguf: GGUFFile,
  source: ByteSource,
  target: GGMLType,
  opts: QuantizeModelOptions & { onTensor?: OnTensor } = {},
): QuantizedModel {
  const plan = planQuantization(gguf, target, opts);
  const metadata = quantizedMetadata(gguf.metadata, target, plan.map((p) => p.to));
  const tensors: LazyTensor[] = plan.map((p, index) => {
    const info = gguf.tensors[index];
    return {
      name: p.name,
      dims: p.dims,
      type: p.to,
      async data() {
        const start = Date.now();
        const raw = await readRange(source, info.fileOffset, info.nBytes);
        let out = raw;
        if (p.action === 'converted') {
          const f32 = dequantize(p.from, raw, info.nElements);
          out = quantize(p.to, f32, p.dims[0]);
        }
        opts.onTensor?.(p, index, Date.now() - start);
        return out;
      },
    };
  });
  return { metadata, tensors, plan };
}
