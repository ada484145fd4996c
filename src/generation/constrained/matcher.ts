// Grammar-constrained sampling: a compiled grammar (GBNF text, or a JSON schema converted to GBNF)
// over a tokenizer's vocabulary, and per sequence a GrammarMatcher, the LogitsProcessor that bans
// every token the grammar does not allow next and advances on each token chosen. End-of-generation
// tokens are allowed only where the grammar is complete; once nothing else can follow, they are
// the only choice, so a finished grammar ends the generation.
import type { Candidates, LogitsProcessor } from '../logits-processor.js';
import type { Tokenizer } from '../../tokenizer/index.js';
import { DEAD, GrammarAutomaton } from './automaton.js';
import { GrammarError } from './errors.js';
import { parseGBNF, type Grammar } from './gbnf.js';
import { hasToken, TokenMasks, VocabularyTrie, type TokenBits } from './token-mask.js';

export class CompiledGrammar {
  readonly automaton: GrammarAutomaton;
  readonly masks: TokenMasks;

  constructor(
    grammar: Grammar,
    readonly tokenizer: Tokenizer,
    /** The GBNF text it came from (for messages and caching). */
    readonly source: string,
  ) {
    this.automaton = new GrammarAutomaton(grammar);
    this.masks = new TokenMasks(this.automaton, VocabularyTrie.of(tokenizer));
  }

  /** GBNF text compiled for a vocabulary (GrammarError for bad text). */
  static fromGBNF(source: string, tokenizer: Tokenizer, rootName = 'root'): CompiledGrammar {
    return new CompiledGrammar(parseGBNF(source, rootName), tokenizer, source);
  }

  /** A fresh matcher at the grammar's start (one per sequence). */
  matcher(): GrammarMatcher {
    return new GrammarMatcher(this);
  }

  /** Whether `text` is a complete sentence of the grammar. */
  matches(text: string): boolean {
    return this.automaton.accepts(this.automaton.walk(this.automaton.initial, new TextEncoder().encode(text)));
  }
}

export class GrammarMatcher implements LogitsProcessor {
  private state: number;

  constructor(readonly grammar: CompiledGrammar) {
    this.state = grammar.automaton.initial;
  }

  /** Whether the text so far is a complete sentence (generation may end here). */
  get complete(): boolean {
    return this.grammar.automaton.accepts(this.state);
  }

  /** Whether more text may follow. */
  get canContinue(): boolean {
    return this.grammar.automaton.canContinue(this.state);
  }

  /** The tokens allowed at this point, as bits (see hasToken / allows). */
  allowed(): TokenBits {
    return this.grammar.masks.mask(this.state);
  }

  /** Whether token `id` is allowed next. */
  allows(id: number): boolean {
    return hasToken(this.allowed(), id);
  }

  process(c: Candidates): void {
    const bits = this.allowed();
    for (let i = 0; i < c.size; i++) {
      const id = c.ids[i]!;
      if (((bits[id >>> 5]! >>> (id & 31)) & 1) === 0) c.logits[i] = -Infinity;
    }
  }

  accept(token: number): void {
    const tok = this.grammar.tokenizer;
    if (tok.isEog(token)) {
      if (!this.complete) throw new GrammarError('PARSE_ERROR', `end of generation (token ${token}) before the grammar is complete`);
      return;
    }
    if (!this.acceptBytes(tok.tokenToPiece(token))) throw new GrammarError('PARSE_ERROR', `token ${token} (${JSON.stringify(tok.tokenText(token))}) does not fit the grammar here`);
  }

  /** Advance over text the grammar must match; false (and no change) if it does not fit. */
  acceptBytes(bytes: Uint8Array): boolean {
    const next = this.grammar.automaton.walk(this.state, bytes);
    if (next === DEAD) return false;
    this.state = next;
    return true;
  }
}

/**
 * A grammar that switches on at a trigger (llama.cpp's lazy grammars, for tool calls): the text is
 * free until `trigger` appears in it, and from the trigger on it must follow the grammar, which
 * therefore starts with the trigger. A trigger that arrives inside a token is found there too.
 */
export class LazyGrammarMatcher implements LogitsProcessor {
  private matcher: GrammarMatcher | undefined;
  /** The last bytes seen before the trigger (as many as the trigger could still be completing). */
  private tail = new Uint8Array(0);
  private readonly trigger: Uint8Array;
  /** The text after the trigger did not fit (a trigger inside a token followed by other text): left unconstrained. */
  private broken = false;

  constructor(
    readonly grammar: CompiledGrammar,
    trigger: string,
  ) {
    if (trigger === '') throw new GrammarError('UNSUPPORTED', 'a grammar trigger must be non-empty text');
    this.trigger = new TextEncoder().encode(trigger);
  }

  /** Whether the trigger has appeared (the grammar applies). */
  get active(): boolean {
    return this.matcher !== undefined;
  }

  process(c: Candidates): void {
    this.matcher?.process(c);
  }

  accept(token: number): void {
    if (this.matcher) return this.matcher.accept(token);
    const tok = this.grammar.tokenizer;
    if (this.broken || tok.isEog(token)) return;
    const piece = tok.tokenToPiece(token);
    const text = new Uint8Array(this.tail.length + piece.length);
    text.set(this.tail);
    text.set(piece, this.tail.length);
    const at = indexOf(text, this.trigger);
    if (at < 0) {
      this.tail = text.slice(Math.max(0, text.length - (this.trigger.length - 1)));
      return;
    }
    const m = this.grammar.matcher();
    if (m.acceptBytes(text.subarray(at))) this.matcher = m;
    else this.broken = true;
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
