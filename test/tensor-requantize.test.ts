// Real quantized weights: the shipped Q8_0/Q4_0 stories260K files must survive dequantize →
// requantize byte for byte, and quantizing the F32 original must reproduce them (they were written
// by gguf-py's reference quantizer, which follows ggml's quantize_row_q8_0_ref / _q4_0_ref).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGGUF, type GGUFFile, type GGUFTensorInfo } from '../src/gguf/reader.js';
import { readRange, type ByteSource } from '../src/io/byte-source.js';
import { fileSource } from '../src/runtime/file-source.js';
import { dequantize } from '../src/tensor/dequant.js';
import { GGMLType, typeName } from '../src/tensor/ggml-types.js';
import { quantize } from '../src/tensor/quantize.js';

const models = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'models');
const f32Path = join(models, 'stories260K.gguf');
const quantPaths = { [GGMLType.Q8_0]: join(models, 'stories260K-q8_0.gguf'), [GGMLType.Q4_0]: join(models, 'stories260K-q4_0.gguf') };
const haveModels = existsSync(f32Path) && Object.values(quantPaths).every((p) => existsSync(p));

if (!haveModels) {
  // Not a failure: ../shared is optional outside the development machines.
  process.stderr.write(`tensor-requantize: skipped, stories260K models not found under ${models}\n`);
}

interface Model {
  source: ByteSource;
  gguf: GGUFFile;
}

async function open(path: string): Promise<Model> {
  const source = await fileSource(path);
  return { source, gguf: await readGGUF(source) };
}

function firstDiff(a: Uint8Array, b: Uint8Array): string {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return `first difference at byte ${i}: ${a[i]} vs ${b[i]}`;
  return a.length === b.length ? 'identical' : `lengths ${a.length} vs ${b.length}`;
}

describe.skipIf(!haveModels)('stories260K quantized tensors (../shared/models)', () => {
  const opened: Model[] = [];
  let f32: Model;
  const quant = new Map<GGMLType, Model>();

  beforeAll(async () => {
    f32 = await open(f32Path);
    opened.push(f32);
    for (const [type, path] of Object.entries(quantPaths)) {
      const m = await open(path);
      opened.push(m);
      quant.set(Number(type) as GGMLType, m);
    }
  });

  afterAll(async () => {
    for (const m of opened) await m.source.close();
  });

  const tensorsOf = (m: Model, type: GGMLType): GGUFTensorInfo[] => m.gguf.tensors.filter((t) => t.type === type);

  for (const type of [GGMLType.Q8_0, GGMLType.Q4_0]) {
    it(`${typeName(type)}: dequantize → requantize gives back every tensor's bytes`, async () => {
      const m = quant.get(type)!;
      const tensors = tensorsOf(m, type);
      expect(tensors.length).toBeGreaterThan(0);
      for (const t of tensors) {
        const bytes = await readRange(m.source, t.fileOffset, t.nBytes);
        const values = dequantize(type, bytes, t.nElements);
        const again = quantize(type, values, t.dims[0]!);
        expect(again.length, t.name).toBe(bytes.length);
        expect(Buffer.compare(again, bytes), `${t.name}: ${firstDiff(again, bytes)}`).toBe(0);
      }
    });

    it(`${typeName(type)}: quantizing the F32 model reproduces the shipped tensors`, async () => {
      const m = quant.get(type)!;
      const tensors = tensorsOf(m, type);
      expect(tensors.length).toBeGreaterThan(0);
      for (const t of tensors) {
        const src = f32.gguf.tensorsByName.get(t.name);
        expect(src, `${t.name} missing from the F32 model`).toBeDefined();
        expect(src!.type).toBe(GGMLType.F32);
        expect(src!.dims).toEqual(t.dims);
        const raw = await readRange(f32.source, src!.fileOffset, src!.nBytes);
        const values = dequantize(GGMLType.F32, raw, src!.nElements); // little-endian decode on any host
        const ours = quantize(type, values, t.dims[0]!);
        const shipped = await readRange(m.source, t.fileOffset, t.nBytes);
        expect(Buffer.compare(ours, shipped), `${t.name}: ${firstDiff(ours, shipped)}`).toBe(0);
      }
    });
  }
});
