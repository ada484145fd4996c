import { numberOption, parseArgs } from './args.js';
import { loadModelFromArgs, MODEL_OPTIONS } from './common.js';
import { perplexity } from '../model/perplexity.js';

export const summary = 'perplexity of a text file, computed as llama.cpp\'s perplexity tool does';

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: { ...MODEL_OPTIONS, file: ['f'] }, flags: { help: ['h'], json: [] } });
  if (args.flags.has('help')) {
    process.stdout.write('usage: wasmforge perplexity [-m FILE] -f TEXT_FILE [--ctx N] [--json]\n');
    return 0;
  }
  const path = args.values.get('file');
  if (!path) throw new Error('give the text file with -f');
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(path, 'utf8');
  const ctx = numberOption(args, 'ctx', 512, { integer: true, min: 8 });
  const model = await loadModelFromArgs(args, { contextLength: ctx, maxBatchTokens: ctx });
  try {
    const r = await perplexity(model, text, ctx, (done, total, ppl) => {
      if (!args.flags.has('json')) process.stderr.write(`[${done}/${total}] ${ppl.toFixed(4)}\n`);
    });
    process.stdout.write(args.flags.has('json') ? JSON.stringify(r) + '\n' : `perplexity: ${r.perplexity.toFixed(4)} over ${r.chunks} chunks of ${ctx} tokens (${r.scoredTokens} scored)\n`);
    return 0;
  } finally {
    await model.dispose();
  }
}
