// `wasmforge embed -m FILE [--pooling mean|cls|last] [--no-normalize] [--lines] TEXT|-`: the
// embedding of a text with an embedding model (BERT, nomic-bert, jina-bert-v2, or a decoder that
// declares its pooling, as Qwen3-Embedding), as JSON on stdout.
import type { EmbedOptions } from '../model/model.js';
import { parseArgs, UsageError } from './args.js';
import { loadModelFromArgs, MODEL_OPTIONS, readStdin } from './common.js';

export const summary = 'embed text with an embedding model (BERT, nomic-bert, jina-bert-v2, Qwen3-Embedding): JSON vectors';

const USAGE = `usage: wasmforge embed -m FILE [--pooling mean|cls|last] [--no-normalize] [--lines] TEXT|-
  -m, --model FILE     an embedding GGUF (bge, all-MiniLM, nomic-embed, Qwen3-Embedding)
  --pooling P          how to pool the tokens' states (default: what the file says)
  --no-normalize       keep the pooled vector as it is (default: L2-normalized)
  --lines              embed each line of the text on its own
  -t, --threads N      worker threads
  TEXT | -             the text (arguments joined by spaces); "-" reads stdin
prints {"model": ..., "dimensions": N, "embeddings": [[...], ...]}
`;

export async function run(argv: string[], stdin: () => Promise<string> = readStdin): Promise<number> {
  const args = parseArgs(argv, { values: { ...MODEL_OPTIONS, pooling: [] }, flags: { 'no-normalize': [], lines: [], help: ['h'] } });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!args.values.has('model')) throw new UsageError(`an embedding model is needed (-m FILE)\n${USAGE.trimEnd()}`);
  if (args.positionals.length === 0) throw new UsageError(`no text given (pass TEXT, or - to read stdin)\n${USAGE.trimEnd()}`);
  const pooling = args.values.get('pooling');
  if (pooling !== undefined && !['mean', 'cls', 'last'].includes(pooling)) throw new UsageError(`--pooling must be mean, cls or last, got "${pooling}"`);
  const text = args.positionals.length === 1 && args.positionals[0] === '-' ? await stdin() : args.positionals.join(' ');
  const texts = args.flags.has('lines') ? text.split('\n').filter((l) => l.trim() !== '') : [text];
  const options: EmbedOptions = { normalize: !args.flags.has('no-normalize'), pooling: pooling as EmbedOptions['pooling'] };
  const model = await loadModelFromArgs(args);
  try {
    const vectors = await model.embedBatch(texts, options);
    process.stdout.write(JSON.stringify({ model: args.values.get('model'), dimensions: model.config.dim, embeddings: vectors.map((v) => Array.from(v)) }) + '\n');
    return 0;
  } finally {
    await model.dispose();
  }
}
