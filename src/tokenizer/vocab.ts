// The vocabulary as llama.cpp loads it from GGUF metadata: token texts, scores and attributes, the special
// token ids with llama.cpp's per-model defaults, the add-BOS/EOS flags, end-of-generation ids and the
// text-based fix-ups llama.cpp applies to popular models.
import type { GGUFArray, GGUFFile } from '../gguf/reader.js';
import { GGUFValueType } from '../gguf/constants.js';
import { log } from '../log.js';
import { TokenizerError } from './errors.js';
import { resolvePreTokenizer, type PreTokenizer } from './pre-tokenizers.js';
import { utf8Length } from './unicode.js';

type Meta = GGUFFile['metadata'];

/** Token attribute bits (llama.cpp's llama_token_attr). */
export const TokenAttr = {
  UNDEFINED: 0,
  UNKNOWN: 1 << 0,
  UNUSED: 1 << 1,
  NORMAL: 1 << 2,
  CONTROL: 1 << 3,
  USER_DEFINED: 1 << 4,
  BYTE: 1 << 5,
  NORMALIZED: 1 << 6,
  LSTRIP: 1 << 7,
  RSTRIP: 1 << 8,
  SINGLE_WORD: 1 << 9,
} as const;

// GGUF token_type values → attributes.
const TYPE_TO_ATTR = [
  TokenAttr.UNDEFINED, // 0 undefined
  TokenAttr.NORMAL, // 1 normal
  TokenAttr.UNKNOWN, // 2 unknown
  TokenAttr.CONTROL, // 3 control
  TokenAttr.USER_DEFINED, // 4 user defined
  TokenAttr.UNUSED, // 5 unused
  TokenAttr.BYTE, // 6 byte
];

/** spm / bpe / wpm: llama.cpp's names; ugm: Unigram, wlm: WordLevel (tokenizer.json only). */
export type VocabType = 'spm' | 'bpe' | 'wpm' | 'ugm' | 'wlm';

export interface SpecialIds {
  bos?: number;
  eos?: number;
  eot?: number;
  eom?: number;
  unk?: number;
  sep?: number;
  pad?: number;
  mask?: number;
  fimPre?: number;
  fimSuf?: number;
  fimMid?: number;
  fimPad?: number;
  fimRep?: number;
  fimSep?: number;
}

export interface Vocab {
  readonly type: VocabType;
  /** `tokenizer.ggml.model` as written in the file. */
  readonly model: string;
  /** `tokenizer.ggml.pre`, or 'default'. */
  readonly preName: string;
  /** Pre-tokenizer regexes (BPE only). */
  readonly pre?: PreTokenizer;
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly attrs: Uint16Array;
  readonly tokenToId: ReadonlyMap<string, number>;
  /** BPE merge ranks keyed "left right". */
  readonly merges?: ReadonlyMap<string, number>;
  readonly special: Readonly<SpecialIds>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSep: boolean;
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  readonly ignoreMerges: boolean;
  readonly lowercase: boolean;
  readonly stripAccents: boolean;
  readonly eog: ReadonlySet<number>;
  /** Ids of CONTROL / USER_DEFINED / UNKNOWN tokens, longest text (in bytes) first. */
  readonly specialTokens: readonly number[];
  /** Longest token text in UTF-16 code units (bounds WordPiece's longest-match search). */
  readonly maxTokenLength: number;
}

// Tokens llama.cpp recognises by text when the metadata does not name them; each also becomes CONTROL.
const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>', '[EOT]', '<｜end▁of▁sentence｜>', '<end_of_utterance>'];
const EOM_TEXTS = ['<|eom_id|>'];
/** Texts of the fill-in-the-middle tokens llama.cpp finds by name when the metadata does not give their ids. */
export const FIM_TEXTS: [keyof SpecialIds, string[]][] = [
  ['fimPre', ['<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>', '<|prefix|>']],
  ['fimSuf', ['<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>', '<|suffix|>']],
  ['fimMid', ['<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>', '<|middle|>']],
  ['fimPad', ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '[PAD]']],
  ['fimRep', ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>']],
  ['fimSep', ['<|file_sep|>']],
];
/** Texts llama.cpp treats as end of generation wherever they occur. */
export const EOG_TEXTS: ReadonlySet<string> = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<|flush|>', '<|calls|>', '<end_of_turn>',
  '<|endoftext|>', '</s>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>',
  '<end_of_utterance>', '<eos>', '<turn|>', '<|tool_response>', '<｜end▁of▁sentence｜>', '[e~[',
]);

const SPECIAL_KEYS: [keyof SpecialIds, string][] = [
  ['bos', 'tokenizer.ggml.bos_token_id'],
  ['eos', 'tokenizer.ggml.eos_token_id'],
  ['eot', 'tokenizer.ggml.eot_token_id'],
  ['eom', 'tokenizer.ggml.eom_token_id'],
  ['unk', 'tokenizer.ggml.unknown_token_id'],
  ['sep', 'tokenizer.ggml.seperator_token_id'], // sic: the key is spelled this way in GGUF
  ['pad', 'tokenizer.ggml.padding_token_id'],
  ['mask', 'tokenizer.ggml.mask_token_id'],
  ['fimPre', 'tokenizer.ggml.fim_pre_token_id'],
  ['fimSuf', 'tokenizer.ggml.fim_suf_token_id'],
  ['fimMid', 'tokenizer.ggml.fim_mid_token_id'],
  ['fimPad', 'tokenizer.ggml.fim_pad_token_id'],
  ['fimRep', 'tokenizer.ggml.fim_rep_token_id'],
  ['fimSep', 'tokenizer.ggml.fim_sep_token_id'],
  // deprecated spellings, read after the new ones as llama.cpp does
  ['fimPre', 'tokenizer.ggml.prefix_token_id'],
  ['fimSuf', 'tokenizer.ggml.suffix_token_id'],
  ['fimMid', 'tokenizer.ggml.middle_token_id'],
];

function invalid(key: string, what: string): TokenizerError {
  return new TokenizerError('INVALID_METADATA', `metadata "${key}" ${what}`);
}

function readString(meta: Meta, key: string): string | undefined {
  const e = meta.get(key);
  if (!e) return undefined;
  if (typeof e.value !== 'string') throw invalid(key, 'should be a string');
  return e.value;
}

function readBool(meta: Meta, key: string): boolean | undefined {
  const e = meta.get(key);
  if (!e) return undefined;
  if (typeof e.value !== 'boolean') throw invalid(key, 'should be a bool');
  return e.value;
}

function readArray(meta: Meta, key: string): GGUFArray | undefined {
  const e = meta.get(key);
  if (!e) return undefined;
  if (e.type !== GGUFValueType.ARRAY) throw invalid(key, 'should be an array');
  return e.value as GGUFArray;
}

function readStringArray(meta: Meta, key: string): string[] | undefined {
  const a = readArray(meta, key);
  if (!a) return undefined;
  if (a.elementType !== GGUFValueType.STRING) throw invalid(key, 'should be an array of strings');
  return a.values as string[];
}

/** Load the vocabulary exactly as llama.cpp's llama_vocab::impl::load does for the SPM, BPE and WPM models. */
export function loadVocab(meta: Meta): Vocab {
  const model = readString(meta, 'tokenizer.ggml.model');
  if (model === undefined) throw new TokenizerError('MISSING_METADATA', 'metadata "tokenizer.ggml.model" is missing: the file has no tokenizer');
  let preName = readString(meta, 'tokenizer.ggml.pre') ?? '';

  let type: VocabType;
  // llama.cpp's per-model defaults, overridden below by whatever the metadata says
  let special: SpecialIds;
  let addBos = false, addEos = false, addSep = false, addSpacePrefix = false, cleanSpaces = false, ignoreMerges = false;
  let pre: PreTokenizer | undefined;
  if (model === 'llama') {
    type = 'spm';
    special = { bos: 1, eos: 2, unk: 0 };
    addSpacePrefix = true;
    addBos = true;
  } else if (model === 'bert') {
    type = 'wpm';
    special = { bos: 101, unk: 100, sep: 102, pad: 0, mask: 103 };
    addBos = true;
    addSep = true;
    cleanSpaces = true;
  } else if (model === 'gpt2') {
    type = 'bpe';
    special = { bos: 11, eos: 11 };
    if (preName === '') {
      log.warn('tokenizer: missing pre-tokenizer type (tokenizer.ggml.pre), using "default"; generation quality will be degraded');
      preName = 'default';
    }
    pre = resolvePreTokenizer(preName);
    cleanSpaces = pre.cleanSpaces;
    ignoreMerges = pre.ignoreMerges;
    addBos = pre.addBos;
    addSep = pre.addSep;
    if (pre.noBos) special.bos = undefined;
  } else {
    throw new TokenizerError('UNSUPPORTED_MODEL', `tokenizer model "${model}" is not supported (llama, gpt2 and bert are)`);
  }
  addSpacePrefix = readBool(meta, 'tokenizer.ggml.add_space_prefix') ?? addSpacePrefix;

  const tokens = readStringArray(meta, 'tokenizer.ggml.tokens');
  if (!tokens) throw new TokenizerError('MISSING_METADATA', 'metadata "tokenizer.ggml.tokens" is missing');
  const n = tokens.length;

  const scores = new Float32Array(n);
  const scoreArr = readArray(meta, 'tokenizer.ggml.scores');
  if (scoreArr) {
    if (scoreArr.elementType !== GGUFValueType.FLOAT32 && scoreArr.elementType !== GGUFValueType.INT32) {
      throw invalid('tokenizer.ggml.scores', 'should be an array of float32 or int32');
    }
    const v = scoreArr.values as Float32Array | Int32Array;
    if (v.length < n) throw invalid('tokenizer.ggml.scores', `has ${v.length} entries for ${n} tokens`);
    for (let i = 0; i < n; i++) scores[i] = v[i];
  }

  const attrs = new Uint16Array(n).fill(TokenAttr.NORMAL);
  const typeArr = readArray(meta, 'tokenizer.ggml.token_type');
  if (typeArr) {
    if (typeArr.elementType !== GGUFValueType.INT32) throw invalid('tokenizer.ggml.token_type', 'should be an array of int32');
    const v = typeArr.values as Int32Array;
    if (v.length < n) throw invalid('tokenizer.ggml.token_type', `has ${v.length} entries for ${n} tokens`);
    for (let i = 0; i < n; i++) attrs[i] = TYPE_TO_ATTR[v[i]] ?? TokenAttr.UNDEFINED;
  }

  const texts: string[] = new Array(n);
  const tokenToId = new Map<string, number>();
  let maxTokenLength = 0;
  for (let i = 0; i < n; i++) {
    let t = tokens[i];
    if (t === '') t = `[EMPTY_${i}]`; // what llama.cpp substitutes, so lookups and decoding agree
    const prev = tokenToId.get(t);
    if (prev !== undefined) {
      throw new TokenizerError('DUPLICATE_TOKEN', `duplicate token in vocabulary: ${JSON.stringify(t)} has ids ${prev} and ${i}`);
    }
    tokenToId.set(t, i);
    texts[i] = t;
    if (t.length > maxTokenLength) maxTokenLength = t.length;
  }

  let merges: Map<string, number> | undefined;
  if (type === 'bpe') {
    const list = readStringArray(meta, 'tokenizer.ggml.merges');
    if (!list) throw new TokenizerError('MISSING_METADATA', 'metadata "tokenizer.ggml.merges" is missing (needed by the gpt2 tokenizer)');
    merges = new Map();
    for (let i = 0; i < list.length; i++) {
      const m = list[i];
      // split at the first space after position 0, as llama.cpp does ("  x" is " " + "x")
      const pos = m.indexOf(' ', 1);
      const key = pos < 0 ? ' ' : m.slice(0, pos) + ' ' + m.slice(pos + 1);
      if (!merges.has(key)) merges.set(key, i);
    }
  }

  // special token ids: defaults out of range are dropped, metadata overrides in range are taken
  for (const k of Object.keys(special) as (keyof SpecialIds)[]) {
    const id = special[k];
    if (id !== undefined && id >= n) special[k] = undefined;
  }
  for (const [k, key] of SPECIAL_KEYS) {
    const e = meta.get(key);
    if (!e) continue;
    if (typeof e.value !== 'number' || !Number.isInteger(e.value)) throw invalid(key, 'should be an integer');
    const id = e.value >>> 0; // stored as u32; -1 / 0xFFFFFFFF means "none" and falls out of range
    if (id < n) special[k] = id;
    else log.debug(`tokenizer: ${key} = ${e.value} is out of range, keeping ${special[k] ?? 'none'}`);
  }

  addBos = readBool(meta, 'tokenizer.ggml.add_bos_token') ?? addBos;
  addEos = readBool(meta, 'tokenizer.ggml.add_eos_token') ?? addEos;
  addSep = readBool(meta, 'tokenizer.ggml.add_sep_token') ?? addSep;
  if (addBos && special.bos === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', 'tokenizer.ggml.add_bos_token is true, but the model has no BOS token');
  if (addEos && special.eos === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', 'tokenizer.ggml.add_eos_token is true, but the model has no EOS token');
  if (addSep && special.sep === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', 'tokenizer.ggml.add_sep_token is true, but the model has no SEP token');

  const lowercase = readBool(meta, 'tokenizer.ggml.normalizer.lowercase') ?? true;
  const stripAccents = readBool(meta, 'tokenizer.ggml.normalizer.strip_accents') ?? lowercase;

  const markControl = (id: number) => {
    if ((attrs[id] & TokenAttr.CONTROL) === 0) {
      log.debug(`tokenizer: control-looking token ${id} ${JSON.stringify(texts[id])} was not control-type; treating it as control`);
      attrs[id] |= TokenAttr.CONTROL;
    }
  };
  const findByText = (list: readonly string[]): number | undefined => {
    let best: number | undefined;
    for (const t of list) {
      const id = tokenToId.get(t);
      if (id !== undefined && (best === undefined || id < best)) best = id;
    }
    return best;
  };
  // llama.cpp fills unset EOT/EOM/FIM ids from well-known texts (the first it meets; we take the lowest id)
  for (const [k, list] of [['eot', EOT_TEXTS], ['eom', EOM_TEXTS], ...FIM_TEXTS] as [keyof SpecialIds, string[]][]) {
    if (special[k] !== undefined) continue;
    special[k] = findByText(list);
    if (special[k] !== undefined) markControl(special[k]!);
  }

  const eog = new Set<number>();
  for (const k of ['fimPad', 'fimRep', 'fimSep'] as const) if (special[k] !== undefined) eog.add(special[k]!);
  for (const t of EOG_TEXTS) {
    const id = tokenToId.get(t);
    if (id !== undefined) {
      eog.add(id);
      markControl(id);
    }
  }
  // gpt-oss renders its channel markers as text
  for (const t of ['<|channel|>', '<|message|>', '<|start|>', '<|constrain|>']) {
    const id = tokenToId.get(t);
    if (id !== undefined) attrs[id] = TokenAttr.USER_DEFINED;
  }
  for (const k of ['eos', 'eot', 'eom'] as const) if (special[k] !== undefined) eog.add(special[k]!);
  // harmony / solar-open: "<|end|>" ends a message, not the generation
  const has = (t: string) => { const id = tokenToId.get(t); return id !== undefined && eog.has(id); };
  if (has('<|end|>') && ((has('<|return|>') && has('<|call|>')) || ((has('<|call|>') || has('<|calls|>')) && has('<|flush|>')))) {
    const id = tokenToId.get('<|end|>')!;
    eog.delete(id);
    attrs[id] = TokenAttr.USER_DEFINED;
  }
  if (has('<|tool_response>') && has('</s>')) {
    const id = tokenToId.get('</s>')!;
    eog.delete(id);
    attrs[id] = TokenAttr.NORMAL;
  }

  const specialTokens: number[] = [];
  const byteLen = new Map<number, number>();
  for (let id = 0; id < n; id++) {
    if (attrs[id] & (TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN)) {
      specialTokens.push(id);
      byteLen.set(id, utf8Length(texts[id]));
    }
  }
  specialTokens.sort((a, b) => byteLen.get(b)! - byteLen.get(a)! || a - b);

  applyModelTokenAttrs(meta, preName, tokenToId, attrs, specialTokens);

  return {
    type, model, preName: preName || 'default', pre, tokens: texts, scores, attrs, tokenToId, merges, special,
    addBos, addEos, addSep, addSpacePrefix, cleanSpaces, ignoreMerges, lowercase, stripAccents, eog, specialTokens,
    maxTokenLength,
  };
}

// llama.cpp sets strip-whitespace attributes on a few models' special tokens by name; they change how
// text around those tokens is tokenized when special tokens are parsed.
function applyModelTokenAttrs(meta: Meta, preName: string, tokenToId: ReadonlyMap<string, number>, attrs: Uint16Array, specialTokens: readonly number[]): void {
  const name = (readString(meta, 'general.name') ?? '').toLowerCase();
  const arch = readString(meta, 'general.architecture') ?? '';
  const set = (text: string, attr: number, on: boolean) => {
    const id = tokenToId.get(text);
    if (id === undefined) return;
    attrs[id] = on ? attrs[id] | attr : attrs[id] & ~attr;
  };
  if (['jina-v2-de', 'jina-v2-es', 'jina-v2-code'].some((s) => preName.includes(s)) || ['nomic-bert-moe', 'jina-bert-v3'].some((s) => arch.includes(s))) {
    set('<mask>', TokenAttr.LSTRIP, true);
  } else if (name.includes('phi-3') || name.includes('phi3')) {
    for (const id of specialTokens) attrs[id] |= TokenAttr.RSTRIP;
    set('</s>', TokenAttr.RSTRIP, true);
    for (const t of ['<unk>', '<s>', '<|endoftext|>']) set(t, TokenAttr.RSTRIP, false);
  } else if (name.includes('modern-bert')) {
    set('[MASK]', TokenAttr.LSTRIP, true);
  }
}
