// Hand-made corrupt variants of a good GGUF file: each must be refused with the expected
// GGUFError code, quickly, without reading (or allocating) more than the file holds.
import { describe, expect, it } from 'vitest';
import { GGUFValueType } from '../src/gguf/constants.js';
import { GGUFError, type GGUFErrorCode } from '../src/gguf/errors.js';
import { readGGUF } from '../src/gguf/reader.js';
import { bufferSource, type ByteSource } from '../src/io/byte-source.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { buildFixture, field, walkLayout, type Field } from './gguf-fixture.js';

const good = buildFixture();
const fields = walkLayout(good);
const N_KV = 22, N_TENSORS = 4;
const HEADER_END = fields.filter((f) => f.kind !== 'padding' && f.kind !== 'data').reduce((e, f) => Math.max(e, f.offset + f.size), 0);

/** A byte source that refuses any single read larger than the file, so a bogus count can never become a huge buffer. */
function guardedSource(bytes: Uint8Array): ByteSource & { maxRead: number } {
  const inner = bufferSource(bytes, 'corrupt.gguf');
  const src = {
    size: inner.size,
    name: inner.name,
    maxRead: 0,
    async readInto(offset: number, dest: Uint8Array) {
      src.maxRead = Math.max(src.maxRead, dest.length);
      if (dest.length > bytes.length) throw new Error(`read of ${dest.length} bytes from a ${bytes.length}-byte file`);
      return inner.readInto(offset, dest);
    },
    close: async () => {},
  };
  return src;
}

async function parseError(bytes: Uint8Array): Promise<GGUFError> {
  const src = guardedSource(bytes);
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  let caught: unknown;
  try {
    await readGGUF(src);
  } catch (e) {
    caught = e;
  }
  const ms = performance.now() - t0;
  expect(caught, 'corrupt file was accepted').toBeInstanceOf(GGUFError);
  expect(ms).toBeLessThan(250);
  expect(src.maxRead).toBeLessThanOrEqual(bytes.length);
  expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(32 << 20);
  return caught as GGUFError;
}

function patched(edit: (b: Uint8Array, v: DataView) => void): Uint8Array {
  const b = good.slice();
  edit(b, new DataView(b.buffer));
  return b;
}
const u32At = (f: Field, value: number) => patched((_, v) => v.setUint32(f.offset, value, true));
const u64At = (f: Field, value: bigint | number) => patched((_, v) => v.setBigUint64(f.offset, BigInt(value), true));
const f = (kind: Field['kind'], label: string) => field(fields, kind, label);

/**
 * Which check must fire first when the file is cut at `p` (the spec's order of reading):
 * the fixed header, then the up-front count bounds, then the bound of every array still open
 * at p, then the field p falls in.
 */
function expectedTruncation(p: number): GGUFErrorCode {
  if (p < 24) return 'TRUNCATED';
  if (N_KV * 13 > p - 24 || N_TENSORS * 32 > p - 24) return 'COUNT_TOO_LARGE';
  if (p >= HEADER_END) return 'TENSOR_OUT_OF_BOUNDS';
  for (const a of fields) {
    if (!a.array) continue;
    const countEnd = a.offset + a.size;
    if (countEnd <= p && a.array.end > p && a.array.count * a.array.minElementBytes > p - countEnd) return 'COUNT_TOO_LARGE';
  }
  const cut = fields.find((x) => x.size > 0 && x.offset <= p && p < x.offset + x.size)!;
  return cut.kind === 'key' || cut.kind === 'str' || cut.kind === 'name' ? 'STRING_TOO_LONG' : 'TRUNCATED';
}

describe('the fixture', () => {
  it('is a valid file with the layout the cases below assume', async () => {
    const file = await readGGUF(bufferSource(good));
    expect(file.metadata.size).toBe(N_KV);
    expect(file.tensors.map((t) => t.name)).toEqual(['tok.a', 'tok.b', 'tok.c', 'tok.d']);
    expect(file.tensors.map((t) => t.type)).toEqual([GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.F32]);
    expect(file.alignment).toBe(32);
    expect(good.length).toBe(file.tensors[3].fileOffset + file.tensors[3].nBytes);
    expect(HEADER_END).toBe(f('offset', 'tok.d').offset + 8);
    // Late structural fields must lie past the up-front count bound for the truncation cases to be distinct.
    expect(f('scalar', 'test.i64').offset).toBeGreaterThan(24 + N_KV * 13);
  });
});

describe('truncation at every structural boundary', () => {
  const points = new Set<number>();
  for (const x of fields) {
    points.add(x.offset);
    if (x.size > 1) points.add(x.offset + 1);
    if (x.size > 2) points.add(x.offset + (x.size >> 1));
  }
  points.add(good.length - 1);
  const sorted = [...points].filter((p) => p < good.length).sort((a, b) => a - b);

  it(`gives the code of the field being read, at each of ${sorted.length} cut points`, async () => {
    const seen = new Set<GGUFErrorCode>();
    for (const p of sorted) {
      const err = await parseError(good.subarray(0, p));
      const want = expectedTruncation(p);
      expect(err.code, `cut at ${p}: ${err.message}`).toBe(want);
      seen.add(want);
    }
    expect([...seen].sort()).toEqual(['COUNT_TOO_LARGE', 'STRING_TOO_LONG', 'TENSOR_OUT_OF_BOUNDS', 'TRUNCATED']);
  });

  const named: [string, number, GGUFErrorCode][] = [
    ['inside the magic', 2, 'TRUNCATED'],
    ['right after the magic', 4, 'TRUNCATED'],
    ['inside the version', 6, 'TRUNCATED'],
    ['inside the tensor count', 12, 'TRUNCATED'],
    ['inside the metadata count', 20, 'TRUNCATED'],
    ['right after the counts', 24, 'COUNT_TOO_LARGE'],
    ['inside a key length', f('key_len', '#21').offset + 3, 'TRUNCATED'],
    ['inside a key', f('key', '#21').offset + 4, 'STRING_TOO_LONG'],
    ['inside a value type', f('value_type', 'test.dup_b').offset + 1, 'TRUNCATED'],
    ['inside a u32 value', f('scalar', 'test.dup_b').offset + 2, 'TRUNCATED'],
    ['inside an i64 value', f('scalar', 'test.i64').offset + 5, 'TRUNCATED'],
    ['inside a string value length', f('str_len', 'test.text').offset + 7, 'TRUNCATED'],
    ['inside a string value', f('str', 'test.text').offset + 10, 'STRING_TOO_LONG'],
    ['inside an array element type', f('arr_type', 'test.floats').offset + 2, 'TRUNCATED'],
    ['inside an array count', f('arr_count', 'test.floats').offset + 1, 'TRUNCATED'],
    ['inside fixed-size array data', f('arr_data', 'test.floats').offset + 8, 'COUNT_TOO_LARGE'],
    ['inside the last string of a string array', f('str', 'test.strings[4]').offset + 3, 'STRING_TOO_LONG'],
    ['inside a nested array count', f('arr_count', 'test.nested[1]').offset + 4, 'TRUNCATED'],
    // Each enclosing single-element array needs >= 12 more bytes, so its own bound fires first.
    ['inside the innermost header of a 4-deep array', f('arr_count', 'test.deep[0][0][0]').offset + 4, 'COUNT_TOO_LARGE'],
    ['inside a tensor name', f('name', '#2').offset + 2, 'STRING_TOO_LONG'],
    ['inside n_dims', f('n_dims', 'tok.c').offset + 2, 'TRUNCATED'],
    ['inside a dimension', f('dim', 'tok.d/3').offset + 4, 'TRUNCATED'],
    ['inside a tensor type', f('ggml_type', 'tok.d').offset + 1, 'TRUNCATED'],
    ['inside a tensor offset', f('offset', 'tok.d').offset + 7, 'TRUNCATED'],
    ['in the padding before the data', f('padding', 'header').offset + 3, 'TENSOR_OUT_OF_BOUNDS'],
    ['inside the first tensor', f('data', 'tok.a').offset + 100, 'TENSOR_OUT_OF_BOUNDS'],
    ['one byte short', good.length - 1, 'TENSOR_OUT_OF_BOUNDS'],
  ];
  it.each(named)('%s (at %i) -> %s', async (_what, p, code) => {
    const err = await parseError(good.subarray(0, p));
    expect(err.code).toBe(code);
    expect(expectedTruncation(p)).toBe(code);
  });
});

describe('mutated fields', () => {
  const T = GGUFValueType;
  const cases: [string, GGUFErrorCode, () => Uint8Array, RegExp?][] = [
    ['bad magic', 'BAD_MAGIC', () => patched((b) => b.set([0x47, 0x47, 0x55, 0x47], 0)), /not a GGUF file/],
    ['byte-swapped magic', 'BAD_MAGIC', () => patched((b) => b.set([0x46, 0x55, 0x47, 0x47], 0))],
    ['big-endian version 3', 'BIG_ENDIAN', () => u32At(f('version', ''), 0x03000000)],
    ['big-endian version 2', 'BIG_ENDIAN', () => u32At(f('version', ''), 0x02000000)],
    ['version 1', 'UNSUPPORTED_VERSION', () => u32At(f('version', ''), 1), /version 1 /],
    ['version 4', 'UNSUPPORTED_VERSION', () => u32At(f('version', ''), 4)],
    ['version 0', 'UNSUPPORTED_VERSION', () => u32At(f('version', ''), 0)],
    ['tensor count 2^60', 'COUNT_TOO_LARGE', () => u64At(f('tensor_count', ''), 1n << 60n)],
    ['tensor count 1000 (safe but cannot fit)', 'COUNT_TOO_LARGE', () => u64At(f('tensor_count', ''), 1000)],
    ['metadata count 2^64-1', 'COUNT_TOO_LARGE', () => u64At(f('kv_count', ''), (1n << 64n) - 1n)],
    ['metadata count 300 (safe but cannot fit)', 'COUNT_TOO_LARGE', () => u64At(f('kv_count', ''), 300)],
    ['key length 2^60', 'COUNT_TOO_LARGE', () => u64At(f('key_len', '#3'), 1n << 60n)],
    ['key length 2^40', 'STRING_TOO_LONG', () => u64At(f('key_len', '#3'), 1n << 40n)],
    ['string value length 2^60', 'COUNT_TOO_LARGE', () => u64At(f('str_len', 'general.architecture'), 1n << 60n)],
    ['string value length one past the end', 'STRING_TOO_LONG', () => u64At(f('str_len', 'test.text'), good.length - f('str', 'test.text').offset + 1)],
    ['string array element length 2^40', 'STRING_TOO_LONG', () => u64At(f('str_len', 'test.strings[1]'), 1n << 40n)],
    ['string array count 2^32', 'COUNT_TOO_LARGE', () => u64At(f('arr_count', 'test.strings'), 1n << 32n)],
    ['float array count 2^40', 'COUNT_TOO_LARGE', () => u64At(f('arr_count', 'test.floats'), 1n << 40n)],
    ['int64 array count 2^63', 'COUNT_TOO_LARGE', () => u64At(f('arr_count', 'test.i64s'), 1n << 63n)],
    ['nested array count 2^50', 'COUNT_TOO_LARGE', () => u64At(f('arr_count', 'test.nested'), 1n << 50n)],
    ['unknown value type 13', 'UNKNOWN_VALUE_TYPE', () => u32At(f('value_type', 'test.u8'), 13)],
    ['value type 2^32-1', 'UNKNOWN_VALUE_TYPE', () => u32At(f('value_type', 'test.u8'), 0xffffffff)],
    ['unknown array element type', 'UNKNOWN_VALUE_TYPE', () => u32At(f('arr_type', 'test.floats'), 13)],
    ['arrays nested one level too deep', 'NESTING_TOO_DEEP', () => u32At(f('arr_type', 'test.deep[0][0][0]'), T.ARRAY)],
    ['duplicate key', 'DUPLICATE_KEY', () => patched((b) => b.set(new TextEncoder().encode('test.dup_a'), f('key', '#21').offset)), /"test.dup_a"/],
    ['duplicate tensor name', 'DUPLICATE_TENSOR', () => patched((b) => b.set(new TextEncoder().encode('tok.a'), f('name', '#1').offset)), /"tok.a"/],
    ['tensor name of 64 bytes', 'NAME_TOO_LONG', () => u64At(f('name_len', '#0'), 64)],
    ['tensor name length 2^40', 'STRING_TOO_LONG', () => u64At(f('name_len', '#0'), 1n << 40n)],
    ['n_dims 0', 'TOO_MANY_DIMS', () => u32At(f('n_dims', 'tok.b'), 0)],
    ['n_dims 5', 'TOO_MANY_DIMS', () => u32At(f('n_dims', 'tok.b'), 5)],
    ['n_dims 2^32-1', 'TOO_MANY_DIMS', () => u32At(f('n_dims', 'tok.b'), 0xffffffff)],
    ['dimension 2^60', 'COUNT_TOO_LARGE', () => u64At(f('dim', 'tok.a/1'), 1n << 60n)],
    ['dimension larger than the file could hold', 'BAD_DIMENSION', () => u64At(f('dim', 'tok.a/1'), 10_000_000)],
    ['dimensions whose product overflows 2^53', 'ELEMENT_OVERFLOW', () => patched((_, v) => {
      for (let d = 0; d < 4; d++) v.setBigUint64(f('dim', `tok.d/${d}`).offset, BigInt(good.length * 8), true);
    })],
    ['unknown ggml type 4 (removed Q4_2)', 'UNKNOWN_TENSOR_TYPE', () => u32At(f('ggml_type', 'tok.b'), 4)],
    ['ggml type 2^31', 'UNKNOWN_TENSOR_TYPE', () => u32At(f('ggml_type', 'tok.b'), 0x80000000)],
    ['Q8_0 row not a multiple of 32', 'BAD_ROW_SIZE', () => u64At(f('dim', 'tok.c/0'), 48)],
    ['F16 tensor retyped to Q8_0 with 16-element rows', 'BAD_ROW_SIZE', () => u32At(f('ggml_type', 'tok.b'), GGMLType.Q8_0)],
    ['misaligned tensor offset', 'MISALIGNED_TENSOR', () => u64At(f('offset', 'tok.b'), 2049)],
    ['offsets misaligned under general.alignment 64', 'MISALIGNED_TENSOR', () => u32At(f('scalar', 'general.alignment'), 64)],
    ['tensor offset 2^64-1', 'COUNT_TOO_LARGE', () => u64At(f('offset', 'tok.c'), (1n << 64n) - 1n)],
    ['tensor starting past the end of the file', 'TENSOR_OUT_OF_BOUNDS', () => u64At(f('offset', 'tok.d'), 2048 + 96 + 160 + 4096)],
    ['tensor extending past the end of the file', 'TENSOR_OUT_OF_BOUNDS', () => u64At(f('dim', 'tok.d/3'), 3)],
    ['tensors at the same offset', 'TENSORS_OVERLAP', () => u64At(f('offset', 'tok.c'), 2048)],
    ['tensor grown into its neighbour', 'TENSORS_OVERLAP', () => u64At(f('dim', 'tok.a/1'), 9)],
    ['general.alignment 0', 'BAD_ALIGNMENT', () => u32At(f('scalar', 'general.alignment'), 0)],
    ['general.alignment 48', 'BAD_ALIGNMENT', () => u32At(f('scalar', 'general.alignment'), 48)],
    ['general.alignment typed INT32', 'BAD_ALIGNMENT', () => u32At(f('value_type', 'general.alignment'), T.INT32)],
    ['bool byte 2', 'INVALID_VALUE', () => patched((b) => { b[f('scalar', 'test.bool').offset] = 2; }), /bool byte is 2/],
    ['bool array byte 2', 'INVALID_VALUE', () => patched((b) => { b[f('arr_data', 'test.bools').offset + 1] = 2; }), /\[1\]: bool byte is 2/],
  ];

  it(`has at least 30 mutations (${cases.length})`, () => expect(cases.length).toBeGreaterThanOrEqual(30));

  it.each(cases)('%s -> %s', async (_what, code, make, message) => {
    const err = await parseError(make());
    expect(err.code, err.message).toBe(code);
    if (message) expect(err.message).toMatch(message);
  });
});
