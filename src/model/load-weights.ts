// Map GGUF tensors onto an architecture's weights and stream them into backend memory. The
// architecture declares each layer's tensors once (ArchDef.layerTensors); every tensor's name,
// shape and type is checked against the hyperparameters and the backend before anything is
// allocated.
import { asWeight, type Backend, type BackendCapabilities, type Tensor, type WeightTensor } from '../backend/backend.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/reader.js';
import { readRange, type ByteSource } from '../io/byte-source.js';
import { dequantize } from '../tensor/dequant.js';
import { GGMLType, typeName } from '../tensor/ggml-types.js';
import type { ArchDef, LayerWeights } from './arch/arch.js';
import { ModelError } from './errors.js';
import type { ModelConfig, ModelWeights } from './graph.js';

/** Vectors (norms, biases) are converted to f32 on load; these are the types we can convert. */
const VECTOR_TYPES = new Set<GGMLType>([GGMLType.F32, GGMLType.F16, GGMLType.BF16]);

const ROPE_FACTOR_TENSORS = ['rope_freqs.weight', 'rope_factors_short.weight', 'rope_factors_long.weight'] as const;

interface Plan {
  matrices: { info: GGUFTensorInfo; rows: number; cols: number }[];
  vectors: { info: GGUFTensorInfo; n: number }[];
}

/** The GGUF name of a layer tensor: `blk.{l}.{role}.weight`, or `blk.{l}.{role}` for a `.bias` role. */
export function layerTensorName(layer: number, role: string): string {
  return role.endsWith('.bias') ? `blk.${layer}.${role}` : `blk.${layer}.${role}.weight`;
}

/** Check every tensor the graph needs (names, shapes, types the backend runs) and return what to load. */
export function planWeights(
  file: GGUFFile,
  c: ModelConfig,
  arch: ArchDef,
  backend: { name: string; capabilities: BackendCapabilities },
): { plan: Plan; bytes: number; tiedOutput: boolean } {
  const plan: Plan = { matrices: [], vectors: [] };
  /**
   * A matrix [cols, rows] (rows or one of otherRows), or with `experts` the experts' matrices
   * stacked [cols, rows, experts] (loaded as rows x experts rows).
   */
  const matrix = (name: string, cols: number, rows: number, optional = false, experts?: number, otherRows: readonly number[] = []) => {
    const info = file.tensorsByName.get(name);
    if (!info) {
      if (optional) return;
      throw new ModelError('MISSING_TENSOR', `the model has no tensor "${name}"`);
    }
    const shapeWith = (r: number) => (experts === undefined ? [cols, r] : [cols, r, experts]);
    const found = [rows, ...otherRows].find((r) => info.dims.length === shapeWith(r).length && shapeWith(r).every((d, i) => info.dims[i] === d));
    if (found === undefined) {
      const expected = [rows, ...otherRows].map((r) => `[${shapeWith(r).join(', ')}]`).join(' or ');
      throw new ModelError('BAD_TENSOR_SHAPE', `tensor "${name}" has shape [${info.dims.join(', ')}], expected ${expected}`);
    }
    rows = found * (experts ?? 1);
    if (!backend.capabilities.weightTypes.has(info.type)) {
      throw new ModelError('UNSUPPORTED_TENSOR_TYPE', `tensor "${name}" has type ${typeName(info.type)}, which the ${backend.name} backend has no kernel for`);
    }
    plan.matrices.push({ info, rows, cols });
  };
  const vector = (name: string, n: number, optional = false, otherSizes: readonly number[] = []) => {
    const info = file.tensorsByName.get(name);
    if (!info) {
      if (optional) return;
      throw new ModelError('MISSING_TENSOR', `the model has no tensor "${name}"`);
    }
    const found = [n, ...otherSizes].find((size) => info.nElements === size && info.dims[0] === size);
    if (found === undefined) {
      throw new ModelError('BAD_TENSOR_SHAPE', `tensor "${name}" has shape [${info.dims.join(', ')}], expected ${[n, ...otherSizes].map((size) => `[${size}]`).join(' or ')}`);
    }
    n = found;
    if (!VECTOR_TYPES.has(info.type)) {
      throw new ModelError('UNSUPPORTED_TENSOR_TYPE', `tensor "${name}" has type ${typeName(info.type)}; norms and biases must be F32, F16 or BF16`);
    }
    plan.vectors.push({ info, n });
  };

  matrix('token_embd.weight', c.dim, c.vocabSize);
  const decls = arch.layerTensors(c);
  for (let l = 0; l < c.nLayers; l++) {
    for (const d of decls) {
      const name = layerTensorName(l, d.role);
      if (d.kind === 'matrix') matrix(name, d.shape[0]!, d.shape[1]!, d.optional, d.shape[2], d.otherSizes);
      else vector(name, d.shape[0]!, d.optional, d.otherSizes);
    }
  }
  for (let l = 0; l < c.nLayers; l++) {
    const problem = arch.checkLayer?.((role) => file.tensorsByName.has(layerTensorName(l, role)), (role) => file.tensorsByName.get(layerTensorName(l, role))?.dims, c);
    if (problem) throw new ModelError('MISSING_TENSOR', `layer ${l}: ${problem}`);
  }
  for (const d of arch.globalTensors?.(c) ?? []) {
    if (d.kind === 'matrix') matrix(d.role, d.shape[0]!, d.shape[1]!, d.optional);
    else vector(d.role, d.shape[0]!, d.optional);
  }
  if (!arch.encoder) vector('output_norm.weight', c.dim);
  // RoPE frequency factors, wherever a file has them (llama 3's rope_freqs; phi3's LongRoPE pair).
  for (const name of ROPE_FACTOR_TENSORS) vector(name, c.rope.ropeDims / 2, true);
  const tiedOutput = !arch.encoder && !file.tensorsByName.has('output.weight');
  if (!arch.encoder && !tiedOutput) matrix('output.weight', c.dim, c.vocabSize);

  const bytes = plan.matrices.reduce((s, m) => s + m.info.nBytes + 64, 0) + plan.vectors.reduce((s, v) => s + 4 * v.n + 64, 0);
  return { plan, bytes, tiedOutput };
}

/** Allocate and fill every planned tensor; `onProgress` gets (bytes read, total bytes). */
export async function loadWeights(
  source: ByteSource,
  file: GGUFFile,
  c: ModelConfig,
  arch: ArchDef,
  backend: Backend,
  onProgress?: (loaded: number, total: number) => void,
): Promise<ModelWeights> {
  const { plan, tiedOutput } = planWeights(file, c, arch, backend);
  const decls = arch.layerTensors(c);
  // Allocate everything first: a model that does not fit fails before any bytes are read.
  const matrices = new Map<string, WeightTensor>();
  for (const m of plan.matrices) matrices.set(m.info.name, asWeight(backend.allocate(m.info.type, [...m.info.dims], 'weight'), m.cols, m.rows));
  const vectors = new Map<string, Tensor>();
  for (const v of plan.vectors) vectors.set(v.info.name, backend.allocate(GGMLType.F32, [v.n]));

  const total = plan.matrices.reduce((s, m) => s + m.info.nBytes, 0) + plan.vectors.reduce((s, v) => s + v.info.nBytes, 0);
  let loaded = 0;
  for (const m of plan.matrices) {
    // The backend streams it in (the WASM one straight into its memory: no staging copy).
    await backend.uploadFrom(matrices.get(m.info.name)!, source, m.info.fileOffset);
    loaded += m.info.nBytes;
    onProgress?.(loaded, total);
  }
  for (const v of plan.vectors) {
    const raw = await readRange(source, v.info.fileOffset, v.info.nBytes);
    backend.upload(vectors.get(v.info.name)!, dequantize(v.info.type, raw, v.n));
    loaded += v.info.nBytes;
    onProgress?.(loaded, total);
  }

  // Each layer's tensors by role, resolved once: the graph looks them up for every token.
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const byRole = new Map<string, Tensor>();
    for (const d of decls) {
      const t = matrices.get(layerTensorName(l, d.role)) ?? vectors.get(layerTensorName(l, d.role));
      if (t) byRole.set(d.role, t);
    }
    layers.push({
      matrix: (role) => (byRole.get(role) as WeightTensor | undefined) ?? missing(l, role),
      vector: (role) => byRole.get(role) ?? missing(l, role),
      optional: (role) => byRole.get(role),
    });
  }
  const tokenEmbedding = matrices.get('token_embd.weight')!;
  const [fixed, short, long] = ROPE_FACTOR_TENSORS.map((n) => vectors.get(n));
  return {
    tokenEmbedding,
    layers,
    outputNorm: vectors.get('output_norm.weight'),
    output: tiedOutput ? tokenEmbedding : matrices.get('output.weight'),
    globals: new Map((arch.globalTensors?.(c) ?? []).flatMap((d) => {
      const t = matrices.get(d.role) ?? vectors.get(d.role);
      return t ? [[d.role, t] as [string, Tensor]] : [];
    })),
    ropeFactors: fixed || short || long ? { fixed, short, long } : undefined,
  };
}

/** A layer step asked for a tensor its architecture did not declare: a bug in the architecture file. */
function missing(layer: number, role: string): never {
  throw new ModelError('MISSING_TENSOR', `layer ${layer} has no tensor "${role}" (not declared by its architecture, or optional and absent)`);
}
