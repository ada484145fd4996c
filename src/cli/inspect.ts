// `wasmforge inspect FILE [--json]`: what a GGUF file holds, from its header alone (tensor data is
// never read, so inspecting a 70B model over HTTP costs a few range requests).
import { GGUFValueType } from '../gguf/constants.js';
import { GGUFError } from '../gguf/errors.js';
import { readGGUF, type GGUFArray, type GGUFFile, type GGUFValue } from '../gguf/reader.js';
import { openSource } from '../io/open-source.js';
import { readHParams, SUPPORTED_ARCHITECTURES, type HParams } from '../model/hparams.js';
import { typeName } from '../tensor/ggml-types.js';
import { parseArgs, UsageError } from './args.js';

export const summary = 'show a GGUF file\'s architecture, hyperparameters, tokenizer and tensors (header only)';

const USAGE = 'usage: wasmforge inspect FILE|URL [--json]\n';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

interface TensorRow {
  name: string;
  type: string;
  shape: number[];
  bytes: number;
  offset: number;
}

export interface InspectReport {
  file: string;
  fileSize: number;
  version: number;
  alignment: number;
  architecture: string | null;
  general: Record<string, Json>;
  /** Every `<arch>.` key, prefix stripped, as stored. */
  hyperparameters: Record<string, Json>;
  /** Validated llama-family hyperparameters, when the architecture is supported. */
  hparams: HParams | null;
  hparamsError: string | null;
  tokenizer: TokenizerSummary | null;
  tensors: TensorRow[];
  totals: { tensors: number; bytes: number; parameters: number; metadataKeys: number };
}

interface TokenizerSummary {
  model: string | null;
  pre: string | null;
  vocabSize: number | null;
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean | null;
  addEos: boolean | null;
  merges: number | null;
  hasScores: boolean;
  hasTokenTypes: boolean;
  chatTemplate: boolean;
}

/** The shortest decimal that reads back as the same float32 (1e-5, not 0.000009999999747378752). */
export function shortestF32(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  for (let p = 1; p < 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** Small arrays in full, long ones (token lists) as a summary: the report must stay readable. */
function toJson(v: GGUFValue, type: GGUFValueType): Json {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    return type === GGUFValueType.FLOAT32 ? shortestF32(v) : v;
  }
  if (typeof v !== 'object') return v;
  const a = v as GGUFArray;
  if (a.values.length > 16) return { arrayOf: GGUFValueType[a.elementType] ?? String(a.elementType), length: a.values.length };
  return Array.from(a.values as ArrayLike<GGUFValue>, (x) => toJson(x, a.elementType));
}

function scalar(file: GGUFFile, key: string): GGUFValue | undefined {
  const e = file.metadata.get(key);
  return e && e.type !== GGUFValueType.ARRAY ? e.value : undefined;
}

function intOrNull(file: GGUFFile, key: string): number | null {
  const v = scalar(file, key);
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

function arrayLength(file: GGUFFile, key: string): number | null {
  const e = file.metadata.get(key);
  return e && e.type === GGUFValueType.ARRAY ? (e.value as GGUFArray).values.length : null;
}

function tokenizerSummary(file: GGUFFile): TokenizerSummary | null {
  if (![...file.metadata.keys()].some((k) => k.startsWith('tokenizer.'))) return null;
  const str = (k: string) => (typeof scalar(file, k) === 'string' ? (scalar(file, k) as string) : null);
  const bool = (k: string) => (typeof scalar(file, k) === 'boolean' ? (scalar(file, k) as boolean) : null);
  return {
    model: str('tokenizer.ggml.model'),
    pre: str('tokenizer.ggml.pre'),
    vocabSize: arrayLength(file, 'tokenizer.ggml.tokens'),
    bosId: intOrNull(file, 'tokenizer.ggml.bos_token_id'),
    eosId: intOrNull(file, 'tokenizer.ggml.eos_token_id'),
    unkId: intOrNull(file, 'tokenizer.ggml.unknown_token_id'),
    padId: intOrNull(file, 'tokenizer.ggml.padding_token_id'),
    addBos: bool('tokenizer.ggml.add_bos_token'),
    addEos: bool('tokenizer.ggml.add_eos_token'),
    merges: arrayLength(file, 'tokenizer.ggml.merges'),
    hasScores: file.metadata.has('tokenizer.ggml.scores'),
    hasTokenTypes: file.metadata.has('tokenizer.ggml.token_type'),
    chatTemplate: file.metadata.has('tokenizer.chat_template'),
  };
}

export function buildReport(path: string, file: GGUFFile): InspectReport {
  const archValue = scalar(file, 'general.architecture');
  const architecture = typeof archValue === 'string' ? archValue : null;
  const general: Record<string, Json> = {};
  const hyperparameters: Record<string, Json> = {};
  for (const [key, e] of file.metadata) {
    if (key.startsWith('general.') && key !== 'general.architecture') general[key.slice(8)] = toJson(e.value, e.type);
    else if (architecture && key.startsWith(architecture + '.')) hyperparameters[key.slice(architecture.length + 1)] = toJson(e.value, e.type);
  }
  let hparams: HParams | null = null;
  let hparamsError: string | null = null;
  if (architecture && (SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture)) {
    try {
      hparams = readHParams(file);
    } catch (err) {
      if (!(err instanceof GGUFError)) throw err;
      hparamsError = `${err.code}: ${err.message}`;
    }
  }
  const tensors = file.tensors.map((t) => ({ name: t.name, type: typeName(t.type), shape: [...t.dims], bytes: t.nBytes, offset: t.fileOffset }));
  return {
    file: path,
    fileSize: file.fileSize,
    version: file.version,
    alignment: file.alignment,
    architecture,
    general,
    hyperparameters,
    hparams,
    hparamsError,
    tokenizer: tokenizerSummary(file),
    tensors,
    totals: {
      tensors: tensors.length,
      bytes: tensors.reduce((s, t) => s + t.bytes, 0),
      parameters: file.tensors.reduce((s, t) => s + t.nElements, 0),
      metadataKeys: file.metadata.size,
    },
  };
}

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]}`;
}

function show(v: Json): string {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return `[${v.length} x ${v.arrayOf}]`;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function formatText(r: InspectReport): string {
  const out: string[] = [];
  const row = (label: string, value: unknown) => out.push(`  ${label.padEnd(38)} ${value}`);
  out.push(`${r.file}: GGUF v${r.version}, ${human(r.fileSize)} (${r.fileSize} bytes), alignment ${r.alignment}, ${r.totals.metadataKeys} metadata keys`);
  out.push(`architecture: ${r.architecture ?? '(none)'}`);
  for (const [k, v] of Object.entries(r.general)) row(`general.${k}`, show(v));

  out.push('', 'hyperparameters:');
  if (Object.keys(r.hyperparameters).length === 0) out.push('  (none)');
  for (const [k, v] of Object.entries(r.hyperparameters)) row(k, show(v));
  if (r.hparams) {
    const h = r.hparams;
    out.push('  derived:');
    row('head dim (k / v)', `${h.headDim} / ${h.headDimV}`);
    row('grouped-query ratio', `${h.headCount / h.headCountKv} (${h.headCount} heads, ${h.headCountKv} kv heads)`);
    row('rope', `${h.ropeStyle}, base ${h.ropeFreqBase}, ${h.ropeDimensionCount} dims, scaling ${h.ropeScalingType}` +
      (h.ropeScalingType === 'none' ? '' : ` x${h.ropeScalingFactor} from ${h.ropeScalingOriginalContextLength}`));
    row('rms norm eps', shortestF32(h.rmsNormEps));
    row('sliding window', h.slidingWindow ?? 'none');
    row('experts (used / total)', h.expertCount === 0 ? 'dense' : `${h.expertUsedCount} / ${h.expertCount}`);
    row('vocab size', h.vocabSize);
  }
  if (r.hparamsError) out.push(`  invalid for ${r.architecture}: ${r.hparamsError}`);

  out.push('', 'tokenizer:');
  const t = r.tokenizer;
  if (!t) out.push('  (none)');
  else {
    const v = (x: unknown) => (x === null ? '-' : String(x));
    row('model / pre', `${v(t.model)} / ${v(t.pre)}`);
    row('vocab size', v(t.vocabSize));
    row('bos / eos / unk / pad ids', [t.bosId, t.eosId, t.unkId, t.padId].map(v).join(' / '));
    row('add bos / add eos', `${v(t.addBos)} / ${v(t.addEos)}`);
    row('merges', v(t.merges));
    row('scores / token types / chat template', [t.hasScores, t.hasTokenTypes, t.chatTemplate].map((b) => (b ? 'yes' : 'no')).join(' / '));
  }

  out.push('', `tensors (${r.totals.tensors}):`);
  if (r.tensors.length > 0) {
    const nameW = Math.max(4, ...r.tensors.map((x) => x.name.length));
    const shapeW = Math.max(5, ...r.tensors.map((x) => x.shape.join(' x ').length));
    out.push(`  ${'name'.padEnd(nameW)}  ${'type'.padEnd(7)}  ${'shape'.padEnd(shapeW)}  ${'bytes'.padStart(12)}`);
    for (const x of r.tensors) {
      out.push(`  ${x.name.padEnd(nameW)}  ${x.type.padEnd(7)}  ${x.shape.join(' x ').padEnd(shapeW)}  ${String(x.bytes).padStart(12)}`);
    }
  }
  out.push(`total: ${r.totals.tensors} tensors, ${r.totals.parameters} parameters, ${r.totals.bytes} bytes of tensor data (${human(r.totals.bytes)})`);
  return out.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: { json: [], help: ['h'] } });
  if (args.flags.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.positionals.length !== 1) throw new UsageError(`expected one FILE, got ${args.positionals.length}\n${USAGE.trimEnd()}`);
  const path = args.positionals[0];
  const source = await openSource(path);
  try {
    const file = await readGGUF(source);
    const report = buildReport(path, file);
    process.stdout.write(args.flags.has('json') ? JSON.stringify(report) + '\n' : formatText(report));
    return 0;
  } finally {
    await source.close();
  }
}
