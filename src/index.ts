// wasmforge public API.
export { WasmforgeError } from './errors.js';
export { loadModel, Model } from './model/model.js';
export type { LoadModelOptions, GenerateOptions, GeneratedPiece, GenerationResult, Generation, StopReason } from './model/model.js';
export { ModelError } from './model/errors.js';
export { perplexity } from './model/perplexity.js';
export { Sampler, SamplingError } from './sampling/sampler.js';
export type { SamplingOptions } from './sampling/sampler.js';
export { Tokenizer } from './tokenizer/index.js';
export { TokenizerError } from './tokenizer/errors.js';
export { readGGUF } from './gguf/reader.js';
export type { GGUFFile, GGUFTensorInfo, GGUFEntry, GGUFValue, GGUFArray } from './gguf/reader.js';
export { GGUFError } from './gguf/errors.js';
export { GGUFValueType } from './gguf/constants.js';
export { encodeGGUF, writeGGUF } from './gguf/writer.js';
export { GGMLType, typeTraits, typeByName, typeName } from './tensor/ggml-types.js';
export { dequantize } from './tensor/dequant.js';
export { TensorTypeError } from './tensor/errors.js';
export { BackendError } from './backend/errors.js';
export { quantize } from './tensor/quantize.js';
export { openSource } from './io/open-source.js';
export type { ModelInput } from './io/open-source.js';
export { bufferSource, blobSource, urlSource, ByteSourceError } from './io/byte-source.js';
export type { ByteSource } from './io/byte-source.js';
export { KVCacheError } from './kv/errors.js';
export { setLogLevel, setLogSink } from './log.js';
export type { LogLevel, LogSink } from './log.js';
export { createEngine, Engine } from './engine/engine.js';
export type { ChatRequestOptions } from './engine/engine.js';
export { EngineError } from './engine/errors.js';
export type { EngineErrorCode } from './engine/errors.js';
export type {
  EngineOptions, EngineRequest, EnginePiece, EngineCompletion, EngineUsage, EngineTimings, EngineResult, EngineGeneration, EngineMetrics,
} from './engine/types.js';
export { ChatTemplate } from './chat/template.js';
export type { ChatMessage, ChatRenderOptions } from './chat/template.js';
export { ChatTemplateError } from './chat/errors.js';
export { fetchModel, listCachedModels, deleteCachedModel, ModelCacheError } from './runtime/model-cache.js';
export type { CachedModelInfo, FetchModelOptions } from './runtime/model-cache.js';
