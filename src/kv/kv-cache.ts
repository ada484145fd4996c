// Paged KV cache: per-layer K/V block storage in backend memory, and per-sequence block tables.
// A sequence's position p lives in slot blockTable[p / blockSize] * blockSize + p % blockSize.
// Positions advance exactly once per token, in reserve(); a failed reserve changes nothing.
// Sequences may share blocks (fork, prefix reuse): a shared block is never written; the first
// write into a partly filled shared block copies it first (copy on write).
//
// Sliding-window models (options.slidingWindow = W): a token at position p attends to keys
// max(0, p + 1 - W)..p, so once a sequence's next position is P, keys before P + 1 - W are never
// read again. releaseOutsideWindow() gives back the leading blocks that hold only such keys: their
// block-table entries become RELEASED_BLOCK (-1) and a sequence then holds about W + one block of
// positions however long it grows. Such a sequence can no longer be cut or forked to a length
// whose window reaches into the released blocks (OUTSIDE_WINDOW).
//
// Context overflow is a CONTEXT_FULL error, never a silent wrap: positions past the context
// length are refused, windowed or not (a model is not trained for positions beyond it).
import { kvCacheTypeProblem, kvElementType, kvRowBytes, rowsPerPart, type Backend, type BackendCapabilities, type KVCacheType, type KVLayer } from '../backend/backend.js';
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
  /** Values per head (default kvDim): block types (q8_0, q4_0) need whole blocks per head. */
  headDim?: number;
  /** Longest sequence the model supports (context length). */
  maxSequenceLength: number;
  /** Sliding-window attention: a token attends to at most this many keys, itself included. */
  slidingWindow?: number;
}

/** Block-table entry of a block released because every key in it fell out of the sliding window. */
export const RELEASED_BLOCK = -1;

/** A pool size given either in bytes of K/V storage or in tokens. */
export type KVBudget = { bytes: number; tokens?: undefined } | { tokens: number; bytes?: undefined };

interface Sequence {
  /** One entry per blockSize positions; the first `released` entries are RELEASED_BLOCK. */
  blocks: number[];
  length: number;
  released: number;
}

export class KVCache {
  readonly layers: KVLayer[];
  readonly pool: BlockPool;
  private readonly sequences = new Map<number, Sequence>();

  static bytesNeeded(o: Pick<KVCacheOptions, 'nLayers' | 'kvDim' | 'blockSize' | 'nBlocks' | 'type'>): number {
    return 2 * o.nLayers * o.nBlocks * o.blockSize * kvRowBytes(o.type, o.kvDim);
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

  /** Most blocks a pool holds on a backend: each layer's K (and V) in at most kvParts tensors of at most maxTensorBytes. */
  static maxBlocks(o: Pick<KVCacheOptions, 'kvDim' | 'blockSize' | 'type'>, caps: Pick<BackendCapabilities, 'maxTensorBytes' | 'kvParts'>): number {
    return Math.floor((caps.kvParts * rowsPerPart(kvRowBytes(o.type, o.kvDim), caps.maxTensorBytes)) / o.blockSize);
  }

  /**
   * Most blocks a sequence under a sliding window of `window` keys holds right after reserving
   * `chunk` positions, its out-of-window blocks released before: the chunk and the window's
   * window - 1 earlier keys, plus one block for where they start inside a block.
   */
  static windowBlocks(window: number, blockSize: number, chunk: number): number {
    return Math.ceil((window - 1 + chunk) / blockSize) + 1;
  }

  constructor(private readonly backend: Backend, readonly options: KVCacheOptions) {
    const { nLayers, kvDim, blockSize, nBlocks, type, slidingWindow } = options;
    const problem = kvCacheTypeProblem(type, options.headDim ?? kvDim, backend.capabilities?.kvTypes);
    if (problem) throw new KVCacheError(problem.code === 'INVALID' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED', problem.message);
    if (slidingWindow !== undefined && (!Number.isInteger(slidingWindow) || slidingWindow < 1)) {
      throw new KVCacheError('INVALID_ARGUMENT', `sliding window must be an integer >= 1, got ${slidingWindow}`);
    }
    // checked before any layer is allocated (the backend never gives memory back)
    const caps = backend.capabilities ?? { maxTensorBytes: Infinity, kvParts: 1 };
    const most = KVCache.maxBlocks(options, caps);
    if (nBlocks > most) {
      throw new KVCacheError('TOO_LARGE', `a KV pool of ${nBlocks * blockSize} tokens takes ${nBlocks * blockSize * kvRowBytes(type, kvDim)} bytes per layer for K (and V), more than ${backend.name} holds in ${caps.kvParts} tensor(s) of at most ${caps.maxTensorBytes} bytes: it holds at most ${most * blockSize} tokens`);
    }
    this.pool = new BlockPool(nBlocks);
    this.layers = [];
    const elementType = kvElementType(type);
    for (let l = 0; l < nLayers; l++) {
      const shape = [kvDim, nBlocks * blockSize];
      this.layers.push({ k: backend.allocate(elementType, shape), v: backend.allocate(elementType, shape), type, blockSize, kvDim });
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

  /** The block table; entries of released blocks (sliding window) are RELEASED_BLOCK. */
  blockTable(id: number): readonly number[] {
    return this.seq(id).blocks;
  }

  /** Leading blocks of a sequence released because they fell out of the sliding window. */
  releasedBlocks(id: number): number {
    return this.seq(id).released;
  }

  /** Blocks a sequence holds (its block table less the released entries). */
  heldBlocks(id: number): number {
    const s = this.seq(id);
    return s.blocks.length - s.released;
  }

  /** First key a token at `position` attends to: 0, or the oldest key inside the sliding window. */
  firstKey(position: number): number {
    const w = this.options.slidingWindow;
    return w === undefined ? 0 : Math.max(0, position + 1 - w);
  }

  /**
   * Whether sequence id can be cut (truncate) or forked to `length` positions: the keys the token
   * at position `length` would attend to must still be held.
   */
  canShorten(id: number, length: number): boolean {
    const s = this.seq(id);
    return Number.isInteger(length) && length >= 0 && length <= s.length && (length === 0 || s.released * this.blockSize <= this.firstKey(length));
  }

  createSequence(id: number): void {
    if (this.sequences.has(id)) throw new KVCacheError('INVALID_ARGUMENT', `sequence ${id} already exists`);
    this.sequences.set(id, { blocks: [], length: 0, released: 0 });
  }

  /**
   * New sequence `dst` sharing the first `length` positions of `src` (default: all of them):
   * their blocks are retained, not copied, except blocks already out of dst's window. Needs no
   * free block. OUTSIDE_WINDOW when src released keys that position `length` would attend to.
   */
  fork(src: number, dst: number, length?: number): void {
    const s = this.seq(src);
    const n = length ?? s.length;
    if (!Number.isInteger(n) || n < 0 || n > s.length) throw new KVCacheError('INVALID_ARGUMENT', `cannot fork ${n} positions of sequence ${src} (length ${s.length})`);
    if (this.sequences.has(dst)) throw new KVCacheError('INVALID_ARGUMENT', `sequence ${dst} already exists`);
    this.checkShorten(src, n);
    const blocks = s.blocks.slice(0, Math.ceil(n / this.blockSize));
    const released = this.deadBlocks(n);
    blocks.fill(RELEASED_BLOCK, 0, released);
    for (let i = released; i < blocks.length; i++) this.pool.retain(blocks[i]);
    this.sequences.set(dst, { blocks, length: n, released });
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
    for (let i = s.released; i < s.blocks.length; i++) this.pool.release(s.blocks[i]);
    this.sequences.delete(id);
  }

  /**
   * Forget positions from `length` on (e.g. to re-evaluate a prompt suffix); releases whole blocks
   * past it, and with a sliding window those out of the window at `length`. OUTSIDE_WINDOW when
   * the sequence released keys that position `length` would attend to.
   */
  truncate(id: number, length: number): void {
    const s = this.seq(id);
    if (!Number.isInteger(length) || length > s.length || length < 0) throw new KVCacheError('INVALID_ARGUMENT', `cannot truncate sequence ${id} of ${s.length} to ${length}`);
    this.checkShorten(id, length);
    const keep = Math.ceil(length / this.blockSize);
    const dropped = s.blocks.splice(keep);
    for (let i = Math.max(0, s.released - keep); i < dropped.length; i++) this.pool.release(dropped[i]);
    s.released = Math.min(s.released, keep);
    s.length = length;
    this.releaseOutsideWindow(id);
  }

  /**
   * Sliding window: release the sequence's leading blocks that only hold keys no later token
   * attends to (positions before firstKey(length)); their entries become RELEASED_BLOCK and
   * blocks other sequences share stay alive for them. Returns how many blocks it released; never
   * any without a window. Call it between forward passes: a batch being evaluated may still need
   * keys its earliest token attends to.
   */
  releaseOutsideWindow(id: number): number {
    const s = this.seq(id);
    const dead = this.deadBlocks(s.length);
    const n = dead - s.released;
    for (let i = s.released; i < dead; i++) {
      this.pool.release(s.blocks[i]);
      s.blocks[i] = RELEASED_BLOCK;
    }
    s.released = Math.max(s.released, dead);
    return Math.max(0, n);
  }

  /**
   * Most free blocks sequence id takes at one time while it advances n positions in reserves of
   * at most `chunk`, releasing out-of-window blocks between them: blocksNeeded(id, n) without a
   * sliding window; with one, no more than windowBlocks (it never holds more).
   */
  peakBlocksNeeded(id: number, n: number, chunk: number): number {
    const exact = this.blocksNeeded(id, n);
    const w = this.options.slidingWindow;
    return w === undefined ? exact : Math.min(exact, KVCache.windowBlocks(w, this.blockSize, Math.max(1, Math.min(n, chunk))));
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

  /** Leading blocks that hold only keys a token at position `length` or later never attends to. */
  private deadBlocks(length: number): number {
    return Math.floor(this.firstKey(length) / this.blockSize);
  }

  private checkShorten(id: number, length: number): void {
    if (!this.canShorten(id, length)) {
      throw new KVCacheError('OUTSIDE_WINDOW', `sequence ${id} released its first ${this.seq(id).released * this.blockSize} positions (sliding window ${this.options.slidingWindow}); a token at position ${length} would attend to some of them`);
    }
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
