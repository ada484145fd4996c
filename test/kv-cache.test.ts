import { describe, expect, it } from 'vitest';
import { tensorBytes, type Backend, type Tensor } from '../src/backend/backend.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { BlockPool } from '../src/kv/block-pool.js';
import { KVCacheError } from '../src/kv/errors.js';
import { copyBlockRows } from '../src/kv/copy-block.js';
import { KVCache, RELEASED_BLOCK } from '../src/kv/kv-cache.js';
import { SeededRandom } from '../src/sampling/rng.js';

/** The KV cache only allocates from its backend; handles that count bytes are all it needs here. */
function allocOnlyBackend(): Backend {
  return { allocate: (type: GGMLType, shape: number[]) => ({ buffer: 1, offset: 0, bytes: tensorBytes(type, shape), type, shape }) } as unknown as Backend;
}

function cache(nBlocks: number, blockSize = 4, maxSequenceLength = 64, slidingWindow?: number) {
  return new KVCache(allocOnlyBackend(), { nLayers: 2, kvDim: 8, blockSize, nBlocks, type: 'f16', maxSequenceLength, slidingWindow });
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

/**
 * A backend that only stores: each tensor its own buffer (as a GPU backend's are), copy between
 * them, and a synchronous view of one for the tags below.
 */
interface MemoryBackend extends Backend {
  f32View(t: Tensor): Float32Array;
}
function memoryBackend(): MemoryBackend {
  const buffers: Uint8Array[] = [];
  const view = (t: Tensor) => buffers[t.buffer].subarray(t.offset, t.offset + t.bytes);
  return {
    allocate(type: GGMLType, shape: readonly number[]) {
      const bytes = tensorBytes(type, shape);
      buffers.push(new Uint8Array(bytes));
      return { buffer: buffers.length - 1, offset: 0, bytes, type, shape };
    },
    copy(dst: Tensor, dstOffset: number, src: Tensor, srcOffset: number, bytes: number) {
      view(dst).set(view(src).subarray(srcOffset, srcOffset + bytes), dstOffset);
    },
    f32View: (t: Tensor) => new Float32Array(view(t).buffer),
  } as unknown as MemoryBackend;
}

/**
 * K and V of every layer at slot s hold one tag per slot (f32 at element 0 of K, element kvDim-1
 * of V, plus the layer number): what a token wrote, readable back through a block table.
 */
function writeTag(kv: KVCache, be: MemoryBackend, slot: number, tag: number): void {
  for (const [l, layer] of kv.layers.entries()) {
    be.f32View(layer.k)[slot * layer.kvDim] = tag + l;
    be.f32View(layer.v)[slot * layer.kvDim + layer.kvDim - 1] = -tag - l;
  }
}

/** Tags of the positions a sequence still holds: from its first unreleased block on. */
function readTags(kv: KVCache, be: MemoryBackend, id: number): number[] {
  const table = kv.blockTable(id), bs = kv.blockSize;
  const out: number[] = [];
  for (let p = kv.releasedBlocks(id) * bs; p < kv.sequenceLength(id); p++) {
    const slot = table[Math.floor(p / bs)] * bs + (p % bs);
    const tag = be.f32View(kv.layers[0].k)[slot * kv.layers[0].kvDim];
    // every layer's K and V agree, or a copy missed one of them (NaN then fails the comparison)
    const agree = kv.layers.every((layer, l) => be.f32View(layer.k)[slot * layer.kvDim] - l === tag && -be.f32View(layer.v)[slot * layer.kvDim + layer.kvDim - 1] - l === tag);
    out.push(agree ? tag : NaN);
  }
  return out;
}

function f32Cache(be: Backend, nBlocks: number, blockSize: number, maxSequenceLength: number, slidingWindow?: number) {
  return new KVCache(be, { nLayers: 3, kvDim: 8, blockSize, nBlocks, type: 'f32', maxSequenceLength, slidingWindow });
}

/** Structural invariants of the pool and the block tables; returns what is wrong (plain checks: this runs thousands of times). */
function invariantErrors(kv: KVCache, ids: Iterable<number>): string[] {
  const errors: string[] = [];
  const owners = new Map<number, number>();
  for (const id of ids) {
    const table = kv.blockTable(id);
    const len = kv.sequenceLength(id);
    // token count = blocks x size - slack, 0 <= slack < size (released blocks keep their entries)
    const slack = table.length * kv.blockSize - len;
    if (slack < 0 || slack >= kv.blockSize && len > 0 || len === 0 && table.length > 0) errors.push(`sequence ${id}: ${len} tokens in ${table.length} blocks`);
    // released blocks (sliding window): a prefix of RELEASED_BLOCK entries, only ones whose keys
    // no later token attends to; held tokens = length - released positions
    const released = kv.releasedBlocks(id);
    const held = table.slice(released);
    if (table.slice(0, released).some((b) => b !== RELEASED_BLOCK) || held.some((b) => b < 0)) errors.push(`sequence ${id}: released entries are not the first ${released}`);
    if (released * kv.blockSize > kv.firstKey(len)) errors.push(`sequence ${id} of ${len} tokens released ${released} blocks, some inside its window`);
    if (kv.heldBlocks(id) !== held.length || released > table.length) errors.push(`sequence ${id}: ${kv.heldBlocks(id)} held and ${released} released of ${table.length} blocks`);
    if (new Set(held).size !== held.length) errors.push(`sequence ${id} holds a block twice`);
    for (const b of held) owners.set(b, (owners.get(b) ?? 0) + 1);
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

  const randomCases: { seed: number; window?: number }[] = [{ seed: 1 }, { seed: 2 }, { seed: 3 }, { seed: 4, window: 1 }, { seed: 5, window: 6 }, { seed: 6, window: 13 }];
  for (const { seed, window } of randomCases) {
    it(`keeps ref counts, free list, block tables and every sequence's content under random operations (seed ${seed}${window ? `, sliding window ${window}` : ''})`, () => {
      const rng = new SeededRandom(seed);
      const int = (n: number) => Math.floor(rng.next() * n);
      const be = memoryBackend();
      const nBlocks = window === undefined ? 20 : 32, blockSize = 4;
      // windowed sequences hold few blocks however long: let them grow long
      const kv = f32Cache(be, nBlocks, blockSize, window === undefined ? 48 : 200, window);
      const content = new Map<number, number[]>(); // what each sequence should read back
      let nextId = 0, nextTag = 1;
      let failures = 0, outsideWindow = 0, released = 0;
      for (let step = 0; step < 3000; step++) {
        const ids = [...content.keys()];
        const pick = () => ids[int(ids.length)];
        // create, reserve x2, truncate, fork, remove x2, and with a window release (also after
        // half the reserves, as the graph does after a forward pass): the population stays small
        const ops = window === undefined ? [0, 1, 2, 3, 4, 5, 5] : [0, 1, 2, 3, 4, 5, 5, 6];
        const op = ids.length === 0 ? 0 : ops[int(ops.length)];
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
            if (op === 2) released += kv.releaseOutsideWindow(id);
          } else if (op === 3) {
            const id = pick(), len = int(kv.sequenceLength(id) + 1);
            kv.truncate(id, len);
            content.set(id, content.get(id)!.slice(0, len));
          } else if (op === 4) {
            const id = pick(), len = int(kv.sequenceLength(id) + 1);
            kv.fork(id, nextId, len);
            content.set(nextId++, content.get(id)!.slice(0, len));
          } else if (op === 5) {
            const id = pick();
            kv.removeSequence(id);
            content.delete(id);
          } else {
            const id = pick(), free = kv.pool.freeCount;
            const n = kv.releaseOutsideWindow(id);
            released += n;
            // a block others still share stays allocated; the rest return to the pool
            expect(kv.pool.freeCount - free).toBeLessThanOrEqual(n);
            // what is left: the window of the next token and no whole block before it
            expect(kv.heldBlocks(id)).toBeLessThanOrEqual(KVCache.windowBlocks(window!, blockSize, 0));
            expect(kv.releasedBlocks(id)).toBe(Math.floor(kv.firstKey(kv.sequenceLength(id)) / blockSize));
          }
        } catch (err) {
          expect(err).toBeInstanceOf(KVCacheError);
          const code = (err as KVCacheError).code;
          expect(window === undefined ? ['OUT_OF_BLOCKS', 'CONTEXT_FULL'] : ['OUT_OF_BLOCKS', 'CONTEXT_FULL', 'OUTSIDE_WINDOW']).toContain(code);
          if (code === 'OUTSIDE_WINDOW') outsideWindow++;
          failures++;
          // all or nothing
          const after = ids.map((id) => [id, kv.sequenceLength(id), [...kv.blockTable(id)]]);
          const refsAfter = Array.from({ length: nBlocks }, (_, b) => kv.pool.refCount(b));
          if (JSON.stringify([after, refsAfter]) !== JSON.stringify([snapshot, refs])) expect([after, refsAfter]).toEqual([snapshot, refs]);
        }
        const errors = invariantErrors(kv, content.keys());
        if (errors.length > 0) expect(errors).toEqual([]);
        for (const [id, all] of content) {
          const tags = all.slice(kv.releasedBlocks(id) * blockSize);
          const got = readTags(kv, be, id);
          if (got.length !== tags.length || got.some((t, i) => t !== tags[i])) expect(got).toEqual(tags);
        }
      }
      expect(failures).toBeGreaterThan(10); // the pool did run out along the way
      if (window !== undefined) {
        // windows did release blocks, and cutting into released positions was refused
        expect(released).toBeGreaterThan(20);
        expect(outsideWindow).toBeGreaterThan(0);
      }
      for (const id of [...content.keys()]) kv.removeSequence(id);
      expect(kv.pool.freeCount).toBe(nBlocks);
    });
  }
});

describe('KV sliding window', () => {
  it('releases a leading block once no later token attends to any key in it', () => {
    const kv = cache(8, 4, 64, 6); // a token at p attends to p-5..p
    kv.createSequence(1);
    kv.reserve(1, 8); // next token at 8 attends to 3..8: block 0 (0..3) still needed
    expect(kv.releaseOutsideWindow(1)).toBe(0);
    kv.reserve(1, 1); // next at 9 attends to 4..9
    const [b0, b1, b2] = kv.blockTable(1);
    expect(kv.releaseOutsideWindow(1)).toBe(1);
    expect(kv.blockTable(1)).toEqual([RELEASED_BLOCK, b1, b2]);
    expect([kv.releasedBlocks(1), kv.heldBlocks(1), kv.pool.usedCount, kv.pool.refCount(b0)]).toEqual([1, 2, 2, 0]);
    expect(kv.releaseOutsideWindow(1)).toBe(0); // idempotent
    // positions go on from 9; slots land in the held blocks only
    const { positions, slots } = kv.reserve(1, 20);
    expect(positions[0]).toBe(9);
    expect(slots.every((s) => s >= 0)).toBe(true);
    kv.releaseOutsideWindow(1); // next at 29 attends to 24..29: blocks 0..5 released
    expect(kv.releasedBlocks(1)).toBe(6);
    expect(kv.heldBlocks(1)).toBe(2);
    expect(kv.firstKey(29)).toBe(24);
    checkInvariants(kv, [1]);
    kv.removeSequence(1);
    expect(kv.pool.usedCount).toBe(0);
  });

  it('holds at most windowBlocks blocks however long the sequence grows, in a pool far smaller than it', () => {
    for (const [window, blockSize] of [[12, 4], [5, 4], [3, 8], [1, 2]]) {
      const chunk = 3;
      const bound = KVCache.windowBlocks(window, blockSize, chunk);
      const kv = cache(bound, blockSize, 1000, window);
      kv.createSequence(0);
      for (let len = 0; len < 900; len += chunk) {
        expect(kv.blocksNeeded(0, chunk)).toBeLessThanOrEqual(kv.peakBlocksNeeded(0, 900 - len, chunk));
        kv.reserve(0, chunk); // would throw OUT_OF_BLOCKS without releases
        expect(kv.heldBlocks(0)).toBeLessThanOrEqual(bound);
        kv.releaseOutsideWindow(0);
        expect(kv.heldBlocks(0)).toBeLessThanOrEqual(KVCache.windowBlocks(window, blockSize, 0));
      }
      expect(kv.peakBlocksNeeded(0, 5000, chunk)).toBeLessThanOrEqual(bound);
      checkInvariants(kv, [0]);
    }
    // without a window, peakBlocksNeeded is blocksNeeded
    const plain = cache(64, 4, 1000);
    plain.createSequence(0);
    expect(plain.peakBlocksNeeded(0, 100, 8)).toBe(plain.blocksNeeded(0, 100));
    expect(plain.releaseOutsideWindow(0)).toBe(0);
  });

  it('a shared block released by one sequence stays for the others', () => {
    const kv = cache(8, 4, 64, 6);
    kv.createSequence(1);
    kv.reserve(1, 8);
    kv.fork(1, 2); // the next token at 8 attends to 3..8: all blocks shared
    const [b0, b1] = kv.blockTable(1);
    kv.reserve(1, 6); // next at 14 attends to 9..14
    expect(kv.releaseOutsideWindow(1)).toBe(2);
    expect([kv.pool.refCount(b0), kv.pool.refCount(b1)]).toEqual([1, 1]); // sequence 2 still holds them
    expect(kv.blockTable(2).slice(0, 2)).toEqual([b0, b1]);
    checkInvariants(kv, [1, 2]);
    kv.removeSequence(2);
    expect([kv.pool.refCount(b0), kv.pool.refCount(b1)]).toEqual([0, 0]);
    expect(kv.pool.usedCount).toBe(2);
    checkInvariants(kv, [1]);
  });

  it('fork and truncate refuse lengths whose window reaches released blocks, and fork shares only what the window needs', () => {
    const kv = cache(16, 4, 64, 6);
    kv.createSequence(1);
    kv.reserve(1, 20);
    kv.releaseOutsideWindow(1); // next at 20 attends to 15..20: blocks 0..2 (positions 0..11) released
    expect(kv.releasedBlocks(1)).toBe(3);
    // a token at n attends to n-5..n: n >= 17 keeps it within positions 12..
    for (const n of [16, 10, 1]) {
      expect(kv.canShorten(1, n)).toBe(false);
      expect(() => kv.fork(1, 2, n)).toThrow(expect.objectContaining({ code: 'OUTSIDE_WINDOW' }));
      expect(() => kv.truncate(1, n)).toThrow(expect.objectContaining({ code: 'OUTSIDE_WINDOW' }));
    }
    expect(kv.hasSequence(2)).toBe(false);
    expect(kv.sequenceLength(1)).toBe(20);
    expect(kv.canShorten(1, 0)).toBe(true); // nothing to attend to
    expect(kv.canShorten(1, 17)).toBe(true);
    kv.fork(1, 3, 17);
    expect(kv.blockTable(3)).toEqual([RELEASED_BLOCK, RELEASED_BLOCK, RELEASED_BLOCK, kv.blockTable(1)[3], kv.blockTable(1)[4]]);
    kv.reserve(1, 8);
    kv.releaseOutsideWindow(1); // next at 28 attends to 23..: blocks 3, 4 released by 1, still held by 3
    kv.fork(3, 4, 0);
    expect(kv.blockTable(4)).toEqual([]);
    checkInvariants(kv, [1, 3, 4]);
    // a fork releases, for itself, what is outside its own window
    kv.createSequence(5);
    kv.reserve(5, 16);
    kv.fork(5, 6, 16);
    expect(kv.releasedBlocks(5)).toBe(0);
    expect(kv.releasedBlocks(6)).toBe(2); // next at 16 attends to 11..16
    // truncating releases out of the shorter sequence's window... which is never more than before
    kv.truncate(5, 13);
    expect(kv.releasedBlocks(5)).toBe(2); // next at 13 attends to 8..13
    checkInvariants(kv, [1, 3, 4, 5, 6]);
    for (const id of [1, 3, 4, 5, 6]) kv.removeSequence(id);
    expect(kv.pool.usedCount).toBe(0);
  });

  it('refuses a bad window', () => {
    expect(() => cache(4, 4, 64, 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => cache(4, 4, 64, 2.5)).toThrow(KVCacheError);
  });
});
