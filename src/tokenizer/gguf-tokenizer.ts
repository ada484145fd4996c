// The tokenizer of a GGUF file's metadata, matching llama.cpp token for token: special-token partitioning,
// BOS/EOS rules, the SPM / BPE / WPM models, and llama.cpp's detokenizer.
import { BpeTokenizer } from './bpe.js';
import type { TokenizerCore } from './core.js';
import { TokenizerError } from './errors.js';
import { SpmTokenizer } from './spm.js';
import { CHAR_TO_BYTE, toWellFormed, utf8Decoder, utf8Encoder } from './unicode.js';
import { TokenAttr, type Vocab, type VocabType } from './vocab.js';
import { WpmTokenizer } from './wpm.js';

const EMPTY = new Uint8Array(0);
const SPACE = 0x20;
const isAsciiSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);

interface TrieNode {
  next: Map<number, TrieNode>;
  id: number;
}

export class GGUFTokenizer implements TokenizerCore {
  readonly vocabSize: number;
  readonly type: VocabType;
  private readonly spm?: SpmTokenizer;
  private readonly bpe?: BpeTokenizer;
  private readonly wpm?: WpmTokenizer;
  private readonly tries: (TrieNode | undefined)[] = [undefined, undefined];

  constructor(private readonly vocab: Vocab) {
    this.type = vocab.type;
    this.vocabSize = vocab.tokens.length;
    if (vocab.type === 'spm') this.spm = new SpmTokenizer(vocab);
    else if (vocab.type === 'bpe') this.bpe = new BpeTokenizer(vocab);
    else this.wpm = new WpmTokenizer(vocab);
  }

  get special() {
    return this.vocab.special;
  }
  get addBos(): boolean {
    return this.vocab.type === 'wpm' || this.vocab.addBos;
  }
  get addEos(): boolean {
    return this.vocab.addEos;
  }
  get preTokenizer(): string {
    return this.vocab.preName;
  }
  isEog(id: number): boolean {
    return this.vocab.eog.has(id);
  }
  tokenText(id: number): string {
    return this.vocab.tokens[id];
  }
  tokenAttr(id: number): number {
    return this.vocab.attrs[id];
  }

  encode(text: string, addSpecial: boolean, parseSpecial: boolean): number[] {
    const v = this.vocab;
    const fragments = text === '' ? [] : this.partition(toWellFormed(text), parseSpecial);
    const out: number[] = [];
    if (v.type === 'spm') {
      if (addSpecial && v.addBos) out.push(v.special.bos!);
      // llama.cpp adds the space prefix at the start and again after every special token
      let prevSpecial = true;
      for (const f of fragments) {
        if (typeof f === 'number') out.push(f);
        else this.spm!.encode(f, v.addSpacePrefix && prevSpecial, out);
        prevSpecial = typeof f === 'number';
      }
      if (addSpecial && v.addEos) out.push(v.special.eos!);
    } else if (v.type === 'bpe') {
      if (addSpecial && v.addBos) out.push(v.special.bos!);
      for (const f of fragments) {
        if (typeof f === 'number') out.push(f);
        else this.bpe!.encode(f, out);
      }
      if (addSpecial && v.addEos) out.push(v.special.eos!);
    } else {
      if (addSpecial) out.push(this.required('bos'));
      for (const f of fragments) {
        if (typeof f === 'number') out.push(f);
        else this.wpm!.encode(f, out);
      }
      if (addSpecial) out.push(this.required('sep'));
    }
    return out;
  }

  /** Token ids → text, as llama.cpp's llama_detokenize does it (including its clean-up of spaces for BPE/WPM models). */
  decode(ids: ArrayLike<number>, skipSpecial: boolean, removeSpecial: boolean): string {
    const v = this.vocab;
    let start = 0, end = ids.length;
    // llama.cpp drops the space the tokenizer put in front of the text, but not when it removed a BOS
    let lstrip = v.addSpacePrefix;
    if (removeSpecial && v.addBos && end > 0 && ids[0] === v.special.bos) {
      lstrip = false;
      start = 1;
    }
    if (removeSpecial && v.addEos && end > start && ids[end - 1] === v.special.eos) end--;

    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = start; i < end; i++) {
      const id = ids[i];
      let p = skipSpecial && v.attrs[id] & (TokenAttr.UNKNOWN | TokenAttr.CONTROL) ? EMPTY : this.piece(id);
      if (lstrip && p[0] === SPACE) p = p.subarray(1);
      lstrip = false;
      parts.push(p);
      total += p.length;
    }
    const bytes = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      bytes.set(p, o);
      o += p.length;
    }
    return utf8Decoder.decode(v.cleanSpaces ? cleanSpaces(bytes) : bytes);
  }

  piece(id: number): Uint8Array {
    const v = this.vocab;
    const attr = v.attrs[id];
    const text = v.tokens[id];
    if (attr & (TokenAttr.UNKNOWN | TokenAttr.CONTROL | TokenAttr.USER_DEFINED)) return utf8Encoder.encode(text);
    if (attr & TokenAttr.NORMAL) {
      if (v.type === 'bpe') return byteDecode(text);
      return utf8Encoder.encode(text.replaceAll('\u2581', ' '));
    }
    if (attr & TokenAttr.BYTE) {
      const b = parseInt(text.slice(3, 5), 16); // "<0xXX>"
      return Uint8Array.of(Number.isNaN(b) ? 0 : b & 0xff);
    }
    return EMPTY; // unused / undefined tokens render as nothing
  }

  private required(k: 'bos' | 'sep'): number {
    const id = this.vocab.special[k];
    if (id === undefined) throw new TokenizerError('MISSING_SPECIAL_TOKEN', `the model has no ${k.toUpperCase()} token to add`);
    return id;
  }

  /**
   * Split text around special-token texts (llama.cpp's tokenizer_st_partition): longest special text first,
   * each splitting every remaining text piece at all its occurrences. Control and unknown tokens only take
   * part when parseSpecial is set; user-defined tokens always do.
   */
  private partition(text: string, parseSpecial: boolean): (string | number)[] {
    const { tokens, attrs } = this.vocab;
    let fragments: (string | number)[] = [text];
    for (const id of this.specialsIn(text, parseSpecial)) {
      const t = tokens[id];
      const next: (string | number)[] = [];
      for (const f of fragments) {
        if (typeof f === 'number') {
          next.push(f);
          continue;
        }
        let base = 0;
        for (let m = f.indexOf(t); m >= 0; m = f.indexOf(t, base)) {
          let leftEnd = m;
          if (attrs[id] & TokenAttr.LSTRIP) while (leftEnd > base && isAsciiSpace(f.charCodeAt(leftEnd - 1))) leftEnd--;
          if (leftEnd > base) next.push(f.slice(base, leftEnd));
          next.push(id);
          base = m + t.length;
          if (attrs[id] & TokenAttr.RSTRIP) while (base < f.length && isAsciiSpace(f.charCodeAt(base))) base++;
        }
        if (base === 0) next.push(f);
        else if (base < f.length) next.push(f.slice(base));
      }
      fragments = next;
    }
    return fragments;
  }

  /** Special tokens that occur in the text, in partition order; a trie pass keeps this cheap for big vocabularies. */
  private specialsIn(text: string, parseSpecial: boolean): number[] {
    const { specialTokens, attrs, tokens } = this.vocab;
    const eligible = (id: number) => parseSpecial || !(attrs[id] & (TokenAttr.CONTROL | TokenAttr.UNKNOWN));
    const k = parseSpecial ? 1 : 0;
    let root = this.tries[k];
    if (!root) {
      root = { next: new Map(), id: -1 };
      for (const id of specialTokens) {
        if (!eligible(id)) continue;
        let node = root;
        const t = tokens[id];
        for (let i = 0; i < t.length; i++) {
          const c = t.charCodeAt(i);
          let child = node.next.get(c);
          if (!child) node.next.set(c, (child = { next: new Map(), id: -1 }));
          node = child;
        }
        node.id = id;
      }
      this.tries[k] = root;
    }
    if (root.next.size === 0) return [];
    const found = new Set<number>();
    for (let i = 0; i < text.length; i++) {
      let node = root.next.get(text.charCodeAt(i));
      for (let j = i + 1; node; j++) {
        if (node.id >= 0) found.add(node.id);
        node = j < text.length ? node.next.get(text.charCodeAt(j)) : undefined;
      }
    }
    return specialTokens.filter((id) => found.has(id));
  }
}

/** Byte-level BPE token text → bytes; characters outside the byte alphabet come out as llama.cpp marks them. */
function byteDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b !== undefined) {
      out.push(b);
      continue;
    }
    const hex = Array.from(utf8Encoder.encode(ch), (x) => x.toString(16).padStart(2, '0')).join('');
    out.push(...utf8Encoder.encode(`[UNK_BYTE_0x${hex}${text}]`));
  }
  return Uint8Array.from(out);
}

/**
 * llama.cpp's clean_up_tokenization_spaces, on bytes: drop the space before ? ! . , ; turn " ' " into "'";
 * drop the space before 's 'm 're 've.
 */
function cleanSpaces(t: Uint8Array): Uint8Array {
  const Q = 0x27; // '
  let total = t.length;
  let w = total ? 1 : 0;
  for (let i = 1; i < total; i++) {
    const x = t[i];
    if (t[i - 1] === SPACE && (x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c)) w--;
    t[w++] = x;
  }
  total = w;
  w = total ? 1 : 0;
  for (let i = 1; i < total; i++) {
    const x = t[i];
    if (x === Q && i + 1 < total && t[i - 1] === SPACE && t[i + 1] === SPACE) {
      w--;
      t[++i] = 0;
    }
    t[w++] = x;
  }
  total = w;
  w = total ? 1 : 0;
  for (let i = 1; i < total; i++) {
    const x = t[i];
    if (t[i - 1] === SPACE && x === Q && i + 1 < total) {
      const x1 = t[i + 1];
      if (x1 === 0x73 || x1 === 0x6d) w--; // 's 'm
      else if (i + 2 < total) {
        const x2 = t[i + 2];
        if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) w--; // 're 've
      }
    }
    t[w++] = x;
  }
  return t.subarray(0, w);
}
