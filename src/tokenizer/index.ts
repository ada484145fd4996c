// The tokenizer the engine uses, over one of two implementations: a GGUF file's metadata (matching llama.cpp
// token for token) or a Hugging Face tokenizer.json (matching the tokenizers library). Ids are checked here,
// token pieces cached here, and streaming decoding is built on the pieces for both.
import type { GGUFFile } from '../gguf/reader.js';
import type { TokenizerCore } from './core.js';
import { TokenizerError } from './errors.js';
import { GGUFTokenizer } from './gguf-tokenizer.js';
import { buildHFTokenizer } from './hf/tokenizer.js';
import { loadVocab, TokenAttr, type VocabType } from './vocab.js';

export { TokenizerError, type TokenizerErrorCode } from './errors.js';
export { preTokenizerNames } from './pre-tokenizers.js';
export { TokenAttr, type VocabType } from './vocab.js';
export { readTokenizerConfig, type HFTokenizerConfig } from './hf/config.js';

export interface EncodeOptions {
  /** Add BOS/EOS as the model asks (`tokenizer.ggml.add_bos_token` / `add_eos_token`); BERT adds CLS and SEP. Default false. */
  addSpecial?: boolean;
  /** Turn the text of control tokens (e.g. "<s>", "<|im_end|>") into those tokens. Default false. User-defined tokens are always recognised, as in llama.cpp. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Render control and unknown tokens as nothing instead of their text. Default false. */
  skipSpecial?: boolean;
  /** Drop a leading BOS and a trailing EOS that the model adds on its own (llama.cpp's remove_special). Default false. */
  removeSpecial?: boolean;
}

export interface PieceOptions {
  /** Text of control and unknown tokens; when false they render as nothing. Default true. */
  special?: boolean;
  /** Drop one leading space (llama.cpp's lstrip, used for the first token after the start of text). */
  lstrip?: boolean;
}

export interface StreamDecoder {
  /** Add one token; returns the text that is now complete (never a broken UTF-8 sequence). */
  push(id: number): string;
  /** End of stream: returns what was held back, with incomplete sequences as U+FFFD. */
  flush(): string;
}

const EMPTY = new Uint8Array(0);
const SPACE = 0x20;

export class Tokenizer {
  readonly vocabSize: number;
  /** `llama` → 'spm', `gpt2` → 'bpe', `bert` → 'wpm'; from tokenizer.json: byte-level BPE → 'bpe', other BPE → 'spm', WordPiece → 'wpm', Unigram → 'ugm', WordLevel → 'wlm'. */
  readonly type: VocabType;
  private readonly pieces: (Uint8Array | undefined)[];

  private constructor(private readonly core: TokenizerCore) {
    this.type = core.type;
    this.vocabSize = core.vocabSize;
    this.pieces = new Array(this.vocabSize);
  }

  /** Build the tokenizer from GGUF metadata (`readGGUF(...).metadata`); throws TokenizerError on bad or unsupported metadata. */
  static fromGGUF(metadata: GGUFFile['metadata']): Tokenizer {
    return new Tokenizer(new GGUFTokenizer(loadVocab(metadata)));
  }

  /**
   * Build the tokenizer from a Hugging Face `tokenizer.json` (its text or parsed value) and optionally its
   * `tokenizer_config.json` (BOS/EOS tokens, add_bos/eos_token, clean_up_tokenization_spaces). Both are read
   * as untrusted input: every problem is a TokenizerError (INVALID_TOKENIZER_JSON, UNSUPPORTED_COMPONENT, ...).
   */
  static fromHuggingFace(tokenizerJson: string | unknown, tokenizerConfig?: string | unknown): Tokenizer {
    return new Tokenizer(buildHFTokenizer(tokenizerJson, tokenizerConfig));
  }

  get bosId(): number | undefined {
    return this.core.special.bos;
  }
  get eosId(): number | undefined {
    return this.core.special.eos;
  }
  get eotId(): number | undefined {
    return this.core.special.eot;
  }
  get unkId(): number | undefined {
    return this.core.special.unk;
  }
  /** Whether encode({ addSpecial: true }) starts with BOS. */
  get addBos(): boolean {
    return this.core.addBos;
  }
  get addEos(): boolean {
    return this.core.addEos;
  }
  /** `tokenizer.ggml.pre` (BPE) or 'default'; for tokenizer.json, the pre-tokenizer's type. */
  get preTokenizer(): string {
    return this.core.preTokenizer;
  }

  /** End of generation: EOS, EOT, EOM and the other tokens llama.cpp treats as stop tokens. */
  isEog(id: number): boolean {
    return this.core.isEog(id);
  }

  /** The token's vocabulary text (with ▁ / byte characters as stored). */
  tokenText(id: number): string {
    this.check(id);
    return this.core.tokenText(id);
  }

  /** TokenAttr bits of a token. */
  tokenAttr(id: number): number {
    this.check(id);
    return this.core.tokenAttr(id);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.core.encode(text, opts.addSpecial ?? false, opts.parseSpecial ?? false);
  }

  /** The bytes a token stands for (one token can be part of a UTF-8 character). */
  tokenToPiece(id: number, opts: PieceOptions = {}): Uint8Array {
    this.check(id);
    const { special = true, lstrip = false } = opts;
    if (!special && this.core.tokenAttr(id) & (TokenAttr.UNKNOWN | TokenAttr.CONTROL)) return EMPTY;
    const piece = (this.pieces[id] ??= this.core.piece(id));
    return lstrip && piece[0] === SPACE ? piece.subarray(1) : piece;
  }

  /** Token ids → text: llama.cpp's llama_detokenize for GGUF tokenizers, the tokenizer.json decoder otherwise. */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    for (let i = 0; i < ids.length; i++) this.check(ids[i]);
    return this.core.decode(ids, opts.skipSpecial ?? false, opts.removeSpecial ?? false);
  }

  /** Incremental decoder for generation: text comes out as soon as its UTF-8 sequences are complete. */
  createStreamDecoder(opts: { skipSpecial?: boolean } = {}): StreamDecoder {
    const special = !opts.skipSpecial;
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    return {
      push: (id: number) => decoder.decode(this.tokenToPiece(id, { special }), { stream: true }),
      flush: () => decoder.decode(),
    };
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError('INVALID_TOKEN_ID', `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}
