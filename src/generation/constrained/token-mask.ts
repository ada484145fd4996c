// Which tokens a grammar allows next. The vocabulary's byte strings go into one trie (built once per
// tokenizer); the allowed set of a state is one walk of the trie through the automaton, pruning a
// whole subtree at the first byte the grammar refuses. Masks are cached per automaton state (a JSON
// string's body, say, is one state however long the string runs), so a step usually costs a lookup.
import type { Tokenizer } from '../../tokenizer/index.js';
import { DEAD, UNKNOWN, type GrammarAutomaton } from './automaton.js';

export class VocabularyTrie {
  /**
   * Per node (numbered in depth-first order, so a node's subtree is the nodes from it up to
   * subtreeEnd): the byte into it, its parent, the end of its subtree, the first token ending here
   * (-1: none). Node 0 is the root.
   */
  readonly byte: Uint8Array;
  readonly parent: Int32Array;
  readonly subtreeEnd: Int32Array;
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
    // Sorted insertion makes nodes in depth-first order.
    const byte: number[] = [0], parentOf: number[] = [-1], head: number[] = [-1];
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
        const node = byte.length;
        byte.push(p[d]!);
        parentOf.push(path[d]!);
        head.push(-1);
        tokenTail.push(-1);
        path.push(node);
      }
      const end = path[p.length]!;
      if (head[end] === -1) head[end] = id;
      else tokenNext[tokenTail[end]!] = id;
      tokenTail[end] = id;
      prev = p;
    }
    this.byte = Uint8Array.from(byte);
    this.parent = Int32Array.from(parentOf);
    const size = new Int32Array(byte.length).fill(1);
    for (let i = byte.length - 1; i > 0; i--) size[parentOf[i]!] += size[i]!;
    this.subtreeEnd = size.map((n, i) => i + n);
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

/** Bytes of masks kept per grammar (a mask is one bit per vocabulary entry: 4 KB for 32k tokens, 19 KB for 152k). */
const MASK_CACHE_BYTES = 16 * 2 ** 20;

/** A set of token ids as bits: token t is bit t & 31 of word t >>> 5. */
export type TokenBits = Uint32Array;

export function hasToken(bits: TokenBits, id: number): boolean {
  return ((bits[id >>> 5]! >>> (id & 31)) & 1) === 1;
}

/** A grammar over one vocabulary: allowed-token masks per automaton state. */
export class TokenMasks {
  private readonly masks = new Map<number, TokenBits>();
  private readonly maxMasks: number;
  /** The automaton state at each trie node during a walk. */
  private readonly stateAt: Int32Array;

  constructor(
    readonly automaton: GrammarAutomaton,
    readonly trie: VocabularyTrie,
  ) {
    this.stateAt = new Int32Array(trie.nodeCount);
    this.maxMasks = Math.max(16, Math.floor(MASK_CACHE_BYTES / (4 * ((trie.vocabSize + 31) >>> 5))));
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
    if (this.masks.size > this.maxMasks) this.masks.delete(this.masks.keys().next().value!);
    return m;
  }

  private compute(state: number): TokenBits {
    const t = this.trie, a = this.automaton;
    const out = new Uint32Array((t.vocabSize + 31) >>> 5);
    if (a.accepts(state)) for (const id of t.eog) out[id >>> 5] |= 1 << (id & 31);
    // Depth-first over the nodes in order; a byte the grammar refuses skips the node's whole subtree.
    const stateAt = this.stateAt, parent = t.parent, end = t.subtreeEnd, bytes = t.byte, head = t.tokenHead, next = t.tokenNext;
    let transitions = a.transitions;
    stateAt[0] = state;
    for (let node = 1, n = t.nodeCount; node < n;) {
      const from = stateAt[parent[node]!]!, b = bytes[node]!;
      let s = transitions[(from << 8) | b]!;
      if (s === UNKNOWN) {
        s = a.step(from, b);
        transitions = a.transitions; // may have grown
      }
      if (s === DEAD) {
        node = end[node]!;
        continue;
      }
      stateAt[node] = s;
      for (let id = head[node]!; id !== -1; id = next[id]!) out[id >>> 5] |= 1 << (id & 31);
      node++;
    }
    return out;
  }
}
