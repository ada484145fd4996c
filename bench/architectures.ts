// Speed per architecture beside llama.cpp's llama-bench on the same files: every dense architecture
// wasmforge runs, at SmolLM-135M's shape (dim 576, 30 layers, 9 / 3 heads, ffn 1536), random
// weights, Q4_0, the Llama 2 vocabulary; 128-token prompt and 64 decoded tokens, 2 threads, medians
// of 3 after a warm-up, the two measured alternately per architecture.
// Run: npx tsx bench/architectures.ts [--threads 2] [--archs llama,qwen3,...]
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/model/model.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from '../test/helpers/synthetic.js';

const opt = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const threads = Number(opt('threads', '2'));
const ARCHS = opt('archs', 'llama,qwen2,qwen3,gemma,gemma2,gemma3,phi3,olmo2,granite,smollm3').split(',') as NonNullable<SyntheticLlamaOptions['arch']>[];
const LLAMA_BENCH = join(import.meta.dirname, '../../shared/bin/llama-bench');
const dir = join(import.meta.dirname, '.cache', 'models');
mkdirSync(dir, { recursive: true });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

const cpu = execSync("lscpu | grep 'Model name' | sed 's/.*: *//'").toString().trim();
console.log(`# Speed per architecture beside llama-bench, ${new Date().toISOString().slice(0, 10)}`);
console.log(`CPU: ${cpu}, ${threads} threads; m135 shape (dim 576, 30 layers, 9/3 heads, ffn 1536), Q4_0, random weights, Llama 2 vocabulary; prompt 128, decode 64; medians of 3\n`);
console.log('| architecture | wasmforge prompt tok/s | llama-bench pp128 | ratio | wasmforge decode tok/s | llama-bench tg64 | ratio |');
console.log('|---|---|---|---|---|---|---|');
const tokens = Array.from({ length: 128 }, (_, i) => 100 + ((i * 7919) % 20000));
for (const arch of ARCHS) {
  const path = join(dir, `arch-${arch}-m135-q4_0-s1-v2.gguf`);
  if (!existsSync(path)) {
    // gemma and gemma2 always tie the output head to the embeddings (llama.cpp refuses a separate one).
    const tied = arch === 'gemma' || arch === 'gemma2';
    await writeSyntheticLlama(path, { arch, dim: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, ffnDim: 1536, vocab: 'llama2', type: GGMLType.Q4_0, seed: 1, distinctBlocks: 256, contextLength: 2048, tiedEmbeddings: tied });
  }
  const model = await loadModel(path, { threads });
  const pp: number[] = [], tg: number[] = [];
  for (let r = 0; r < 4; r++) {
    model.engine().clearPrefixCache();
    const res = await model.generate(tokens, { temperature: 0, maxTokens: 64, ignoreEos: true }).result;
    if (r === 0) continue;
    pp.push(res.promptTokensPerSecond);
    tg.push(res.decodeTokensPerSecond);
  }
  await model.dispose();
  let theirs = { pp: NaN, tg: NaN };
  if (existsSync(LLAMA_BENCH)) {
    try {
      const out = JSON.parse(execFileSync(LLAMA_BENCH, ['-m', path, '-p', '128', '-n', '64', '-t', String(threads), '-r', '3', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { n_prompt: number; n_gen: number; avg_ts: number }[];
      theirs = { pp: out.find((r) => r.n_prompt > 0)!.avg_ts, tg: out.find((r) => r.n_gen > 0)!.avg_ts };
    } catch (e) {
      console.error(`llama-bench failed on ${arch}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const [p, t] = [median(pp), median(tg)];
  console.log(`| ${arch} | ${p.toFixed(1)} | ${theirs.pp.toFixed(1)} | ${(p / theirs.pp).toFixed(2)}x | ${t.toFixed(1)} | ${theirs.tg.toFixed(1)} | ${(t / theirs.tg).toFixed(2)}x |`);
}
