// tokenizer.json regexes are Oniguruma patterns (the tokenizers library compiles them with the onig crate).
// They are translated here into JS regexes that match the same text, and run the way onig's find_iter runs
// them. What Oniguruma means, as the tokenizers library runs it:
//  - `\s` is Unicode White_Space (JS adds U+FEFF), `\d` is \p{Nd}, `\w` is letters, marks, numbers (² too)
//    and connector punctuation, `\h` a hex digit; `\b` is a boundary of that `\w`.
//  - `.` matches any character but \n; `^` / `$` are the start / end of a line (at \n).
//  - `(?i:...)` groups are case-insensitive: JS before ES2025 has no such groups, so letters become classes.
// What has no JS equivalent here (atomic groups, possessive quantifiers, nested classes, \G, \K, ...)
// is a typed UNSUPPORTED_COMPONENT error, never a silently different regex.
import { TokenizerError } from '../errors.js';
import { unsupported } from './json.js';

const WHITE_SPACE = String.raw`\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000`;
const WORD = String.raw`\p{L}\p{M}\p{N}\p{Pc}`;
const HEX = '0-9A-Fa-f';
const SYNTAX = new Set('^$\\.*+?()[]{}|/');

/** Translate one Oniguruma pattern; `path` names where it came from in errors. */
export function translateRegex(pattern: string, path: string): RegExp {
  const source = new Translator(pattern, path).run();
  try {
    return new RegExp(source, 'gu');
  } catch (e) {
    throw new TokenizerError('INVALID_TOKENIZER_JSON', `${path}: regex ${JSON.stringify(pattern)} does not compile (${(e as Error).message})`);
  }
}

/** A regex that matches `literal` exactly (the tokenizers library escapes String patterns the same way). */
export function literalRegex(literal: string): RegExp {
  return new RegExp(literal.replace(/[\^$\\.*+?()[\]{}|/]/g, '\\$&'), 'gu');
}

class Translator {
  private i = 0;
  private out = '';
  /** Case-insensitivity of each open group; the last is the current one. */
  private readonly caseless: boolean[] = [false];

  constructor(
    private readonly p: string,
    private readonly path: string,
  ) {}

  run(): string {
    const p = this.p;
    while (this.i < p.length) {
      const c = this.peekChar();
      if (c === '\\') this.escape();
      else if (c === '[') this.charClass();
      else if (c === '(') this.groupOpen();
      else if (c === ')') {
        if (this.caseless.length > 1) this.caseless.pop();
        this.emit(')', 1);
      } else if (c === '.') this.emit('[^\\n]', 1);
      else if (c === '^') this.emit(String.raw`(?<![^\n])`, 1);
      else if (c === '$') this.emit(String.raw`(?![^\n])`, 1);
      else if (c === '*' || c === '+' || c === '?') {
        this.emit(c, 1);
        this.quantifierSuffix();
      } else if (c === '{') this.brace();
      else if (c === '|') this.emit('|', 1);
      else this.literal(c);
    }
    return this.out;
  }

  private fail(what: string): never {
    throw unsupported(this.path, `regex ${JSON.stringify(this.p)}: ${what}`);
  }

  private peekChar(): string {
    return String.fromCodePoint(this.p.codePointAt(this.i)!);
  }

  private emit(s: string, consumed: number): void {
    this.out += s;
    this.i += consumed;
  }

  private get ci(): boolean {
    return this.caseless[this.caseless.length - 1];
  }

  /** `?` after a quantifier is lazy (JS has it); `+` is possessive (JS has not). */
  private quantifierSuffix(): void {
    const n = this.p[this.i];
    if (n === '?') this.emit('?', 1);
    else if (n === '+') this.fail('possessive quantifiers are not supported');
  }

  private brace(): void {
    const m = /^\{(\d*)(?:(,)(\d*))?\}/.exec(this.p.slice(this.i));
    if (!m || (m[1] === '' && (m[3] ?? '') === '')) {
      this.emit('\\{', 1); // not a quantifier: a literal brace, as Oniguruma reads it
      return;
    }
    this.emit(`{${m[1] === '' ? '0' : m[1]}${m[2] ?? ''}${m[3] ?? ''}}`, m[0].length);
    this.quantifierSuffix();
  }

  private literal(c: string): void {
    this.i += c.length;
    if (SYNTAX.has(c)) this.out += '\\' + c;
    else if (this.ci && hasOtherCase(c)) this.out += `[${caseVariants(c)}]`;
    else this.out += c;
  }

  private groupOpen(): void {
    const rest = this.p.slice(this.i);
    const simple = /^\((\?:|\?=|\?!|\?<=|\?<!|\?<[A-Za-z_]\w*>)?/.exec(rest)!;
    if (simple[1] !== undefined || rest[1] !== '?') {
      this.caseless.push(this.ci);
      this.emit(simple[0], simple[0].length);
      return;
    }
    const flags = /^\(\?([imx-]*)(:|\))/.exec(rest);
    if (flags) {
      const [whole, spec, end] = flags;
      if (!/^i*(-i*)?$/.test(spec) || spec === '') this.fail(`group flags "${spec}" are not supported (only i)`);
      const on = !spec.startsWith('-') && spec.split('-')[0].includes('i');
      if (end === ':') {
        this.caseless.push(on);
        this.emit('(?:', whole.length);
      } else {
        // (?i) switches the rest of the enclosing group
        this.caseless[this.caseless.length - 1] = on;
        this.i += whole.length;
      }
      return;
    }
    if (rest.startsWith('(?#')) {
      const end = rest.indexOf(')');
      if (end < 0) this.fail('unterminated comment');
      this.i += end + 1;
      return;
    }
    this.fail(`group "${rest.slice(0, 4)}" is not supported`);
  }

  private escape(): void {
    const p = this.p;
    if (this.i + 1 >= p.length) this.fail('ends with a backslash');
    const c = String.fromCodePoint(p.codePointAt(this.i + 1)!);
    const simple: Record<string, string> = {
      s: `[${WHITE_SPACE}]`, S: `[^${WHITE_SPACE}]`, d: String.raw`\p{Nd}`, D: String.raw`\P{Nd}`, w: `[${WORD}]`, W: `[^${WORD}]`,
      h: `[${HEX}]`, H: `[^${HEX}]`, n: '\\n', r: '\\r', t: '\\t', f: '\\f', v: '\\v', a: '\\x07', e: '\\x1B',
      A: '^', z: '$', Z: String.raw`(?=\n?$)`,
      b: `(?:(?<=[${WORD}])(?![${WORD}])|(?<![${WORD}])(?=[${WORD}]))`,
      B: `(?:(?<=[${WORD}])(?=[${WORD}])|(?<![${WORD}])(?![${WORD}]))`,
    };
    if (Object.hasOwn(simple, c)) {
      this.emit(simple[c], 2);
      return;
    }
    if (c === 'p' || c === 'P') {
      this.emit(this.property(c === 'P'), 0);
      return;
    }
    const code = this.codeEscape();
    if (code !== undefined) {
      this.literalCodePoint(code);
      return;
    }
    if (/[1-9]/.test(c)) {
      const m = /^\\(\d+)/.exec(p.slice(this.i))!;
      this.emit('\\' + m[1], m[0].length);
      return;
    }
    if (c === 'k' && p[this.i + 2] === '<') {
      const end = p.indexOf('>', this.i);
      if (end < 0) this.fail('unterminated \\k<name>');
      this.emit(p.slice(this.i, end + 1), end + 1 - this.i);
      return;
    }
    if (/[A-Za-z]/.test(c)) this.fail(`escape \\${c} is not supported`);
    this.i += 1;
    this.literal(c);
  }

  /** \xHH, \x{H...}, \uHHHH, \0, \0oo: the code point, consuming it; undefined when not one of those. */
  private codeEscape(): number | undefined {
    const rest = this.p.slice(this.i);
    const m = /^\\(?:x\{([0-9A-Fa-f]{1,8})\}|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|0([0-7]{0,2}))/.exec(rest);
    if (!m) return undefined;
    const cp = m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 16) : m[3] !== undefined ? parseInt(m[3], 16) : parseInt(m[4] || '0', 8);
    if (cp > 0x10ffff) this.fail(`code point ${m[0]} is out of range`);
    this.i += m[0].length;
    return cp;
  }

  private literalCodePoint(cp: number): void {
    const ch = String.fromCodePoint(cp);
    if (this.ci && hasOtherCase(ch)) this.out += `[${caseVariants(ch)}]`;
    else this.out += `\\u{${cp.toString(16)}}`;
  }

  /** \p{Name} / \P{Name} / \p{^Name}: a general category, binary property or script, as JS spells them. */
  private property(negated: boolean): string {
    const m = /^\\[pP]\{(\^?)([A-Za-z0-9_ =-]+)\}/.exec(this.p.slice(this.i));
    if (!m) this.fail('malformed \\p{...}');
    this.i += m[0].length;
    const neg = negated !== (m[1] === '^');
    const name = m[2].replace(/[ -]/g, '_');
    for (const candidate of [name, `Script=${name}`]) {
      try {
        new RegExp(`\\p{${candidate}}`, 'u');
        return `\\${neg ? 'P' : 'p'}{${candidate}}`;
      } catch {
        // try the next spelling
      }
    }
    this.fail(`unknown property \\p{${m[2]}}`);
  }

  private charClass(): void {
    const p = this.p;
    let body = '';
    this.i += 1;
    if (p[this.i] === '^') {
      body += '^';
      this.i += 1;
    }
    let first = true;
    for (;;) {
      if (this.i >= p.length) this.fail('unterminated character class');
      const c = this.peekChar();
      if (c === ']' && !first) {
        this.i += 1;
        break;
      }
      first = false;
      if (c === '[') this.fail('nested character classes and POSIX brackets are not supported');
      if (c === '&' && p[this.i + 1] === '&') this.fail('class intersection (&&) is not supported');
      if (c === '\\') {
        const e = String.fromCodePoint(p.codePointAt(this.i + 1) ?? 0);
        const inClass: Record<string, string> = { s: WHITE_SPACE, d: String.raw`\p{Nd}`, D: String.raw`\P{Nd}`, w: WORD, h: HEX, n: '\\n', r: '\\r', t: '\\t', f: '\\f', v: '\\v', a: '\\x07', e: '\\x1B' };
        if (Object.hasOwn(inClass, e)) {
          body += inClass[e];
          this.i += 2;
        } else if (e === 'p' || e === 'P') {
          body += this.property(e === 'P');
        } else if (e === 'S' || e === 'W' || e === 'H') {
          this.fail(`\\${e} inside a character class is not supported`);
        } else {
          const code = this.codeEscape();
          if (code !== undefined) body += this.classChar(String.fromCodePoint(code));
          else if (/[A-Za-z0-9]/.test(e)) this.fail(`escape \\${e} inside a character class is not supported`);
          else {
            body += this.classChar(e);
            this.i += 1 + e.length;
          }
        }
        continue;
      }
      // a range a-z (the end may be escaped); a '-' first or last is literal
      if (p[this.i + c.length] === '-' && this.i + c.length + 1 < p.length && p[this.i + c.length + 1] !== ']') {
        this.i += c.length + 1;
        let hi: string;
        if (p[this.i] === '\\') {
          const code = this.codeEscape();
          if (code === undefined) {
            const e = String.fromCodePoint(p.codePointAt(this.i + 1)!);
            if (/[A-Za-z0-9]/.test(e)) this.fail(`range end \\${e} is not supported`);
            hi = e;
            this.i += 1 + e.length;
          } else hi = String.fromCodePoint(code);
        } else {
          hi = this.peekChar();
          this.i += hi.length;
        }
        if (this.ci && (hasOtherCase(c) || hasOtherCase(hi))) {
          const lower = /^[a-z]$/.test(c) && /^[a-z]$/.test(hi);
          const upper = /^[A-Z]$/.test(c) && /^[A-Z]$/.test(hi);
          if (!lower && !upper) this.fail('case-insensitive ranges beyond ASCII letters are not supported');
          body += `${c}-${hi}${swapCase(c)}-${swapCase(hi)}`;
        } else body += `${this.classChar(c)}-${this.classChar(hi)}`;
        continue;
      }
      body += this.ci && hasOtherCase(c) ? caseVariants(c) : this.classChar(c);
      this.i += c.length;
    }
    this.out += `[${body}]`;
  }

  private classChar(c: string): string {
    return /[\]\\^\-[]/.test(c) ? '\\' + c : c;
  }
}

function hasOtherCase(c: string): boolean {
  return c.toLowerCase() !== c || c.toUpperCase() !== c;
}

function caseVariants(c: string): string {
  const set = new Set([c, c.toLowerCase(), c.toUpperCase()].filter((x) => [...x].length === 1));
  return [...set].map((x) => (/[\]\\^\-[]/.test(x) ? '\\' + x : x)).join('');
}

function swapCase(c: string): string {
  return c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
}
