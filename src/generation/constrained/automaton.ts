// A grammar as a lazily built byte automaton, the way llama.cpp's matcher works but memoized:
// a parse state is a set of stacks (positions in rules still to match, llama.cpp's
// llama_grammar_stacks); stacks are hash-consed nodes (position, continuation) so equal stacks are
// one id, and a set of them is one id. A state of the automaton is (stack set, partial UTF-8
// character), and its transition on each byte is computed once, when first needed. Tokens are byte
// strings, so a token is allowed exactly when walking its bytes from the current state never dies
// (a token may end inside a character, if some rule could still complete it, as in llama.cpp).
import { GrammarError } from './errors.js';
import type { Grammar, GrammarSymbol } from './gbnf.js';

/** A state with no way forward. */
export const DEAD = -1;
/** The empty stack: everything matched. */
const DONE = -1;
export const UNKNOWN = -2;

/** A bound on the automaton's size: a grammar whose states grow past it is refused rather than let memory grow without limit. */
const MAX_STACKS = 2_000_000;

export class GrammarAutomaton {
  /** Rule symbol at each position; null = the end of an alternative. */
  private readonly posSym: (GrammarSymbol | null)[] = [];
  private readonly altStarts: number[][] = [];
  // Stack nodes: (position, continuation node); DONE is the empty stack.
  private readonly nodePos: number[] = [];
  private readonly nodeParent: number[] = [];
  private readonly nodeIds = new Map<number, number>();
  private readonly closures = new Map<number, number[]>();
  // Stack sets: sorted node ids.
  private readonly sets: number[][] = [];
  private readonly setIds = new Map<string, number>();
  // Automaton states: (set, partial character value, bytes it still needs).
  private readonly stateSet: number[] = [];
  private readonly statePartial: number[] = [];
  private readonly stateRemain: number[] = [];
  private readonly stateIds = new Map<string, number>();
  /** The next state of state s on byte b at [s * 256 + b] (UNKNOWN until first needed); grows, so read it afresh after step(). */
  transitions = new Int32Array(256 * 64).fill(UNKNOWN);
  readonly initial: number;

  constructor(readonly grammar: Grammar) {
    for (const alts of grammar.rules) {
      const starts: number[] = [];
      for (const seq of alts) {
        starts.push(this.posSym.length);
        this.posSym.push(...seq, null);
      }
      this.altStarts.push(starts);
    }
    const rootNodes = new Set<number>();
    for (const start of this.altStarts[grammar.root]!) for (const n of this.closure(this.node(start, DONE))) rootNodes.add(n);
    this.initial = this.state(this.setOf(rootNodes), 0, 0);
  }

  /** Whether everything the grammar asks for has been matched (end of generation is allowed here). */
  accepts(state: number): boolean {
    return state !== DEAD && this.stateRemain[state] === 0 && this.sets[this.stateSet[state]!]![0] === DONE;
  }

  /** Whether any character can follow (false: the grammar is complete and only the end may come). */
  canContinue(state: number): boolean {
    return state !== DEAD && (this.stateRemain[state]! > 0 || this.sets[this.stateSet[state]!]!.some((n) => n !== DONE));
  }

  /** The state after one more byte (DEAD if the grammar cannot go on with it). */
  step(state: number, byte: number): number {
    let next = this.transitions[(state << 8) | byte]!;
    if (next === UNKNOWN) {
      next = this.computeStep(state, byte);
      this.transitions[(state << 8) | byte] = next; // (computeStep may have grown the table)
    }
    return next;
  }

  /** The state after a byte string (DEAD as soon as one byte is refused). */
  walk(state: number, bytes: Uint8Array): number {
    for (let i = 0; i < bytes.length && state !== DEAD; i++) state = this.step(state, bytes[i]!);
    return state;
  }

  get size(): { states: number; stackSets: number; stacks: number } {
    return { states: this.stateSet.length, stackSets: this.sets.length, stacks: this.nodePos.length };
  }

  private node(pos: number, parent: number): number {
    const key = (parent + 1) * this.posSym.length + pos;
    let id = this.nodeIds.get(key);
    if (id === undefined) {
      id = this.nodePos.length;
      if (id >= MAX_STACKS) throw new GrammarError('UNSUPPORTED', `the grammar's parse states grew past ${MAX_STACKS} stacks (deeply nested or ambiguous); simplify it`);
      this.nodePos.push(pos);
      this.nodeParent.push(parent);
      this.nodeIds.set(key, id);
    }
    return id;
  }

  /** The stacks a node stands for once rule references at its top are expanded: each tops on a character symbol, or is DONE. */
  private closure(start: number): number[] {
    const cached = this.closures.get(start);
    if (cached) return cached;
    const out = new Set<number>();
    const seen = new Set<number>();
    const visit = (n: number): void => {
      if (n === DONE) {
        out.add(DONE);
        return;
      }
      if (seen.has(n)) return;
      seen.add(n);
      const pos = this.nodePos[n]!;
      const sym = this.posSym[pos];
      if (sym === null) visit(this.nodeParent[n]!); // end of the alternative: back to the caller
      else if (sym!.kind === 'rule') {
        const cont = this.node(pos + 1, this.nodeParent[n]!);
        for (const alt of this.altStarts[sym!.id]!) visit(this.node(alt, cont));
      } else out.add(n);
    };
    visit(start);
    const list = [...out];
    this.closures.set(start, list);
    return list;
  }

  private setOf(nodes: Set<number>): number {
    const sorted = [...nodes].sort((a, b) => a - b);
    const key = sorted.join(',');
    let id = this.setIds.get(key);
    if (id === undefined) {
      id = this.sets.length;
      this.sets.push(sorted);
      this.setIds.set(key, id);
    }
    return id;
  }

  private state(set: number, partial: number, remain: number): number {
    const key = remain === 0 ? `${set}` : this.partialKey(set, partial, remain);
    let id = this.stateIds.get(key);
    if (id === undefined) {
      id = this.stateSet.length;
      this.stateSet.push(set);
      this.statePartial.push(partial);
      this.stateRemain.push(remain);
      this.stateIds.set(key, id);
      if ((id + 1) << 8 > this.transitions.length) {
        const grown = new Int32Array(this.transitions.length * 2).fill(UNKNOWN);
        grown.set(this.transitions);
        this.transitions = grown;
      }
    }
    return id;
  }

  /**
   * The key of a state inside a multi-byte character. Two partial characters behave the same when
   * every symbol that could read the character either accepts all of its possible completions or
   * none of them: then the key is that pattern, not the bytes (inside a JSON string every
   * non-ASCII character is alike, so its thousands of byte prefixes are one state).
   */
  private partialKey(set: number, value: number, remain: number): string {
    const [lo, hi] = completions(value, remain);
    // Only characters that are all valid (no surrogates, none past U+10FFFF) may share a state, and not the leads
    // whose next byte has a narrower range (E0, ED, F0, F4): the others are checked exactly.
    if (hi > 0x10ffff || (lo <= 0xdfff && hi >= 0xd800) || RESTRICTED_LEAD(value, remain)) return `${set}:${value}:${remain}`;
    let pattern = '';
    for (const n of this.sets[set]!) {
      if (n === DONE) continue;
      const sym = this.posSym[this.nodePos[n]!]!;
      const some = overlaps(sym, lo, hi);
      if (!some) pattern += '0';
      else if (coversAll(sym, lo, hi)) pattern += '1';
      else return `${set}:${value}:${remain}`; // the exact bytes matter
    }
    return `${set}:~${pattern}:${remain}`;
  }

  /** The stack set after matching code point `cp`, or DEAD. */
  private advance(set: number, cp: number): number {
    const out = new Set<number>();
    for (const n of this.sets[set]!) {
      if (n === DONE) continue;
      const pos = this.nodePos[n]!;
      if (!matches(this.posSym[pos]!, cp)) continue;
      for (const m of this.closure(this.node(pos + 1, this.nodeParent[n]!))) out.add(m);
    }
    return out.size === 0 ? DEAD : this.setOf(out);
  }

  /** Whether some stack's next symbol could match a character whose UTF-8 starts with these bytes. */
  private couldComplete(set: number, value: number, remain: number): boolean {
    const [lo, hi] = completions(value, remain);
    for (const n of this.sets[set]!) {
      if (n !== DONE && overlaps(this.posSym[this.nodePos[n]!]!, lo, hi)) return true;
    }
    return false;
  }

  private computeStep(state: number, byte: number): number {
    const set = this.stateSet[state]!, remain = this.stateRemain[state]!;
    if (remain === 0) {
      if (byte < 0x80) {
        const next = this.advance(set, byte);
        return next === DEAD ? DEAD : this.state(next, 0, 0);
      }
      let value: number, need: number;
      if (byte >> 5 === 0b110) [value, need] = [byte & 0x1f, 1];
      else if (byte >> 4 === 0b1110) [value, need] = [byte & 0x0f, 2];
      else if (byte >= 0xf0 && byte <= 0xf4) [value, need] = [byte & 0x07, 3];
      // A continuation byte with nothing to continue, or 0xF5-0xFF, which start no UTF-8 character. (llama.cpp reads
      // 0xF8-0xFF as 4-byte leads and so lets a model write invalid UTF-8; the text made here is always valid.)
      else return DEAD;
      if (need === 1 && value < 2) return DEAD; // overlong
      return this.couldComplete(set, value, need) ? this.state(set, value, need) : DEAD;
    }
    if (byte >> 6 !== 0b10) return DEAD;
    const lead = this.statePartial[state]!;
    // UTF-8's narrower second bytes: no overlong forms (E0, F0), no surrogates (ED), nothing past U+10FFFF (F4).
    if (RESTRICTED_LEAD(lead, remain) && (remain === 2 ? (lead === 0 ? byte < 0xa0 : byte > 0x9f) : lead === 0 ? byte < 0x90 : byte > 0x8f)) return DEAD;
    const value = (lead << 6) | (byte & 0x3f);
    if (remain > 1) return this.couldComplete(set, value, remain - 1) ? this.state(set, value, remain - 1) : DEAD;
    if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return DEAD; // not a Unicode scalar value
    const next = this.advance(set, value);
    return next === DEAD ? DEAD : this.state(next, 0, 0);
  }
}

/** A state right after the lead byte E0, ED (3 bytes) or F0, F4 (4 bytes), whose next byte UTF-8 restricts. */
const RESTRICTED_LEAD = (value: number, remain: number): boolean => (remain === 2 && (value === 0 || value === 0xd)) || (remain === 3 && (value === 0 || value === 4));

/** The code points a partial UTF-8 character (its bits so far, bytes still to come) can complete to. */
function completions(value: number, remain: number): [number, number] {
  let lo = value << (6 * remain);
  const hi = lo | ((1 << (6 * remain)) - 1);
  if (lo === 0) lo = remain === 2 ? 1 << 11 : remain === 3 ? 1 << 16 : lo;
  return [lo, hi];
}

/** Whether a character symbol matches every code point in [lo, hi]. */
function coversAll(sym: GrammarSymbol, lo: number, hi: number): boolean {
  if (sym.kind === 'any') return true;
  if (sym.kind !== 'chars') return false;
  // [lo, hi] is inside the symbol's set: for a negated class, it overlaps none of the ranges.
  const r = sym.ranges;
  if (sym.negated) {
    for (let i = 0; i < r.length; i += 2) if (r[i]! <= hi && lo <= r[i + 1]!) return false;
    return true;
  }
  for (let i = 0; i < r.length; i += 2) if (r[i]! <= lo && hi <= r[i + 1]!) return true;
  return false; // (ranges that tile [lo, hi] together are rare; treated as mixed, which is only slower)
}

function matches(sym: GrammarSymbol, cp: number): boolean {
  if (sym.kind === 'any') return true;
  if (sym.kind !== 'chars') return false;
  const r = sym.ranges;
  let inside = false;
  for (let i = 0; i < r.length; i += 2) {
    if (cp >= r[i]! && cp <= r[i + 1]!) {
      inside = true;
      break;
    }
  }
  return inside !== sym.negated;
}

/** Whether a character symbol matches some code point in [lo, hi]. */
function overlaps(sym: GrammarSymbol, lo: number, hi: number): boolean {
  if (sym.kind === 'any') return true;
  if (sym.kind !== 'chars') return false;
  const r = sym.ranges;
  if (!sym.negated) {
    for (let i = 0; i < r.length; i += 2) if (r[i]! <= hi && lo <= r[i + 1]!) return true;
    return false;
  }
  // Negated: some point of [lo, hi] lies outside every range.
  const covered = [];
  for (let i = 0; i < r.length; i += 2) if (r[i]! <= hi && lo <= r[i + 1]!) covered.push([Math.max(lo, r[i]!), Math.min(hi, r[i + 1]!)] as const);
  covered.sort((a, b) => a[0] - b[0]);
  let next = lo;
  for (const [a, b] of covered) {
    if (a > next) return true;
    next = Math.max(next, b + 1);
  }
  return next <= hi;
}
