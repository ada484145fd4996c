import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GGUFValueType } from '../src/gguf/constants.js';
import { GGUFError, type GGUFErrorCode } from '../src/gguf/errors.js';
import { readGGUF, type GGUFEntry, type GGUFFile } from '../src/gguf/reader.js';
import { encodeGGUF, writeGGUF, type GGUFWriteTensor } from '../src/gguf/writer.js';
import { bufferSource } from '../src/io/byte-source.js';
import { writeGGUFFile } from '../src/runtime/file-sink.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { buildFixture, fixtureMetadata, fixtureTensors } from './gguf-fixture.js';

const T = GGUFValueType;
const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const sharedFiles = ['models', 'vocab'].flatMap((dir) => {
  const d = join(SHARED, dir);
  return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.gguf')).map((f) => join(d, f)) : [];
});

function tensorsOf(file: GGUFFile, bytes: Uint8Array): GGUFWriteTensor[] {
  return file.tensors.map((t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes) }));
}

function expectWriteError(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(GGUFError);
  expect((caught as GGUFError).code).toBe<GGUFErrorCode>('WRITE_ERROR');
  expect((caught as GGUFError).message).toMatch(pattern);
}

describe.skipIf(sharedFiles.length === 0)('round trip of the shared GGUF files', () => {
  it('found the shared models and vocabularies', () => {
    expect(sharedFiles.length).toBeGreaterThanOrEqual(5);
  });
  for (const path of sharedFiles) {
    it(`read -> write -> read is lossless and byte-identical: ${path.split('/').slice(-2).join('/')}`, async () => {
      const bytes = new Uint8Array(readFileSync(path));
      const orig = await readGGUF(bufferSource(bytes));
      const out = writeGGUF(orig.metadata, tensorsOf(orig, bytes));
      const again = await readGGUF(bufferSource(out));
      expect(again.metadata).toEqual(orig.metadata);
      expect(again.alignment).toBe(orig.alignment);
      expect(again.tensors.map((t) => [t.name, t.dims, t.type, t.offset, t.nBytes])).toEqual(
        orig.tensors.map((t) => [t.name, t.dims, t.type, t.offset, t.nBytes]),
      );
      for (let i = 0; i < orig.tensors.length; i++) {
        const a = orig.tensors[i], b = again.tensors[i];
        expect(Buffer.compare(out.subarray(b.fileOffset, b.fileOffset + b.nBytes), bytes.subarray(a.fileOffset, a.fileOffset + a.nBytes))).toBe(0);
      }
      // Every shared file is v3 with the default alignment, written by gguf-py or llama.cpp:
      // our encoding is the same byte for byte (tensor order, offsets, padding, vocab-only tail).
      expect(orig.version).toBe(3);
      expect(out.length).toBe(bytes.length);
      expect(Buffer.compare(out, bytes)).toBe(0);
    });
  }
});

describe('writer', () => {
  it('round-trips every value type, nested arrays and bigints of the fixture', async () => {
    const bytes = buildFixture();
    const file = await readGGUF(bufferSource(bytes));
    expect(file.version).toBe(3);
    const meta = file.metadata;
    expect(meta.get('test.u64')).toEqual({ type: T.UINT64, value: 18446744073709551615n });
    expect(meta.get('test.i64')).toEqual({ type: T.INT64, value: -5 });
    expect(meta.get('test.f32')!.value).toBe(Math.fround(1e-5));
    expect((meta.get('test.strings')!.value as { values: string[] }).values).toEqual(['alpha', 'beta', '', 'ünïcødé', '\uFEFFbom']);
    expect(meta.get('test.deep')).toEqual(new Map(fixtureMetadata()).get('test.deep'));
    expect(meta.get('test.i64s')).toEqual(new Map(fixtureMetadata()).get('test.i64s'));
    expect(file.tensors.map((t) => [t.name, t.type, t.offset])).toEqual([
      ['tok.a', GGMLType.F32, 0], ['tok.b', GGMLType.F16, 2048], ['tok.c', GGMLType.Q8_0, 2048 + 96], ['tok.d', GGMLType.F32, 2048 + 96 + 160],
    ]);
    const src = fixtureTensors();
    for (let i = 0; i < src.length; i++) {
      const t = file.tensors[i];
      expect(Buffer.compare(bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes), src[i].data)).toBe(0);
    }
    // Re-encoding what we read gives the same bytes.
    expect(Buffer.compare(writeGGUF(meta, tensorsOf(file, bytes)), bytes)).toBe(0);
  });

  it('accepts plain arrays and other typed arrays for numeric elements, reading back the native typed array', async () => {
    const out = writeGGUF([
      ['a', { type: T.ARRAY, value: { elementType: T.UINT32, values: [1, 2, 4294967295] as unknown as Uint32Array } }],
      ['b', { type: T.ARRAY, value: { elementType: T.FLOAT32, values: new Float64Array([0.1, 2]) } }],
      ['c', { type: T.ARRAY, value: { elementType: T.UINT64, values: [1n, 2] as unknown as BigUint64Array } }],
    ], []);
    const m = (await readGGUF(bufferSource(out))).metadata;
    expect(m.get('a')!.value).toEqual({ elementType: T.UINT32, values: new Uint32Array([1, 2, 4294967295]) });
    expect(m.get('b')!.value).toEqual({ elementType: T.FLOAT32, values: new Float32Array([0.1, 2]) });
    expect(m.get('c')!.value).toEqual({ elementType: T.UINT64, values: new BigUint64Array([1n, 2n]) });
    // No tensors: no data section and no padding after the header.
    expect(out.length).toBe(4 + 4 + 8 + 8 + 3 * (8 + 1 + 4 + 4 + 8) + 3 * 4 + 8 * 2 + 4 * 2);
  });

  it('returns tensor data zero-copy, padded chunk by chunk, and a non-default alignment is declared', async () => {
    const tensors: GGUFWriteTensor[] = [
      { name: 'x', dims: [3], type: GGMLType.F32, data: new Uint8Array(12).fill(1) },
      { name: 'y', dims: [5], type: GGMLType.F16, data: new Uint8Array(10).fill(2) },
    ];
    const chunks = encodeGGUF([['general.architecture', { type: T.STRING, value: 'llama' }]], tensors, { alignment: 64 });
    expect(chunks[1]).toBe(tensors[0].data);
    expect(chunks[3]).toBe(tensors[1].data);
    expect(chunks.map((c) => c.length).slice(1)).toEqual([12, 52, 10, 54]);
    expect(chunks[0].length % 64).toBe(0);
    const bytes = writeGGUF([['general.architecture', { type: T.STRING, value: 'llama' }]], tensors, { alignment: 64 });
    const file = await readGGUF(bufferSource(bytes));
    expect(file.alignment).toBe(64);
    expect(file.metadata.get('general.alignment')).toEqual({ type: T.UINT32, value: 64 });
    expect(file.tensors.map((t) => t.offset)).toEqual([0, 64]);
    expect(file.dataOffset).toBe(chunks[0].length);
  });

  it('rejects invalid input with WRITE_ERROR naming the problem', () => {
    const f32 = (name: string, dims: number[], bytes = dims.reduce((a, b) => a * b, 1) * 4): GGUFWriteTensor =>
      ({ name, dims, type: GGMLType.F32, data: new Uint8Array(bytes) });
    const kv = (key: string, e: GGUFEntry): [string, GGUFEntry] => [key, e];
    const meta = (...e: [string, GGUFEntry][]) => () => writeGGUF(e, []);
    const tens = (...t: GGUFWriteTensor[]) => () => writeGGUF([], t);

    expectWriteError(tens(f32('w', [4, 2], 31)), /32 bytes, but its data has 31/);
    expectWriteError(tens({ name: 'q', dims: [40], type: GGMLType.Q8_0, data: new Uint8Array(34) }), /not a multiple of Q8_0's block size 32/);
    expectWriteError(tens(f32('w', [1]), f32('w', [2])), /"w" appears twice/);
    expectWriteError(tens(f32('n'.repeat(64), [1])), /64 bytes, the limit is 63/);
    expectWriteError(tens(f32('é'.repeat(32), [1])), /64 bytes, the limit is 63/); // 32 chars but 64 UTF-8 bytes
    expectWriteError(tens(f32('w', [])), /1 to 4 dims/);
    expectWriteError(tens(f32('w', [1, 1, 1, 1, 1])), /1 to 4 dims/);
    expectWriteError(tens(f32('w', [-1], 0)), /invalid dim -1/);
    expectWriteError(tens(f32('w', [1.5], 0)), /invalid dim 1.5/);
    expectWriteError(tens({ ...f32('w', [2 ** 30, 2 ** 30], 0) }), /overflows/);
    expectWriteError(tens({ name: 'w', dims: [1], type: 4 as GGMLType, data: new Uint8Array(4) }), /unknown ggml type 4/);
    expectWriteError(tens({ name: 'w', dims: [1], type: GGMLType.F32, data: [0, 0, 0, 0] as unknown as Uint8Array }), /must be a Uint8Array/);

    expectWriteError(meta(kv('a', { type: T.UINT8, value: 256 })), /"a" must be an integer in 0..255/);
    expectWriteError(meta(kv('a', { type: T.INT8, value: -129 })), /-128..127/);
    expectWriteError(meta(kv('a', { type: T.INT32, value: 1.5 })), /integer/);
    expectWriteError(meta(kv('a', { type: T.UINT32, value: '1' })), /integer/);
    expectWriteError(meta(kv('a', { type: T.UINT64, value: -1 })), /out of range for UINT64/);
    expectWriteError(meta(kv('a', { type: T.UINT64, value: 1n << 64n })), /out of range for UINT64/);
    expectWriteError(meta(kv('a', { type: T.INT64, value: 1n << 63n })), /out of range for INT64/);
    expectWriteError(meta(kv('a', { type: T.INT64, value: 2 ** 60 })), /safe integer or a bigint/);
    expectWriteError(meta(kv('a', { type: T.FLOAT32, value: 1n })), /must be a number/);
    expectWriteError(meta(kv('a', { type: T.BOOL, value: 1 })), /must be a boolean/);
    expectWriteError(meta(kv('a', { type: T.STRING, value: 5 })), /must be a string/);
    expectWriteError(meta(kv('a', { type: T.STRING, value: 'x\uD800y' })), /lone surrogate/);
    expectWriteError(meta(kv('a', { type: 13 as GGUFValueType, value: 0 })), /unknown value type 13/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: 'abc' })), /must be an array value/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.STRING, values: new Uint8Array(2) } })), /cannot hold STRING/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.STRING, values: ['ok', 3] as string[] } })), /"a"\[1\] must be a string/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.BOOL, values: [true, 0] as boolean[] } })), /\[1\] must be a boolean/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.UINT16, values: new Int32Array([70000]) } })), /\[0\] must be an integer in 0..65535/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: 99 as GGUFValueType, values: [] as string[] } })), /unknown value type 99/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.UINT32, values: new BigUint64Array([1n]) } })), /\[0\] must be an integer/);
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: { elementType: T.FLOAT32, values: [1n] as unknown as number[] } })), /\[0\] must be a number/);
    const deep = { elementType: T.ARRAY, values: [{ elementType: T.ARRAY, values: [{ elementType: T.ARRAY, values: [{ elementType: T.ARRAY, values: [{ elementType: T.UINT8, values: new Uint8Array(1) }] }] }] }] };
    expectWriteError(meta(kv('a', { type: T.ARRAY, value: deep })), /nested deeper than 4/);
    expectWriteError(meta(kv('a', { type: T.UINT8, value: 1 }), kv('a', { type: T.UINT8, value: 2 })), /"a" appears twice/);
    expectWriteError(meta(kv('', { type: T.UINT8, value: 1 })), /key is empty/);

    expectWriteError(() => writeGGUF([], [], { alignment: 48 }), /power of two/);
    expectWriteError(() => writeGGUF([], [], { alignment: 0 }), /power of two/);
    expectWriteError(meta(kv('general.alignment', { type: T.UINT32, value: 3 })), /power of two/);
    expectWriteError(meta(kv('general.alignment', { type: T.UINT64, value: 32 })), /must be UINT32/);
    expectWriteError(() => writeGGUF([kv('general.alignment', { type: T.UINT32, value: 64 })], [], { alignment: 32 }), /contradicts/);
  });
});

describe('writeGGUFFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmforge-writer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('streams the same bytes as writeGGUF to disk and leaves no partial file behind', async () => {
    const path = join(dir, 'fixture.gguf');
    const { bytes } = await writeGGUFFile(path, fixtureMetadata(), fixtureTensors());
    const disk = readFileSync(path);
    expect(bytes).toBe(disk.length);
    expect(Buffer.compare(disk, buildFixture())).toBe(0);
    expect(readdirSync(dir)).toEqual(['fixture.gguf']);
  });

  it('validates before creating the file', async () => {
    const path = join(dir, 'bad.gguf');
    await expect(writeGGUFFile(path, [], [{ name: 'w', dims: [2], type: GGMLType.F32, data: new Uint8Array(7) }])).rejects.toThrow(GGUFError);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('bad'))).toEqual([]);
  });
});
