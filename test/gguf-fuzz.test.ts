// Seeded random mutations of good GGUF files. For every mutant the reader must either throw a
// GGUFError or return a header whose tensors all lie, aligned and disjoint, inside the file.
// Anything else (a RangeError, a TypeError, a hang, a huge allocation) is a bug.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GGUFError } from '../src/gguf/errors.js';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { bufferSource } from '../src/io/byte-source.js';
import { typeTraits } from '../src/tensor/ggml-types.js';
import { buildFixture } from './gguf-fixture.js';

const SEED = 0x5eed_6a1f;
const Q4_PATH = join(import.meta.dirname, '..', '..', 'shared', 'models', 'stories260K-q4_0.gguf');
const HAVE_Q4 = existsSync(Q4_PATH);
const CASES_PER_FILE = HAVE_Q4 ? 2000 : 4000;

/** mulberry32: small, fast, reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EXTREME_U64 = [0n, 1n, 2n, 31n, 32n, 63n, 64n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 1n << 32n, 1n << 40n,
  (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 60n, 1n << 63n, (1n << 64n) - 1n];
const EXTREME_U32 = [0, 1, 2, 4, 5, 9, 12, 13, 31, 32, 33, 64, 0x7fffffff, 0x80000000, 0xffffffff];

interface Mutant { bytes: Uint8Array; what: string }

function mutate(good: Uint8Array, headerEnd: number, rand: () => number): Mutant {
  const int = (n: number) => Math.floor(rand() * n);
  // Mostly aim at the header, where every byte is structure; sometimes anywhere.
  const pos = () => (rand() < 0.9 ? int(headerEnd) : int(good.length));
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const kind = int(7);
  switch (kind) {
    case 0: {
      const b = good.slice();
      const n = 1 + int(8);
      for (let i = 0; i < n; i++) b[pos()] ^= 1 + int(255);
      return { bytes: b, what: `flip ${n} bytes` };
    }
    case 1: {
      const b = good.slice();
      const at = Math.min(pos(), b.length - 8);
      const v = rand() < 0.8 ? pick(EXTREME_U64) : BigInt(good.length + int(64) - 32);
      new DataView(b.buffer).setBigUint64(at, v, true);
      return { bytes: b, what: `u64 ${v} at ${at}` };
    }
    case 2: {
      const b = good.slice();
      const at = Math.min(pos(), b.length - 4);
      const v = pick(EXTREME_U32);
      new DataView(b.buffer).setUint32(at, v, true);
      return { bytes: b, what: `u32 ${v} at ${at}` };
    }
    case 3: {
      const n = rand() < 0.7 ? int(headerEnd + 64) : int(good.length);
      return { bytes: good.slice(0, n), what: `truncate to ${n}` };
    }
    case 4: {
      const at = pos(), n = 1 + int(16);
      const b = new Uint8Array(good.length + n);
      b.set(good.subarray(0, at));
      for (let i = 0; i < n; i++) b[at + i] = rand() < 0.5 ? 0 : int(256);
      b.set(good.subarray(at), at + n);
      return { bytes: b, what: `insert ${n} at ${at}` };
    }
    case 5: {
      const at = pos(), n = 1 + int(16);
      const b = new Uint8Array(good.length - Math.min(n, good.length - at));
      b.set(good.subarray(0, at));
      b.set(good.subarray(at + n), at);
      return { bytes: b, what: `delete ${n} at ${at}` };
    }
    default: {
      const a = mutate(good, headerEnd, rand);
      const b = mutate(a.bytes, Math.min(headerEnd, a.bytes.length), rand);
      return { bytes: b.bytes, what: `${a.what}; ${b.what}` };
    }
  }
}

/** What "parses" must mean for an untrusted file: every tensor is a valid, in-bounds, aligned, disjoint range. */
function checkAccepted(file: GGUFFile, size: number): void {
  expect(file.fileSize).toBe(size);
  expect(file.dataOffset % file.alignment).toBe(0);
  const names = new Set<string>();
  const ranges: [number, number][] = [];
  for (const t of file.tensors) {
    expect(names.has(t.name)).toBe(false);
    names.add(t.name);
    const traits = typeTraits(t.type)!;
    expect(traits).toBeDefined();
    expect(t.dims.length >= 1 && t.dims.length <= 4).toBe(true);
    const n = t.dims.reduce((a, b) => a * b, 1);
    expect(t.nElements).toBe(n);
    expect(t.dims[0] % traits.blockSize).toBe(0);
    expect(t.nBytes).toBe((n / traits.blockSize) * traits.blockBytes);
    expect(Number.isSafeInteger(t.fileOffset)).toBe(true);
    expect(t.fileOffset).toBe(file.dataOffset + t.offset);
    expect(t.offset % file.alignment).toBe(0);
    expect(t.fileOffset + t.nBytes).toBeLessThanOrEqual(size);
    ranges.push([t.offset, t.offset + t.nBytes]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBeGreaterThanOrEqual(ranges[i - 1][1]);
}

async function fuzz(good: Uint8Array, cases: number, seed: number) {
  const base = await readGGUF(bufferSource(good));
  const headerEnd = base.dataOffset;
  const rand = rng(seed);
  const codes = new Map<string, number>();
  let accepted = 0;
  let slowest = 0;
  for (let i = 0; i < cases; i++) {
    const m = mutate(good, headerEnd, rand);
    const t0 = performance.now();
    let file: GGUFFile | undefined;
    try {
      file = await readGGUF(bufferSource(m.bytes));
    } catch (e) {
      if (!(e instanceof GGUFError)) {
        throw new Error(`case ${i} (seed ${seed}, ${m.what}) threw ${(e as Error).name}: ${(e as Error).message}`);
      }
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    slowest = Math.max(slowest, performance.now() - t0);
    if (file) {
      accepted++;
      try {
        checkAccepted(file, m.bytes.length);
      } catch (e) {
        throw new Error(`case ${i} (seed ${seed}, ${m.what}) parsed into an unsafe header: ${(e as Error).message}`);
      }
    }
  }
  return { codes, accepted, slowest };
}

describe('GGUF reader under random mutation', () => {
  it(`fixture: ${CASES_PER_FILE} mutants throw GGUFError or parse safely`, async () => {
    const r = await fuzz(buildFixture(), CASES_PER_FILE, SEED);
    // The harness must exercise both outcomes and many distinct checks, or it tests nothing.
    expect(r.accepted).toBeGreaterThan(CASES_PER_FILE / 50);
    expect(r.codes.size).toBeGreaterThanOrEqual(12);
    expect(r.slowest).toBeLessThan(500);
  });

  it.skipIf(!HAVE_Q4)(`stories260K-q4_0.gguf: ${CASES_PER_FILE} mutants throw GGUFError or parse safely${HAVE_Q4 ? '' : ' (skipped: ../shared/models missing)'}`, async () => {
    const r = await fuzz(new Uint8Array(readFileSync(Q4_PATH)), CASES_PER_FILE, SEED ^ 0x9e3779b9);
    expect(r.accepted).toBeGreaterThan(CASES_PER_FILE / 50);
    expect(r.codes.size).toBeGreaterThanOrEqual(8);
    expect(r.slowest).toBeLessThan(500);
  });
});
