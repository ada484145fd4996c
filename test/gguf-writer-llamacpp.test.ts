// Files written by our GGUF writer must be accepted by llama.cpp and compute exactly what the
// original files compute there. Uses node-llama-cpp's prebuilt CPU binary as the oracle.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GGUFValueType } from '../src/gguf/constants.js';
import { GGUFError } from '../src/gguf/errors.js';
import { readGGUF, type GGUFEntry, type GGUFFile } from '../src/gguf/reader.js';
import type { GGUFWriteTensor } from '../src/gguf/writer.js';
import { bufferSource } from '../src/io/byte-source.js';
import { writeGGUFFile } from '../src/runtime/file-sink.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { disposeLlamaCpp, llamaCppLoad, llamaCppNextTokenLogProbs, llamaCppStatus, llamaCppTokenize } from './oracle/llama-cpp.js';

const MODELS = join(import.meta.dirname, '..', '..', 'shared', 'models');
const F32_PATH = join(MODELS, 'stories260K.gguf');
const F16_PATH = join(MODELS, 'stories260K-f16.gguf');
const HAVE_MODELS = existsSync(F32_PATH) && existsSync(F16_PATH);
const status = await llamaCppStatus();
const skipReason = !status.available ? `node-llama-cpp cannot load: ${status.reason}` : !HAVE_MODELS ? '../shared/models missing' : '';
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to';

// Our own float32 -> float16, round to nearest even, written independently of src/tensor/half.ts
// so this test checks the file format, not a shared helper.
function f16Bits(x: number): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  // Binade exponent, clamped to f16's smallest normal one so subnormals share its 2^-24 quantum.
  let e = a === 0 ? -14 : Math.floor(Math.log2(a));
  if (a !== 0 && 2 ** e > a) e--;
  if (a !== 0 && 2 ** (e + 1) <= a) e++;
  e = Math.max(e, -14);
  const q = 2 ** (e - 10);
  const m = a / q; // exact: division by a power of two
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && (r & 1) === 1)) r++;
  if (r * q > 65504) return sign | 0x7c00; // RNE overflow (>= 65520) becomes infinity
  if (r < 1024) return sign | r; // subnormal (only reachable with e = -14)
  if (r === 2048) {
    e++;
    r = 1024;
  }
  return sign | ((e + 15) << 10) | (r - 1024);
}

function toF16(data: Uint8Array): Uint8Array {
  const src = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16Bits(src[i]);
  return new Uint8Array(out.buffer);
}

function tensorsOf(file: GGUFFile, bytes: Uint8Array): GGUFWriteTensor[] {
  return file.tensors.map((t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes) }));
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) m = Math.max(m, Math.abs(a[i][j] - b[i][j]));
  return m;
}

describe('f16Bits', () => {
  it('rounds to nearest even, handles subnormals, overflow and specials', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519.99, 0x7bff], [65520, 0x7c00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -26, 0x0001], [2 ** -24 * 1.5, 0x0002],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1 + 2 ** -11 + 2 ** -20, 0x3c01], [0.1, 0x2e66], [Infinity, 0x7c00], [NaN, 0x7e00],
    ];
    for (const [x, bits] of cases) expect(f16Bits(x), `f16(${x})`).toBe(bits);
  });
});

describe.skipIf(skipReason !== '')(`files we write, run by llama.cpp${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmforge-llamacpp-'));
  const paths = { f32: join(dir, 'f32.gguf'), f32Reordered: join(dir, 'f32-reordered.gguf'), f16: join(dir, 'f16.gguf'), truncated: join(dir, 'truncated.gguf') };
  let orig: GGUFFile;
  let origBytes: Uint8Array;
  let shippedF16: GGUFFile;
  let shippedF16Bytes: Uint8Array;
  let ours16: GGUFWriteTensor[];
  let tokens: number[];

  beforeAll(async () => {
    origBytes = new Uint8Array(readFileSync(F32_PATH));
    orig = await readGGUF(bufferSource(origBytes));
    shippedF16Bytes = new Uint8Array(readFileSync(F16_PATH));
    shippedF16 = await readGGUF(bufferSource(shippedF16Bytes));

    const tensors = tensorsOf(orig, origBytes);
    await writeGGUFFile(paths.f32, orig.metadata, tensors);
    // Same model, different layout: reversed tensor order, 128-byte alignment, an extra key.
    const extra: [string, GGUFEntry][] = [['general.quantized_by', { type: GGUFValueType.STRING, value: 'wasmforge writer test' }]];
    await writeGGUFFile(paths.f32Reordered, [...orig.metadata, ...extra], [...tensors].reverse(), { alignment: 128 });
    // F16: every matrix converted by us, norms stay F32 (as llama.cpp's converters do).
    ours16 = tensors.map((t) => (t.dims.length === 2 ? { ...t, type: GGMLType.F16, data: toF16(t.data) } : t));
    const meta16 = new Map(orig.metadata);
    meta16.set('general.file_type', { type: GGUFValueType.UINT32, value: 1 }); // LLAMA_FTYPE_MOSTLY_F16
    await writeGGUFFile(paths.f16, meta16, ours16);
    writeFileSync(paths.truncated, readFileSync(paths.f32).subarray(0, origBytes.length - 1000));

    tokens = await llamaCppTokenize(F32_PATH, PROMPT, { addBos: true });
  });

  afterAll(async () => {
    await disposeLlamaCpp();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the plain F32 re-encode is byte-identical to the original', () => {
    expect(Buffer.compare(readFileSync(paths.f32), origBytes)).toBe(0);
  });

  it('llama.cpp loads every file we wrote and sees the same model', async () => {
    const want = await llamaCppLoad(F32_PATH);
    expect(want).toEqual({ vocabSize: 512, trainContextSize: 2048, layers: 6 }); // node-llama-cpp counts the output layer too
    for (const p of [paths.f32, paths.f32Reordered, paths.f16]) expect(await llamaCppLoad(p)).toEqual(want);
    const reordered = await readGGUF(bufferSource(readFileSync(paths.f32Reordered)));
    expect(reordered.alignment).toBe(128);
    expect(reordered.tensors[0].name).toBe('blk.4.ffn_norm.weight');
  });

  it('llama.cpp and our reader both refuse a truncated copy', async () => {
    await expect(readGGUF(bufferSource(readFileSync(paths.truncated)))).rejects.toBeInstanceOf(GGUFError);
    await expect(llamaCppLoad(paths.truncated)).rejects.toThrow();
  });

  it('tokenization is unchanged by the re-encode', async () => {
    expect(tokens[0]).toBe(1);
    expect(tokens.length).toBeGreaterThan(10);
    for (const p of [paths.f32Reordered, paths.f16]) expect(await llamaCppTokenize(p, PROMPT, { addBos: true })).toEqual(tokens);
  });

  it('F32 copies: full-vocabulary next-token log-probs identical to the original at every position', async () => {
    const want = await llamaCppNextTokenLogProbs(F32_PATH, tokens);
    expect(want).toHaveLength(tokens.length);
    for (const row of want) {
      expect(row).toHaveLength(512);
      const total = row.reduce((s, lp) => s + Math.exp(lp), 0);
      expect(total).toBeCloseTo(1, 4);
    }
    // A trained model: after "<s> Once upon a" it is sure of " time".
    expect(tokens.slice(0, 5)).toEqual([1, 403, 407, 261, 378]);
    expect(want[3].indexOf(Math.max(...want[3]))).toBe(378);
    expect(want[3][378]).toBeGreaterThan(-0.01);
    for (const p of [paths.f32, paths.f32Reordered]) expect(await llamaCppNextTokenLogProbs(p, tokens)).toEqual(want);
  });

  it('F16 copy: our conversion matches the shipped F16 file bit for bit, and so do its log-probs', async () => {
    expect(ours16.map((t) => [t.name, t.type])).toEqual(shippedF16.tensors.map((t) => [t.name, t.type]));
    for (let i = 0; i < ours16.length; i++) {
      const s = shippedF16.tensors[i];
      expect(Buffer.compare(ours16[i].data, shippedF16Bytes.subarray(s.fileOffset, s.fileOffset + s.nBytes)), s.name).toBe(0);
    }
    const want = await llamaCppNextTokenLogProbs(F16_PATH, tokens);
    const got = await llamaCppNextTokenLogProbs(paths.f16, tokens);
    expect(got).toEqual(want);
    // The comparison is sensitive: F16 weights visibly move the log-probs away from F32's.
    const f32 = await llamaCppNextTokenLogProbs(F32_PATH, tokens);
    const d = maxAbsDiff(got, f32);
    expect(d).toBeGreaterThan(1e-6);
    expect(d).toBeLessThan(0.5);
  });
});
