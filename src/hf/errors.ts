import { WasmforgeError } from '../errors.js';

export type HFModelErrorCode =
  /** config.json or generation_config.json: not a JSON object, or a field of the wrong type or out of range. */
  | 'INVALID_CONFIG'
  /** An architecture, RoPE scaling or option this loader does not run. */
  | 'UNSUPPORTED_MODEL'
  /** model.safetensors.index.json: not a weight map, an unsafe shard name, or a tensor its shard does not hold. */
  | 'INVALID_INDEX'
  /** A tensor whose name is not one of the architecture's. */
  | 'UNKNOWN_TENSOR'
  /** The same tensor twice. */
  | 'DUPLICATE_TENSOR'
  /** A tensor whose shape is not what config.json implies. */
  | 'BAD_TENSOR_SHAPE'
  /** A tensor dtype other than F32, F16 or BF16. */
  | 'UNSUPPORTED_DTYPE'
  /** A file too large to be what it claims (a JSON file of hundreds of MiB). */
  | 'FILE_TOO_LARGE'
  /** A tokenizer.json the converter cannot turn into a GGUF tokenizer (not BPE, or a pre-tokenizer llama.cpp does not know). */
  | 'UNSUPPORTED_TOKENIZER'
  /** What was named as a model directory is not one (a file, or nothing there). */
  | 'NOT_A_DIRECTORY';

/** Every problem with a Hugging Face model directory: a code and a message naming the file and field. */
export class HFModelError extends WasmforgeError<HFModelErrorCode> {
  override readonly name = 'HFModelError';
}
