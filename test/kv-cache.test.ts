import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.js';
import { BlockPool } from '../src/kv/block-pool.js';
import { KVCacheError } from '../src/kv/errors.js';
import { copyBlockRows } from '../src/kv/copy-block.js';
import { KVCache } from '../src/kv/kv-cache.js';
import { SeededRandom } from '../src/sampling/rng.js';

/** The KV cache only allocates from its backend; a bump counter is all it needs here. */
function allocOnlyBackend(): Backend {
  let top = 0;
  return { alloc: (n: number) => ((top += n), top - n) } as unknown as Backend;
}

function cache(nBlocks: number, blockSize = 4, maxSequenceLength = 64) {
  return new KVCache(allocOnlyBackend(), { nLayers: 2, kvDim: 8, blockSize, nBlocks, type: 'f16', maxSequenceLength });
}

describe('BlockPool', () => {
  it('allocates all or nothing and recycles released blocks', () => {
    const pool = new BlockPool(4);
    const a = pool.allocate(3);
    expect(new Set(a).size).toBe(3);
    expect(() => pool.allocate(2)).toThrow(KVCacheError);
    expect(pool.freeCount).toBe(1);
    pool.retain(a[0]);
    pool.release(a[0]);
    expect(pool.freeCount).toBe(1);
    pool.release(a[0]);
    expect(pool.freeCount).toBe(2);
    expect(() => pool.release(a[0])).toThrow(/free block/);
  });
});

describe('KVCache', () => {
  it('gives positions 0,1,2,... exactly once per token and slots through the block table', () => {
    const kv = cache(8);
    kv.createSequence(7);
    const a = kv.reserve(7, 3);
    const b = kv.reserve(7, 6);
    expect([...a.positions, ...b.positions]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const table = kv.blockTable(7);
    expect(table.length).toBe(3);
    [...a.slots, ...b.slots].forEach((slot, p) => expect(slot).toBe(table[Math.floor(p / 4)] * 4 + (p % 4)));
    expect(kv.sequenceLength(7)).toBe(9);
  });

  it('leaves the sequence unchanged when blocks run out or the context is full', () => {
    const kv = cache(2, 4, 12);
    kv.createSequence(1);
    kv.reserve(1, 5);
    expect(() => kv.reserve(1, 4)).toThrow(expect.objectContaining({ code: 'OUT_OF_BLOCKS' }));
    expect(kv.sequenceLength(1)).toBe(5);
    expect(kv.blockTable(1).length).toBe(2);
    const kv2 = cache(8, 4, 12);
    kv2.createSequence(1);
    kv2.reserve(1, 10);
    expect(() => kv2.reserve(1, 3)).toThrow(expect.objectContaining({ code: 'CONTEXT_FULL' }));
    expect(kv2.sequenceLength(1)).toBe(10);
  });

  it('keeps its invariants under random operation sequences', () => {
    const rng = new SeededRandom(1234);
    const int = (n: number) => Math.floor(rng.next() * n);
    const nBlocks = 24, blockSize = 4;
    const kv = cache(nBlocks, blockSize, 40);
    const live = new Set<number>();
    let nextId = 0;
    for (let step = 0; step < 5000; step++) {
      const op = int(4);
      try {
        if (op === 0 || live.size === 0) {
          kv.createSequence(nextId);
          live.add(nextId++);
        } else {
          const id = [...live][int(live.size)];
          if (op === 1) kv.reserve(id, 1 + int(9));
          else if (op === 2) kv.truncate(id, int(kv.sequenceLength(id) + 1));
          else {
            kv.removeSequence(id);
            live.delete(id);
          }
        }
      } catch (err) {
        expect(err).toBeInstanceOf(KVCacheError);
        expect(['OUT_OF_BLOCKS', 'CONTEXT_FULL']).toContain((err as KVCacheError).code);
      }
      // Invariants: no block owned twice, ref counts match owners, free list holds the rest,
      // each sequence holds exactly ceil(length / blockSize) blocks.
      const errors = invariantErrors(kv, live);
      if (errors.length > 0) expect(errors).toEqual([]);
      for (const id of live) if (kv.pool.refCount(kv.blockTable(id)[0] ?? -1) > 1) expect.fail('unshared sequences share a block');
    }
  });
});

/** A backend that is just one linear buffer: enough for the KV cache's storage and block copies. */
function memoryBackend(bytes = 1 << 20): Backend {
  const mem = new Uint8Array(bytes);
  let top = 64;
  return {
    alloc: (n: number) => ((top += Math.ceil(n / 64) * 64), top - Math.ceil(n / 64) * 64),
    u8: () => mem,
  } as unknown as Backend;
}

/**
 * K and V of every layer at slot s hold one tag per slot (f32 at element 0 of K, element kvDim-1
 * of V, plus the layer number): what a token wrote, readable back through a block table.
 */
function writeTag(kv: KVCache, be: Backend, slot: number, tag: number): void {
  const f = new Float32Array(be.u8().buffer);
  for (const [l, layer] of kv.layers.entries()) {
    f[(layer.kPtr >> 2) + slot * layer.kvDim] = tag + l;
    f[(layer.vPtr >> 2) + slot * layer.kvDim + layer.kvDim - 1] = -tag - l;
  }
}

function readTags(kv: KVCache, be: Backend, id: number): number[] {
  const f = new Float32Array(be.u8().buffer);
  const table = kv.blockTable(id), bs = kv.blockSize;
  const out: number[] = [];
  for (let p = 0; p < kv.sequenceLength(id); p++) {
    const slot = table[Math.floor(p / bs)] * bs + (p % bs);
    const tag = f[(kv.layers[0].kPtr >> 2) + slot * kv.layers[0].kvDim];
    // every layer's K and V agree, or a copy missed one of them (NaN then fails the comparison)
    const agree = kv.layers.every((layer, l) => f[(layer.kPtr >> 2) + slot * layer.kvDim] - l === tag && -f[(layer.vPtr >> 2) + slot * layer.kvDim + layer.kvDim - 1] - l === tag);
    out.push(agree ? tag : NaN);
  }
  return out;
}

function f32Cache(be: Backend, nBlocks: number, blockSize: number, maxSequenceLength: number) {
  return new KVCache(be, { nLayers: 3, kvDim: 8, blockSize, nBlocks, type: 'f32', maxSequenceLength });
}

/** Structural invariants of the pool and the block tables; returns what is wrong (plain checks: this runs thousands of times). */
function invariantErrors(kv: KVCache, ids: Iterable<number>): string[] {
  const errors: string[] = [];
  const owners = new Map<number, number>();
  for (const id of ids) {
    const table = kv.blockTable(id);
    const len = kv.sequenceLength(id);
    // token count = blocks x size - slack, 0 <= slack < size
    const slack = table.length * kv.blockSize - len;
    if (slack < 0 || slack >= kv.blockSize && len > 0 || len === 0 && table.length > 0) errors.push(`sequence ${id}: ${len} tokens in ${table.length} blocks`);
    if (new Set(table).size !== table.length) errors.push(`sequence ${id} holds a block twice`);
    for (const b of table) owners.set(b, (owners.get(b) ?? 0) + 1);
  }
  // a block owned by several sequences has exactly that ref count; every other block is free, once
  for (const [b, n] of owners) if (kv.pool.refCount(b) !== n) errors.push(`block ${b}: ${n} owners, ref count ${kv.pool.refCount(b)}`);
  const free = kv.pool.freeBlocks();
  if (new Set(free).size !== free.length) errors.push('a block is free twice');
  for (const b of free) if (owners.has(b) || kv.pool.refCount(b) !== 0) errors.push(`free block ${b} is owned or counted`);
  if (free.length + owners.size !== kv.pool.nBlocks) errors.push(`${free.length} free + ${owners.size} owned != ${kv.pool.nBlocks}`);
  if (kv.pool.freeCount !== free.length) errors.push('freeCount disagrees with the free list');
  return errors;
}

function checkInvariants(kv: KVCache, ids: Iterable<number>): void {
  expect(invariantErrors(kv, ids)).toEqual([]);
}

describe('KV budget', () => {
  it('turns bytes (rounded down) or tokens (rounded up) into blocks, and refuses empty budgets', () => {
    const shape = { nLayers: 2, kvDim: 8, blockSize: 4, type: 'f16' } as const;
    const perBlock = KVCache.bytesNeeded({ ...shape, nBlocks: 1 });
    expect(perBlock).toBe(2 * 2 * 4 * 8 * 2);
    expect(KVCache.blocksForBudget(shape, { bytes: 10 * perBlock + perBlock - 1 })).toBe(10);
    expect(KVCache.blocksForBudget(shape, { tokens: 9 })).toBe(3);
    expect(() => KVCache.blocksForBudget(shape, { bytes: perBlock - 1 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => KVCache.blocksForBudget(shape, { tokens: 0 })).toThrow(KVCacheError);
  });
});

describe('KV sharing', () => {
  it('copies one block\'s first rows for every layer, K and V, and nothing else', () => {
    const be = memoryBackend();
    const kv = f32Cache(be, 4, 4, 16);
    for (let slot = 0; slot < 16; slot++) writeTag(kv, be, slot, 100 + slot);
    copyBlockRows(be, kv.layers, 1, 3, 3); // slots 4..6 -> 12..14
    kv.createSequence(0);
    kv.reserve(0, 16); // takes blocks 0,1,2,3 in order
    expect(kv.blockTable(0)).toEqual([0, 1, 2, 3]);
    expect(readTags(kv, be, 0)).toEqual([100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 104, 105, 106, 115]);
  });

  it('fork shares blocks; a write into a shared partial block copies it first; full shared blocks are never written', () => {
    const be = memoryBackend();
    const kv = f32Cache(be, 8, 4, 32);
    kv.createSequence(1);
    const a = kv.reserve(1, 6);
    a.slots.forEach((s, p) => writeTag(kv, be, s, 10 + p));
    kv.fork(1, 2);
    expect(kv.blockTable(2)).toEqual(kv.blockTable(1));
    for (const b of kv.blockTable(1)) expect(kv.pool.refCount(b)).toBe(2);
    expect(kv.blocksNeeded(2, 1)).toBe(1); // the copy of the shared tail
    const before = kv.pool.freeCount;
    const b = kv.reserve(2, 1);
    writeTag(kv, be, b.slots[0], 99);
    expect(kv.pool.freeCount).toBe(before - 1);
    expect(kv.blockTable(2)[0]).toBe(kv.blockTable(1)[0]); // full block still shared
    expect(kv.blockTable(2)[1]).not.toBe(kv.blockTable(1)[1]);
    expect(readTags(kv, be, 1)).toEqual([10, 11, 12, 13, 14, 15]);
    expect(readTags(kv, be, 2)).toEqual([10, 11, 12, 13, 14, 15, 99]);
    // sharing a prefix that ends on a block boundary: the next write takes a fresh block
    kv.fork(1, 3, 4);
    expect(kv.blocksNeeded(3, 1)).toBe(1);
    writeTag(kv, be, kv.reserve(3, 1).slots[0], 77);
    expect(readTags(kv, be, 3)).toEqual([10, 11, 12, 13, 77]);
    expect(readTags(kv, be, 1)).toEqual([10, 11, 12, 13, 14, 15]);
    checkInvariants(kv, [1, 2, 3]);
    kv.removeSequence(1);
    kv.removeSequence(2);
    kv.removeSequence(3);
    expect(kv.pool.freeCount).toBe(8);
  });

  it('a reserve that fails after a fork leaves every sequence and ref count as it was', () => {
    const be = memoryBackend();
    const kv = f32Cache(be, 3, 4, 32);
    kv.createSequence(1);
    kv.reserve(1, 6);
    kv.fork(1, 2);
    kv.createSequence(3);
    kv.reserve(3, 4); // pool now full
    const snapshot = () => [1, 2, 3].map((id) => [kv.sequenceLength(id), [...kv.blockTable(id)], kv.blockTable(id).map((b) => kv.pool.refCount(b))]);
    const before = snapshot();
    expect(() => kv.reserve(2, 1)).toThrow(expect.objectContaining({ code: 'OUT_OF_BLOCKS' }));
    expect(() => kv.reserve(1, 3)).toThrow(expect.objectContaining({ code: 'OUT_OF_BLOCKS' }));
    expect(snapshot()).toEqual(before);
    checkInvariants(kv, [1, 2, 3]);
  });

  for (const seed of [1, 2, 3]) {
    it(`keeps ref counts, free list, block tables and every sequence's content under random operations (seed ${seed})`, () => {
      const rng = new SeededRandom(seed);
      const int = (n: number) => Math.floor(rng.next() * n);
      const be = memoryBackend();
      const nBlocks = 20, blockSize = 4;
      const kv = f32Cache(be, nBlocks, blockSize, 48);
      const content = new Map<number, number[]>(); // what each sequence should read back
      let nextId = 0, nextTag = 1;
      let failures = 0;
      for (let step = 0; step < 3000; step++) {
        const ids = [...content.keys()];
        const pick = () => ids[int(ids.length)];
        // create, reserve x2, truncate, fork, remove x2: the population stays small
        const op = ids.length === 0 ? 0 : [0, 1, 2, 3, 4, 5, 5][int(7)];
        const snapshot = ids.map((id) => [id, kv.sequenceLength(id), [...kv.blockTable(id)]]);
        const refs = Array.from({ length: nBlocks }, (_, b) => kv.pool.refCount(b));
        try {
          if (op === 0) {
            kv.createSequence(nextId);
            content.set(nextId++, []);
          } else if (op === 1 || op === 2) {
            const id = pick(), n = 1 + int(7);
            const { slots } = kv.reserve(id, n);
            for (const s of slots) {
              writeTag(kv, be, s, nextTag);
              content.get(id)!.push(nextTag++);
            }
          } else if (op === 3) {
            const id = pick(), len = int(kv.sequenceLength(id) + 1);
            kv.truncate(id, len);
            content.set(id, content.get(id)!.slice(0, len));
          } else if (op === 4) {
            const id = pick(), len = int(kv.sequenceLength(id) + 1);
            kv.fork(id, nextId, len);
            content.set(nextId++, content.get(id)!.slice(0, len));
          } else {
            const id = pick();
            kv.removeSequence(id);
            content.delete(id);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(KVCacheError);
          expect(['OUT_OF_BLOCKS', 'CONTEXT_FULL']).toContain((err as KVCacheError).code);
          failures++;
          // all or nothing
          const after = ids.map((id) => [id, kv.sequenceLength(id), [...kv.blockTable(id)]]);
          const refsAfter = Array.from({ length: nBlocks }, (_, b) => kv.pool.refCount(b));
          if (JSON.stringify([after, refsAfter]) !== JSON.stringify([snapshot, refs])) expect([after, refsAfter]).toEqual([snapshot, refs]);
        }
        const errors = invariantErrors(kv, content.keys());
        if (errors.length > 0) expect(errors).toEqual([]);
        for (const [id, tags] of content) {
          const got = readTags(kv, be, id);
          if (got.length !== tags.length || got.some((t, i) => t !== tags[i])) expect(got).toEqual(tags);
        }
      }
      expect(failures).toBeGreaterThan(10); // the pool did run out along the way
      for (const id of [...content.keys()]) kv.removeSequence(id);
      expect(kv.pool.freeCount).toBe(nBlocks);
    });
  }
});
