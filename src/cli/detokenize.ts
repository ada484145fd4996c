// `wasmforge detokenize -m FILE [IDS...|-]`: token ids → text, as llama.cpp's detokenizer renders them.
// Only the GGUF header is read.
import { bundledModelPath } from '../runtime/bundled-model.js';
import { parseArgs, UsageError } from './args.js';
import { loadTokenizer, readStdin } from './tokenize.js';

export const summary = 'turn token ids back into text with a model\'s tokenizer (reads only the GGUF header)';

const USAGE = `usage: wasmforge detokenize [-m FILE|URL] [--skip-special] [IDS...|-]
  -m, --model FILE     GGUF file whose tokenizer to use (default: bundled stories260K.gguf)
  --skip-special       render control tokens (BOS, EOS, ...) as nothing instead of their text
  IDS | -              token ids separated by spaces or commas, or a JSON array; "-" reads them from stdin
`;

/** Parse "1 2 3", "1,2,3" or "[1, 2, 3]" into ids; anything else is a usage error. */
export function parseIds(text: string): number[] {
  const body = text.trim().replace(/^\[([\s\S]*)\]$/, '$1');
  if (body.trim() === '') return [];
  return body.split(/[\s,]+/).filter((s) => s !== '').map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`"${s}" is not a token id (expected a non-negative integer)`);
    return Number(s);
  });
}

export async function run(argv: string[], stdin: () => Promise<string> = readStdin): Promise<number> {
  const args = parseArgs(argv, { values: { model: ['m'] }, flags: { 'skip-special': [], help: ['h'] } });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.positionals.length === 0) throw new UsageError(`no token ids given (pass IDS, or - to read stdin)\n${USAGE.trimEnd()}`);
  const ids = args.positionals.length === 1 && args.positionals[0] === '-' ? parseIds(await stdin()) : parseIds(args.positionals.join(' '));
  const tokenizer = await loadTokenizer(args.values.get('model') ?? (await bundledModelPath()));
  process.stdout.write(tokenizer.decode(ids, { skipSpecial: args.flags.has('skip-special') }) + '\n');
  return 0;
}
