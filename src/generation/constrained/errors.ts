import { WasmforgeError } from '../../errors.js';

export type GrammarErrorCode =
  /** The GBNF text does not parse; the message gives line and column. */
  | 'PARSE_ERROR'
  /** A rule is used but never defined, or there is no root rule. */
  | 'UNDEFINED_RULE'
  /** A rule can reach itself without consuming a character (the matcher would never stop). */
  | 'LEFT_RECURSION'
  /** A JSON schema keyword or value this converter does not handle (never silently ignored). */
  | 'UNSUPPORTED_SCHEMA'
  /** A schema that is not valid JSON Schema (wrong types, dangling $ref). */
  | 'INVALID_SCHEMA'
  /** A feature of the grammar language not implemented here. */
  | 'UNSUPPORTED';

export class GrammarError extends WasmforgeError<GrammarErrorCode> {
  override readonly name = 'GrammarError';
}
