// `wasmforge convert HF_DIR OUT.gguf [--type TYPE]`: a Hugging Face model directory (config.json,
// tokenizer.json, safetensors) written as a GGUF file llama.cpp loads, one tensor at a time, with a
// progress bar on a terminal.
import { resolve } from 'node:path';
import { convertToGGUF } from '../hf/convert.js';
import { QUANTIZE_TARGETS } from '../model/quantize-model.js';
import { writeLazyGGUFFile } from '../runtime/file-sink.js';
import { typeName } from '../tensor/ggml-types.js';
import { parseArgs, UsageError } from './args.js';
import { progressBar } from './common.js';

export const summary = 'convert a Hugging Face model directory (safetensors, tokenizer.json) to a GGUF file';

const TYPES = [...QUANTIZE_TARGETS.keys()].join('|');
const USAGE =
  `usage: wasmforge convert HF_DIR OUT.gguf [--type ${TYPES}] [--quiet]\n` +
  '  Writes what llama.cpp\'s convert_hf_to_gguf.py writes: its metadata keys, the tokenizer of tokenizer.json,\n' +
  '  weight matrices as TYPE (default f16; rows that do not fit its blocks fall back as llama-quantize does),\n' +
  '  norms and biases as f32.\n';

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: { type: ['t'] }, flags: { help: ['h'], quiet: ['q'] } });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [input, output, ...extra] = args.positionals;
  if (!input || !output || extra.length > 0) throw new UsageError(`expected HF_DIR OUT.gguf\n${USAGE}`);
  const type = args.values.get('type') ?? 'f16';
  if (!QUANTIZE_TARGETS.has(type.toLowerCase())) throw new UsageError(`--type "${type}" is not one of ${TYPES}`);
  if (resolve(input) === resolve(output)) throw new UsageError('the output must be a file, not the model directory');

  const started = Date.now();
  let total = 0, done = 0;
  const progress = args.flags.has('quiet') ? undefined : progressBar(output.replace(/^.*[/\\]/, ''));
  const model = await convertToGGUF(input, {
    type,
    onTensor: (p) => {
      done += p.bytesAfter;
      progress?.(done, total);
    },
  });
  total = model.plan.reduce((a, p) => a + p.bytesAfter, 0);
  let bytes: number;
  try {
    ({ bytes } = await writeLazyGGUFFile(output, model.metadata, model.tensors));
  } finally {
    await model.close();
  }
  const converted = model.plan.filter((p) => p.action === 'converted').length;
  const fallbacks = model.plan.filter((p) => p.fallback).length;
  process.stdout.write(
    `wrote ${output}: ${mib(bytes)}, ${model.plan.length} tensors (${converted} converted, ${fallbacks} fallback), ` +
      `${typeName(QUANTIZE_TARGETS.get(type.toLowerCase())!)}, ${((Date.now() - started) / 1000).toFixed(2)} s\n`,
  );
  return 0;
}
