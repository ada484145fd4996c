// A fixed pool of KV blocks with reference counts. Blocks are the unit of sharing: a block
// referenced by several sequences (shared prefix, fork) is freed when the last one lets go.
import { KVCacheError } from './errors.js';

export class BlockPool {
  private readonly refCounts: Int32Array;
  private readonly freeList: number[] = [];

  constructor(readonly nBlocks: number) {
    if (!Number.isInteger(nBlocks) || nBlocks < 1) throw new KVCacheError('INVALID_ARGUMENT', `block count must be >= 1, got ${nBlocks}`);
    this.refCounts = new Int32Array(nBlocks);
    // Hand out low ids first: keeps the used part of the cache compact.
    for (let b = nBlocks - 1; b >= 0; b--) this.freeList.push(b);
  }

  get freeCount(): number {
    return this.freeList.length;
  }

  get usedCount(): number {
    return this.nBlocks - this.freeList.length;
  }

  /** The free list (a copy), for consistency checks. */
  freeBlocks(): number[] {
    return [...this.freeList];
  }

  refCount(block: number): number {
    return this.refCounts[block];
  }

  /** Take n fresh blocks (ref count 1), all or nothing. */
  allocate(n: number): number[] {
    if (n > this.freeList.length) {
      throw new KVCacheError('OUT_OF_BLOCKS', `need ${n} KV blocks, ${this.freeList.length} of ${this.nBlocks} free`);
    }
    const out = this.freeList.splice(this.freeList.length - n, n).reverse();
    for (const b of out) this.refCounts[b] = 1;
    return out;
  }

  retain(block: number): void {
    if (this.refCounts[block] < 1) throw new KVCacheError('INVALID_ARGUMENT', `retain of free block ${block}`);
    this.refCounts[block]++;
  }

  release(block: number): void {
    if (this.refCounts[block] < 1) throw new KVCacheError('INVALID_ARGUMENT', `release of free block ${block}`);
    if (--this.refCounts[block] === 0) this.freeList.push(block);
  }
}
