// tokenizer_config.json: what transformers reads beside tokenizer.json. Special tokens are a string or an
// AddedToken object ({"content": ...}); chat_template is one template or a list of named ones.
import { asArray, asBool, asObject, asString, get, invalid, parseJson, type JsonObject } from './json.js';

export interface HFTokenizerConfig {
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  /** Override of the post-processor: whether encode adds BOS / EOS (transformers' add_bos_token / add_eos_token). */
  addBosToken?: boolean;
  addEosToken?: boolean;
  /** The default chat template (the one named "default" when there are several). */
  chatTemplate?: string;
  /** Every template by name ("default" for a single unnamed one). */
  chatTemplates: Record<string, string>;
  /** Undo tokenization spaces before punctuation when decoding. */
  cleanUpTokenizationSpaces?: boolean;
  modelMaxLength?: number;
  tokenizerClass?: string;
}

const FILE = 'tokenizer_config.json';

function tokenField(o: JsonObject, key: string): string | undefined {
  const v = get(o, key);
  if (v === undefined) return undefined;
  if (typeof v === 'string') return asString(v, `${FILE} ${key}`);
  return asString(get(asObject(v, `${FILE} ${key}`), 'content'), `${FILE} ${key}.content`);
}

function boolField(o: JsonObject, key: string): boolean | undefined {
  const v = get(o, key);
  return v === undefined ? undefined : asBool(v, `${FILE} ${key}`);
}

/** Read tokenizer_config.json (its text or parsed value); throws TokenizerError INVALID_TOKENIZER_JSON. */
export function readTokenizerConfig(input: string | unknown): HFTokenizerConfig {
  const o = asObject(parseJson(input, FILE), FILE);
  const chatTemplates: Record<string, string> = {};
  const template = get(o, 'chat_template');
  if (typeof template === 'string') chatTemplates.default = asString(template, `${FILE} chat_template`);
  else if (template !== undefined) {
    asArray(template, `${FILE} chat_template`).forEach((entry, i) => {
      const e = asObject(entry, `${FILE} chat_template[${i}]`);
      const name = asString(get(e, 'name'), `${FILE} chat_template[${i}].name`);
      if (Object.hasOwn(chatTemplates, name)) throw invalid(`${FILE} chat_template[${i}].name`, `${JSON.stringify(name)} is listed twice`);
      chatTemplates[name] = asString(get(e, 'template'), `${FILE} chat_template[${i}].template`);
    });
  }
  const maxLength = get(o, 'model_max_length');
  if (maxLength !== undefined && (typeof maxLength !== 'number' || !(maxLength > 0))) throw invalid(`${FILE} model_max_length`, 'should be a positive number');
  const tokenizerClass = get(o, 'tokenizer_class');
  return {
    bosToken: tokenField(o, 'bos_token'),
    eosToken: tokenField(o, 'eos_token'),
    unkToken: tokenField(o, 'unk_token'),
    padToken: tokenField(o, 'pad_token'),
    addBosToken: boolField(o, 'add_bos_token'),
    addEosToken: boolField(o, 'add_eos_token'),
    chatTemplate: chatTemplates.default,
    chatTemplates,
    cleanUpTokenizationSpaces: boolField(o, 'clean_up_tokenization_spaces'),
    modelMaxLength: maxLength as number | undefined,
    tokenizerClass: tokenizerClass === undefined ? undefined : asString(tokenizerClass, `${FILE} tokenizer_class`),
  };
}
