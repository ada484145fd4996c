// Pre-tokenizers for byte-level BPE, chosen by `tokenizer.ggml.pre` as llama.cpp chooses them. Each is a list
// of regexes applied in turn: every regex splits each piece left by the previous ones into its matches and
// the unmatched gaps between them (llama.cpp's unicode_regex_split).
//
// The regexes are llama.cpp's, in JS syntax with Unicode property escapes. Where llama.cpp's engine would
// read a pattern differently from a JS engine, the JS pattern is written to give llama.cpp's result:
//  - `\s` is Unicode White_Space (llama.cpp's whitespace flag, and what its std::regex paths see after
//    mapping non-ASCII whitespace to \v). JS `\s` would add U+FEFF and miss nothing else, so we spell it out.
//  - llama.cpp's hand-written GPT-2 splitter ends whitespace runs like `\s+(?!\S)|\s+`, though its pattern
//    string stops at `\s+(?!\S)`; the `|\s+` is added here.
//  - Literal non-ASCII whitespace in a pattern never matches in llama.cpp (the text it runs on has \v there),
//    so it is left out of our character classes.
import { TokenizerError } from './errors.js';

export interface PreTokenizer {
  /** The `tokenizer.ggml.pre` value it was chosen by. */
  readonly name: string;
  readonly regexes: readonly RegExp[];
  /** Look the whole word up before merging (llama.cpp's ignore_merges). */
  readonly ignoreMerges: boolean;
  /** Default for add_bos when the metadata does not say. */
  readonly addBos: boolean;
  readonly addSep: boolean;
  /** Undo tokenization spaces around punctuation when decoding (clean_up_tokenization_spaces). */
  readonly cleanSpaces: boolean;
  /** The model has no BOS token by default (chatglm). */
  readonly noBos: boolean;
}

const S = String.raw`\p{White_Space}`;
const NS = String.raw`\P{White_Space}`;
const CONTRACTIONS = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;

const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${S}\p{L}\p{N}]+|${S}+(?!${NS})|${S}+`;
const LLAMA3 = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^${S}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const QWEN2 = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^${S}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const QWEN35 = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^${S}\p{L}\p{M}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const BLOOM = String.raw` ?[^(${S}|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+`;
const UPPER_THEN_LOWER = String.raw`((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+`;
const UPPER_RUN = String.raw`((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*`;
const TEKKEN = String.raw`[^\r\n\p{L}\p{N}]?${UPPER_THEN_LOWER}|[^\r\n\p{L}\p{N}]?${UPPER_RUN}|\p{N}| ?[^${S}\p{L}\p{N}]+[\r\n/]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const GPT4O = String.raw`[^\r\n\p{L}\p{N}]?${UPPER_THEN_LOWER}${CONTRACTIONS}?|[^\r\n\p{L}\p{N}]?${UPPER_RUN}${CONTRACTIONS}?|\p{N}{1,3}| ?[^${S}\p{L}\p{N}]+[\r\n/]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const DEEPSEEK3_MAIN = String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_${'`'}{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
// DeepSeek LLM's letter class: the Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, ... letter ranges.
const DEEPSEEK_LETTERS = String.raw`A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}`;

interface Spec {
  regexes: string[];
  ignoreMerges?: boolean;
  addBos?: boolean;
  addSep?: boolean;
  /** llama.cpp turns clean_spaces off for many newer pre-tokenizers. */
  keepSpaces?: boolean;
  noBos?: boolean;
}

const SPECS: [names: string[], spec: Spec][] = [
  [['default'], { regexes: [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2, String.raw`\p{N}+`, '[0-9][0-9][0-9]'] }],
  [['llama3', 'llama-v3', 'llama-bpe', 'falcon3', 'falcon-h1', 'pixtral', 'midm-2.0', 'lfm2', 'jina-v5-nano'],
    { regexes: [LLAMA3], ignoreMerges: true, addBos: true }],
  [['dbrx', 'smaug-bpe'], { regexes: [LLAMA3] }],
  [['deepseek-llm'], {
    keepSpaces: true,
    regexes: [
      '[\r\n]',
      `${S}?[${DEEPSEEK_LETTERS}]+`,
      // upstream's class ends with U+3000..U+3002; U+3000 is whitespace and never matches there
      `${S}?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3001}-\u{3002}]+`,
      `${S}+$`,
      '[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+',
      String.raw`\p{N}+`,
    ],
  }],
  [['deepseek-coder'], { keepSpaces: true, regexes: ['[\r\n]', String.raw`${S}?\p{L}+`, String.raw`${S}?\p{P}+`, '[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+', String.raw`\p{N}`] }],
  [['deepseek-v3', 'hunyuan-dense', 'joyai-llm', 'hy_v4'], { keepSpaces: true, regexes: [String.raw`\p{N}{1,3}`, '[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+', DEEPSEEK3_MAIN] }],
  [['falcon'], { regexes: [String.raw`[\p{P}\$\+<=>\^~\|${'`'}]+`, GPT2, '[0-9][0-9][0-9]'] }],
  [['starcoder', 'refact', 'codeshell', 'exaone', 'minerva-7b', 'mellum2'], { regexes: [String.raw`\p{N}`, GPT2] }],
  [['command-r', 'smollm'], { keepSpaces: true, regexes: [String.raw`\p{N}`, GPT2] }],
  [['gpt-2', 'phi-2', 'jina-es', 'jina-de', 'gigachat', 'jina-v2-es', 'jina-v2-de', 'a.x-4.0', 'mellum', 'modern-bert', 'exaone4', 'mpt', 'olmo', 'jais'],
    { regexes: [GPT2] }],
  [['trillion', 'granite-docling'], { keepSpaces: true, regexes: [GPT2] }],
  [['jina-v1-en', 'jina-v2-code', 'roberta-bpe'], { regexes: [GPT2], addSep: true }],
  [['stablelm2', 'megrez'], { regexes: [QWEN2] }],
  [['qwen2', 'deepseek-r1-qwen', 'kormo', 'f2llmv2', 'hunyuan', 'solar-open', 'grok-2'], { keepSpaces: true, regexes: [QWEN2] }],
  [['qwen35'], { keepSpaces: true, regexes: [QWEN35] }],
  [['poro-chat'], { keepSpaces: true, regexes: [BLOOM] }],
  [['bloom', 'gpt3-finnish'], { regexes: [BLOOM] }],
  [['viking'], { keepSpaces: true, regexes: [BLOOM, String.raw`\p{N}`] }],
  [['glm4', 'chatglm-bpe'], { regexes: [LLAMA3], noBos: true }],
  [['tekken'], { keepSpaces: true, ignoreMerges: true, addBos: true, regexes: [TEKKEN] }],
  [['chameleon'], {
    keepSpaces: true,
    addBos: true,
    regexes: ['<sentinel:[0-9]+>', '(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z', '([\\t\\n]|    |  )', String.raw`\p{N}`, String.raw`[\p{P}!-/:-@\[-${'`'}{-~]`, GPT2],
  }],
  [['gpt-4o', 'llama4', 'kanana2', 'talkie', 'minimax-m2'], { keepSpaces: true, regexes: [GPT4O] }],
  [['bailingmoe', 'bailingmoe2', 'llada-moe'], {
    keepSpaces: true,
    regexes: [String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^${S}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]|${S}+(?!${NS})|${S}+`],
  }],
  [['seed-coder'], { keepSpaces: true, regexes: [String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^${S}\p{L}\p{N}\r\n]+|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`] }],
  [['ufakzeka'], { keepSpaces: true, regexes: [String.raw`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^${S}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`] }],
  [['minicpm5'], { ignoreMerges: true, regexes: [String.raw`\p{N}{1,3}`, String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^${S}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`] }],
];

const BY_NAME = new Map<string, Spec>();
for (const [names, spec] of SPECS) for (const name of names) BY_NAME.set(name, spec);

const compiled = new Map<string, PreTokenizer>();

/** The pre-tokenizer llama.cpp uses for this `tokenizer.ggml.pre` value; a typed error for one it does not know. */
export function resolvePreTokenizer(name: string): PreTokenizer {
  const hit = compiled.get(name);
  if (hit) return hit;
  const spec = BY_NAME.get(name);
  if (!spec) {
    throw new TokenizerError('UNKNOWN_PRE_TOKENIZER', `unknown pre-tokenizer type "${name}" (tokenizer.ggml.pre); known: ${[...BY_NAME.keys()].join(', ')}`);
  }
  const pre: PreTokenizer = {
    name,
    regexes: spec.regexes.map((r) => new RegExp(r, 'gu')),
    ignoreMerges: spec.ignoreMerges ?? false,
    addBos: spec.addBos ?? false,
    addSep: spec.addSep ?? false,
    cleanSpaces: !spec.keepSpaces,
    noBos: spec.noBos ?? false,
  };
  compiled.set(name, pre);
  return pre;
}

/** Names of every supported `tokenizer.ggml.pre` value. */
export function preTokenizerNames(): string[] {
  return [...BY_NAME.keys()];
}

/**
 * Split text into words: each regex in turn cuts every current piece into its matches and the gaps between
 * them. Lookarounds and `$` see only the piece, as in llama.cpp.
 */
export function preTokenize(text: string, regexes: readonly RegExp[]): string[] {
  let pieces = [text];
  for (const re of regexes) {
    const next: string[] = [];
    for (const piece of pieces) {
      let last = 0;
      re.lastIndex = 0;
      for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
        const end = m.index + m[0].length;
        if (end === m.index) {
          // an empty match yields no word; step over one code point
          re.lastIndex = end + (piece.codePointAt(end)! > 0xffff ? 2 : 1);
          continue;
        }
        if (m.index > last) next.push(piece.slice(last, m.index));
        next.push(m[0]);
        last = end;
      }
      if (last < piece.length) next.push(piece.slice(last));
    }
    pieces = next;
  }
  return pieces;
}
