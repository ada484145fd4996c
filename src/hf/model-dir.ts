// A Hugging Face model directory (local, or a base URL read with HTTP Range requests) as the same
// in-memory description a GGUF file gives: llama.cpp's metadata keys (config.ts), GGUF tensor infos
// (tensors.ts) and one virtual byte source over the safetensors files, so hparams, the architecture,
// planWeights and loadWeights run unchanged. Tensor bytes are never staged whole: a plain tensor reads
// straight from its shard into the backend's memory; a permuted one (llama's q/k) a few heads of rows
// at a time.
import { hasNodeFs } from '../backend/wasm/runtime.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/reader.js';
import { ByteSourceError, checkRange, readRange, type ByteSource } from '../io/byte-source.js';
import { openSource } from '../io/open-source.js';
import { log } from '../log.js';
import { ModelError } from '../model/errors.js';
import { readSafetensors, type SafetensorsDtype, type SafetensorsTensor } from '../safetensors/reader.js';
import { GGMLType } from '../tensor/ggml-types.js';
import { readTokenizerConfig, Tokenizer } from '../tokenizer/index.js';
import { ggufMetadataFor, llama3RopeFactors, parseJsonObject, readGenerationConfig, readHFConfig, type HFModelConfig } from './config.js';
import { HFModelError } from './errors.js';
import { mapTensor, permutedSourceRow } from './tensors.js';

/** Where a model directory's files are: `open(name)` fails with ByteSourceError NOT_FOUND for a missing one. */
export interface HFDirectory {
  readonly name: string;
  open(file: string): Promise<ByteSource>;
}

/** JSON files (config, tokenizer) larger than this are not what they claim to be. */
const MAX_JSON_BYTES = 256 * 2 ** 20;
/** A permuted tensor is read this many bytes of whole heads at a time (at least one head). */
const PERMUTE_CHUNK_BYTES = 4 * 2 ** 20;
const MAX_SHARDS = 100_000;

const DTYPES: Partial<Record<SafetensorsDtype, GGMLType>> = { F32: GGMLType.F32, F16: GGMLType.F16, BF16: GGMLType.BF16 };

function directoryAt(base: string): HFDirectory {
  const prefix = base.endsWith('/') ? base : `${base}/`;
  return { name: base, open: (file) => openSource(prefix + file) };
}

/**
 * The model directory `input` names, or undefined when it names a file: a path or URL that ends in
 * "/", or (where there is a file system) a path or file: URL of a directory.
 */
export async function hfDirectoryOf(input: unknown): Promise<HFDirectory | undefined> {
  const text = input instanceof URL ? input.href : typeof input === 'string' ? input : undefined;
  if (text === undefined) return undefined;
  if (text.endsWith('/') || (input instanceof URL && input.pathname.endsWith('/'))) return directoryAt(text);
  if (!hasNodeFs() || /^(https?|blob|data):/i.test(text)) return undefined;
  const path = await (await import('../runtime/directory.js')).localDirectory(text);
  return path === undefined ? undefined : directoryAt(path);
}

async function readText(dir: HFDirectory, file: string, optional: true): Promise<string | undefined>;
async function readText(dir: HFDirectory, file: string, optional?: false): Promise<string>;
async function readText(dir: HFDirectory, file: string, optional = false): Promise<string | undefined> {
  let source: ByteSource;
  try {
    source = await dir.open(file);
  } catch (err) {
    if (err instanceof ByteSourceError && err.code === 'NOT_FOUND') {
      if (optional) return undefined;
      throw new ByteSourceError('NOT_FOUND', `${dir.name}: the model directory has no ${file}`, { cause: err });
    }
    throw err;
  }
  try {
    if (source.size > MAX_JSON_BYTES) throw new HFModelError('FILE_TOO_LARGE', `${source.name}: ${source.size} bytes, more than the ${MAX_JSON_BYTES} a JSON file of a model may have`);
    const bytes = await readRange(source, 0, source.size);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (err) {
      throw new HFModelError('INVALID_CONFIG', `${source.name} is not UTF-8 text`, { cause: err });
    }
  } finally {
    await source.close();
  }
}

interface Shard {
  readonly file: string;
  readonly source: ByteSource;
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
}

/** A shard name from the index: a relative path inside the directory, nothing that could leave it. */
function checkShardName(name: string): void {
  const safe = name.length > 0 && name.length <= 255 && !/[\\:?#%]/.test(name) && !name.startsWith('/')
    && name.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
  if (!safe) throw new HFModelError('INVALID_INDEX', `model.safetensors.index.json: shard name ${JSON.stringify(name).slice(0, 300)} is not a file name inside the directory`);
}

/** The safetensors files and, for each tensor, the shard holding it (from the index, or the one model.safetensors). */
async function openShards(dir: HFDirectory, shards: Shard[]): Promise<Map<string, Shard>> {
  const openShard = async (file: string, why: string) => {
    let source: ByteSource;
    try {
      source = await dir.open(file);
    } catch (err) {
      if (err instanceof ByteSourceError && err.code === 'NOT_FOUND') throw new ByteSourceError('NOT_FOUND', `${dir.name}: ${why}, and there is no ${file}`, { cause: err });
      throw err;
    }
    const shard = { file, source, tensors: new Map<string, SafetensorsTensor>() };
    shards.push(shard);
    for (const t of (await readSafetensors(source)).tensors) shard.tensors.set(t.name, t);
    return shard;
  };
  const where = new Map<string, Shard>();
  const indexText = await readText(dir, 'model.safetensors.index.json', true);
  if (indexText === undefined) {
    const shard = await openShard('model.safetensors', 'the model has no model.safetensors.index.json');
    for (const name of shard.tensors.keys()) where.set(name, shard);
    return where;
  }
  const index = parseJsonObject(indexText, 'model.safetensors.index.json', 'INVALID_INDEX');
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new HFModelError('INVALID_INDEX', 'model.safetensors.index.json: weight_map must be an object of tensor name → file name');
  const byFile = new Map<string, string[]>();
  for (const [tensor, file] of Object.entries(map)) {
    if (typeof file !== 'string') throw new HFModelError('INVALID_INDEX', `model.safetensors.index.json: weight_map["${tensor}"] is ${JSON.stringify(file)}, not a file name`);
    checkShardName(file);
    byFile.set(file, [...(byFile.get(file) ?? []), tensor]);
  }
  if (byFile.size > MAX_SHARDS) throw new HFModelError('INVALID_INDEX', `model.safetensors.index.json names ${byFile.size} files`);
  for (const [file, tensors] of byFile) {
    const shard = await openShard(file, 'model.safetensors.index.json lists it');
    for (const tensor of tensors) {
      if (!shard.tensors.has(tensor)) throw new HFModelError('INVALID_INDEX', `model.safetensors.index.json puts tensor "${tensor}" in ${file}, which does not hold it`);
      where.set(tensor, shard);
    }
  }
  return where;
}

/** A part of the virtual file: bytes at [start, start + nBytes), filled by `read` (offset inside the part). */
interface Region {
  readonly start: number;
  readonly nBytes: number;
  read(at: number, dest: Uint8Array): Promise<void>;
}

/** Rows of a tensor in the converter's q/k order, read about `chunkBytes` of whole heads at a time from the shard. */
export function permutedReader(source: ByteSource, fileOffset: number, rowBytes: number, headRows: number, chunkBytes = PERMUTE_CHUNK_BYTES): Region['read'] {
  const headBytes = headRows * rowBytes;
  const headsPerRead = Math.max(1, Math.floor(chunkBytes / headBytes));
  return async (at, dest) => {
    const end = at + dest.length;
    for (let head = Math.floor(at / headBytes); head * headBytes < end; head += headsPerRead) {
      const spanStart = head * headBytes;
      const span = await readRange(source, fileOffset + spanStart, Math.min(headsPerRead * headBytes, Math.ceil(end / headBytes) * headBytes - spanStart));
      const spanEnd = spanStart + span.length;
      for (let row = Math.floor(Math.max(at, spanStart) / rowBytes); row * rowBytes < Math.min(end, spanEnd); row++) {
        const rowStart = row * rowBytes;
        const from = Math.max(at, rowStart), to = Math.min(end, rowStart + rowBytes);
        const src = (permutedSourceRow(row, headRows) * rowBytes) - spanStart;
        dest.set(span.subarray(src + from - rowStart, src + to - rowStart), from - at);
      }
    }
  };
}

/** The regions end to end as one source; reads may span regions. */
function regionSource(regions: readonly Region[], size: number, name: string, close: () => Promise<void>): ByteSource {
  return {
    size,
    name,
    async readInto(offset, dest) {
      checkRange({ size, name }, offset, dest.length);
      let lo = 0, hi = regions.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (regions[mid]!.start <= offset) lo = mid;
        else hi = mid - 1;
      }
      let done = 0;
      for (let k = lo; k < regions.length && done < dest.length; k++) {
        const r = regions[k]!, at = offset + done - r.start;
        const n = Math.min(r.nBytes - at, dest.length - done);
        if (n <= 0) continue;
        await r.read(at, dest.subarray(done, done + n));
        done += n;
      }
    },
    close,
  };
}

export interface HFModel {
  readonly file: GGUFFile;
  /** The virtual file the tensor infos' offsets point into; closing it closes every shard. */
  readonly source: ByteSource;
  readonly tokenizer: Tokenizer;
  readonly config: HFModelConfig;
  /** tokenizer.json's text, for the converter's tokenizer.ggml.* keys (src/hf/vocab.ts). */
  readonly tokenizerJson: string;
}

/**
 * Open a Hugging Face model directory: config.json, tokenizer.json (+ tokenizer_config.json,
 * generation_config.json when present) and model.safetensors or the shards of
 * model.safetensors.index.json. Every file is untrusted input: problems are HFModelError,
 * SafetensorsError, TokenizerError, and ByteSourceError NOT_FOUND for a missing file.
 */
export async function openHFModel(dir: HFDirectory): Promise<HFModel> {
  const config = readHFConfig(await readText(dir, 'config.json'));
  const tokenizerJson = await readText(dir, 'tokenizer.json');
  const tokenizerConfigText = await readText(dir, 'tokenizer_config.json', true);
  const tokenizer = buildTokenizer(config, tokenizerJson, tokenizerConfigText);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new HFModelError('INVALID_CONFIG', `config.json: vocab_size ${config.vocabSize} is smaller than the ${tokenizer.vocabSize} tokens of tokenizer.json`);
  }
  if (tokenizer.vocabSize < config.vocabSize) log.info(`${dir.name}: the embedding has ${config.vocabSize} rows for ${tokenizer.vocabSize} tokens (padding rows)`);
  const generationText = await readText(dir, 'generation_config.json', true);
  const generation = generationText === undefined ? undefined : readGenerationConfig(generationText, config.vocabSize);
  const chatTemplate = tokenizerConfigText === undefined ? undefined : readTokenizerConfig(tokenizerConfigText).chatTemplate;
  const metadata = ggufMetadataFor(config, { chatTemplate, generation, name: dir.name });

  const shards: Shard[] = [];
  const closeAll = async () => {
    for (const s of shards) await s.source.close();
  };
  try {
    const where = await openShards(dir, shards);
    const tensors: GGUFTensorInfo[] = [];
    const regions: Region[] = [];
    let size = 0;
    const add = (name: string, dims: number[], type: GGMLType, nBytes: number, read: Region['read']) => {
      const nElements = dims.reduce((a, b) => a * b, 1);
      tensors.push({ name, dims, type, offset: size, fileOffset: size, nElements, nBytes });
      regions.push({ start: size, nBytes, read });
      size += nBytes;
    };
    let hasOutput = false;
    for (const [name, shard] of where) {
      const mapped = mapTensor(name, config);
      if (!mapped) continue;
      const t = shard.tensors.get(name)!;
      if (mapped.ggufName === 'output.weight') {
        // A tied model may still ship lm_head (the same values): the converter leaves it out.
        if (config.tieWordEmbeddings) continue;
        hasOutput = true;
      }
      const type = DTYPES[t.dtype];
      if (type === undefined) throw new HFModelError('UNSUPPORTED_DTYPE', `${shard.file}: tensor "${name}" is ${t.dtype}; weights must be F32, F16 or BF16`);
      if (t.shape.length !== mapped.shape.length || t.shape.some((d, i) => d !== mapped.shape[i])) {
        throw new HFModelError('BAD_TENSOR_SHAPE', `${shard.file}: tensor "${name}" has shape [${t.shape.join(', ')}], config.json implies [${mapped.shape.join(', ')}]`);
      }
      const { source } = shard, fileOffset = t.fileOffset;
      const rowBytes = t.nBytes / t.shape[0]!;
      const read: Region['read'] = mapped.permuteHeads
        ? permutedReader(source, fileOffset, rowBytes, t.shape[0]! / mapped.permuteHeads)
        : (at, dest) => source.readInto(fileOffset + at, dest);
      add(mapped.ggufName, [...t.shape].reverse(), type, t.nBytes, read);
    }
    if (!config.tieWordEmbeddings && !hasOutput) {
      throw new ModelError('MISSING_TENSOR', `${dir.name}: config.json says tie_word_embeddings is false, and no file holds lm_head.weight`);
    }
    if (config.ropeScaling.type === 'llama3') {
      const factors = new Uint8Array(llama3RopeFactors(config.headDim, config.ropeTheta, config.ropeScaling).buffer);
      add('rope_freqs.weight', [config.headDim / 2], GGMLType.F32, factors.length, async (at, dest) => dest.set(factors.subarray(at, at + dest.length)));
    }
    const source = regionSource(regions, size, dir.name, closeAll);
    const file: GGUFFile = { version: 3, alignment: 1, metadata, tensors, tensorsByName: new Map(tensors.map((t) => [t.name, t])), dataOffset: 0, fileSize: size };
    log.debug(`${dir.name}: ${config.architecture}, ${tensors.length} tensors from ${shards.length} safetensors file(s)`);
    return { file, source, tokenizer, config, tokenizerJson };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * The tokenizer of tokenizer.json with tokenizer_config.json; BOS/EOS that the tokenizer files leave
 * out come from config.json's bos_token_id / eos_token_id (the first when it lists several).
 */
function buildTokenizer(config: HFModelConfig, json: string, configText: string | undefined): Tokenizer {
  const tokenizer = Tokenizer.fromHuggingFace(json, configText);
  const fill: Record<string, string> = {};
  const bos = config.bosTokenIds[0], eos = config.eosTokenIds[0];
  if (tokenizer.bosId === undefined && bos !== undefined && bos < tokenizer.vocabSize) fill.bos_token = tokenizer.tokenText(bos);
  if (tokenizer.eosId === undefined && eos !== undefined && eos < tokenizer.vocabSize) fill.eos_token = tokenizer.tokenText(eos);
  if (Object.keys(fill).length === 0) return tokenizer;
  const base = configText === undefined ? {} : parseJsonObject(configText, 'tokenizer_config.json');
  return Tokenizer.fromHuggingFace(json, { ...base, ...fill });
}
