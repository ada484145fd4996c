import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.js';
import { BlockPool } from '../src/kv/block-pool.js';
import { KVCacheError } from '../src/kv/errors.js';
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
      const owners = new Map<number, number>();
      for (const id of live) {
        const table = kv.blockTable(id);
        expect(table.length).toBe(Math.ceil(kv.sequenceLength(id) / blockSize));
        for (const b of table) owners.set(b, (owners.get(b) ?? 0) + 1);
      }
      for (const [b, n] of owners) {
        expect(n).toBe(1);
        expect(kv.pool.refCount(b)).toBe(1);
      }
      expect(kv.pool.usedCount).toBe(owners.size);
      expect(kv.pool.freeCount + owners.size).toBe(nBlocks);
    }
  });
});
