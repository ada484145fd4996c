// Builds a Hugging Face tokenizer.json + tokenizer_config.json from a GGUF vocabulary, laid out the way the
// real files of each family are (what transformers' converters write):
//  - SentencePiece llama (Llama 2, TinyLlama, Phi-3): a BPE model with byte_fallback whose merges come from
//    the piece scores (transformers' generate_merges), a Prepend("▁") + Replace(" " → "▁") normalizer, no
//    pre-tokenizer, and the Replace / ByteFallback / Fuse / Strip decoder;
//  - byte-level BPE (GPT-2, StarCoder, DeepSeek, Llama 3, Qwen2): the ByteLevel pre-tokenizer, alone or after
//    the Split regexes and Digits that the model's file lists (the regexes below are the files' own,
//    as llama.cpp quotes them), the ByteLevel decoder and post-processor;
//  - WordPiece (BERT): BertNormalizer, BertPreTokenizer, [CLS] $A [SEP] and the WordPiece decoder.
// Test-only: nothing ships the GGUF → tokenizer.json direction.
import type { GGUFFile } from '../../src/gguf/reader.js';
import { loadVocab, TokenAttr, type Vocab } from '../../src/tokenizer/vocab.js';

type Json = Record<string, unknown>;
export interface HFFiles {
  tokenizer: Json;
  config: Json;
}

const LLAMA3_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// written with escapes: editors normalize some of these letters (U+1F7D to U+03CE), which changes the ranges
const DEEPSEEK_LLM_REGEXES = [
  '[\r\n]',
  '\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+',
  '\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+',
  '\\s+$',
  '[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+',
  '\\p{N}+',
];

const byteLevel = (addPrefixSpace: boolean, useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: useRegex });
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });

/** The pre-tokenizer of the real tokenizer.json for each llama.cpp pre-tokenizer name we convert. */
function byteLevelPreTokenizer(pre: string): Json {
  switch (pre) {
    case 'gpt-2':
      return byteLevel(false, true);
    case 'starcoder':
      return { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(false, true)] };
    case 'deepseek-llm':
      return { type: 'Sequence', pretokenizers: [...DEEPSEEK_LLM_REGEXES.map(split), byteLevel(false, false)] };
    case 'llama-bpe':
      return { type: 'Sequence', pretokenizers: [split(LLAMA3_REGEX), byteLevel(false, false)] };
    case 'qwen2':
      return { type: 'Sequence', pretokenizers: [split(QWEN2_REGEX), byteLevel(false, false)] };
    default:
      throw new Error(`no tokenizer.json layout for pre-tokenizer ${pre}`);
  }
}

function addedTokens(v: Vocab, include: (attr: number) => boolean): Json[] {
  const out: Json[] = [];
  v.tokens.forEach((content, id) => {
    const attr = v.attrs[id];
    if (!include(attr)) return;
    out.push({
      id, content, single_word: false, lstrip: (attr & TokenAttr.LSTRIP) !== 0, rstrip: (attr & TokenAttr.RSTRIP) !== 0,
      // llama.cpp finds user-defined tokens in the raw text: normalized false does the same
      normalized: false, special: (attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) !== 0,
    });
  });
  return out;
}

const isSpecial = (attr: number) => (attr & (TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN)) !== 0;

function template(v: Vocab, addBos: boolean, addEos: boolean): Json {
  const piece = (id: number, typeId: number) => ({ SpecialToken: { id: v.tokens[id], type_id: typeId } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const bos = addBos ? [v.special.bos!] : [];
  const eos = addEos ? [v.special.eos!] : [];
  const specials: Json = {};
  for (const id of [...bos, ...eos]) specials[v.tokens[id]] = { id: v.tokens[id], ids: [id], tokens: [v.tokens[id]] };
  return {
    type: 'TemplateProcessing',
    single: [...bos.map((id) => piece(id, 0)), seq('A', 0), ...eos.map((id) => piece(id, 0))],
    pair: [...bos.map((id) => piece(id, 0)), seq('A', 0), ...eos.map((id) => piece(id, 0)), ...bos.map((id) => piece(id, 1)), seq('B', 1), ...eos.map((id) => piece(id, 1))],
    special_tokens: specials,
  };
}

/**
 * transformers' generate_merges for a SentencePiece BPE model: every split of every piece into two pieces of
 * the vocabulary (per piece ordered by the ids of its halves), all ordered by the piece's score, then by the
 * lengths of the halves, both descending; ties keep that order.
 */
export function sentencePieceMerges(tokens: readonly string[], scores: Float32Array): [string, string][] {
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!ids.has(t)) ids.set(t, i);
  });
  const merges: { l: string; r: string; score: number; ll: number; rl: number }[] = [];
  tokens.forEach((piece, i) => {
    const chars = Array.from(piece);
    const local: { l: string; r: string; score: number; ll: number; rl: number }[] = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
      if (ids.has(l) && ids.has(r)) local.push({ l, r, score: scores[i], ll: k, rl: chars.length - k });
    }
    local.sort((a, b) => ids.get(a.l)! - ids.get(b.l)! || ids.get(a.r)! - ids.get(b.r)!);
    merges.push(...local);
  });
  merges.sort((a, b) => b.score - a.score || b.ll - a.ll || b.rl - a.rl);
  return merges.map((m) => [m.l, m.r]);
}

function vocabObject(tokens: readonly string[]): Json {
  const vocab: Json = {};
  tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  return vocab;
}

function config(v: Vocab, meta: GGUFFile['metadata']): Json {
  const text = (id: number | undefined) => (id === undefined ? null : v.tokens[id]);
  const chat = meta.get('tokenizer.chat_template')?.value;
  return {
    bos_token: text(v.special.bos), eos_token: text(v.special.eos), unk_token: text(v.special.unk),
    add_bos_token: v.type === 'wpm' ? undefined : v.addBos, add_eos_token: v.type === 'wpm' ? undefined : v.addEos,
    clean_up_tokenization_spaces: v.cleanSpaces, model_max_length: 1_000_000_000_000_000,
    ...(typeof chat === 'string' ? { chat_template: chat } : {}),
  };
}

export interface ConvertOptions {
  /** Merges as "a b" strings (older files) instead of [a, b] pairs. Default: pairs. */
  stringMerges?: boolean;
}

/** tokenizer.json and tokenizer_config.json for the vocabulary of a GGUF file's metadata. */
export function hfFilesFromGGUF(meta: GGUFFile['metadata'], opts: ConvertOptions = {}): HFFiles {
  const v = loadVocab(meta);
  const merges = (list: [string, string][]) => (opts.stringMerges ? list.map(([a, b]) => `${a} ${b}`) : list);
  const base = { version: '1.0', truncation: null, padding: null };
  if (v.type === 'spm') {
    const list = sentencePieceMerges(v.tokens, v.scores);
    const tokenizer = {
      ...base,
      added_tokens: addedTokens(v, isSpecial),
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null,
      post_processor: template(v, v.addBos, v.addEos),
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
      },
      model: {
        type: 'BPE', dropout: null, unk_token: v.tokens[v.special.unk ?? 0], continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: vocabObject(v.tokens), merges: merges(list),
      },
    };
    return { tokenizer, config: config(v, meta) };
  }
  if (v.type === 'bpe') {
    const ggufMerges = meta.get('tokenizer.ggml.merges')!.value as { values: string[] };
    const list = ggufMerges.values.map((m): [string, string] => {
      const at = m.indexOf(' ', 1);
      return [m.slice(0, at), m.slice(at + 1)];
    });
    const post = v.addBos || v.addEos
      ? { type: 'Sequence', processors: [{ ...byteLevel(true, true), trim_offsets: false }, template(v, v.addBos, v.addEos)] }
      : { ...byteLevel(true, true), trim_offsets: false };
    const tokenizer = {
      ...base,
      added_tokens: addedTokens(v, isSpecial),
      normalizer: v.preName === 'qwen2' ? { type: 'NFC' } : null,
      pre_tokenizer: byteLevelPreTokenizer(v.preName),
      post_processor: post,
      decoder: byteLevel(true, true),
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: false, byte_fallback: false, ignore_merges: v.ignoreMerges, vocab: vocabObject(v.tokens), merges: merges(list),
      },
    };
    return { tokenizer, config: config(v, meta) };
  }
  // WordPiece: the GGUF stores word-initial pieces as "▁piece" and continuations bare; tokenizer.json has
  // "piece" and "##piece"; bracketed tokens ([CLS], [unused0]) are the same in both
  const tokens = v.tokens.map((t) => (t.startsWith('\u2581') ? t.slice(1) : /^\[.*\]$/.test(t) ? t : '##' + t));
  const cls = v.special.bos!, sep = v.special.sep!;
  const tokenizer = {
    ...base,
    added_tokens: addedTokens(v, (attr) => (attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) !== 0),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: v.lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [cls], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [sep], tokens: ['[SEP]'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: vocabObject(tokens) },
  };
  return {
    tokenizer,
    config: { cls_token: '[CLS]', sep_token: '[SEP]', unk_token: '[UNK]', pad_token: '[PAD]', mask_token: '[MASK]', do_lower_case: v.lowercase, clean_up_tokenization_spaces: true },
  };
}
