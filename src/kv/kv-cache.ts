// Paged KV cache: per-layer K/V block storage in backend memory, and per-sequence block tables.
// A sequence's position p lives in slot blockTable[p / blockSize] * blockSize + p % blockSize.
// Positions advance exactly once per token, in reserve(); a failed reserve changes nothing.
// Sequences may share blocks (fork, prefix reuse): a shared block is never written; the first
// write into a partly filled shared block copies it first (copy on write).
//
// Context overflow is a CONTEXT_FULL error, never a silent wrap. There is no context shift: the
// graph's attention has no sliding-window mask, and dropping old positions without one would
// change what every later token attends to.
import type { Backend, KVCacheType, KVLayer } from '../backend/backend.js';
import { BlockPool } from './block-pool.js';
import { copyBlockRows } from './copy-block.js';
import { KVCacheError } from './errors.js';

export interface KVCacheOptions {
  nLayers: number;
  kvDim: number;
  /** Tokens per block. */
  blockSize: number;
  nBlocks: number;
  type: KVCacheType;
  /** Longest sequence the model supports (context length). */
  maxSequenceLength: number;
}

/** A pool size given either in bytes of K/V storage or in tokens. */
export type KVBudget = { bytes: number; tokens?: undefined } | { tokens: number; bytes?: undefined };

interface Sequence {
  blocks: number[];
  length: number;
}

export class KVCache {
  readonly layers: KVLayer[];
  readonly pool: BlockPool;
  private readonly sequences = new Map<number, Sequence>();

  static bytesNeeded(o: Pick<KVCacheOptions, 'nLayers' | 'kvDim' | 'blockSize' | 'nBlocks' | 'type'>): number {
    return 2 * o.nLayers * o.nBlocks * o.blockSize * o.kvDim * (o.type === 'f16' ? 2 : 4);
  }

  /** How many blocks a budget buys (bytes round down, tokens round up); at least one. */
  static blocksForBudget(o: Pick<KVCacheOptions, 'nLayers' | 'kvDim' | 'blockSize' | 'type'>, budget: KVBudget): number {
    const bad = (what: string) => new KVCacheError('INVALID_ARGUMENT', what);
    if (!Number.isInteger(o.blockSize) || o.blockSize < 1) throw bad(`block size must be an integer >= 1, got ${o.blockSize}`);
    if (budget.bytes !== undefined) {
      if (!(budget.bytes > 0) || !Number.isFinite(budget.bytes)) throw bad(`KV budget must be a positive number of bytes, got ${budget.bytes}`);
      const n = Math.floor(budget.bytes / KVCache.bytesNeeded({ ...o, nBlocks: 1 }));
      if (n < 1) throw bad(`a KV budget of ${budget.bytes} bytes holds no block of ${o.blockSize} tokens`);
      return n;
    }
    if (!Number.isInteger(budget.tokens) || budget.tokens < 1) throw bad(`KV budget must be an integer >= 1 of tokens, got ${budget.tokens}`);
    return Math.ceil(budget.tokens / o.blockSize);
  }

  constructor(private readonly backend: Backend, readonly options: KVCacheOptions) {
    const { nLayers, kvDim, blockSize, nBlocks, type } = options;
    const layerBytes = nBlocks * blockSize * kvDim * (type === 'f16' ? 2 : 4);
    this.pool = new BlockPool(nBlocks);
    this.layers = [];
    for (let l = 0; l < nLayers; l++) {
      this.layers.push({ kPtr: backend.alloc(layerBytes), vPtr: backend.alloc(layerBytes), type, blockSize, kvDim });
    }
  }

  get blockSize(): number {
    return this.options.blockSize;
  }

  /** Tokens the whole pool holds. */
  get capacityTokens(): number {
    return this.options.nBlocks * this.options.blockSize;
  }

  sequenceIds(): IterableIterator<number> {
    return this.sequences.keys();
  }

  hasSequence(id: number): boolean {
    return this.sequences.has(id);
  }

  sequenceLength(id: number): number {
    return this.seq(id).length;
  }

  blockTable(id: number): readonly number[] {
    return this.seq(id).blocks;
  }

  createSequence(id: number): void {
    if (this.sequences.has(id)) throw new KVCacheError('INVALID_ARGUMENT', `sequence ${id} already exists`);
    this.sequences.set(id, { blocks: [], length: 0 });
  }

  /**
   * New sequence `dst` sharing the first `length` positions of `src` (default: all of them):
   * their blocks are retained, not copied. Needs no free block.
   */
  fork(src: number, dst: number, length?: number): void {
    const s = this.seq(src);
    const n = length ?? s.length;
    if (!Number.isInteger(n) || n < 0 || n > s.length) throw new KVCacheError('INVALID_ARGUMENT', `cannot fork ${n} positions of sequence ${src} (length ${s.length})`);
    if (this.sequences.has(dst)) throw new KVCacheError('INVALID_ARGUMENT', `sequence ${dst} already exists`);
    const blocks = s.blocks.slice(0, Math.ceil(n / this.blockSize));
    for (const b of blocks) this.pool.retain(b);
    this.sequences.set(dst, { blocks, length: n });
  }

  /** Free blocks reserve(id, n) would take: new blocks, plus one copy if the next write lands in a shared block. */
  blocksNeeded(id: number, n: number): number {
    const s = this.seq(id);
    if (n <= 0) return 0;
    return Math.max(0, Math.ceil((s.length + n) / this.blockSize) - s.blocks.length) + (this.sharedTail(s) ? 1 : 0);
  }

  /** Drop a sequence and release its blocks. */
  removeSequence(id: number): void {
    const s = this.seq(id);
    for (const b of s.blocks) this.pool.release(b);
    this.sequences.delete(id);
  }

  /** Forget positions from `length` on (e.g. to re-evaluate a prompt suffix); releases whole blocks past it. */
  truncate(id: number, length: number): void {
    const s = this.seq(id);
    if (length > s.length || length < 0) throw new KVCacheError('INVALID_ARGUMENT', `cannot truncate sequence ${id} of ${s.length} to ${length}`);
    const keep = Math.ceil(length / this.blockSize);
    for (const b of s.blocks.splice(keep)) this.pool.release(b);
    s.length = length;
  }

  /**
   * Reserve the next n positions of a sequence and return their slot indices. All or nothing:
   * if blocks run out or the context is full, the sequence is unchanged.
   */
  reserve(id: number, n: number): { positions: number[]; slots: number[] } {
    const s = this.seq(id);
    if (s.length + n > this.options.maxSequenceLength) {
      throw new KVCacheError('CONTEXT_FULL', `sequence ${id}: ${s.length} + ${n} tokens exceeds the context of ${this.options.maxSequenceLength}`);
    }
    // Everything that can fail happens before the sequence changes.
    const fresh = this.pool.allocate(this.blocksNeeded(id, n));
    if (n > 0 && this.sharedTail(s)) {
      const last = s.blocks.length - 1, shared = s.blocks[last], copy = fresh.shift()!;
      copyBlockRows(this.backend, this.layers, shared, copy, s.length % this.blockSize);
      s.blocks[last] = copy;
      this.pool.release(shared);
    }
    s.blocks.push(...fresh);
    const positions: number[] = [];
    const slots: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = s.length + i;
      positions.push(p);
      slots.push(s.blocks[Math.floor(p / this.blockSize)] * this.blockSize + (p % this.blockSize));
    }
    s.length += n;
    return { positions, slots };
  }

  /** The next write lands in a partly filled block that another sequence also holds. */
  private sharedTail(s: Sequence): boolean {
    return s.length % this.blockSize !== 0 && this.pool.refCount(s.blocks[s.blocks.length - 1]) > 1;
  }

  private seq(id: number): Sequence {
    const s = this.sequences.get(id);
    if (!s) throw new KVCacheError('UNKNOWN_SEQUENCE', `no sequence ${id} in the KV cache`);
    return s;
  }
}
