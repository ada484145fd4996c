// Pieces the model-running subcommands share: model path resolution, loading with timing, stdin.
import { loadModel, type LoadModelOptions, type Model } from '../model/model.js';
import { bundledModelPath } from '../runtime/bundled-model.js';
import { numberOption, type ParsedArgs } from './args.js';

export const MODEL_OPTIONS = { model: ['m'], threads: ['t'], ctx: ['c'] };

export async function loadModelFromArgs(args: ParsedArgs, extra: LoadModelOptions = {}): Promise<Model> {
  const path = args.values.get('model') ?? (await bundledModelPath());
  const threads = args.values.has('threads') ? numberOption(args, 'threads', 1, { integer: true, min: 1, max: 256 }) : undefined;
  const contextLength = args.values.has('ctx') ? numberOption(args, 'ctx', 0, { integer: true, min: 8 }) : undefined;
  return loadModel(path, { threads, contextLength, ...extra });
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
