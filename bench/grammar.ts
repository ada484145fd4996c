// Constrained decoding: what a token mask costs per generated token, on the vocabularies of Llama 2
// (32k, SentencePiece), Llama 3 (128k, byte-level BPE) and Qwen 2 (152k), for a nested JSON schema.
// A seeded walk draws each next token uniformly among the allowed ones (as a random-weight model
// would), so every step needs a real mask; 20 walks of up to 300 tokens, each to the schema's end.
// Cold: the first walk on a fresh grammar (automaton states and masks built as met); warm: the
// walks after it (what an engine's cached grammar pays once a schema has been used).
// Run: npx tsx bench/grammar.ts
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { jsonSchemaToGBNF } from '../src/generation/constrained/json-schema.js';
import { CompiledGrammar } from '../src/generation/constrained/matcher.js';
import { hasToken } from '../src/generation/constrained/token-mask.js';
import { readGGUF } from '../src/gguf/reader.js';
import { fileSource } from '../src/runtime/file-source.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { rng } from '../test/helpers/random-tensors.js';

const ROOT = join(import.meta.dirname, '..');
const LLAMA_CPP = join(ROOT, 'bench/.cache/llama.cpp');
if (!existsSync(join(LLAMA_CPP, 'models'))) {
  // The vocabularies ship in the llama.cpp source that node-llama-cpp carries as a git bundle.
  execSync(`git clone -q ${join(ROOT, 'node_modules/node-llama-cpp/llama/gitRelease.bundle')} ${LLAMA_CPP}`);
}
const VOCABS = [
  ['Llama 2 (SentencePiece)', join(LLAMA_CPP, 'models/ggml-vocab-llama-spm.gguf')],
  ['Llama 3 (byte-level BPE)', join(LLAMA_CPP, 'models/ggml-vocab-llama-bpe.gguf')],
  ['Qwen 2 (byte-level BPE)', join(LLAMA_CPP, 'models/ggml-vocab-qwen2.gguf')],
] as const;

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 40 },
    age: { type: 'integer', minimum: 0, maximum: 130 },
    email: { type: 'string', pattern: '^[a-z]{1,10}@[a-z]{1,10}\\.(com|org)$' },
    address: { type: 'object', properties: { street: { type: 'string', maxLength: 30 }, city: { type: 'string', maxLength: 20 }, zip: { type: 'string', pattern: '^[0-9]{5}$' } }, required: ['city'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 5 },
    scores: { type: 'array', items: { type: 'number' }, maxItems: 4 },
    active: { type: 'boolean' },
  },
  required: ['name', 'age', 'address'],
};

const pct = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((p / 100) * a.length))]!;
const cpu = execSync("lscpu | grep 'Model name' | sed 's/.*: *//'").toString().trim();
console.log(`# Grammar mask time per token, ${new Date().toISOString().slice(0, 10)}`);
console.log(`CPU: ${cpu}; Node ${process.version}; a nested JSON schema (objects, arrays, pattern, integer range); uniform random walks among allowed tokens\n`);
console.log('| vocabulary | tokens | trie nodes | cold median ms | cold p99 ms | warm median ms | warm p99 ms | warm max ms | steps | automaton states |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
const gbnf = jsonSchemaToGBNF(SCHEMA);
for (const [label, path] of VOCABS) {
  const src = await fileSource(path);
  const tok = Tokenizer.fromGGUF((await readGGUF(src)).metadata);
  await src.close();
  const t0 = performance.now();
  const grammar = CompiledGrammar.fromGBNF(gbnf, tok);
  const compileMs = performance.now() - t0;
  const cold: number[] = [], warm: number[] = [];
  for (let walk = 0; walk < 21; walk++) {
    const random = rng(walk + 1);
    const m = grammar.matcher();
    for (let step = 0; step < 300 && m.canContinue; step++) {
      const s = performance.now();
      const mask = m.allowed();
      (walk === 0 ? cold : warm).push(performance.now() - s);
      const allowed: number[] = [];
      for (let id = 0; id < tok.vocabSize; id++) if (hasToken(mask, id) && !tok.isEog(id)) allowed.push(id);
      if (allowed.length === 0) break;
      m.accept(allowed[Math.floor(random() * allowed.length)]!);
    }
  }
  const trie = grammar.masks.trie;
  console.log(`| ${label} | ${tok.vocabSize} | ${trie.nodeCount} | ${pct(cold, 50).toFixed(2)} | ${pct(cold, 99).toFixed(2)} | ${pct(warm, 50).toFixed(3)} | ${pct(warm, 99).toFixed(2)} | ${Math.max(...warm).toFixed(2)} | ${cold.length + warm.length} | ${grammar.automaton.size.states} |`);
  void compileMs;
}
