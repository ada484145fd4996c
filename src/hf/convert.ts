// `convertToGGUF`: a Hugging Face model directory written out as a standalone GGUF file, what llama.cpp's
// convert_hf_to_gguf.py makes of it. Built on openHFModel's description (metadata keys, tensor infos, the
// q/k permutation on read), with the tokenizer.ggml.* keys of tokenizer.json (vocab.ts) added and each
// tensor converted by quantize-model.ts's plan (llama-quantize's fallbacks; norms and biases F32 as the
// converter writes them). Nothing here touches a file system: the bytes go to a writer one tensor at a
// time (src/runtime/file-sink.ts writes them to a file), so a browser can stream them too.
import type { GGUFEntry } from '../gguf/reader.js';
import { log } from '../log.js';
import { QUANTIZE_TARGETS, quantizeGGUF, QuantizeModelError, streamGGUF, type LazyTensor, type OnTensor, type TensorPlan } from '../model/quantize-model.js';
import { GGMLType } from '../tensor/ggml-types.js';
import { HFModelError } from './errors.js';
import { hfDirectoryOf, openHFModel, type HFDirectory } from './model-dir.js';
import { ggufTokenizerMetadata } from './vocab.js';

export interface ConvertOptions {
  /** Type of the weight matrices: a ggml type or its llama-quantize name ('f32', 'f16', 'q8_0', ...). Default F16, as the converter's. */
  type?: GGMLType | string;
  /** Told about each tensor as it is written. */
  onTensor?: OnTensor;
}

export interface ConvertedModel {
  readonly metadata: [string, GGUFEntry][];
  /** In file order; each one's bytes are read and converted only when the writer reaches it. */
  readonly tensors: LazyTensor[];
  readonly plan: TensorPlan[];
  /**
   * Stream the whole GGUF file to `write`, one tensor's bytes at a time; returns the bytes written.
   * Closes the directory's files when done (or failed): call it once.
   */
  writeTo(write: (chunk: Uint8Array) => Promise<void> | void): Promise<number>;
  /** Close the directory's files without writing (after writing the tensors by other means). */
  close(): Promise<void>;
}

function targetOf(type: GGMLType | string | undefined): GGMLType {
  if (type === undefined) return GGMLType.F16;
  if (typeof type !== 'string') return type;
  const t = QUANTIZE_TARGETS.get(type.toLowerCase());
  if (t === undefined) throw new QuantizeModelError('UNSUPPORTED_TARGET', `type "${type}" is not one of ${[...QUANTIZE_TARGETS.keys()].join(', ')}`);
  return t;
}

/**
 * Convert the Hugging Face model directory `input` (a path, file: URL, base URL ending in "/", or an
 * HFDirectory) to GGUF. Returns the planned file; its bytes come from `writeTo`. Errors are those of
 * openHFModel, HFModelError NOT_A_DIRECTORY / UNSUPPORTED_TOKENIZER, QuantizeModelError UNSUPPORTED_TARGET.
 */
export async function convertToGGUF(input: string | URL | HFDirectory, opts: ConvertOptions = {}): Promise<ConvertedModel> {
  const target = targetOf(opts.type);
  const dir = typeof input === 'object' && !(input instanceof URL) ? input : await hfDirectoryOf(input);
  if (dir === undefined) throw new HFModelError('NOT_A_DIRECTORY', `${String(input)} is not a model directory (a directory path, or a URL ending in "/")`);
  const hf = await openHFModel(dir);
  try {
    const nVocab = hf.file.tensorsByName.get('token_embd.weight')!.dims[1]!;
    const tokenizerKeys = await ggufTokenizerMetadata(hf.tokenizer, hf.tokenizerJson, nVocab);
    const file = { ...hf.file, metadata: new Map([...hf.file.metadata, ...tokenizerKeys]) };
    const model = quantizeGGUF(file, hf.source, target, { vectorType: GGMLType.F32, onTensor: opts.onTensor });
    const { metadata } = model;
    log.debug(`${dir.name}: converting ${model.plan.length} tensors, ${model.plan.filter((p) => p.action === 'converted').length} to other types`);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await hf.source.close();
    };
    return {
      metadata,
      tensors: model.tensors,
      plan: model.plan,
      async writeTo(write) {
        try {
          return await streamGGUF(metadata, model.tensors, write);
        } finally {
          await close();
        }
      },
      close,
    };
  } catch (err) {
    await hf.source.close();
    throw err;
  }
}
