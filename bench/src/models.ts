// The benchmark models: random-weight llama GGUF files of real shapes (weights N(0, 0.02), norms 1, the Llama 2
// 32000-token vocabulary), written by our own synthetic writer on first use and cached under bench/.cache/models.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeSyntheticLlama } from '../../test/helpers/synthetic.js';
import { fileSource } from '../../src/runtime/file-source.js';
import { readGGUF } from '../../src/gguf/reader.js';
import { GGMLType, typeByName, typeName } from '../../src/tensor/ggml-types.js';
import { MODELS_DIR } from './paths.js';

export interface ModelShape {
  name: string;
  like: string;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffnDim: number;
  types: string[];
  /** Build quantized matrices from a pool of random blocks (see SyntheticLlamaOptions.distinctBlocks). */
  distinctBlocks?: number;
  /** Pad the Llama 2 vocabulary with unused tokens to this size (the shape's own vocabulary size). */
  vocabSize?: number;
  /** Only when asked for by name (`--models`): too big to write and run by default. */
  onRequest?: boolean;
}

export const MODELS: ModelShape[] = [
  { name: 's15m', like: 'stories15M', dim: 288, nLayers: 6, nHeads: 6, nKvHeads: 6, ffnDim: 768, types: ['F32', 'Q8_0', 'Q4_0'] },
  // The K-quant reference quantizer manages ~1M values/s: the bigger shapes use a block pool.
  { name: 'm135', like: 'SmolLM-135M', dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536, types: ['Q8_0', 'Q4_0', 'Q4_K'], distinctBlocks: 4096 },
  { name: 'l1b', like: 'TinyLlama-1.1B', dim: 2048, nLayers: 22, nHeads: 32, nKvHeads: 4, ffnDim: 5632, types: ['Q4_0', 'Q8_0', 'Q4_K'], distinctBlocks: 4096 },
  // The GPU table's big model: 4.6 GB in Q4_K, past wasm32's 4 GiB, so only the WebGPU backend and llama.cpp load it.
  {
    name: 'l8b', like: 'Llama-3-8B', dim: 4096, nLayers: 32, nHeads: 32, nKvHeads: 8, ffnDim: 14336, types: ['Q4_K'],
    distinctBlocks: 4096, vocabSize: 128256, onRequest: true,
  },
];

/** Bump when the way models are written changes, so stale cached files are not measured. */
const VERSION = 1;
const SEED = 1;

export function modelFileName(model: ModelShape, type: string): string {
  return `${model.name}-${type.toLowerCase()}-s${SEED}-v${VERSION}.gguf`;
}

/** The cached GGUF path, writing it first if it is not there (to a temporary name, renamed when complete). */
export async function ensureModel(model: ModelShape, type: string, log: (s: string) => void): Promise<string> {
  mkdirSync(MODELS_DIR, { recursive: true });
  const path = join(MODELS_DIR, modelFileName(model, type));
  if (existsSync(path)) return path;
  const t = typeByName(type);
  if (!t) throw new Error(`unknown tensor type ${type}`);
  const tmp = `${path}.partial`;
  const t0 = performance.now();
  log(`writing ${model.name} ${type} (${model.like}-shaped, random weights) to ${path} ...`);
  try {
    const { bytes } = await writeSyntheticLlama(tmp, {
      dim: model.dim, nLayers: model.nLayers, nHeads: model.nHeads, nKvHeads: model.nKvHeads, ffnDim: model.ffnDim,
      vocab: 'llama2', ...(model.vocabSize ? { padVocabTo: model.vocabSize } : {}), type: t.type, seed: SEED, contextLength: 2048,
      ...(model.distinctBlocks && t.type !== GGMLType.F32 ? { distinctBlocks: model.distinctBlocks } : {}),
    });
    renameSync(tmp, path);
    log(`  ${(bytes / 2 ** 20).toFixed(1)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return path;
}

export interface ModelBytes {
  fileBytes: number;
  /**
   * Bytes of weights one decode step reads: every tensor once, except the token embedding, of which one row is
   * read. (The KV cache, tiny at these context lengths, is left out.)
   */
  bytesPerToken: number;
  /** What the types of the tensors are, e.g. "Q4_K 162, Q5_0 30, F32 61". */
  typeMix: string;
}

export async function modelBytes(path: string): Promise<ModelBytes> {
  const source = await fileSource(path);
  try {
    const file = await readGGUF(source);
    let perToken = 0;
    const mix = new Map<string, number>();
    for (const t of file.tensors) {
      perToken += t.name === 'token_embd.weight' ? t.nBytes / t.dims[1]! : t.nBytes;
      const name = typeName(t.type);
      mix.set(name, (mix.get(name) ?? 0) + 1);
    }
    const { size } = source;
    return { fileBytes: size, bytesPerToken: perToken, typeMix: [...mix].map(([k, v]) => `${k} ${v}`).join(', ') };
  } finally {
    await source.close();
  }
}
