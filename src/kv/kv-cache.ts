// Paged KV cache: per-layer K/V block storage in backend memory, and per-sequence block tables.
// A sequence's position p lives in slot blockTable[p / blockSize] * blockSize + p % blockSize.
// Positions advance exactly once per token, in reserve(); a failed reserve changes nothing.
import type { Backend, KVCacheType, KVLayer } from '../backend/backend.js';
import { BlockPool } from './block-pool.js';
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

  constructor(backend: Backend, readonly options: KVCacheOptions) {
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
    const needBlocks = Math.ceil((s.length + n) / this.blockSize) - s.blocks.length;
    if (needBlocks > 0) s.blocks.push(...this.pool.allocate(needBlocks));
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

  private seq(id: number): Sequence {
    const s = this.sequences.get(id);
    if (!s) throw new KVCacheError('UNKNOWN_SEQUENCE', `no sequence ${id} in the KV cache`);
    return s;
  }
}
