// `wasmforge tokenize -m FILE [--bos] [--parse-special] [--json] [TEXT|-]`: text → token ids with the
// model's own tokenizer. Only the GGUF header is read (the vocabulary lives there), never tensor data.
import { readGGUF } from '../gguf/reader.js';
import { openSource } from '../io/open-source.js';
import { bundledModelPath } from '../runtime/bundled-model.js';
import { Tokenizer } from '../tokenizer/index.js';
import { parseArgs, UsageError } from './args.js';

export const summary = 'turn text into token ids with a model\'s tokenizer (reads only the GGUF header)';

const USAGE = `usage: wasmforge tokenize [-m FILE|URL] [--bos] [--parse-special] [--json] [TEXT|-]
  -m, --model FILE     GGUF file whose tokenizer to use (default: bundled stories260K.gguf)
  --bos                add the special tokens the model asks for (BOS, and EOS/SEP where the model adds them)
  --parse-special      turn special-token text such as "<s>" into those tokens
  --json               print a JSON array instead of space-separated ids
  TEXT | -             the text (several arguments are joined by spaces); "-" reads stdin as is
`;

/** Load just the tokenizer of a model file or URL. */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  const source = await openSource(path);
  try {
    return Tokenizer.fromGGUF((await readGGUF(source)).metadata);
  } finally {
    await source.close();
  }
}

export async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(argv: string[], stdin: () => Promise<string> = readStdin): Promise<number> {
  const args = parseArgs(argv, {
    values: { model: ['m'] },
    flags: { bos: ['add-special'], 'parse-special': [], json: [], help: ['h'] },
  });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.positionals.length === 0) throw new UsageError(`no text given (pass TEXT, or - to read stdin)\n${USAGE.trimEnd()}`);
  const text = args.positionals.length === 1 && args.positionals[0] === '-' ? await stdin() : args.positionals.join(' ');
  const tokenizer = await loadTokenizer(args.values.get('model') ?? (await bundledModelPath()));
  const ids = tokenizer.encode(text, { addSpecial: args.flags.has('bos'), parseSpecial: args.flags.has('parse-special') });
  process.stdout.write((args.flags.has('json') ? JSON.stringify(ids) : ids.join(' ')) + '\n');
  return 0;
}
