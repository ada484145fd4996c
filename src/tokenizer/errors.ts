import { WasmforgeError } from '../errors.js';

export type TokenizerErrorCode =
  /** A tokenizer key is missing from the GGUF metadata. */
  | 'MISSING_METADATA'
  /** A tokenizer key has the wrong type or an impossible value. */
  | 'INVALID_METADATA'
  /** `tokenizer.ggml.model` names a tokenizer we do not implement. */
  | 'UNSUPPORTED_MODEL'
  /** `tokenizer.ggml.pre` names a pre-tokenizer we do not know (or do not implement). */
  | 'UNKNOWN_PRE_TOKENIZER'
  /** Two vocabulary entries have the same text. */
  | 'DUPLICATE_TOKEN'
  /** The model asks for BOS/EOS/SEP to be added but has no such token. */
  | 'MISSING_SPECIAL_TOKEN'
  /** A byte has no token (no `<0xXX>` byte token and no unknown token to fall back on). */
  | 'NO_BYTE_TOKEN'
  /** A token id outside the vocabulary was passed in. */
  | 'INVALID_TOKEN_ID'
  /** tokenizer.json / tokenizer_config.json is not JSON, or a field has the wrong type or an impossible value. */
  | 'INVALID_TOKENIZER_JSON'
  /** tokenizer.json names a component (model, normalizer, pre-tokenizer, ...) or a regex feature we do not implement. */
  | 'UNSUPPORTED_COMPONENT';

/** Every tokenizer failure: a code plus a message naming the key, token or id involved. */
export class TokenizerError extends WasmforgeError<TokenizerErrorCode> {
  override readonly name = 'TokenizerError';
}
