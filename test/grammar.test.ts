// Constrained decoding (src/generation/constrained/): the GBNF parser (good and bad grammars, with
// line and column), llama.cpp's sample grammars, the JSON-schema converter, and generation under
// them with a random-weight model whose free output is noise (so the constraint does all the work):
// every output must be a sentence of the grammar, and JSON outputs must parse and validate under a
// real validator (ajv). Token masks are checked against the plain definition (a token is allowed
// when the text so far plus the token is a prefix of some sentence) on sampled steps.
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { GrammarError } from '../src/generation/constrained/errors.js';
import { parseGBNF } from '../src/generation/constrained/gbnf.js';
import { integerRange, jsonSchemaToGBNF } from '../src/generation/constrained/json-schema.js';
import { CompiledGrammar } from '../src/generation/constrained/matcher.js';
import { hasToken } from '../src/generation/constrained/token-mask.js';
import { loadModel, type Model } from '../src/model/model.js';
import { rng } from './helpers/random-tensors.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppGrammarAllowed } from './oracle/llama-cpp.js';

const GRAMMARS = join(import.meta.dirname, 'fixtures/llama-cpp-grammars');
const RANDOM = '../shared/models/llama-2-tiny-random.gguf';
const haveRandom = existsSync(RANDOM);
const haveLlamaCpp = await isLlamaCppAvailable();
if (!haveRandom) console.warn(`grammar: ${RANDOM} is absent, skipping generation`);

describe('GBNF parser', () => {
  it.each([
    ['literals, classes, groups, repetitions', 'root ::= "a" [b-d]+ ("e" | f)? [^x]{2} .{1,3} "g"*\nf ::= "ff"'],
    ['escapes', 'root ::= "\\n\\t\\\\\\"\\x41\\u00e9\\U0001F600" [\\]\\[\\-]'],
    ['comments and continuation lines', '# a comment\nroot ::= a |\n  b # trailing\na ::= "a"\nb ::= ( "b"\n  "c" )'],
    ['an empty alternative', 'root ::= "x" | '],
    ['{m,}, {m}, {0,n}', 'root ::= "a"{2,} "b"{3} "c"{0,4}'],
  ])('%s', (_, src) => {
    expect(() => parseGBNF(src)).not.toThrow();
  });

  it.each([
    ['no root', 'start ::= "a"', 'UNDEFINED_RULE', /no "root" rule/],
    ['undefined rule with position', 'root ::= a b\na ::= "x"', 'UNDEFINED_RULE', /line 1, column 12: rule "b"/],
    ['missing ::=', 'root = "a"', 'PARSE_ERROR', /line 1, column 6: expected "::="/],
    ['unterminated literal', 'root ::= "abc', 'PARSE_ERROR', /unterminated string/],
    ['unterminated class', 'root ::= [abc', 'PARSE_ERROR', /unterminated character class/],
    ['unclosed group', 'root ::= ("a" "b"\n', 'PARSE_ERROR', /expected "\)"/],
    ['reversed range', 'root ::= [z-a]', 'PARSE_ERROR', /reversed/],
    ['bad escape', 'root ::= "\\q"', 'PARSE_ERROR', /unknown escape/],
    ['repetition of nothing', 'root ::= *', 'PARSE_ERROR', /must follow something/],
    ['bad repetition bounds', 'root ::= "a"{3,1}', 'PARSE_ERROR', /maximum below its minimum/],
    ['duplicate rule', 'root ::= "a"\nroot ::= "b"', 'PARSE_ERROR', /line 2, column 1: rule "root" is defined twice/],
    ['left recursion', 'root ::= expr\nexpr ::= expr "+" "1" | "1"', 'LEFT_RECURSION', /"expr" is left-recursive/],
    ['hidden left recursion', 'root ::= opt root "x" | "y"\nopt ::= "o"?', 'LEFT_RECURSION', /left-recursive/],
    ['token references', 'root ::= <[1000]>', 'UNSUPPORTED', /token references/],
    ['junk after a rule', 'root ::= "a" )', 'PARSE_ERROR', /expected the end of the line/],
  ])('%s is a GrammarError %s', (_, src, code, message) => {
    let err: unknown;
    try {
      parseGBNF(src);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GrammarError);
    expect(err).toMatchObject({ code });
    expect((err as Error).message).toMatch(message);
  });

  it('every sample grammar of llama.cpp parses', () => {
    const files = readdirSync(GRAMMARS).filter((f) => f.endsWith('.gbnf'));
    expect(files.length).toBeGreaterThanOrEqual(8);
    for (const f of files) expect(() => parseGBNF(readFileSync(join(GRAMMARS, f), 'utf8')), f).not.toThrow();
  });
});

describe.skipIf(!haveRandom)('constrained generation (random-weight Llama 2 vocabulary)', () => {
  let model: Model;
  let engine: Engine;
  beforeAll(async () => {
    model = await loadModel(RANDOM, { threads: 1 });
    engine = await createEngine(model, { kvCacheTokens: 16384, maxBatchTokens: 512 });
  });
  afterAll(async () => {
    await engine?.dispose();
    await model?.dispose();
    await disposeLlamaCpp();
  });

  const compile = (src: string) => CompiledGrammar.fromGBNF(src, model.tokenizer);

  it('sentences and non-sentences of the sample grammars', () => {
    const cases: [string, string[], string[]][] = [
      ['json.gbnf', ['{"a": 1}', '{"a": [1, -2.5e3, {"b": null}], "c": "\\u00e9x"}', '{}'], ['{"a" 1}', '[1]', '{"a": 01}', '{"a": "\u0001"}']],
      ['arithmetic.gbnf', ['1+2*3=7\n', '(1-x)/3= y\n'], ['1++2=3\n', '1+2\n']],
      ['list.gbnf', ['- one\n- two\n'], ['one\n']],
      ['chess.gbnf', ['1. e4 e5\n2. Nf3 Nc6\n'], ['1. e9 e5\n']],
    ];
    for (const [file, good, bad] of cases) {
      const g = compile(readFileSync(join(GRAMMARS, file), 'utf8'));
      for (const s of good) expect(g.matches(s), `${file}: ${JSON.stringify(s)}`).toBe(true);
      for (const s of bad) expect(g.matches(s), `${file}: ${JSON.stringify(s)}`).toBe(false);
    }
  });

  it('a mask allows exactly the tokens that keep the text a prefix of some sentence', async () => {
    const g = compile('root ::= "{\\"name\\": \\"" [a-z]{1,8} "\\", \\"age\\": " [1-9] [0-9]? "}"');
    const tok = model.tokenizer;
    const pieces = Array.from({ length: tok.vocabSize }, (_, id) => tok.tokenToPiece(id));
    // Independent check: a JS regular expression for the prefixes of the same language.
    const lit = (t: string) => ({ full: esc(t), partial: `(?:${[...t].map((_, k) => esc(t.slice(0, k))).join('|')})` });
    const cls = (c: string, lo: number, hi: number) => ({ full: `${c}{${lo},${hi}}`, partial: `${c}{0,${hi}}` });
    const parts = [lit('{"name": "'), cls('[a-z]', 1, 8), lit('", "age": '), cls('[1-9]', 1, 1), cls('[0-9]', 0, 1), lit('}')];
    const prefixes = new RegExp(`^(?:${parts.map((p, k) => parts.slice(0, k).map((q) => q.full).join('') + p.partial).join('|')}|${parts.map((p) => p.full).join('')})$`);
    const isPrefix = (text: string) => prefixes.test(text);
    const m = g.matcher();
    let text = '';
    const target = '{"name": "bob", "age": 42}';
    const decoder = new TextDecoder();
    const texts = pieces.map((p) => decoder.decode(p));
    while (text.length < target.length) {
      const mask = m.allowed();
      for (let id = 0; id < tok.vocabSize; id += 3) {
        if (tok.isEog(id) || pieces[id]!.length === 0 || pieces[id]![0] === 0) continue;
        if (texts[id]!.includes('\ufffd')) continue; // partial characters: the regex cannot judge them
        expect(hasToken(mask, id), `after ${JSON.stringify(text)}: ${JSON.stringify(texts[id])}`).toBe(isPrefix(text + texts[id]));
      }
      // Go on with the longest token that spells the next part of the target.
      const rest = target.slice(text.length);
      let best = -1;
      for (let id = 0; id < tok.vocabSize; id++) {
        if (!tok.isEog(id) && texts[id]!.length > 0 && rest.startsWith(texts[id]!) && (best < 0 || texts[id]!.length > texts[best]!.length)) best = id;
      }
      m.accept(best);
      text += texts[best];
    }
    expect(m.complete).toBe(true);
    expect(m.canContinue).toBe(false);
    // Complete: only end-of-generation is allowed.
    const mask = m.allowed();
    expect(Array.from({ length: tok.vocabSize }, (_, i) => i).filter((i) => hasToken(mask, i))).toEqual([tok.eosId]);
  });

  it('UTF-8 across token boundaries: random token strings are accepted exactly when they decode (strictly) to a sentence', () => {
    // A JSON-string grammar against a JS regular expression over strictly decoded text (invalid UTF-8: rejected).
    const g = compile('root ::= "\\"" ( [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt] )* "\\""');
    const sentence = /^"(?:[^"\\\u007F\u0000-\u001F]|\\["\\/bfnrt])*"$/u;
    const tok = model.tokenizer;
    const strict = new TextDecoder('utf-8', { fatal: true });
    // Tokens with non-ASCII bytes, byte tokens and plain ones, mixed.
    const ids = Array.from({ length: tok.vocabSize }, (_, i) => i).filter((i) => !tok.isEog(i) && tok.tokenToPiece(i).length > 0);
    const wide = ids.filter((i) => tok.tokenToPiece(i).some((b) => b >= 0x80));
    const r = rng(12345);
    const rand = (n: number) => Math.floor(r() * n);
    let accepted = 0;
    for (let k = 0; k < 4000; k++) {
      const parts: Uint8Array[] = [new Uint8Array([0x22])];
      for (let j = rand(5); j >= 0; j--) parts.push(tok.tokenToPiece(rand(2) ? wide[rand(wide.length)]! : ids[rand(ids.length)]!));
      parts.push(new Uint8Array([0x22]));
      const bytes = Uint8Array.from(parts.flatMap((p) => [...p]));
      let text: string | undefined;
      try {
        text = strict.decode(bytes);
      } catch {
        text = undefined;
      }
      const want = text !== undefined && sentence.test(text);
      expect(g.automaton.accepts(g.automaton.walk(g.automaton.initial, bytes)), JSON.stringify([...bytes])).toBe(want);
      if (want) accepted++;
    }
    expect(accepted).toBeGreaterThan(200);
  });

  it('llama.cpp\'s sample grammars constrain seeded generation: every output is a prefix of a sentence, and a sentence when it ended', async () => {
    for (const file of ['json.gbnf', 'arithmetic.gbnf', 'list.gbnf', 'chess.gbnf', 'c.gbnf']) {
      const grammar = readFileSync(join(GRAMMARS, file), 'utf8');
      const g = compile(grammar);
      const r = await engine.generate({ prompt: 'Hello', grammar, n: 4, seed: 11, temperature: 1, maxTokens: 60 }).result;
      for (const c of r.completions) {
        const state = g.automaton.walk(g.automaton.initial, new TextEncoder().encode(c.text));
        expect(state, `${file}: ${JSON.stringify(c.text)}`).toBeGreaterThanOrEqual(0);
        if (c.stopReason === 'eos') expect(g.automaton.accepts(state), `${file} ended early: ${JSON.stringify(c.text)}`).toBe(true);
      }
    }
  });

  it('batch invariance: each completion has its own matcher, and equals the same request alone', async () => {
    const schema = { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 999 }, b: { type: 'string', maxLength: 8 } }, required: ['a', 'b'] };
    const together = await engine.generate({ prompt: 'x', jsonSchema: schema, n: 4, seed: 21, temperature: 1, maxTokens: 80 }).result;
    const alone = await Promise.all([0, 1, 2, 3].map((i) => engine.generate({ prompt: 'x', jsonSchema: schema, seed: 21 + i, temperature: 1, maxTokens: 80 }).result));
    expect(together.completions.map((c) => c.text)).toEqual(alone.map((r) => r.text));
    expect(new Set(alone.map((r) => r.text)).size).toBeGreaterThan(1);
    expect(() => engine.generate({ prompt: 'x', grammar: 'root ::= "a"', jsonSchema: {} })).toThrow(/not both/);
    expect(() => engine.generate({ prompt: 'x', grammar: 'root ::= nope' })).toThrow(GrammarError);
  });

  it.skipIf(!haveLlamaCpp)('the allowed-token sets are llama.cpp\'s (its grammar sampler, same GBNF, same token history)', async () => {
    const tok = model.tokenizer;
    // Every token but the byte tokens 0xF5-0xFF: no UTF-8 character starts with them, and llama.cpp's decoder takes
    // 0xF8-0xFF for 4-byte leads (so it lets a model write invalid UTF-8), where ours refuses them.
    const every = Array.from({ length: tok.vocabSize }, (_, i) => i).filter((t) => !tok.tokenToPiece(t).some((b) => b >= 0xf5));
    const cases: [string, string][] = [
      ['json.gbnf', readFileSync(join(GRAMMARS, 'json.gbnf'), 'utf8')],
      ['arithmetic.gbnf', readFileSync(join(GRAMMARS, 'arithmetic.gbnf'), 'utf8')],
      ['a JSON schema', jsonSchemaToGBNF(SCHEMAS[0]![1])],
      ['a JSON schema with $ref', jsonSchemaToGBNF(SCHEMAS[3]![1])],
      ['formats and patterns', jsonSchemaToGBNF(SCHEMAS[5]![1])],
    ];
    for (const [label, grammar] of cases) {
      // A history made under our grammar (seeded), then both matchers asked about every token at sampled steps.
      const r = await engine.generate({ prompt: 'x', grammar, seed: 4, temperature: 1, maxTokens: 40 }).result;
      const history = r.tokens.slice(0, 12);
      const theirs = await llamaCppGrammarAllowed(RANDOM, grammar, history, every);
      const m = compile(grammar).matcher();
      for (let step = 0; step <= history.length; step++) {
        const bits = m.allowed();
        const differ = every.filter((t, k) => hasToken(bits, t) !== theirs[step]![k]);
        expect(differ.map((t) => `${t} ${JSON.stringify(tok.tokenText(t))} ours ${hasToken(bits, t)}`).slice(0, 5), `${label}, step ${step} after ${JSON.stringify(history.slice(0, step).map((h) => tok.tokenText(h)))}`).toEqual([]);
        if (step < history.length) m.accept(history[step]!);
      }
    }
  });

  const SCHEMAS: [string, object][] = [
    ['nested objects with optional properties', {
      type: 'object',
      properties: {
        name: { type: 'string', maxLength: 12 },
        age: { type: 'integer', minimum: 0, maximum: 130 },
        address: { type: 'object', properties: { city: { type: 'string', minLength: 1, maxLength: 10 }, zip: { type: 'string', pattern: '^[0-9]{5}$' } }, required: ['city'] },
        tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
      },
      required: ['name', 'age'],
    }],
    ['enums, const, nullable, booleans', {
      type: 'object',
      properties: { kind: { enum: ['cat', 'dog', 42, null] }, version: { const: 'v1' }, ok: { type: 'boolean' }, note: { type: ['string', 'null'], maxLength: 5 } },
      required: ['kind', 'version', 'ok', 'note'],
    }],
    ['arrays: tuples and bounded lists of numbers', {
      type: 'object',
      properties: { point: { type: 'array', prefixItems: [{ type: 'number' }, { type: 'number' }], items: false }, values: { type: 'array', items: { type: 'integer', exclusiveMinimum: -5, exclusiveMaximum: 1000 }, minItems: 1, maxItems: 4 } },
      required: ['point', 'values'],
    }],
    ['$defs and a recursive $ref', {
      $defs: { node: { type: 'object', properties: { v: { type: 'integer', minimum: 1, maximum: 9 }, kids: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } }, required: ['v'] } },
      $ref: '#/$defs/node',
    }],
    ['anyOf / oneOf / allOf', {
      type: 'object',
      properties: {
        id: { anyOf: [{ type: 'integer', minimum: 1, maximum: 99 }, { type: 'string', format: 'uuid' }] },
        shape: { oneOf: [{ type: 'object', properties: { r: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['r'] }, { type: 'object', properties: { w: { type: 'integer', minimum: 10, maximum: 19 } }, required: ['w'] }] },
        both: { allOf: [{ type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] }, { type: 'object', properties: { b: { type: 'null' } }, required: ['b'] }] },
      },
      required: ['id', 'shape', 'both'],
    }],
    ['formats and patterns', {
      type: 'object',
      properties: { day: { type: 'string', format: 'date' }, at: { type: 'string', format: 'time' }, when: { type: 'string', format: 'date-time' }, code: { type: 'string', pattern: '^(AB|CD)-[A-Z]{2}[0-9]?$' } },
      required: ['day', 'at', 'when', 'code'],
      additionalProperties: false,
    }],
  ];

  it.each(SCHEMAS)('JSON schema "%s": 50 seeded generations all parse and validate (ajv)', async (_, schema) => {
    const ajv = new Ajv2020({ strict: false });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    const r = await engine.generate({ prompt: 'JSON:', jsonSchema: schema as Record<string, unknown>, n: 50, seed: 1, temperature: 1, maxTokens: 400 }).result;
    for (const c of r.completions) {
      expect(c.stopReason, c.text).toBe('eos');
      const value = JSON.parse(c.text);
      expect(validate(value), `${c.text}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });
});

describe('JSON schema converter', () => {
  it.each([
    ['an unknown keyword', { type: 'object', propertyNames: { maxLength: 3 } }, /keyword "propertyNames" is not supported/],
    ['a keyword of another type', { type: 'string', minimum: 3 }, /"minimum" does not apply to type "string"/],
    ['number ranges', { type: 'number', minimum: 0.5 }, /on a number is not supported/],
    ['an unknown format', { type: 'string', format: 'email' }, /format: "email" is not supported/],
    ['a remote $ref', { $ref: 'https://example.com/s.json' }, /only local references/],
    ['a dangling $ref', { $ref: '#/$defs/nope' }, /does not point to a schema/],
    ['an unanchored pattern', { type: 'string', pattern: 'ab+' }, /anchored/],
    ['a lookahead', { type: 'string', pattern: '^(?=a)a$' }, /only \(\?:\.\.\.\) groups/],
    ['an empty interval', { type: 'integer', minimum: 5, maximum: 4 }, /no integer lies/],
  ])('%s is a GrammarError naming it', (_, schema, message) => {
    expect(() => jsonSchemaToGBNF(schema)).toThrow(GrammarError);
    expect(() => jsonSchemaToGBNF(schema)).toThrow(message);
  });

  it('integer ranges accept exactly the integers inside (checked one by one)', () => {
    const ranges: [number | undefined, number | undefined][] = [[0, 9], [7, 123], [-15, 15], [-120, -7], [95, 1005], [undefined, -3], [42, undefined], [-7, undefined], [undefined, 250]];
    for (const [lo, hi] of ranges) {
      const g = parseGBNF(`root ::= ${integerRange(lo, hi)}`);
      const automatonless = (text: string) => matchesText(g, text);
      for (let v = -1300; v <= 1300; v++) expect(automatonless(String(v)), `[${lo}, ${hi}] ${v}`).toBe((lo === undefined || v >= lo) && (hi === undefined || v <= hi));
      expect(automatonless('007')).toBe(false);
      expect(automatonless('-0')).toBe(false);
    }
  });
});

import { GrammarAutomaton } from '../src/generation/constrained/automaton.js';
function esc(t: string): string {
  return t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
function matchesText(g: ReturnType<typeof parseGBNF>, text: string): boolean {
  const a = new GrammarAutomaton(g);
  return a.accepts(a.walk(a.initial, new TextEncoder().encode(text)));
}
