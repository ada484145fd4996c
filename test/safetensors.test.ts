// safetensors headers are untrusted input (issue 13): the reader against files laid out as the
// format specifies (8-byte little-endian header length, JSON header, data), every kind of bad
// header as a typed SafetensorsError naming the tensor, and a seeded run of 2,000 mutated files
// that must each parse into in-bounds tensors or fail with a SafetensorsError, never anything else.
import { describe, expect, it } from 'vitest';
import { bufferSource, readRange } from '../src/io/byte-source.js';
import { SafetensorsError } from '../src/safetensors/errors.js';
import { readSafetensors } from '../src/safetensors/reader.js';
import { rng } from './helpers/random-tensors.js';

/** A safetensors file as the format lays it out; `header` may be anything (to write bad ones). */
function file(header: unknown, data: Uint8Array, opts: { headerText?: string; pad?: boolean } = {}): Uint8Array {
  let text = opts.headerText ?? JSON.stringify(header);
  if (opts.pad !== false) text += ' '.repeat((8 - (text.length % 8)) % 8); // the format pads the header with spaces
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const f32 = Float32Array.from({ length: 6 }, (_, i) => i + 0.5);
const f16 = new Uint16Array([0x3c00, 0x4000, 0xc000, 0x0000]); // 1, 2, -2, 0
const data = new Uint8Array(24 + 8 + 4);
data.set(new Uint8Array(f32.buffer), 0);
data.set(new Uint8Array(f16.buffer), 24);
data.set([0x80, 0x3f, 0x00, 0x40], 32); // BF16 1.0, 2.0
const HEADER = {
  __metadata__: { format: 'pt' },
  'model.embed_tokens.weight': { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
  'model.norm.weight': { dtype: 'F16', shape: [4], data_offsets: [24, 32] },
  'lm_head.weight': { dtype: 'BF16', shape: [2, 1], data_offsets: [32, 36] },
};

describe('safetensors reader', () => {
  it('reads tensors, shapes, dtypes, offsets and metadata as laid out', async () => {
    const bytes = file(HEADER, data);
    const st = await readSafetensors(bufferSource(bytes));
    expect(st.metadata).toEqual(new Map([['format', 'pt']]));
    expect(st.tensors.map((t) => [t.name, t.dtype, t.shape, t.nBytes])).toEqual([
      ['model.embed_tokens.weight', 'F32', [2, 3], 24], ['model.norm.weight', 'F16', [4], 8], ['lm_head.weight', 'BF16', [2, 1], 4],
    ]);
    const t = st.tensorsByName.get('model.embed_tokens.weight')!;
    expect(new Float32Array((await readRange(bufferSource(bytes), t.fileOffset, t.nBytes)).slice().buffer)).toEqual(f32);
    expect(st.dataOffset % 8).toBe(0);
  });

  const cases: [string, Uint8Array, string, RegExp][] = [
    ['a file shorter than the length', new Uint8Array(5), 'TRUNCATED', /shorter than the 8-byte/],
    ['a header past the file', (() => { const b = file(HEADER, data); new DataView(b.buffer).setUint32(0, 999_999, true); return b; })(), 'TRUNCATED', /announces 999999/],
    ['an absurd header length', (() => { const b = file(HEADER, data); new DataView(b.buffer).setUint32(4, 7, true); return b; })(), 'BAD_HEADER_LENGTH', /header length/],
    ['a header that is not JSON', file(null, data, { headerText: '{"a": ' }), 'BAD_HEADER', /not UTF-8 JSON/],
    ['a header that is a list', file([1, 2], data), 'BAD_HEADER', /JSON object/],
    ['an entry that is not an object', file({ x: 5 }, data), 'BAD_HEADER', /tensor "x" must be an object/],
    ['an unknown dtype', file({ x: { dtype: 'F24', shape: [1], data_offsets: [0, 3] } }, data), 'UNKNOWN_DTYPE', /"x" has dtype "F24"/],
    ['a negative dimension', file({ x: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, data), 'BAD_SHAPE', /"x" has shape \[2,-1\]/],
    ['an overflowing shape', file({ x: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, data), 'BAD_SHAPE', /too many elements/],
    ['offsets past the data', file({ x: { dtype: 'F32', shape: [100], data_offsets: [0, 400] } }, data), 'BAD_OFFSETS', /not inside the 36 data bytes/],
    ['offsets of the wrong size', file({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 12] } }, data), 'BAD_OFFSETS', /hold 12 bytes, its F32 shape \[2\] needs 8/],
    ['reversed offsets', file({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data), 'BAD_OFFSETS', /\[8, 4\]/],
    ['overlapping tensors', file({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data), 'OVERLAP', /"a" and "b" share bytes/],
    ['metadata that is not strings', file({ __metadata__: { n: 3 } }, data), 'BAD_METADATA', /"n" is not a string/],
  ];
  it.each(cases)('%s: SafetensorsError %s', async (_, bytes, code, message) => {
    const err = await readSafetensors(bufferSource(bytes)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err).toMatchObject({ code });
    expect((err as Error).message).toMatch(message);
  });

  it('2,000 seeded mutations: each parses into in-bounds tensors or is a SafetensorsError', async () => {
    const valid = file(HEADER, data);
    const r = rng(2024);
    const rand = (n: number) => Math.floor(r() * n);
    let parsed = 0, refused = 0;
    for (let k = 0; k < 2000; k++) {
      let bytes = valid.slice();
      const kind = rand(4);
      if (kind === 0) for (let j = rand(4) + 1; j > 0; j--) bytes[rand(bytes.length)] = rand(256); // random bytes anywhere
      else if (kind === 1) bytes = bytes.slice(0, rand(bytes.length)); // truncated
      else if (kind === 2) { // one header character changed to a JSON-significant one
        const at = 8 + rand(new DataView(bytes.buffer).getUint32(0, true));
        bytes[at] = '{}[]":,0123456789-eE.'.charCodeAt(rand(21));
      } else new DataView(bytes.buffer).setUint32(0, rand(400), true); // another header length
      try {
        const st = await readSafetensors(bufferSource(bytes));
        for (const t of st.tensors) expect(t.fileOffset + t.nBytes).toBeLessThanOrEqual(bytes.length);
        parsed++;
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(SafetensorsError);
        refused++;
      }
    }
    expect(parsed).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(1000);
  });
});
