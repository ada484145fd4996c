// What a tokenizer implementation gives the public Tokenizer: the GGUF one (llama.cpp's rules) and the
// Hugging Face tokenizer.json one (the tokenizers library's rules) both implement it, so the engine uses
// either unchanged. The Tokenizer checks ids before they reach an implementation.
import type { VocabType } from './vocab.js';

export interface SpecialTokenIds {
  bos?: number;
  eos?: number;
  eot?: number;
  unk?: number;
}

export interface TokenizerCore {
  readonly type: VocabType;
  readonly vocabSize: number;
  readonly special: Readonly<SpecialTokenIds>;
  /** encode({ addSpecial: true }) starts with BOS / ends with EOS. */
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** A name for the pre-tokenization in use (GGUF: `tokenizer.ggml.pre`). */
  readonly preTokenizer: string;
  isEog(id: number): boolean;
  tokenText(id: number): string;
  tokenAttr(id: number): number;
  encode(text: string, addSpecial: boolean, parseSpecial: boolean): number[];
  /** The bytes the token stands for inside a text (special tokens as their text). */
  piece(id: number): Uint8Array;
  decode(ids: ArrayLike<number>, skipSpecial: boolean, removeSpecial: boolean): string;
}
