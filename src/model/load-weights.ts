// Map GGUF tensors onto the llama graph's weights and stream them into backend memory.
// Shapes are checked against the hyperparameters before anything is allocated.
import { asWeight, type Backend, type BackendCapabilities, type Tensor, type WeightTensor } from '../backend/backend.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/reader.js';
import { readRange, type ByteSource } from '../io/byte-source.js';
import { dequantize } from '../tensor/dequant.js';
import { GGMLType, typeName } from '../tensor/ggml-types.js';
import { ModelError } from './errors.js';
import type { LayerWeights, LlamaConfig, LlamaWeights } from './llama-graph.js';

/** Vectors (norms, biases) are converted to f32 on load; these are the types we can convert. */
const VECTOR_TYPES = new Set<GGMLType>([GGMLType.F32, GGMLType.F16, GGMLType.BF16]);

interface Plan {
  matrices: { info: GGUFTensorInfo; rows: number; cols: number }[];
  vectors: { info: GGUFTensorInfo; n: number }[];
}

/** Check every tensor the graph needs (names, shapes, types the backend runs) and return what to load. */
export function planWeights(file: GGUFFile, c: LlamaConfig, backend: { name: string; capabilities: BackendCapabilities }): { plan: Plan; bytes: number; tiedOutput: boolean } {
  const plan: Plan = { matrices: [], vectors: [] };
  const tensor = (name: string) => {
    const t = file.tensorsByName.get(name);
    if (!t) throw new ModelError('MISSING_TENSOR', `the model has no tensor "${name}"`);
    return t;
  };
  const matrix = (name: string, cols: number, rows: number) => {
    const info = tensor(name);
    if (info.dims.length !== 2 || info.dims[0] !== cols || info.dims[1] !== rows) {
      throw new ModelError('BAD_TENSOR_SHAPE', `tensor "${name}" has shape [${info.dims.join(', ')}], expected [${cols}, ${rows}]`);
    }
    if (!backend.capabilities.weightTypes.has(info.type)) {
      throw new ModelError('UNSUPPORTED_TENSOR_TYPE', `tensor "${name}" has type ${typeName(info.type)}, which the ${backend.name} backend has no kernel for`);
    }
    plan.matrices.push({ info, rows, cols });
  };
  const vector = (name: string, n: number, optional = false) => {
    const info = file.tensorsByName.get(name);
    if (!info) {
      if (optional) return;
      throw new ModelError('MISSING_TENSOR', `the model has no tensor "${name}"`);
    }
    if (info.nElements !== n || info.dims[0] !== n) {
      throw new ModelError('BAD_TENSOR_SHAPE', `tensor "${name}" has shape [${info.dims.join(', ')}], expected [${n}]`);
    }
    if (!VECTOR_TYPES.has(info.type)) {
      throw new ModelError('UNSUPPORTED_TENSOR_TYPE', `tensor "${name}" has type ${typeName(info.type)}; norms and biases must be F32, F16 or BF16`);
    }
    plan.vectors.push({ info, n });
  };

  const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
  matrix('token_embd.weight', c.dim, c.vocabSize);
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    vector(`${p}attn_norm.weight`, c.dim);
    matrix(`${p}attn_q.weight`, c.dim, qDim);
    matrix(`${p}attn_k.weight`, c.dim, kvDim);
    matrix(`${p}attn_v.weight`, c.dim, kvDim);
    matrix(`${p}attn_output.weight`, qDim, c.dim);
    vector(`${p}attn_q.bias`, qDim, true);
    vector(`${p}attn_k.bias`, kvDim, true);
    vector(`${p}attn_v.bias`, kvDim, true);
    vector(`${p}ffn_norm.weight`, c.dim);
    matrix(`${p}ffn_gate.weight`, c.dim, c.ffnDim);
    matrix(`${p}ffn_up.weight`, c.dim, c.ffnDim);
    matrix(`${p}ffn_down.weight`, c.ffnDim, c.dim);
  }
  vector('output_norm.weight', c.dim);
  const tiedOutput = !file.tensorsByName.has('output.weight');
  if (!tiedOutput) matrix('output.weight', c.dim, c.vocabSize);

  const bytes = plan.matrices.reduce((s, m) => s + m.info.nBytes + 64, 0) + plan.vectors.reduce((s, v) => s + 4 * v.n + 64, 0);
  return { plan, bytes, tiedOutput };
}

/** Allocate and fill every planned tensor; `onProgress` gets (bytes read, total bytes). */
export async function loadWeights(
  source: ByteSource,
  file: GGUFFile,
  c: LlamaConfig,
  backend: Backend,
  onProgress?: (loaded: number, total: number) => void,
): Promise<LlamaWeights> {
  const { plan, tiedOutput } = planWeights(file, c, backend);
  // Allocate everything first: a model that does not fit fails before any bytes are read.
  const matrixPtr = new Map<string, WeightTensor>();
  for (const m of plan.matrices) matrixPtr.set(m.info.name, asWeight(backend.allocate(m.info.type, [m.cols, m.rows]), m.cols, m.rows));
  const vectorPtr = new Map<string, Tensor>();
  for (const v of plan.vectors) vectorPtr.set(v.info.name, backend.allocate(GGMLType.F32, [v.n]));

  const total = plan.matrices.reduce((s, m) => s + m.info.nBytes, 0) + plan.vectors.reduce((s, v) => s + v.info.nBytes, 0);
  let loaded = 0;
  for (const m of plan.matrices) {
    // The backend streams it in (the WASM one straight into its memory: no staging copy).
    await backend.uploadFrom(matrixPtr.get(m.info.name)!, source, m.info.fileOffset);
    loaded += m.info.nBytes;
    onProgress?.(loaded, total);
  }
  for (const v of plan.vectors) {
    const raw = await readRange(source, v.info.fileOffset, v.info.nBytes);
    backend.upload(vectorPtr.get(v.info.name)!, dequantize(v.info.type, raw, v.n));
    loaded += v.info.nBytes;
    onProgress?.(loaded, total);
  }

  const M = (name: string) => matrixPtr.get(name)!;
  const V = (name: string) => vectorPtr.get(name);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      attnNorm: V(`${p}attn_norm.weight`)!,
      wq: M(`${p}attn_q.weight`), wk: M(`${p}attn_k.weight`), wv: M(`${p}attn_v.weight`), wo: M(`${p}attn_output.weight`),
      bq: V(`${p}attn_q.bias`), bk: V(`${p}attn_k.bias`), bv: V(`${p}attn_v.bias`),
      ffnNorm: V(`${p}ffn_norm.weight`)!,
      wGate: M(`${p}ffn_gate.weight`), wUp: M(`${p}ffn_up.weight`), wDown: M(`${p}ffn_down.weight`),
    });
  }
  const tokenEmbedding = M('token_embd.weight');
  return {
    tokenEmbedding,
    layers,
    outputNorm: V('output_norm.weight')!,
    output: tiedOutput ? tokenEmbedding : M('output.weight'),
  };
}
