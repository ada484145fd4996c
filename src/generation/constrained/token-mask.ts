// Which tokens a grammar allows next. The vocabulary's byte strings go into one trie (built once per
// tokenizer); the allowed set of a state is one walk of the trie through the automaton, pruning a
// whole subtree at the first byte the grammar refuses. Masks are cached per automaton state (a JSON
// string's body, say, is one state however long the string runs), so a step usually costs a lookup.
import type { Tokenizer } from '../../tokenizer/index.js';
import { DEAD, UNKNOWN, type GrammarAutomaton } from './automaton.js';

export class VocabularyTrie {
  /** Per node: the byte into it, first child, next sibling, first token ending here (-1: none). */
  readonly byte: Uint8Array;
  readonly firstChild: Int32Array;
  readonly nextSibling: Int32Array;
  readonly tokenHead: Int32Array;
  /** Per token: the next token with the same bytes (-1: none). */
  readonly tokenNext: Int32Array;
  /** End-of-generation tokens: allowed only where the grammar is complete. */
  readonly eog: Int32Array;
  readonly vocabSize: number;

  private constructor(tokenizer: Tokenizer) {
    const n = tokenizer.vocabSize;
    this.vocabSize = n;
    const pieces: (Uint8Array | undefined)[] = new Array(n);
    const ids: number[] = [];
    const eog: number[] = [];
    for (let id = 0; id < n; id++) {
      if (tokenizer.isEog(id)) {
        eog.push(id);
        continue;
      }
      const p = tokenizer.tokenToPiece(id);
      // As llama.cpp: a token with no text (or starting with NUL) is never allowed.
      if (p.length === 0 || p[0] === 0) continue;
      pieces[id] = p;
      ids.push(id);
    }
    ids.sort((a, b) => compareBytes(pieces[a]!, pieces[b]!) || a - b);
    const byte: number[] = [0], first: number[] = [-1], next: number[] = [-1], head: number[] = [-1], last: number[] = [-1];
    const tokenNext = new Int32Array(n).fill(-1);
    const tokenTail: number[] = [-1];
    // Sorted insertion: a path of nodes for the previous piece, kept while pieces share a prefix.
    const path: number[] = [0];
    let prev: Uint8Array = new Uint8Array(0);
    for (const id of ids) {
      const p = pieces[id]!;
      let common = 0;
      while (common < p.length && common < prev.length && p[common] === prev[common]) common++;
      path.length = common + 1;
      for (let d = common; d < p.length; d++) {
        const parent = path[d]!, node = byte.length;
        byte.push(p[d]!);
        first.push(-1);
        next.push(-1);
        head.push(-1);
        last.push(-1);
        tokenTail.push(-1);
        if (last[parent] === -1) first[parent] = node;
        else next[last[parent]!] = node;
        last[parent] = node;
        path.push(node);
      }
      const end = path[p.length]!;
      if (head[end] === -1) head[end] = id;
      else tokenNext[tokenTail[end]!] = id;
      tokenTail[end] = id;
      prev = p;
    }
    this.byte = Uint8Array.from(byte);
    this.firstChild = Int32Array.from(first);
    this.nextSibling = Int32Array.from(next);
    this.tokenHead = Int32Array.from(head);
    this.tokenNext = tokenNext;
    this.eog = Int32Array.from(eog);
  }

  private static readonly cache = new WeakMap<Tokenizer, VocabularyTrie>();

  static of(tokenizer: Tokenizer): VocabularyTrie {
    let trie = VocabularyTrie.cache.get(tokenizer);
    if (!trie) {
      trie = new VocabularyTrie(tokenizer);
      VocabularyTrie.cache.set(tokenizer, trie);
    }
    return trie;
  }

  get nodeCount(): number {
    return this.byte.length;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Most masks kept per grammar (each one bit per vocabulary entry: 19 KB for Qwen's 152k). */
const MASK_CACHE = 2048;

/** A set of token ids as bits: token t is bit t & 31 of word t >>> 5. */
export type TokenBits = Uint32Array;

export function hasToken(bits: TokenBits, id: number): boolean {
  return ((bits[id >>> 5]! >>> (id & 31)) & 1) === 1;
}

/** A grammar over one vocabulary: allowed-token masks per automaton state. */
export class TokenMasks {
  private readonly masks = new Map<number, TokenBits>();
  private readonly nodeStack: Int32Array;
  private readonly stateStack: Int32Array;

  constructor(
    readonly automaton: GrammarAutomaton,
    readonly trie: VocabularyTrie,
  ) {
    this.nodeStack = new Int32Array(trie.nodeCount);
    this.stateStack = new Int32Array(trie.nodeCount);
  }

  /** The tokens allowed in `state` (end-of-generation tokens: only where the grammar is complete). */
  mask(state: number): TokenBits {
    let m = this.masks.get(state);
    if (m) {
      // Most recently used last.
      this.masks.delete(state);
      this.masks.set(state, m);
      return m;
    }
    m = this.compute(state);
    this.masks.set(state, m);
    if (this.masks.size > MASK_CACHE) this.masks.delete(this.masks.keys().next().value!);
    return m;
  }

  private compute(state: number): TokenBits {
    const t = this.trie, a = this.automaton;
    const out = new Uint32Array((t.vocabSize + 31) >>> 5);
    if (a.accepts(state)) for (const id of t.eog) out[id >>> 5] |= 1 << (id & 31);
    const nodes = this.nodeStack, states = this.stateStack;
    let top = 0;
    for (let c = t.firstChild[0]!; c !== -1; c = t.nextSibling[c]!) {
      nodes[top] = c;
      states[top++] = state;
    }
    const transitions = a.transitions, bytes = t.byte;
    while (top > 0) {
      const node = nodes[--top]!;
      const from = states[top]!, b = bytes[node]!;
      let s = transitions[from]![b]!;
      if (s === UNKNOWN) s = a.step(from, b);
      if (s === DEAD) continue;
      for (let id = t.tokenHead[node]!; id !== -1; id = t.tokenNext[id]!) out[id >>> 5] |= 1 << (id & 31);
      for (let c = t.firstChild[node]!; c !== -1; c = t.nextSibling[c]!) {
        nodes[top] = c;
        states[top++] = s;
      }
    }
    return out;
  }
}
