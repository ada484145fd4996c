// config.json (and generation_config.json) of a Hugging Face model directory, read as untrusted input:
// every field the loader uses is type- and range-checked, with an HFModelError naming it. The result
// becomes the GGUF metadata llama.cpp's convert_hf_to_gguf.py would write (same keys, same f32
// rounding of float values), so hparams.ts reads an HF model exactly as it reads the converted file.
import { GGUFValueType } from '../gguf/constants.js';
import type { GGUFEntry } from '../gguf/reader.js';
import { HFModelError } from './errors.js';

export type HFArchitecture = 'llama' | 'qwen2' | 'qwen3';

/** config.json's `architectures[0]` → the GGUF architecture llama.cpp's converter writes. */
const BY_CLASS: Record<string, HFArchitecture> = {
  LlamaForCausalLM: 'llama', MistralForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3',
};
/** config.json's `model_type`, when `architectures` is absent. */
const BY_MODEL_TYPE: Record<string, HFArchitecture> = { llama: 'llama', mistral: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' };

/** transformers' defaults for fields a config may leave out (LlamaConfig, Qwen2Config, Qwen3Config). */
const DEFAULT_CONTEXT: Record<HFArchitecture, number> = { llama: 2048, qwen2: 32768, qwen3: 32768 };

export type HFRopeScaling =
  | { type: 'none' }
  | { type: 'linear'; factor: number }
  | { type: 'yarn'; factor: number; originalContext: number }
  /** Llama 3's: becomes the rope_freqs tensor (llama3RopeFactors). */
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number };

export interface HFModelConfig {
  readonly architecture: HFArchitecture;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Whether config.json names head_dim (then the GGUF carries attention.key_length / value_length). */
  readonly explicitHeadDim: boolean;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: HFRopeScaling;
  readonly contextLength: number;
  readonly tieWordEmbeddings: boolean;
  readonly vocabSize: number;
  /** Whether q/k/v carry biases (qwen2 always; llama when attention_bias is set). */
  readonly attentionBias: boolean;
  readonly bosTokenIds: readonly number[];
  readonly eosTokenIds: readonly number[];
  /** `_name_or_path`, when the config has one. */
  readonly name?: string;
}

// Generous bounds no real model reaches, which keep corrupt values from sizing anything (as hparams.ts).
const MAX_WIDTH = 1 << 20;
const MAX_LAYERS = 1 << 12;
const MAX_HEADS = 1 << 14;
const MAX_VOCAB = 1 << 24;
const MAX_CONTEXT = 2 ** 31 - 1;

type Json = Record<string, unknown>;

function invalid(file: string, field: string, message: string): never {
  throw new HFModelError('INVALID_CONFIG', `${file}: ${field} ${message}`);
}

/** Parse a JSON object; anything else is INVALID_CONFIG naming the file. */
export function parseJsonObject(text: string, file: string, code: 'INVALID_CONFIG' | 'INVALID_INDEX' = 'INVALID_CONFIG'): Json {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HFModelError(code, `${file} is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HFModelError(code, `${file} must be a JSON object`);
  return value as Json;
}

/** Field readers: undefined and null read as absent (transformers writes null for unset fields). */
class Fields {
  constructor(private readonly o: Json, private readonly file: string, private readonly prefix = '') {}

  private raw(key: string): unknown {
    const v = Object.hasOwn(this.o, key) ? this.o[key] : undefined;
    return v === null ? undefined : v;
  }

  has(key: string): boolean {
    return this.raw(key) !== undefined;
  }

  integer(key: string, min: number, max: number, fallback?: number): number;
  integer(key: string, min: number, max: number, ...rest: [number?]): number | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (rest.length > 0) return rest[0];
      invalid(this.file, this.prefix + key, 'is missing');
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) invalid(this.file, this.prefix + key, `is ${JSON.stringify(v)}, expected an integer in ${min}..${max}`);
    return v;
  }

  /** A finite number in (0, max]. */
  positive(key: string, fallback: number | undefined, max = Infinity): number {
    const v = this.raw(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      invalid(this.file, this.prefix + key, 'is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) invalid(this.file, this.prefix + key, `is ${JSON.stringify(v)}, expected a finite number in (0, ${max}]`);
    return v;
  }

  /** A finite number in [0, max], or undefined when absent. */
  nonNegative(key: string, max: number): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) invalid(this.file, this.prefix + key, `is ${JSON.stringify(v)}, expected a finite number in [0, ${max}]`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') invalid(this.file, this.prefix + key, `is ${JSON.stringify(v)}, expected true or false`);
    return v;
  }

  string(key: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') invalid(this.file, this.prefix + key, `is ${JSON.stringify(v)}, expected a string`);
    return v;
  }

  object(key: string): Fields | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) invalid(this.file, this.prefix + key, 'must be an object');
    return new Fields(v as Json, this.file, `${this.prefix}${key}.`);
  }

  /** A token id or a list of them (generation_config's eos_token_id often is a list). */
  ids(key: string, max: number): number[] {
    const v = this.raw(key);
    if (v === undefined) return [];
    const list = Array.isArray(v) ? v : [v];
    if (list.length > 1024 || !list.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 && id < max)) {
      invalid(this.file, this.prefix + key, `is ${JSON.stringify(v).slice(0, 200)}, expected a token id or a list of them in 0..${max - 1}`);
    }
    return list as number[];
  }
}

function architectureOf(f: Fields, o: Json): HFArchitecture {
  const list = o.architectures;
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== 'string') invalid('config.json', 'architectures', 'must be a non-empty list of class names');
    const arch = Object.hasOwn(BY_CLASS, list[0]) ? BY_CLASS[list[0]] : undefined;
    if (!arch) throw new HFModelError('UNSUPPORTED_MODEL', `config.json: architecture ${JSON.stringify(list[0])} is not supported (supported: ${Object.keys(BY_CLASS).join(', ')})`);
    return arch;
  }
  const type = f.string('model_type');
  if (type === undefined) invalid('config.json', 'architectures', 'and model_type are both missing: cannot tell the architecture');
  const arch = Object.hasOwn(BY_MODEL_TYPE, type) ? BY_MODEL_TYPE[type] : undefined;
  if (!arch) throw new HFModelError('UNSUPPORTED_MODEL', `config.json: model_type ${JSON.stringify(type)} is not supported (supported: ${Object.keys(BY_MODEL_TYPE).join(', ')})`);
  return arch;
}

/**
 * rope_scaling (or transformers 5's rope_parameters) as llama.cpp's converter reads it: the type from
 * rope_type or type; 'default' is none. YaRN options llama.cpp would write and we do not read are refused.
 */
function ropeScalingOf(f: Fields, arch: HFArchitecture): { scaling: HFRopeScaling; theta: number | undefined } {
  const r = f.object('rope_parameters') ?? f.object('rope_scaling');
  const theta = r?.has('rope_theta') ? r.positive('rope_theta', undefined) : undefined;
  const type = r?.string('rope_type') ?? r?.string('type');
  if (!r || type === undefined || type === 'default') return { scaling: { type: 'none' }, theta };
  switch (type) {
    case 'linear':
      return { scaling: { type: 'linear', factor: r.positive('factor', undefined, 1e6) }, theta };
    case 'yarn':
      for (const key of ['extrapolation_factor', 'attention_factor', 'attn_factor', 'beta_fast', 'beta_slow']) {
        if (r.has(key)) throw new HFModelError('UNSUPPORTED_MODEL', `config.json: rope_scaling.${key} (YaRN) is not supported`);
      }
      return { scaling: { type: 'yarn', factor: r.positive('factor', undefined, 1e6), originalContext: r.integer('original_max_position_embeddings', 1, MAX_CONTEXT) }, theta };
    case 'llama3': {
      // llama.cpp's converter computes the factors only for the llama family.
      if (arch !== 'llama') throw new HFModelError('UNSUPPORTED_MODEL', `config.json: rope_scaling type llama3 on a ${arch} model is not supported`);
      const scaling = {
        type: 'llama3' as const,
        factor: r.positive('factor', 8, 1e6),
        lowFreqFactor: r.positive('low_freq_factor', 1, 1e6),
        highFreqFactor: r.positive('high_freq_factor', 4, 1e6),
        originalContext: r.integer('original_max_position_embeddings', 1, MAX_CONTEXT, 8192),
      };
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) invalid('config.json', 'rope_scaling.high_freq_factor', `${scaling.highFreqFactor} must be above low_freq_factor ${scaling.lowFreqFactor}`);
      return { scaling, theta };
    }
    default:
      throw new HFModelError('UNSUPPORTED_MODEL', `config.json: rope_scaling type ${JSON.stringify(type)} is not supported (linear, yarn, llama3 or none)`);
  }
}

/** Read config.json (its text); every problem is an HFModelError naming the field. */
export function readHFConfig(text: string): HFModelConfig {
  const o = parseJsonObject(text, 'config.json');
  const f = new Fields(o, 'config.json');
  // Multimodal wrappers keep the language model's settings in text_config.
  if (f.has('text_config')) throw new HFModelError('UNSUPPORTED_MODEL', 'config.json: a multimodal model (text_config) is not supported; load its language model');
  const architecture = architectureOf(f, o);
  const hiddenSize = f.integer('hidden_size', 1, MAX_WIDTH);
  const intermediateSize = f.integer('intermediate_size', 1, MAX_WIDTH * 8);
  const nLayers = f.integer('num_hidden_layers', 1, MAX_LAYERS);
  const nHeads = f.integer('num_attention_heads', 1, MAX_HEADS);
  const nKvHeads = f.integer('num_key_value_heads', 1, MAX_HEADS, nHeads);
  if (nKvHeads > nHeads || nHeads % nKvHeads !== 0) invalid('config.json', 'num_key_value_heads', `${nKvHeads} must divide num_attention_heads ${nHeads}`);
  const explicitHeadDim = f.has('head_dim');
  let headDim: number;
  if (explicitHeadDim) headDim = f.integer('head_dim', 2, MAX_WIDTH);
  else {
    if (hiddenSize % nHeads !== 0) invalid('config.json', 'hidden_size', `${hiddenSize} is not a multiple of num_attention_heads ${nHeads} (and head_dim is not given)`);
    headDim = hiddenSize / nHeads;
  }
  // RoPE rotates pairs, and llama's q/k permutation splits each head in halves.
  if (headDim % 2 !== 0) invalid('config.json', 'head_dim', `${headDim} must be even`);
  const { scaling, theta } = ropeScalingOf(f, architecture);
  const ropeTheta = theta ?? f.positive('rope_theta', 10000);
  const vocabSize = f.integer('vocab_size', 1, MAX_VOCAB);
  const name = f.string('_name_or_path');
  return {
    architecture, hiddenSize, intermediateSize, nLayers, nHeads, nKvHeads, headDim, explicitHeadDim,
    rmsNormEps: f.positive('rms_norm_eps', 1e-6, 1),
    ropeTheta,
    ropeScaling: scaling,
    contextLength: f.integer('max_position_embeddings', 1, MAX_CONTEXT, DEFAULT_CONTEXT[architecture]),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    vocabSize,
    attentionBias: architecture === 'qwen2' || (architecture === 'llama' && f.bool('attention_bias', false)),
    bosTokenIds: f.ids('bos_token_id', vocabSize),
    eosTokenIds: f.ids('eos_token_id', vocabSize),
    ...(name ? { name } : {}),
  };
}

/** generation_config.json's sampling defaults, under llama.cpp's general.sampling.* keys (as its converter writes them). */
export interface HFGenerationDefaults {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  eosTokenIds: readonly number[];
}

export function readGenerationConfig(text: string, vocabSize: number): HFGenerationDefaults {
  const f = new Fields(parseJsonObject(text, 'generation_config.json'), 'generation_config.json');
  const optionalPositive = (key: string, max: number) => (f.has(key) ? f.positive(key, undefined, max) : undefined);
  const temperature = f.nonNegative('temperature', 1e3);
  const minP = f.nonNegative('min_p', 1);
  return {
    ...(temperature !== undefined ? { temperature } : {}),
    ...(f.has('top_k') ? { topK: f.integer('top_k', 0, MAX_VOCAB) } : {}),
    ...(f.has('top_p') ? { topP: optionalPositive('top_p', 1) } : {}),
    ...(minP !== undefined ? { minP } : {}),
    ...(f.has('repetition_penalty') ? { repetitionPenalty: optionalPositive('repetition_penalty', 1e3) } : {}),
    eosTokenIds: f.ids('eos_token_id', vocabSize),
  };
}

/**
 * Llama 3's RoPE frequency factors, as llama.cpp's converter computes them into rope_freqs (in
 * float32, as its torch code does: each step rounded to f32).
 */
export function llama3RopeFactors(headDim: number, theta: number, s: Extract<HFRopeScaling, { type: 'llama3' }>): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(headDim / 2);
  const lowFreqWavelen = s.originalContext / s.lowFreqFactor;
  const highFreqWavelen = s.originalContext / s.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = f(1 / f(f(theta) ** f((2 * i) / headDim)));
    const wavelen = f(f(2 * Math.PI) / freq);
    if (wavelen < f(highFreqWavelen)) out[i] = 1;
    else if (wavelen > f(lowFreqWavelen)) out[i] = s.factor;
    else {
      const smooth = f(f(f(f(s.originalContext) / wavelen) - f(s.lowFreqFactor)) / f(s.highFreqFactor - s.lowFreqFactor));
      out[i] = f(1 / f(f(f(1 - smooth) / f(s.factor)) + smooth));
    }
  }
  return out;
}

const u32 = (value: number): GGUFEntry => ({ type: GGUFValueType.UINT32, value });
// GGUF stores these as f32: the value a converted file holds is the f32 rounding.
const f32 = (value: number): GGUFEntry => ({ type: GGUFValueType.FLOAT32, value: Math.fround(value) });
const str = (value: string): GGUFEntry => ({ type: GGUFValueType.STRING, value });
const i32 = (value: number): GGUFEntry => ({ type: GGUFValueType.INT32, value });

/** The GGUF metadata llama.cpp's converter writes for this config (without the tokenizer's keys). */
export function ggufMetadataFor(c: HFModelConfig, extra: { chatTemplate?: string; generation?: HFGenerationDefaults; name?: string }): Map<string, GGUFEntry> {
  const a = c.architecture;
  const m = new Map<string, GGUFEntry>([
    ['general.architecture', str(a)],
    ['general.name', str(c.name ?? extra.name ?? 'Hugging Face model')],
    [`${a}.context_length`, u32(c.contextLength)],
    [`${a}.embedding_length`, u32(c.hiddenSize)],
    [`${a}.block_count`, u32(c.nLayers)],
    [`${a}.feed_forward_length`, u32(c.intermediateSize)],
    [`${a}.attention.head_count`, u32(c.nHeads)],
    [`${a}.attention.head_count_kv`, u32(c.nKvHeads)],
    [`${a}.rope.freq_base`, f32(c.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps)],
    [`${a}.vocab_size`, u32(c.vocabSize)],
  ]);
  if (a === 'llama') m.set(`${a}.rope.dimension_count`, u32(c.headDim));
  if (c.explicitHeadDim) {
    m.set(`${a}.attention.key_length`, u32(c.headDim));
    m.set(`${a}.attention.value_length`, u32(c.headDim));
  }
  const r = c.ropeScaling;
  if (r.type === 'linear' || r.type === 'yarn') {
    m.set(`${a}.rope.scaling.type`, str(r.type));
    m.set(`${a}.rope.scaling.factor`, f32(r.factor));
    if (r.type === 'yarn') m.set(`${a}.rope.scaling.original_context_length`, u32(r.originalContext));
  }
  if (extra.chatTemplate !== undefined) m.set('tokenizer.chat_template', str(extra.chatTemplate));
  const g = extra.generation;
  if (g?.temperature !== undefined) m.set('general.sampling.temp', f32(g.temperature));
  if (g?.topK !== undefined) m.set('general.sampling.top_k', i32(g.topK));
  if (g?.topP !== undefined) m.set('general.sampling.top_p', f32(g.topP));
  if (g?.minP !== undefined) m.set('general.sampling.min_p', f32(g.minP));
  if (g?.repetitionPenalty !== undefined) m.set('general.sampling.penalty_repeat', f32(g.repetitionPenalty));
  return m;
}
