// `wasmforge quantize`: reproduces the shipped stories260K Q8_0/Q4_0/F16 files tensor for tensor
// from the F32 original, follows llama.cpp's fallback table for rows that do not fit a type's
// blocks, carries all metadata over, and writes K-quant files llama.cpp loads and computes with.
import { existsSync } from 'node:fs';
import { writeLazyGGUFFile } from '../src/runtime/file-sink.js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../src/cli/quantize.js';
import { UsageError } from '../src/cli/args.js';
import { GGUFValueType } from '../src/gguf/constants.js';
import { readGGUF, type GGUFEntry, type GGUFFile } from '../src/gguf/reader.js';
import { bufferSource, readRange, type ByteSource } from '../src/io/byte-source.js';
import {
  isQuantizableWeight,
  llamaFileType,
  planQuantization,
  QuantizeModelError,
  quantizedMetadata,
  quantizeModel,
  tensorTypeFor,
} from '../src/model/quantize-model.js';
import { fileSource } from '../src/runtime/file-source.js';
import { dequantize } from '../src/tensor/dequant.js';
import { GGMLType, typeName } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';
import { disposeLlamaCpp, llamaCppLoad, llamaCppNextTokenLogProbs, llamaCppStatus, llamaCppTokenize, logSoftmax } from './oracle/llama-cpp.js';
import { loadLlamaReference } from './reference/llama-reference.js';

const models = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'models');
const shipped = (suffix: string) => join(models, `stories260K${suffix}.gguf`);
const haveModels = ['', '-f16', '-q8_0', '-q4_0'].every((s) => existsSync(shipped(s)));
if (!haveModels) process.stderr.write(`quantize-model: file tests skipped, stories260K models not found under ${models}\n`);

interface Opened {
  source: ByteSource;
  gguf: GGUFFile;
}

async function open(path: string): Promise<Opened> {
  const source = await fileSource(path);
  return { source, gguf: await readGGUF(source) };
}

async function tensorBytes(m: Opened, name: string): Promise<Uint8Array> {
  const t = m.gguf.tensorsByName.get(name)!;
  return readRange(m.source, t.fileOffset, t.nBytes);
}

/** Runs the CLI with stdout captured; returns its exit code and output. */
async function cli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    return { code: await run(argv), out };
  } finally {
    spy.mockRestore();
  }
}

function sameValue(a: GGUFEntry, b: GGUFEntry): boolean {
  // Arrays come back as typed arrays or plain arrays: compare element lists, bigints as strings.
  const norm = (v: unknown): unknown => {
    if (v && typeof v === 'object' && 'values' in v) {
      const arr = v as { elementType: number; values: ArrayLike<unknown> };
      return { t: arr.elementType, v: Array.from(arr.values, norm) };
    }
    return typeof v === 'bigint' ? v.toString() : v;
  };
  return a.type === b.type && JSON.stringify(norm(a.value)) === JSON.stringify(norm(b.value));
}

describe('tensor type choice', () => {
  it("follows llama.cpp's fallback table when rows do not fit a type's blocks", () => {
    expect(tensorTypeFor(GGMLType.Q4_K, 256, GGMLType.F32)).toEqual({ type: GGMLType.Q4_K, fallback: false });
    expect(tensorTypeFor(GGMLType.Q4_K, 64, GGMLType.F32)).toEqual({ type: GGMLType.Q5_0, fallback: true });
    expect(tensorTypeFor(GGMLType.Q5_K, 96, GGMLType.F32).type).toBe(GGMLType.Q5_1);
    expect(tensorTypeFor(GGMLType.Q6_K, 32, GGMLType.F32).type).toBe(GGMLType.Q8_0);
    expect(tensorTypeFor(GGMLType.Q2_K, 288, GGMLType.F32).type).toBe(GGMLType.IQ4_NL);
    expect(tensorTypeFor(GGMLType.Q3_K, 288, GGMLType.F32).type).toBe(GGMLType.IQ4_NL);
    // Neither the K-quant nor its fallback fits: F16, as llama.cpp does.
    expect(tensorTypeFor(GGMLType.Q4_K, 172, GGMLType.F32)).toEqual({ type: GGMLType.F16, fallback: true });
    // A 32-block type that does not fit leaves float tensors as they are, quantized ones go to F16.
    expect(tensorTypeFor(GGMLType.Q4_0, 172, GGMLType.F32)).toEqual({ type: GGMLType.F32, fallback: true });
    expect(tensorTypeFor(GGMLType.Q8_0, 172, GGMLType.BF16).type).toBe(GGMLType.BF16);
    expect(tensorTypeFor(GGMLType.IQ4_NL, 172, GGMLType.Q4_K).type).toBe(GGMLType.F16);
    expect(tensorTypeFor(GGMLType.F16, 172, GGMLType.F32)).toEqual({ type: GGMLType.F16, fallback: false });
  });

  it('converts weight matrices only', () => {
    expect(isQuantizableWeight('blk.0.attn_q.weight', [64, 64])).toBe(true);
    expect(isQuantizableWeight('token_embd.weight', [64, 512])).toBe(true);
    expect(isQuantizableWeight('blk.0.ffn_gate_exps.weight', [64, 172, 8])).toBe(true);
    expect(isQuantizableWeight('blk.0.attn_norm.weight', [64])).toBe(false);
    expect(isQuantizableWeight('blk.0.attn_q.bias', [64])).toBe(false);
    expect(isQuantizableWeight('blk.0.attn_q_norm.weight', [64, 1])).toBe(false);
    expect(isQuantizableWeight('blk.0.ffn_gate_inp.weight', [64, 8])).toBe(false);
    expect(isQuantizableWeight('rope_freqs', [32, 2])).toBe(false);
  });

  it("writes llama.cpp's LLAMA_FTYPE values", () => {
    const expected: [GGMLType, number][] = [
      [GGMLType.F32, 0], [GGMLType.F16, 1], [GGMLType.Q4_0, 2], [GGMLType.Q4_1, 3], [GGMLType.Q8_0, 7], [GGMLType.Q5_0, 8],
      [GGMLType.Q5_1, 9], [GGMLType.Q2_K, 10], [GGMLType.Q3_K, 11], [GGMLType.Q4_K, 14], [GGMLType.Q5_K, 16], [GGMLType.Q6_K, 18],
      [GGMLType.IQ4_NL, 25], [GGMLType.BF16, 32], [GGMLType.MXFP4, 38],
    ];
    for (const [type, ftype] of expected) expect(llamaFileType(type)).toBe(ftype);
    expect(() => llamaFileType(GGMLType.IQ2_XXS)).toThrow(QuantizeModelError);
  });

  it('updates file type and quantization version, keeping every other key in order', () => {
    const u32 = (value: number): GGUFEntry => ({ type: GGUFValueType.UINT32, value });
    const meta = new Map<string, GGUFEntry>([
      ['general.architecture', { type: GGUFValueType.STRING, value: 'llama' }],
      ['general.file_type', u32(0)],
      ['general.quantization_version', u32(1)],
      ['llama.block_count', u32(5)],
    ]);
    const q = quantizedMetadata(meta, GGMLType.Q4_K, [GGMLType.F32, GGMLType.Q4_K]);
    expect(q.map(([k]) => k)).toEqual(['general.architecture', 'llama.block_count', 'general.file_type', 'general.quantization_version']);
    expect(q[2][1]).toEqual(u32(14));
    expect(q[3][1]).toEqual(u32(2));
    // No block-quantized tensor: no quantization version.
    expect(quantizedMetadata(meta, GGMLType.F16, [GGMLType.F32, GGMLType.F16]).map(([k]) => k)).not.toContain('general.quantization_version');
  });
});

describe.skipIf(!haveModels)('wasmforge quantize on stories260K (../shared/models)', () => {
  let dir: string;
  let input: Opened;
  const outputs = new Map<string, Opened>();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wasmforge-quantize-'));
    input = await open(shipped(''));
  });

  afterAll(async () => {
    await input?.source.close();
    for (const o of outputs.values()) await o.source.close();
    await disposeLlamaCpp();
    await rm(dir, { recursive: true, force: true });
  });

  async function quantizeWithCli(type: string, from = shipped('')): Promise<{ out: string; model: Opened }> {
    const path = join(dir, `${type}-${outputs.size}.gguf`);
    const { code, out } = await cli([from, path, '--type', type]);
    expect(code).toBe(0);
    const model = await open(path);
    outputs.set(path, model);
    return { out, model };
  }

  for (const [type, suffix, ftype] of [['q8_0', '-q8_0', 7], ['q4_0', '-q4_0', 2], ['f16', '-f16', 1]] as const) {
    it(`F32 → ${type} equals the shipped stories260K${suffix}.gguf tensor for tensor, byte for byte`, async () => {
      const { out, model } = await quantizeWithCli(type);
      const reference = await open(shipped(suffix));
      try {
        expect(model.gguf.tensors.map((t) => t.name)).toEqual(reference.gguf.tensors.map((t) => t.name));
        for (const t of reference.gguf.tensors) {
          const ours = model.gguf.tensorsByName.get(t.name)!;
          expect([t.name, typeName(ours.type), ours.dims]).toEqual([t.name, typeName(t.type), t.dims]);
          expect(Buffer.from(await tensorBytes(model, t.name)).equals(Buffer.from(await tensorBytes(reference, t.name))), t.name).toBe(true);
        }
      } finally {
        await reference.source.close();
      }
      // All input metadata is carried over unchanged, but for the two keys quantization sets.
      for (const [k, e] of input.gguf.metadata) expect(sameValue(model.gguf.metadata.get(k)!, e), k).toBe(true);
      expect(model.gguf.metadata.get('general.file_type')!.value).toBe(ftype);
      expect(model.gguf.metadata.get('general.quantization_version')?.value).toBe(type === 'f16' ? undefined : 2);
      // One line per tensor and the totals.
      expect(out.split('\n').filter((l) => /^\[\s*\d+\/48\]/.test(l))).toHaveLength(48);
      expect(out).toMatch(new RegExp(`blk\\.0\\.ffn_down\\.weight\\s+\\[172, 64\\]\\s+${type === 'f16' ? 'F32 -> F16' : 'F32 \\(copied\\)'}`));
      expect(out).toMatch(/tensor data: 1\.117 MiB -> \d+\.\d{3} MiB/);
    });
  }

  it('requantizes from a quantized file (dequantize, then quantize) and copies tensors already in the target type', async () => {
    const { model } = await quantizeWithCli('q4_0', shipped('-q8_0'));
    const q8 = await open(shipped('-q8_0'));
    try {
      for (const t of q8.gguf.tensors) {
        const ours = await tensorBytes(model, t.name);
        const src = await tensorBytes(q8, t.name);
        const expected = t.type === GGMLType.Q8_0 ? quantize(GGMLType.Q4_0, dequantize(GGMLType.Q8_0, src, t.nElements), t.dims[0]) : src;
        expect(Buffer.from(ours).equals(Buffer.from(expected)), t.name).toBe(true);
      }
    } finally {
      await q8.source.close();
    }
    const same = await quantizeWithCli('q4_0', shipped('-q4_0'));
    const q4 = await open(shipped('-q4_0'));
    try {
      for (const t of q4.gguf.tensors) expect(Buffer.from(await tensorBytes(same.model, t.name)).equals(Buffer.from(await tensorBytes(q4, t.name)))).toBe(true);
    } finally {
      await q4.source.close();
    }
  });

  it('plans K-quants with the fallbacks and honours the output and token-embedding types', () => {
    const plan = new Map(planQuantization(input.gguf, GGMLType.Q4_K, { outputType: GGMLType.Q6_K, tokenEmbeddingType: GGMLType.Q8_0 }).map((p) => [p.name, p]));
    expect(plan.get('blk.0.attn_q.weight')).toMatchObject({ to: GGMLType.Q5_0, fallback: true, action: 'converted' });
    expect(plan.get('blk.0.ffn_down.weight')).toMatchObject({ to: GGMLType.F16, fallback: true });
    expect(plan.get('blk.0.attn_norm.weight')).toMatchObject({ to: GGMLType.F32, action: 'copied', fallback: false });
    expect(plan.get('output.weight')).toMatchObject({ to: GGMLType.Q8_0, fallback: true }); // Q6_K's fallback
    expect(plan.get('token_embd.weight')).toMatchObject({ to: GGMLType.Q8_0, fallback: false });
    expect(() => planQuantization(input.gguf, GGMLType.Q8_K)).toThrow(QuantizeModelError);
  });

  it('streams one tensor at a time: each is read and converted only when the writer reaches it', async () => {
    const seen: string[] = [];
    const model = await quantizeModel(input.source, GGMLType.Q8_0, { onTensor: (p) => seen.push(p.name) });
    expect(seen).toEqual([]);
    const chunks: Uint8Array[] = [];
    const path = join(dir, 'streamed.gguf');
    await writeLazyGGUFFile(path, model.metadata, model.tensors.map((t) => ({ ...t, data: async () => {
      const before = seen.length;
      const d = await t.data();
      expect(seen.length).toBe(before + 1);
      chunks.push(d);
      return d;
    } })));
    expect(seen).toEqual(input.gguf.tensors.map((t) => t.name));
    const written = await readGGUF(bufferSource(await readFile(path)));
    expect(written.tensors.map((t) => t.nBytes)).toEqual(chunks.map((c) => c.length));
  });

  it('rejects bad command lines', async () => {
    await expect(cli([shipped(''), join(dir, 'x.gguf')])).rejects.toThrow(/--type is required/);
    await expect(cli([shipped(''), join(dir, 'x.gguf'), '--type', 'q3_0'])).rejects.toThrow(UsageError);
    await expect(cli([shipped(''), shipped(''), '--type', 'q8_0'])).rejects.toThrow(/different file/);
    expect(existsSync(join(dir, 'x.gguf'))).toBe(false);
    expect((await cli(['--help'])).out).toMatch(/usage: wasmforge quantize/);
  });

  it('q4_k output loads in llama.cpp and computes what our dequantization predicts', async () => {
    const status = await llamaCppStatus();
    if (!status.available) {
      process.stderr.write(`quantize-model: llama.cpp check skipped (${status.reason})\n`);
      return;
    }
    const { model } = await quantizeWithCli('q4_k');
    const types = new Set(model.gguf.tensors.map((t) => typeName(t.type)));
    expect([...types].sort()).toEqual(['F16', 'F32', 'Q5_0']); // stories260K's 64- and 172-wide rows all fall back
    const path = [...outputs.entries()].find(([, m]) => m === model)![0];
    expect(await llamaCppLoad(path)).toMatchObject({ vocabSize: 512 });
    const tokens = (await llamaCppTokenize(path, 'Once upon a time, there was a little girl named Lily. She loved to play outside', { addBos: true })).slice(0, 32);
    const compare = async (file: string): Promise<{ agreement: number; maxDelta: number }> => {
      const ref = await loadLlamaReference(file, { maxSeq: tokens.length });
      const theirs = await llamaCppNextTokenLogProbs(file, tokens);
      let agree = 0;
      let maxDelta = 0;
      tokens.forEach((t, i) => {
        const ours = logSoftmax(ref.forward(t, i));
        let a = 0, b = 0;
        for (let k = 0; k < ours.length; k++) {
          if (ours[k] > ours[a]) a = k;
          if (theirs[i][k] > theirs[i][b]) b = k;
          maxDelta = Math.max(maxDelta, Math.abs(ours[k] - theirs[i][k]));
        }
        if (a === b) agree++;
      });
      return { agreement: agree / tokens.length, maxDelta };
    };
    const ours = await compare(path);
    // The yardstick: the same comparison on the shipped Q4_0 file (written by gguf-py). This
    // trained model's logits are sharp (log-probs down to -30), so llama.cpp's Q8_0 activation
    // rounding moves log-probs by ~0.27 there, against ~0.02 for the F32 file.
    const yardstick = await compare(shipped('-q4_0'));
    expect(tokens.length).toBeGreaterThanOrEqual(24);
    expect(ours.agreement).toBeGreaterThanOrEqual(0.95);
    expect(ours.maxDelta).toBeLessThan(Math.max(1.5 * yardstick.maxDelta, 0.05));
    expect(ours.maxDelta).toBeLessThan(0.5);
  });
});
