// GBNF, llama.cpp's grammar language, parsed into a flat rule table the matcher walks. Syntax as
// llama.cpp's parser reads it: `name ::= alternatives` rules (root is the start), `|`, grouping,
// `* + ?` and `{m}`, `{m,}`, `{m,n}`, "literals" and [classes] (ranges, ^negation) with \n \r \t
// \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH escapes, `.` (any character), # comments; newlines end a rule
// except inside parentheses or after `|`. Repetitions and groups become generated rules, as in
// llama.cpp, so the matcher only knows sequences, alternatives and rule references.
import { GrammarError } from './errors.js';

/** One symbol of an alternative. Character sets are inclusive code point ranges [lo, hi, lo, hi, ...]. */
export type GrammarSymbol =
  | { kind: 'chars'; ranges: number[]; negated: boolean }
  | { kind: 'any' }
  | { kind: 'rule'; id: number };

export interface Grammar {
  /** Rule names by id (generated ones are `name_N`). */
  names: string[];
  /** For each rule, its alternatives; each alternative a sequence (empty = matches nothing, i.e. ε). */
  rules: GrammarSymbol[][][];
  root: number;
}

interface Position {
  line: number;
  column: number;
}

export function parseGBNF(source: string, rootName = 'root'): Grammar {
  return new Parser(source).parse(rootName);
}

class Parser {
  private readonly chars: string[];
  private i = 0;
  private readonly ids = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly rules: (GrammarSymbol[][] | undefined)[] = [];
  /** Where each rule was first referenced (for "undefined rule" errors). */
  private readonly firstUse = new Map<number, Position>();

  constructor(source: string) {
    this.chars = [...source]; // by code point
  }

  parse(rootName: string): Grammar {
    this.space(true);
    while (this.i < this.chars.length) {
      this.rule();
      this.space(true);
    }
    for (const [id, at] of this.firstUse) {
      if (this.rules[id] === undefined) throw new GrammarError('UNDEFINED_RULE', `line ${at.line}, column ${at.column}: rule "${this.names[id]}" is used but not defined`);
    }
    const root = this.ids.get(rootName);
    if (root === undefined || this.rules[root] === undefined) throw new GrammarError('UNDEFINED_RULE', `the grammar has no "${rootName}" rule (the start symbol)`);
    const grammar: Grammar = { names: this.names, rules: this.rules as GrammarSymbol[][][], root };
    checkLeftRecursion(grammar);
    return grammar;
  }

  private position(at = this.i): Position {
    let line = 1, column = 1;
    for (let k = 0; k < at && k < this.chars.length; k++) {
      if (this.chars[k] === '\n') {
        line++;
        column = 1;
      } else column++;
    }
    return { line, column };
  }

  private fail(message: string, at = this.i): never {
    const p = this.position(at);
    throw new GrammarError('PARSE_ERROR', `line ${p.line}, column ${p.column}: ${message}`);
  }

  private peek(k = 0): string | undefined {
    return this.chars[this.i + k];
  }

  /** Skip blanks and comments; newlines too when `newlines`. */
  private space(newlines: boolean): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) this.i++;
      else if (c === '#') while (this.i < this.chars.length && this.peek() !== '\n') this.i++;
      else return;
    }
  }

  private isWordChar(c: string | undefined): boolean {
    return c !== undefined && /[A-Za-z0-9_-]/.test(c);
  }

  private name(): string {
    const start = this.i;
    while (this.isWordChar(this.peek())) this.i++;
    if (this.i === start) this.fail(`expected a rule name, found ${this.describe()}`);
    return this.chars.slice(start, this.i).join('');
  }

  private describe(): string {
    const c = this.peek();
    return c === undefined ? 'the end of the grammar' : c === '\n' ? 'a line break' : JSON.stringify(c);
  }

  private idOf(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(name, id);
      this.names.push(name);
      this.rules.push(undefined);
    }
    return id;
  }

  /** A new rule named after `base` (root_1, root_2, ...) for a group or repetition. */
  private generated(base: string, alternatives: GrammarSymbol[][]): number {
    let n = this.names.length, name: string;
    do name = `${base}_${n++}`;
    while (this.ids.has(name));
    const id = this.idOf(name);
    this.rules[id] = alternatives;
    return id;
  }

  private rule(): void {
    const at = this.i;
    const name = this.name();
    this.space(false);
    if (this.chars.slice(this.i, this.i + 3).join('') !== '::=') this.fail(`expected "::=" after the rule name "${name}", found ${this.describe()}`);
    this.i += 3;
    this.space(true);
    const id = this.idOf(name);
    if (this.rules[id] !== undefined) this.fail(`rule "${name}" is defined twice`, at);
    this.rules[id] = this.alternatives(name, false);
    const c = this.peek();
    if (c !== undefined && c !== '\n' && c !== '\r') this.fail(`expected the end of the line after rule "${name}", found ${this.describe()}`);
  }

  private alternatives(ruleName: string, nested: boolean): GrammarSymbol[][] {
    const alts = [this.sequence(ruleName, nested)];
    while (this.peek() === '|') {
      this.i++;
      this.space(true);
      alts.push(this.sequence(ruleName, nested));
    }
    return alts;
  }

  private sequence(ruleName: string, nested: boolean): GrammarSymbol[] {
    const seq: GrammarSymbol[] = [];
    /** Where the last item's symbols start in `seq` (what a repetition operator applies to). */
    let lastStart = -1;
    for (;;) {
      const c = this.peek();
      const start = seq.length;
      if (c === '"') {
        this.i++;
        while (this.peek() !== '"') {
          if (this.peek() === undefined || this.peek() === '\n') this.fail('unterminated string literal');
          const cp = this.char();
          seq.push({ kind: 'chars', ranges: [cp, cp], negated: false });
        }
        this.i++;
        // An empty literal adds nothing; a repetition of it repeats nothing.
        lastStart = seq.length === start ? -1 : start;
        if (seq.length - start > 1) {
          // A repetition applies to the whole literal: keep it as one group.
          const literal = seq.splice(start);
          if (this.isRepetition()) seq.push({ kind: 'rule', id: this.generated(ruleName, [literal]) });
          else seq.push(...literal);
        }
      } else if (c === '[') {
        this.i++;
        const negated = this.peek() === '^';
        if (negated) this.i++;
        const ranges: number[] = [];
        while (this.peek() !== ']') {
          if (this.peek() === undefined) this.fail('unterminated character class');
          const lo = this.char();
          let hi = lo;
          if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
            this.i++;
            hi = this.char();
            if (hi < lo) this.fail(`character range ${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)} is reversed`);
          }
          ranges.push(lo, hi);
        }
        this.i++;
        seq.push({ kind: 'chars', ranges, negated });
        lastStart = start;
      } else if (c === '.') {
        this.i++;
        seq.push({ kind: 'any' });
        lastStart = start;
      } else if (this.isWordChar(c)) {
        const at = this.position();
        const id = this.idOf(this.name());
        if (!this.firstUse.has(id)) this.firstUse.set(id, at);
        seq.push({ kind: 'rule', id });
        lastStart = start;
      } else if (c === '(') {
        this.i++;
        this.space(true);
        const alts = this.alternatives(ruleName, true);
        if (this.peek() !== ')') this.fail(`expected ")" to close the group, found ${this.describe()}`);
        this.i++;
        seq.push({ kind: 'rule', id: this.generated(ruleName, alts) });
        lastStart = start;
      } else if (c === '<' || (c === '!' && this.peek(1) === '<')) {
        throw new GrammarError('UNSUPPORTED', `${this.where()}: token references (<...>) are not supported yet; write the text as a "literal"`);
      } else if (c === '*' || c === '+' || c === '?' || c === '{') {
        if (lastStart < 0) this.fail(`"${c}" must follow something to repeat`);
        const [min, max] = this.repetition();
        const unit = seq.splice(lastStart);
        seq.push(...this.repeat(ruleName, unit, min, max));
        lastStart = -1; // x** is not allowed
      } else break;
      this.space(nested);
    }
    return seq;
  }

  private where(): string {
    const p = this.position();
    return `line ${p.line}, column ${p.column}`;
  }

  private isRepetition(): boolean {
    let k = 0;
    while (this.peek(k) === ' ' || this.peek(k) === '\t') k++;
    const c = this.peek(k);
    return c === '*' || c === '+' || c === '?' || c === '{';
  }

  /** The operator at the cursor as [min, max] (max -1: unbounded). */
  private repetition(): [number, number] {
    const c = this.chars[this.i++];
    if (c === '*') return [0, -1];
    if (c === '+') return [1, -1];
    if (c === '?') return [0, 1];
    this.space(false);
    const min = this.integer();
    this.space(false);
    let max = min;
    if (this.peek() === ',') {
      this.i++;
      this.space(false);
      max = this.peek() === '}' ? -1 : this.integer();
      this.space(false);
    }
    if (this.peek() !== '}') this.fail(`expected "}" to close the repetition, found ${this.describe()}`);
    this.i++;
    if (max !== -1 && max < min) this.fail(`repetition {${min},${max}} has its maximum below its minimum`);
    return [min, max];
  }

  private integer(): number {
    const start = this.i;
    while (/[0-9]/.test(this.peek() ?? '')) this.i++;
    if (this.i === start) this.fail(`expected a number, found ${this.describe()}`);
    const n = Number(this.chars.slice(start, this.i).join(''));
    if (n > 10_000) this.fail(`repetition count ${n} is too large (at most 10000)`, start);
    return n;
  }

  /** x{min,max} as llama.cpp rewrites it: min copies, then nested optional copies (or x* when unbounded). */
  private repeat(ruleName: string, unit: GrammarSymbol[], min: number, max: number): GrammarSymbol[] {
    const out: GrammarSymbol[] = [];
    for (let k = 0; k < min; k++) out.push(...unit);
    if (max === -1) {
      // R ::= unit R | ε
      const id = this.generated(ruleName, []);
      this.rules[id] = [[...unit, { kind: 'rule', id }], []];
      out.push({ kind: 'rule', id });
    } else if (max > min) {
      // R_k ::= unit R_{k+1} | ε, nested (max - min) deep
      let tail: number | undefined;
      for (let k = 0; k < max - min; k++) tail = this.generated(ruleName, [[...unit, ...(tail === undefined ? [] : [{ kind: 'rule', id: tail } as GrammarSymbol])], []]);
      out.push({ kind: 'rule', id: tail! });
    }
    return out;
  }

  /** One character of a literal or class, escapes decoded. */
  private char(): number {
    const c = this.chars[this.i++]!;
    if (c !== '\\') return c.codePointAt(0)!;
    const e = this.chars[this.i++];
    switch (e) {
      case 'n': return 10;
      case 'r': return 13;
      case 't': return 9;
      case '\\': case '"': case '[': case ']': case '-': case '^': case '.': case '(': case ')': case '|': case '/': return e.codePointAt(0)!;
      case 'x': return this.hex(2);
      case 'u': return this.hex(4);
      case 'U': return this.hex(8);
      default: return this.fail(`unknown escape "\\${e ?? ''}"`, this.i - 2);
    }
  }

  private hex(digits: number): number {
    const text = this.chars.slice(this.i, this.i + digits).join('');
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(text)) this.fail(`expected ${digits} hex digits after the escape`);
    this.i += digits;
    const cp = parseInt(text, 16);
    if (cp > 0x10ffff) this.fail(`code point U+${text} is beyond Unicode`);
    return cp;
  }
}

/** Which rules can match the empty string. */
export function nullableRules(g: Grammar): boolean[] {
  const nullable = g.rules.map(() => false);
  for (let changed = true; changed;) {
    changed = false;
    g.rules.forEach((alts, r) => {
      if (nullable[r]) return;
      if (alts.some((seq) => seq.every((s) => s.kind === 'rule' && nullable[s.id]))) {
        nullable[r] = true;
        changed = true;
      }
    });
  }
  return nullable;
}

/** A rule that reaches itself at its leftmost position (through nullable prefixes) would make the matcher loop. */
function checkLeftRecursion(g: Grammar): void {
  const nullable = nullableRules(g);
  const left = g.rules.map((alts) => {
    const out = new Set<number>();
    for (const seq of alts) {
      for (const s of seq) {
        if (s.kind !== 'rule') break;
        out.add(s.id);
        if (!nullable[s.id]) break;
      }
    }
    return out;
  });
  const state = new Uint8Array(g.rules.length); // 0 new, 1 on the path, 2 done
  const visit = (r: number, path: number[]): void => {
    if (state[r] === 2) return;
    if (state[r] === 1) {
      const cycle = path.slice(path.indexOf(r)).concat(r).map((x) => g.names[x]);
      throw new GrammarError('LEFT_RECURSION', `rule "${g.names[r]}" is left-recursive (${cycle.join(' → ')}): it can reach itself before matching a character`);
    }
    state[r] = 1;
    for (const next of left[r]!) visit(next, [...path, r]);
    state[r] = 2;
  };
  g.rules.forEach((_, r) => visit(r, []));
}
