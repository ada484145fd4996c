// Prefix cache over the paged KV: longest-prefix matches among entries and live sequences, entries
// keeping blocks alive after their sequence is gone, deduplication, and LRU eviction freeing blocks.
import { describe, expect, it } from 'vitest';
import { tensorBytes, type Backend } from '../src/backend/backend.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { KVCache } from '../src/kv/kv-cache.js';
import { PrefixCache } from '../src/kv/prefix-cache.js';

function setup(nBlocks = 16, maxEntries = 4, slidingWindow?: number) {
  // Storage is never read here: a backend that hands out byte-counting handles and copies nothing.
  const be = { allocate: (type: GGMLType, shape: number[]) => ({ buffer: 1, offset: 0, bytes: tensorBytes(type, shape), type, shape }), copy: () => {} } as unknown as Backend;
  const kv = new KVCache(be, { nLayers: 1, kvDim: 4, blockSize: 4, nBlocks, type: 'f32', maxSequenceLength: 64, slidingWindow });
  let id = 1000;
  const cache = new PrefixCache(kv, () => id++, maxEntries);
  /**
   * A finished sequence of these tokens, handed to the cache and then removed, as the engine does
   * (with a sliding window it released its out-of-window blocks first, as after a forward pass).
   */
  const finish = (seqId: number, tokens: number[]) => {
    kv.createSequence(seqId);
    kv.reserve(seqId, tokens.length);
    kv.releaseOutsideWindow(seqId);
    cache.insert(seqId, tokens);
    kv.removeSequence(seqId);
  };
  return { kv, cache, finish };
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('PrefixCache', () => {
  it('keeps a finished sequence\'s blocks and matches the longest shared prefix, capped', () => {
    const { kv, cache, finish } = setup();
    finish(1, range(0, 10));
    expect(kv.pool.usedCount).toBe(3); // kept by the entry after the sequence left
    expect(cache.match([...range(0, 6), 99], 100)).toMatchObject({ length: 6 });
    expect(cache.match(range(0, 20), 100)).toMatchObject({ length: 10 });
    expect(cache.match(range(0, 20), 7)).toMatchObject({ length: 7 });
    expect(cache.match([5, 6], 100)).toBeUndefined();
    const m = cache.match(range(0, 9), 8)!;
    kv.fork(m.seqId, 2, m.length);
    expect(kv.blockTable(2)).toEqual(kv.blockTable(m.seqId).slice(0, 2));
  });

  it('prefers a longer live sequence and reports it', () => {
    const { kv, cache, finish } = setup();
    finish(1, range(0, 5));
    kv.createSequence(7);
    kv.reserve(7, 9);
    const live = [{ seqId: 7, tokens: range(0, 12), length: 9 }]; // only 9 of its 12 tokens are computed
    expect(cache.match(range(0, 12), 100, live)).toEqual({ seqId: 7, length: 9 });
  });

  it('drops entries a new one covers, and skips one that an entry covers', () => {
    const { kv, cache, finish } = setup();
    finish(1, range(0, 4));
    finish(2, range(0, 8));
    expect(cache.size).toBe(1);
    finish(3, range(0, 6));
    expect(cache.size).toBe(1);
    expect(kv.pool.usedCount).toBe(2);
    finish(4, [9, 9, 9]);
    expect(cache.size).toBe(2);
  });

  it('evicts least recently used first, returning unshared blocks to the pool', () => {
    const { kv, cache, finish } = setup(16, 3);
    finish(1, range(0, 4));
    finish(2, range(100, 4));
    finish(3, range(200, 4));
    cache.match(range(0, 4), 3); // touch the oldest
    finish(4, range(300, 4)); // over maxEntries: 100.. goes
    expect(cache.match(range(100, 4), 3)).toBeUndefined();
    expect(cache.match(range(0, 4), 3)).toBeDefined();
    expect(kv.pool.usedCount).toBe(3);
    // an entry whose blocks a live sequence shares frees nothing when evicted
    const m = cache.match(range(200, 4), 4)!;
    kv.fork(m.seqId, 50);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(kv.pool.usedCount).toBe(1);
    kv.removeSequence(50);
    expect(kv.pool.usedCount).toBe(0);
    expect(cache.evictOne()).toBe(false);
  });

  it('sliding window: a sequence gives only prefixes whose window it still holds', () => {
    const { kv, cache, finish } = setup(16, 4, 6); // a token at n attends to n-5..n
    finish(1, range(0, 20)); // released positions 0..11 (blocks 0-2): it can give n >= 17
    expect(kv.pool.usedCount).toBe(2);
    expect(cache.match([...range(0, 20), 99], 100)).toMatchObject({ length: 20 });
    expect(cache.match([...range(0, 17), 99], 100)).toMatchObject({ length: 17 });
    expect(cache.match([...range(0, 16), 99], 100)).toBeUndefined();
    expect(cache.match([...range(0, 10), 99], 100)).toBeUndefined();
    expect(cache.match(range(0, 20), 12)).toBeUndefined(); // capped below what it can give
    const m = cache.match(range(0, 30), 18)!;
    kv.fork(m.seqId, 2, m.length);
    expect(kv.blockTable(2)).toEqual([-1, -1, -1, ...kv.blockTable(m.seqId).slice(3)]);
    kv.removeSequence(2);

    // a longer entry that cannot give a shorter prefix does not cover it, nor does a new one drop it
    finish(3, range(0, 10));
    expect(cache.size).toBe(2);
    expect(cache.match([...range(0, 10), 99], 100)).toMatchObject({ length: 10 });
    finish(4, range(0, 30)); // can give n >= 29
    expect(cache.size).toBe(3);
    expect(cache.match([...range(0, 20), 99], 100)).toMatchObject({ length: 20 });
    finish(5, range(0, 21)); // can give n >= 21: not 20
    expect(cache.size).toBe(4);
    finish(6, range(0, 22)); // can give n >= 21: covers 21, which goes
    expect(cache.size).toBe(4);
    expect(cache.match([...range(0, 21), 99], 100)).toMatchObject({ length: 21 });
    expect(cache.match([...range(0, 20), 99], 100)).toMatchObject({ length: 20 });
    expect(cache.match([...range(0, 10), 99], 100)).toMatchObject({ length: 10 });
    const ids = [...kv.sequenceIds()];
    finish(8, range(0, 21)); // covered by 22: no new entry
    expect([...kv.sequenceIds()]).toEqual(ids);
    // live sequences are held to the same rule
    kv.createSequence(7);
    kv.reserve(7, 24);
    kv.releaseOutsideWindow(7); // gives n >= 21
    const live = [{ seqId: 7, tokens: range(500, 24), length: 24 }];
    expect(cache.match(range(500, 22), 21, live)).toEqual({ seqId: 7, length: 21 });
    expect(cache.match(range(500, 22), 20, live)).toBeUndefined();
    kv.removeSequence(7);
    cache.clear();
    expect(kv.pool.usedCount).toBe(0);
  });

  it('keeps nothing with zero entries', () => {
    const { kv, cache, finish } = setup(16, 0);
    finish(1, range(0, 8));
    expect(cache.size).toBe(0);
    expect(kv.pool.usedCount).toBe(0);
  });
});
