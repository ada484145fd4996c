// The tokenizer.ggml.* keys llama.cpp's convert_hf_to_gguf.py writes for a tokenizer.json, so a converted
// file carries its tokenizer: a SentencePiece-style BPE (byte_fallback, ▁ for spaces) becomes model "llama"
// (its _set_vocab_llama_hf), a byte-level BPE model "gpt2" with its merges and the pre-tokenizer that
// llama.cpp's hash of CHECK_TEXT names (its _set_vocab_gpt2). Token ids past the tokenizer's, up to the
// embedding's rows, are "[PAD<id>]" UNUSED, as the converter pads them.
import { GGUFValueType } from '../gguf/constants.js';
import type { GGUFArray, GGUFEntry } from '../gguf/reader.js';
import { TokenAttr, type Tokenizer } from '../tokenizer/index.js';
import { readMerges } from '../tokenizer/hf/models.js';
import { HFModelError } from './errors.js';
import { CHECK_TEXT, PRE_TOKENIZER_BY_HASH } from './pre-tokenizer-hashes.js';

/** llama.cpp's token types (gguf-py TokenType). */
const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function tokenTypeOf(attr: number): number {
  if (attr & TokenAttr.UNKNOWN) return TokenType.UNKNOWN;
  if (attr & TokenAttr.CONTROL) return TokenType.CONTROL;
  if (attr & TokenAttr.USER_DEFINED) return TokenType.USER_DEFINED;
  if (attr & TokenAttr.BYTE) return TokenType.BYTE;
  if (attr & TokenAttr.UNUSED) return TokenType.UNUSED;
  return TokenType.NORMAL;
}

/** The merges of tokenizer.json's BPE model (already validated by Tokenizer.fromHuggingFace). */
function mergesOf(tokenizerJson: string): [string, string][] {
  const model = (JSON.parse(tokenizerJson) as { model?: { merges?: unknown } }).model;
  return model?.merges === undefined ? [] : readMerges(model.merges, 'tokenizer.json model.merges');
}

/** llama.cpp's name for a byte-level BPE pre-tokenizer: sha256 of the Python repr of CHECK_TEXT's ids. */
export async function preTokenizerName(tokenizer: Tokenizer): Promise<string> {
  const ids = tokenizer.encode(CHECK_TEXT, { addSpecial: true });
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`[${ids.join(', ')}]`));
  const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  const name = PRE_TOKENIZER_BY_HASH.get(hash);
  if (name === undefined) {
    throw new HFModelError('UNSUPPORTED_TOKENIZER', `tokenizer.json: a byte-level BPE pre-tokenizer llama.cpp does not know (its check hash is ${hash}); llama.cpp's converter refuses it too`);
  }
  return name;
}

const arrayOf = (elementType: GGUFValueType, values: GGUFArray['values']): GGUFEntry => ({ type: GGUFValueType.ARRAY, value: { elementType, values } });
const u32 = (value: number): GGUFEntry => ({ type: GGUFValueType.UINT32, value });
const bool = (value: boolean): GGUFEntry => ({ type: GGUFValueType.BOOL, value });

/**
 * The tokenizer.ggml.* entries for `tokenizer` (built from `tokenizerJson`), with `vocabSize` tokens (the
 * embedding's rows). For model "llama" the scores come from the merge ranks (a piece made by an earlier
 * merge scores higher), which makes llama.cpp's SentencePiece merge loop pick the pairs BPE would; the
 * converter writes -1000 for every token when it has no tokenizer.model, which leaves the order to chance.
 */
export async function ggufTokenizerMetadata(tokenizer: Tokenizer, tokenizerJson: string, vocabSize: number): Promise<[string, GGUFEntry][]> {
  if (tokenizer.type !== 'spm' && tokenizer.type !== 'bpe') {
    throw new HFModelError('UNSUPPORTED_TOKENIZER', `tokenizer.json: a ${tokenizer.type} model cannot be converted (BPE only: SentencePiece-style or byte-level)`);
  }
  const tokens: string[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    const text = id < tokenizer.vocabSize ? tokenizer.tokenText(id) : '';
    // an id no token has (a gap, or padding rows of the embedding)
    if (text === '') {
      tokens[id] = `[PAD${id}]`;
      types[id] = TokenType.UNUSED;
    } else {
      tokens[id] = text;
      types[id] = tokenTypeOf(tokenizer.tokenAttr(id));
    }
  }
  const merges = mergesOf(tokenizerJson);
  const out: [string, GGUFEntry][] = [];
  if (tokenizer.type === 'spm') {
    const rankOf = new Map<string, number>();
    merges.forEach(([a, b], rank) => {
      if (!rankOf.has(a + b)) rankOf.set(a + b, rank);
    });
    const scores = new Float32Array(vocabSize);
    for (let id = 0; id < vocabSize; id++) {
      const rank = rankOf.get(tokens[id]!);
      scores[id] = rank === undefined ? -1000 : -rank;
    }
    out.push(
      ['tokenizer.ggml.model', { type: GGUFValueType.STRING, value: 'llama' }],
      ['tokenizer.ggml.pre', { type: GGUFValueType.STRING, value: 'default' }],
      ['tokenizer.ggml.tokens', arrayOf(GGUFValueType.STRING, tokens)],
      ['tokenizer.ggml.scores', arrayOf(GGUFValueType.FLOAT32, scores)],
      ['tokenizer.ggml.token_type', arrayOf(GGUFValueType.INT32, types)],
    );
  } else {
    out.push(
      ['tokenizer.ggml.model', { type: GGUFValueType.STRING, value: 'gpt2' }],
      ['tokenizer.ggml.pre', { type: GGUFValueType.STRING, value: await preTokenizerName(tokenizer) }],
      ['tokenizer.ggml.tokens', arrayOf(GGUFValueType.STRING, tokens)],
      ['tokenizer.ggml.token_type', arrayOf(GGUFValueType.INT32, types)],
      ['tokenizer.ggml.merges', arrayOf(GGUFValueType.STRING, merges.map(([a, b]) => `${a} ${b}`))],
    );
  }
  // gguf-py SpecialVocab: the special ids, then whether BOS / EOS are added
  if (tokenizer.bosId !== undefined) out.push(['tokenizer.ggml.bos_token_id', u32(tokenizer.bosId)]);
  if (tokenizer.eosId !== undefined) out.push(['tokenizer.ggml.eos_token_id', u32(tokenizer.eosId)]);
  if (tokenizer.unkId !== undefined) out.push(['tokenizer.ggml.unknown_token_id', u32(tokenizer.unkId)]);
  out.push(['tokenizer.ggml.add_bos_token', bool(tokenizer.addBos)], ['tokenizer.ggml.add_eos_token', bool(tokenizer.addEos)]);
  return out;
}
