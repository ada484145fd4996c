// A tokenizer built from a Hugging Face tokenizer.json (and optionally tokenizer_config.json), run as the
// tokenizers library runs it: added tokens are cut out first, each remaining piece is normalized,
// pre-tokenized into words and each word tokenized by the model; the post-processor adds special tokens;
// the decoder turns ids back into text.
import type { TokenizerCore } from '../core.js';
import { toWellFormed, utf8Encoder } from '../unicode.js';
import { EOG_TEXTS, FIM_TEXTS, TokenAttr, type VocabType } from '../vocab.js';
import { AddedVocabulary, readAddedTokens } from './added-tokens.js';
import { readTokenizerConfig, type HFTokenizerConfig } from './config.js';
import { cleanupSpaces, readDecoder, runDecoder, type DecodeStep } from './decoders.js';
import { asObject, asString, get, invalid, MAX_NESTING, parseJson, unsupported } from './json.js';
import { readModel, type HFModel } from './models.js';
import { readNormalizer, type Normalize } from './normalizers.js';
import { readPostProcessor, type PostProcess } from './post-processors.js';
import { readPreTokenizer, type PreTokenize } from './pre-tokenizers.js';

const FILE = 'tokenizer.json';
const EMPTY = new Uint8Array(0);

interface Parts {
  model: HFModel;
  normalize?: Normalize;
  preTokenize?: PreTokenize;
  postProcess?: PostProcess;
  decoder?: DecodeStep;
  added: AddedVocabulary;
  /** id → token text (model vocabulary or added token); undefined for ids no token has. */
  texts: (string | undefined)[];
  /** id → the text the decoder sees (an added token with normalized = true: its normalized form). */
  decodeTexts: (string | undefined)[];
  attrs: Uint16Array;
  special: Uint8Array;
  type: VocabType;
  preName: string;
}

/** Does a component, or one nested in it, have this type? */
function hasType(v: unknown, type: string, depth = 0): boolean {
  if (depth > MAX_NESTING || typeof v !== 'object' || v === null) return false;
  if (Array.isArray(v)) return v.some((x) => hasType(x, type, depth + 1));
  return Object.values(v).some((x) => hasType(x, type, depth + 1)) || (v as Record<string, unknown>).type === type;
}

export function buildHFTokenizer(jsonInput: unknown, configInput?: unknown): TokenizerCore {
  const root = asObject(parseJson(jsonInput, FILE), FILE);
  const version = get(root, 'version');
  if (version !== undefined && asString(version, `${FILE} version`) !== '1.0') throw unsupported(`${FILE} version`, `version ${JSON.stringify(version)} (only 1.0 is known)`);
  // truncation and padding shape batches; transformers does not apply them unless asked per call
  for (const key of ['truncation', 'padding']) if (get(root, key) !== undefined) asObject(get(root, key), `${FILE} ${key}`);

  const modelJson = get(root, 'model');
  if (modelJson === undefined) throw invalid(`${FILE} model`, 'is missing');
  const model = readModel(modelJson, `${FILE} model`);
  const normalizerJson = get(root, 'normalizer');
  const normalize = normalizerJson === undefined ? undefined : readNormalizer(normalizerJson, `${FILE} normalizer`);
  const preJson = get(root, 'pre_tokenizer');
  const preTokenize = preJson === undefined ? undefined : readPreTokenizer(preJson, `${FILE} pre_tokenizer`);
  const decoderJson = get(root, 'decoder');
  const decoder = decoderJson === undefined ? undefined : readDecoder(decoderJson, `${FILE} decoder`);
  const addedTokens = readAddedTokens(get(root, 'added_tokens'), `${FILE} added_tokens`);

  // one id space: the model's vocabulary and the added tokens; ids may leave gaps (tokens removed from a
  // vocabulary), but tables are sized by the largest id, so it is bounded by the number of entries
  let bound = 0;
  for (const id of model.vocab.values()) bound = Math.max(bound, id + 1);
  for (const t of addedTokens) bound = Math.max(bound, t.id + 1);
  const entries = model.vocab.size + addedTokens.length;
  if (bound > 4 * entries + 1024) throw invalid(`${FILE} model.vocab`, `ids go up to ${bound - 1} for ${entries} entries`);
  const texts: (string | undefined)[] = new Array(bound);
  const attrs = new Uint16Array(bound);
  const special = new Uint8Array(bound);
  for (const [text, id] of model.vocab) {
    texts[id] = text;
    attrs[id] = TokenAttr.NORMAL;
  }
  if (model.byteFallback) {
    for (let b = 0; b < 256; b++) {
      const id = model.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id !== undefined) attrs[id] = TokenAttr.BYTE;
    }
  }
  const decodeTexts = texts.slice();
  const addedIds = new Map<string, number>();
  for (const [i, t] of addedTokens.entries()) {
    const at = `${FILE} added_tokens[${i}]`;
    const modelId = model.vocab.get(t.content);
    if (modelId !== undefined && modelId !== t.id) throw invalid(at, `${JSON.stringify(t.content)} has id ${t.id}, but ${modelId} in the model's vocabulary`);
    if (modelId === undefined && texts[t.id] !== undefined && addedIds.get(texts[t.id]!) !== t.id) {
      throw invalid(at, `id ${t.id} of ${JSON.stringify(t.content)} is already ${JSON.stringify(texts[t.id])}`);
    }
    const earlier = addedIds.get(t.content);
    if (earlier !== undefined && earlier !== t.id) throw invalid(at, `${JSON.stringify(t.content)} is listed with ids ${earlier} and ${t.id}`);
    addedIds.set(t.content, t.id);
    texts[t.id] = t.content;
    decodeTexts[t.id] = t.normalized && normalize ? normalize(t.content) : t.content;
    attrs[t.id] = (t.special ? TokenAttr.CONTROL : TokenAttr.USER_DEFINED) |
      (t.lstrip ? TokenAttr.LSTRIP : 0) | (t.rstrip ? TokenAttr.RSTRIP : 0) | (t.singleWord ? TokenAttr.SINGLE_WORD : 0) | (t.normalized ? TokenAttr.NORMALIZED : 0);
    special[t.id] = t.special ? 1 : 0;
  }

  const postJson = get(root, 'post_processor');
  const postProcess = postJson === undefined ? undefined : readPostProcessor(postJson, `${FILE} post_processor`, bound);
  const config = configInput === undefined ? undefined : readTokenizerConfig(configInput);

  const type: VocabType = model.type === 'BPE' ? (hasType(preJson, 'ByteLevel') || hasType(decoderJson, 'ByteLevel') ? 'bpe' : 'spm')
    : model.type === 'WordPiece' ? 'wpm' : model.type === 'Unigram' ? 'ugm' : 'wlm';
  const preName = preJson === undefined ? 'none' : String((preJson as { type?: unknown }).type);
  return new HFTokenizer({
    model, normalize, preTokenize, postProcess, decoder, added: new AddedVocabulary(addedTokens, normalize),
    texts, decodeTexts, attrs, special, type, preName,
  }, config, addedIds);
}

class HFTokenizer implements TokenizerCore {
  readonly type: VocabType;
  readonly vocabSize: number;
  readonly preTokenizer: string;
  readonly special: { bos?: number; eos?: number; eot?: number; unk?: number };
  readonly addBos: boolean;
  readonly addEos: boolean;
  private readonly postProcess?: PostProcess;
  private readonly eog = new Set<number>();
  private readonly cleanUp: boolean;

  constructor(private readonly p: Parts, config: HFTokenizerConfig | undefined, addedIds: ReadonlyMap<string, number>) {
    this.type = p.type;
    this.vocabSize = p.texts.length;
    this.preTokenizer = p.preName;
    const idOf = (text: string | undefined, key: string): number | undefined => {
      if (text === undefined) return undefined;
      const id = addedIds.get(text) ?? p.model.vocab.get(text);
      if (id === undefined) throw invalid(`tokenizer_config.json ${key}`, `${JSON.stringify(text)} is not in the vocabulary`);
      return id;
    };
    // without a config, BOS is what the post-processor puts first; EOS a special token llama.cpp would stop at
    const around = p.postProcess ? p.postProcess([-1]) : [-1];
    const prefix = around.slice(0, around.indexOf(-1));
    const suffix = around.slice(around.indexOf(-1) + 1);
    let eosGuess: number | undefined;
    for (const [text, id] of addedIds) if (p.special[id] && EOG_TEXTS.has(text) && (eosGuess === undefined || id < eosGuess)) eosGuess = id;
    const bos = config?.bosToken !== undefined ? idOf(config.bosToken, 'bos_token') : prefix[0];
    const eos = config?.eosToken !== undefined ? idOf(config.eosToken, 'eos_token') : eosGuess;
    this.special = { bos, eos, unk: config?.unkToken !== undefined ? idOf(config.unkToken, 'unk_token') : p.model.unkId };

    // transformers' add_bos_token / add_eos_token rebuild the template as [BOS] $A [EOS]
    if (config?.addBosToken !== undefined || config?.addEosToken !== undefined) {
      const addBos = config.addBosToken ?? (bos !== undefined && prefix[0] === bos);
      const addEos = config.addEosToken ?? (eos !== undefined && suffix[suffix.length - 1] === eos);
      if (addBos && bos === undefined) throw invalid('tokenizer_config.json add_bos_token', 'is true, but there is no bos_token');
      if (addEos && eos === undefined) throw invalid('tokenizer_config.json add_eos_token', 'is true, but there is no eos_token');
      this.postProcess = (ids) => [...(addBos ? [bos!] : []), ...ids, ...(addEos ? [eos!] : [])];
      this.addBos = addBos;
      this.addEos = addEos;
    } else {
      this.postProcess = p.postProcess;
      this.addBos = bos !== undefined && prefix[0] === bos;
      this.addEos = eos !== undefined && suffix.length > 0 && suffix[suffix.length - 1] === eos;
    }
    // the engine stops where llama.cpp would for the same vocabulary: EOS, the end-of-turn texts, and the
    // FIM pad / repo / file-separator token (the lowest id of each kind)
    if (eos !== undefined) this.eog.add(eos);
    const idOfText = (text: string) => addedIds.get(text) ?? p.model.vocab.get(text);
    for (const text of EOG_TEXTS) {
      const id = idOfText(text);
      if (id !== undefined) this.eog.add(id);
    }
    for (const [kind, list] of FIM_TEXTS) {
      if (kind !== 'fimPad' && kind !== 'fimRep' && kind !== 'fimSep') continue;
      const ids = list.map(idOfText).filter((id): id is number => id !== undefined);
      if (ids.length > 0) this.eog.add(Math.min(...ids));
    }
    this.cleanUp = config?.cleanUpTokenizationSpaces ?? false;
  }

  isEog(id: number): boolean {
    return this.eog.has(id);
  }
  tokenText(id: number): string {
    return this.p.texts[id] ?? '';
  }
  tokenAttr(id: number): number {
    return this.p.attrs[id];
  }

  encode(text: string, addSpecial: boolean, parseSpecial: boolean): number[] {
    const { added, normalize, preTokenize, model } = this.p;
    const out: number[] = [];
    if (text !== '') {
      for (const part of added.extract(toWellFormed(text), normalize, parseSpecial)) {
        if (typeof part === 'number') out.push(part);
        else for (const word of preTokenize ? preTokenize([part]) : [part]) model.tokenize(word.text, out);
      }
    }
    return addSpecial && this.postProcess ? this.postProcess(out) : out;
  }

  piece(id: number): Uint8Array {
    const t = this.p.decodeTexts[id];
    if (t === undefined) return EMPTY;
    const piece = runDecoder(this.p.decoder, [t], { bytes: true, atStart: false, atEnd: false });
    return typeof piece === 'string' ? utf8Encoder.encode(piece) : piece;
  }

  decode(ids: ArrayLike<number>, skipSpecial: boolean, removeSpecial: boolean): string {
    let start = 0, end = ids.length;
    const { bos, eos } = this.special;
    if (removeSpecial && this.addBos && end > 0 && ids[0] === bos) start++;
    if (removeSpecial && this.addEos && end > start && ids[end - 1] === eos) end--;
    const tokens: string[] = [];
    for (let i = start; i < end; i++) {
      const id = ids[i];
      const t = this.p.decodeTexts[id];
      if (t === undefined || (skipSpecial && this.p.special[id])) continue;
      tokens.push(t);
    }
    const text = runDecoder(this.p.decoder, tokens, { bytes: false, atStart: true, atEnd: true }) as string;
    return this.cleanUp ? cleanupSpaces(text, true) : text;
  }
}
