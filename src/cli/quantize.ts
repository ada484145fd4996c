// `wasmforge quantize IN.gguf OUT.gguf --type TYPE`: like `llama-quantize --pure`, one tensor at a
// time, with a line per tensor and the sizes before and after.
import { resolve } from 'node:path';
import { writeLazyGGUFFile } from '../runtime/file-sink.js';
import { fileSource } from '../runtime/file-source.js';
import { QUANTIZE_TARGETS, quantizeModel, type TensorPlan } from '../model/quantize-model.js';
import { typeName, type GGMLType } from '../tensor/ggml-types.js';
import { parseArgs, UsageError } from './args.js';

export const summary = 'convert a GGUF model\'s weight matrices to another type (q4_0, q8_0, q4_k, f16, ...)';

const TYPES = [...QUANTIZE_TARGETS.keys()].join('|');
const USAGE =
  `usage: wasmforge quantize IN.gguf OUT.gguf --type ${TYPES}\n` +
  '         [--output-type TYPE] [--token-embedding-type TYPE] [--quiet]\n' +
  '  Every 2-D weight matrix becomes TYPE (rows that do not fit its blocks fall back as llama.cpp does);\n' +
  '  norms and other 1-D tensors, the tokenizer and all metadata are copied.\n';

function targetOption(value: string | undefined, what: string): GGMLType | undefined {
  if (value === undefined) return undefined;
  const t = QUANTIZE_TARGETS.get(value.toLowerCase());
  if (t === undefined) throw new UsageError(`${what} "${value}" is not one of ${TYPES}`);
  return t;
}

const mib = (n: number): string => `${(n / 1048576).toFixed(3)} MiB`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    values: { type: [], 'output-type': [], 'token-embedding-type': [] },
    flags: { help: ['h'], quiet: ['q'] },
  });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [input, output, positionalType, ...extra] = args.positionals;
  if (!input || !output || extra.length > 0) throw new UsageError(`expected IN.gguf OUT.gguf\n${USAGE}`);
  if (args.values.has('type') && positionalType !== undefined) throw new UsageError('give the type once, with --type');
  const target = targetOption(args.values.get('type') ?? positionalType, 'type');
  if (target === undefined) throw new UsageError(`--type is required\n${USAGE}`);
  if (resolve(input) === resolve(output)) throw new UsageError('the output must be a different file from the input');

  const quiet = args.flags.has('quiet');
  const source = await fileSource(input);
  try {
    const started = Date.now();
    let count = 0;
    const model = await quantizeModel(source, target, {
      outputType: targetOption(args.values.get('output-type'), '--output-type'),
      tokenEmbeddingType: targetOption(args.values.get('token-embedding-type'), '--token-embedding-type'),
      onTensor: (p: TensorPlan, i: number, ms: number) => {
        if (quiet) return;
        const n = String(count).length;
        const change = p.action === 'converted' ? `${typeName(p.from)} -> ${typeName(p.to)}${p.fallback ? ' (fallback)' : ''}` : `${typeName(p.from)} (copied)`;
        process.stdout.write(
          `[${String(i + 1).padStart(n)}/${count}] ${p.name.padEnd(28)} [${p.dims.join(', ')}]`.padEnd(64) +
            ` ${change.padEnd(26)} ${mib(p.bytesBefore).padStart(13)} -> ${mib(p.bytesAfter).padStart(13)}  ${ms} ms\n`,
        );
      },
    });
    count = model.plan.length;
    const fallbacks = model.plan.filter((p) => p.fallback).length;
    const { bytes } = await writeLazyGGUFFile(output, model.metadata, model.tensors);
    const before = model.plan.reduce((a, p) => a + p.bytesBefore, 0);
    const after = model.plan.reduce((a, p) => a + p.bytesAfter, 0);
    process.stdout.write(
      `tensor data: ${mib(before)} -> ${mib(after)} (${((100 * after) / Math.max(before, 1)).toFixed(1)}%)` +
        `; file: ${mib(source.size)} -> ${mib(bytes)}` +
        `; ${model.plan.filter((p) => p.action === 'converted').length} converted, ${fallbacks} fallback` +
        `; ${((Date.now() - started) / 1000).toFixed(2)} s\n` +
        `wrote ${output} (${typeName(target)})\n`,
    );
    return 0;
  } finally {
    await source.close();
  }
}
