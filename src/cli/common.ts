// Pieces the model-running subcommands share: model path resolution, loading with timing, stdin.
import { KV_CACHE_TYPES, isKVCacheType, type KVCacheType } from '../backend/backend.js';
import { BACKEND_KINDS, type BackendKind } from '../backend/registry.js';
import { loadModel, type LoadModelOptions, type Model } from '../model/model.js';
import { bundledModelPath } from '../runtime/bundled-model.js';
import { numberOption, UsageError, type ParsedArgs } from './args.js';

export const MODEL_OPTIONS = { model: ['m'], threads: ['t'], ctx: ['c'], backend: [], 'kv-type': [] };

/** The --kv-type help line the model commands share. */
export const KV_TYPE_HELP = `  --kv-type TYPE          KV cache type: ${KV_CACHE_TYPES.join(' | ')} (default f16; q8_0 about halves KV memory, as llama.cpp's -ctk/-ctv q8_0)`;

/** --kv-type TYPE, checked before anything loads (undefined: the library's default). */
export function kvTypeArg(args: ParsedArgs): KVCacheType | undefined {
  const v = args.values.get('kv-type');
  if (v === undefined) return undefined;
  if (!isKVCacheType(v)) throw new UsageError(`--kv-type must be one of ${KV_CACHE_TYPES.join(', ')}, got "${v}"`);
  return v;
}

/** --backend NAME, checked before anything loads. */
export function backendArg(args: ParsedArgs): BackendKind {
  const backend = args.values.get('backend') ?? 'auto';
  if (!(BACKEND_KINDS as readonly string[]).includes(backend)) throw new UsageError(`--backend must be one of ${BACKEND_KINDS.join(', ')}, got "${backend}"`);
  return backend as BackendKind;
}

export async function loadModelFromArgs(args: ParsedArgs, extra: LoadModelOptions = {}): Promise<Model> {
  const path = args.values.get('model') ?? (await bundledModelPath());
  const threads = args.values.has('threads') ? numberOption(args, 'threads', 1, { integer: true, min: 1, max: 256 }) : undefined;
  const contextLength = args.values.has('ctx') ? numberOption(args, 'ctx', 0, { integer: true, min: 8 }) : undefined;
  const backend = backendArg(args);
  const kvCacheType = kvTypeArg(args);
  return loadModel(path, { threads, contextLength, backend, kvCacheType, onProgress: progressBar(path.replace(/^.*[/\\]/, '')), ...extra });
}

/** A progress bar on stderr while a model loads, when stderr is a terminal (nothing in pipes and logs). */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): ((loaded: number, total: number) => void) | undefined {
  if (!stream.isTTY) return undefined;
  let last = -1;
  return (loaded, total) => {
    const fraction = total > 0 ? Math.min(1, loaded / total) : 1;
    const percent = Math.floor(fraction * 100);
    if (percent === last) return;
    last = percent;
    const width = 30, filled = Math.round(fraction * width);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}% ${(loaded / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`);
    if (fraction >= 1) stream.write('\n');
  };
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** FILE[:SCALE] of --lora. */
export function loraArg(text: string): { input: string; scale: number } {
  const m = /^(.*?)(?::(-?[\d.]+(?:e-?\d+)?))?$/i.exec(text)!;
  const scale = m[2] === undefined ? 1 : Number(m[2]);
  if (!m[1] || !Number.isFinite(scale)) throw new UsageError(`--lora takes FILE or FILE:SCALE, got "${text}"`);
  return { input: m[1], scale };
}

/** The speculative-decoding flags: --lookup N | --draft FILE [--draft-tokens N] [--draft-fixed], checked (UsageError). */
export function speculativeArgs(args: ParsedArgs): { lookup?: number; draftPath?: string; draftTokens: number; adaptive: boolean } {
  const draftPath = args.values.get('draft');
  if (draftPath !== undefined && args.values.has('lookup')) throw new UsageError('give --lookup or --draft, not both');
  if (args.values.has('draft-tokens') && draftPath === undefined) throw new UsageError('--draft-tokens needs --draft FILE');
  if (args.flags.has('draft-fixed') && draftPath === undefined && !args.values.has('lookup')) throw new UsageError('--draft-fixed needs --lookup N or --draft FILE');
  return {
    lookup: args.values.has('lookup') ? numberOption(args, 'lookup', 8, { integer: true, min: 1, max: 64 }) : undefined,
    draftPath,
    draftTokens: numberOption(args, 'draft-tokens', 4, { integer: true, min: 1, max: 32 }),
    adaptive: !args.flags.has('draft-fixed'),
  };
}
