// Tokenizer throughput: encode ~1 MB of varied text with our tokenizer and with llama.cpp's (through
// node-llama-cpp's prebuilt binary) on the same vocabularies, and check both give the same ids.
// Run: npx tsx bench/tokenizer.ts [--mb N] [--runs N]
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readGGUF } from '../src/gguf/reader.js';
import { openSource } from '../src/io/open-source.js';
import { Tokenizer } from '../src/tokenizer/index.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const MB = arg('mb', 1);
const RUNS = arg('runs', 3);
const VOCAB_DIR = join(import.meta.dirname, '..', '..', 'shared', 'vocab');
const VOCABS = ['llama-spm', 'gpt-2'];

// Varied text: prose, dialogue, code, numbers, several scripts, emoji and odd whitespace, in a seeded mix.
const PARTS = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. ',
  '"Can we go to the lake tomorrow?" she asked. Her mom smiled and said, "We\'ll see, sweetheart." ',
  'The committee\'s report, published on 2024-03-15, estimated costs of $1,234,567.89 (about 12.5% over budget).\n',
  'function fibonacci(n) {\n    if (n < 2) return n;\n    return fibonacci(n - 1) + fibonacci(n - 2);\n}\n\n',
  'for i in range(10):\n\tprint(f"{i:>3} -> {i ** 2}")  # squares\n',
  'Привет, мир! Как дела? Всё хорошо, спасибо. ',
  '東京は日本の首都です。今日はいい天気ですね。 ',
  '人工智能正在改变世界，语言模型可以生成文本。 ',
  '한국어 문장도 포함되어 있습니다. ',
  'مرحبا بالعالم، هذه جملة عربية. ',
  'Émile a mangé une crème brûlée à l\'hôtel près de Zürich. ',
  'Emoji: 🦙🚀✨ 👨‍👩‍👧 🇯🇵 ✅ — done!\n',
  '    Indented   text  with   irregular    spacing\r\n\n\n',
  '<html><body><div class="main">Hello &amp; welcome</div></body></html>\n',
  'E = mc²; ∑ᵢ xᵢ² ≥ 0; ½ + ¼ = ¾. ',
];

function makeText(bytes: number): string {
  let seed = 12345;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    return (seed >>> 8) / (1 << 24);
  };
  const enc = new TextEncoder();
  let text = '';
  let size = 0;
  while (size < bytes) {
    const p = PARTS[Math.floor(rnd() * PARTS.length)];
    text += p;
    size += enc.encode(p).length;
  }
  return text;
}

interface Row {
  vocab: string;
  tokens: number;
  oursMs: number;
  llamaMs?: number;
  same?: boolean;
}

const best = (xs: number[]) => Math.min(...xs);

async function loadLlama() {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    return await getLlama({
      gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, logLevel: LlamaLogLevel.error,
      logger: (level, message) => {
        if (!/missing tensor|failed to load model|Failed simulating/.test(message)) process.stderr.write(`[llama.cpp ${level}] ${message}\n`);
      },
    });
  } catch (e) {
    process.stderr.write(`node-llama-cpp unavailable (${(e as Error).message}); reporting our tokenizer only\n`);
    return undefined;
  }
}

if (!existsSync(VOCAB_DIR)) {
  process.stderr.write(`skipped: ${VOCAB_DIR} not found\n`);
  process.exit(0);
}
const text = makeText(MB * 1_000_000);
const textBytes = new TextEncoder().encode(text).length;
const llama = await loadLlama();
const rows: Row[] = [];
for (const vocab of VOCABS) {
  const path = join(VOCAB_DIR, `ggml-vocab-${vocab}.gguf`);
  const source = await openSource(path);
  const metadata = (await readGGUF(source)).metadata;
  await source.close();

  const oursTimes: number[] = [];
  let ours: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const tok = Tokenizer.fromGGUF(metadata); // fresh word cache every run
    const t0 = performance.now();
    ours = tok.encode(text);
    oursTimes.push(performance.now() - t0);
  }
  const row: Row = { vocab, tokens: ours.length, oursMs: best(oursTimes) };

  if (llama) {
    const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
    const times: number[] = [];
    let theirs: readonly number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      theirs = model.tokenize(text);
      times.push(performance.now() - t0);
    }
    row.llamaMs = best(times);
    row.same = theirs.length === ours.length && theirs.every((id, i) => id === ours[i]);
    await model.dispose();
  }
  rows.push(row);
}
await llama?.dispose();

const tps = (tokens: number, ms: number) => Math.round(tokens / (ms / 1000)).toLocaleString('en-US');
const lines = [
  `Encoding ${(textBytes / 1e6).toFixed(2)} MB of mixed text (${text.length.toLocaleString('en-US')} UTF-16 units), best of ${RUNS} runs, ${process.version}.`,
  '',
  '| vocab | tokens | wasmforge ms | wasmforge tok/s | llama.cpp ms | llama.cpp tok/s | wasmforge / llama.cpp speed | same ids |',
  '|---|---:|---:|---:|---:|---:|---:|---|',
  ...rows.map((r) =>
    `| ${r.vocab} | ${r.tokens.toLocaleString('en-US')} | ${r.oursMs.toFixed(0)} | ${tps(r.tokens, r.oursMs)} | ` +
    (r.llamaMs === undefined ? '- | - | - | - |' : `${r.llamaMs.toFixed(0)} | ${tps(r.tokens, r.llamaMs)} | ${(r.llamaMs / r.oursMs).toFixed(2)}x | ${r.same ? 'yes' : 'NO'} |`),
  ),
];
process.stdout.write(lines.join('\n') + '\n');
