// The WASM backend's KV cache ops: storeKV into the paged cache, and attention over it.
import { BackendError } from '../errors.js';
import { alibiSlopes, kvCacheTypeProblem, kvElementType, kvRowBytes, type AttentionArgs, type Backend, type KVLayer } from '../backend.js';
import { checkInt, MIN_WORK, type OpContext } from './dispatch.js';
import * as K from './kernels.generated.js';

/** A typed error for a cache type the kernels do not take over heads of headDim values (block types need whole 32-value blocks). */
function checkKVType(layer: KVLayer, headDim: number, what: string): void {
  const problem = kvCacheTypeProblem(layer.type, headDim);
  if (problem) throw new BackendError(problem.code === 'INVALID' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED_TYPE', `${what}: ${problem.message}`);
}

export function attentionOps({ mem, dispatch, scratch, scratchBytes }: OpContext): Pick<Backend, 'storeKV' | 'attention'> {
  return {
    storeKV(layer: KVLayer, k, v, slots, nTokens) {
      checkInt('nTokens', nTokens, 0);
      checkKVType(layer, layer.kvDim, 'storeKV');
      if (nTokens === 0) return;
      const c = dispatch.cmd(K.OP_STORE_KV);
      c.i[K.KV_K_CACHE] = mem.at(layer.k, 'K cache');
      c.i[K.KV_V_CACHE] = mem.at(layer.v, 'V cache');
      c.i[K.KV_TYPE] = kvElementType(layer.type);
      c.i[K.KV_DIM] = layer.kvDim;
      c.i[K.KV_K] = mem.at(k, 'storeKV k', 4 * nTokens * layer.kvDim);
      c.i[K.KV_V] = mem.at(v, 'storeKV v', 4 * nTokens * layer.kvDim);
      c.i[K.KV_SLOTS] = mem.at(slots, 'storeKV slots', 4 * nTokens);
      c.i[K.KV_N_TOKENS] = nTokens;
      const nSlots = Math.floor(Math.min(layer.k.bytes, layer.v.bytes) / kvRowBytes(layer.type, layer.kvDim));
      const mem32 = mem.i32(), sv = c.i[K.KV_SLOTS]! >> 2;
      for (let t = 0; t < nTokens; t++) {
        const slot = mem32[sv + t]!;
        if (slot < 0 || slot >= nSlots) throw new BackendError('INVALID_ARGUMENT', `storeKV: slot ${slot} outside 0..${nSlots - 1}`);
      }
      dispatch.run(2 * nTokens * layer.kvDim, MIN_WORK.elementwise, nTokens);
    },

    attention(a: AttentionArgs) {
      const { nTokens, nHeads, nKvHeads, headDim, layer } = a;
      checkInt('nTokens', nTokens, 0);
      checkInt('nKvHeads', nKvHeads, 1);
      checkInt('headDim', headDim, 1);
      if (nHeads % nKvHeads !== 0) throw new BackendError('INVALID_ARGUMENT', `attention: nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
      if (layer.kvDim !== nKvHeads * headDim) throw new BackendError('INVALID_ARGUMENT', `attention: kvDim ${layer.kvDim} != nKvHeads ${nKvHeads} * headDim ${headDim}`);
      checkKVType(layer, headDim, 'attention');
      if (nTokens === 0) return;
      // Check each token's key range and its block table: the kernel reads the table from
      // firstKey / blockSize on without bounds checks, so every entry it reads must be a block of
      // this cache (entries before it may be released, -1).
      const infoPtr = mem.at(a.tokenInfo, 'attention tokenInfo', 12 * nTokens);
      const tablesPtr = mem.at(a.blockTables, 'attention block tables');
      const mem32 = mem.i32();
      const info = infoPtr >> 2, tables = tablesPtr >> 2, nEntries = a.blockTables.bytes >> 2;
      const nBlocks = Math.floor(Math.min(layer.k.bytes, layer.v.bytes) / (layer.blockSize * kvRowBytes(layer.type, layer.kvDim)));
      let keys = 0;
      for (let t = 0; t < nTokens; t++) {
        const start = mem32[info + 3 * t]!, first = mem32[info + 3 * t + 1]!, end = mem32[info + 3 * t + 2]!;
        if (first < 0 || end < first) throw new BackendError('INVALID_ARGUMENT', `attention: token ${t} has key range [${first}, ${end})`);
        if (end === first) continue;
        const lo = Math.floor(first / layer.blockSize), hi = Math.ceil(end / layer.blockSize);
        if (start < 0 || start + hi > nEntries) throw new BackendError('INVALID_ARGUMENT', `attention: token ${t}'s block table [${start}, ${start + hi}) is outside the ${nEntries} entries`);
        for (let e = lo; e < hi; e++) {
          const block = mem32[tables + start + e]!;
          if (block < 0 || block >= nBlocks) {
            throw new BackendError('INVALID_ARGUMENT', block < 0 ? `attention: token ${t} reads key block ${e}, which was released` : `attention: token ${t}'s block ${block} is outside the cache's ${nBlocks}`);
          }
        }
        keys += end - first;
      }
      // ALiBi's slopes go at the start of the scratch (the shares' scratch after them).
      const slopes = a.alibi ? alibiSlopes(a.alibi.maxBias, nHeads) : undefined;
      const slopesBytes = slopes ? Math.ceil((4 * nHeads) / 64) * 64 : 0;
      const positionsPtr = a.alibi ? mem.at(a.alibi.positions, 'attention ALiBi positions', 4 * nTokens) : 0;
      if (slopes) {
        if (slopesBytes >= scratchBytes) throw new BackendError('INVALID_ARGUMENT', `attention: ${nHeads} heads' ALiBi slopes do not fit the scratch`);
        mem.u8().set(new Uint8Array(slopes.buffer, 0, 4 * nHeads), scratch);
      }
      const c = dispatch.cmd(K.OP_ATTENTION);
      c.i[K.ATTN_Q] = mem.at(a.q, 'attention q', 4 * nTokens * nHeads * headDim);
      c.i[K.ATTN_OUT] = mem.at(a.out, 'attention output', 4 * nTokens * nHeads * headDim);
      c.i[K.ATTN_N_TOKENS] = nTokens;
      c.i[K.ATTN_N_HEADS] = nHeads;
      c.i[K.ATTN_N_KV_HEADS] = nKvHeads;
      c.i[K.ATTN_HEAD_DIM] = headDim;
      // As ggml's flash attention: the score scale folds in 1/softcap, the kernel applies softcap * tanh.
      const softcap = a.softcap ?? 0;
      if (!(softcap >= 0 && Number.isFinite(softcap))) throw new BackendError('INVALID_ARGUMENT', `attention: softcap ${softcap} must be a finite number >= 0`);
      c.f[K.ATTN_SCALE] = softcap > 0 ? Math.fround(a.scale) / Math.fround(softcap) : a.scale;
      c.f[K.ATTN_SOFTCAP] = softcap;
      // An f16 cache follows llama.cpp's flash attention (its default on CPU). Its AVX-512 build
      // rounds as the one-row kernel (f16 Q and V accumulator) when headDim is not a multiple of
      // 16 lanes, at any batch size; otherwise its >= 64-token prefill takes the tiled f32 kernel,
      // which the f32 rounding matches. (Its single-token decode of such heads rounds as the
      // one-row kernel too; results here must not depend on the batch, so prefill wins.)
      const half = layer.type === 'f16' && headDim % 16 !== 0 ? 1 : 0;
      const group = nHeads / nKvHeads;
      // The f32 path works in query tiles: runs of up to ATTN_QUERY_TILE consecutive tokens with one
      // block table (queryTileEnd in attention.ts), each K/V row converted once per tile.
      let tiles = 0;
      for (let t = 0; t < nTokens; tiles++) {
        const table = mem32[info + 3 * t]!;
        const t0 = t;
        for (t++; t < nTokens && t - t0 < K.ATTN_QUERY_TILE && mem32[info + 3 * t] === table; t++);
      }
      // Split decode (flash decoding): when every query tile is one token and the units are too few
      // to keep the threads busy, each unit takes one ATTN_SEGMENT_KEYS segment of its token's keys
      // and a second pass folds the segments in order (the bits do not change: attention.ts).
      const seg = K.ATTN_SEGMENT_KEYS;
      let slots = 0;
      if (!half && tiles === nTokens && dispatch.nThreads > 1 && tiles * nKvHeads < 4 * dispatch.nThreads) {
        for (let t = 0; t < nTokens; t++) {
          const first = mem32[info + 3 * t + 1]!, end = mem32[info + 3 * t + 2]!;
          if (end > first) slots = Math.max(slots, Math.ceil(end / seg) - Math.floor(first / seg));
        }
      }
      // Heads per unit of the f32 path: the whole KV group (K/V converted once for all of them), or
      // one head when that leaves too few units to keep every thread busy (decode of a few tokens
      // over a short range).
      const hpu = slots < 2 && dispatch.nThreads > 1 && tiles * nKvHeads < dispatch.nThreads ? 1 : group;
      // Scratch per share: the f16-rounded query (half), or the f32 path's converted K and V rows plus
      // per tile row the segment's and the folded max and sum, a key tile of scores and the segment's
      // output row, and over a block-type cache the row's query as Q8_0 blocks (attnScratchStride in
      // attention.ts); split, the partials at the end.
      const rows = K.ATTN_QUERY_TILE * hpu;
      const quantK = layer.type === 'q8_0' || layer.type === 'q4_0';
      const perShare = half ? headDim * 4 : Math.ceil(((2 * headDim + rows * (4 + K.ATTN_KEY_TILE + headDim)) * 4 + (quantK ? rows * (headDim / 32) * 34 : 0)) / 64) * 64;
      let partialBytes = slots >= 2 ? nTokens * nHeads * slots * (headDim + 2) * 4 : 0;
      if (Math.floor((scratchBytes - slopesBytes - partialBytes) / perShare) < dispatch.nThreads) partialBytes = 0; // no room: one pass
      if (partialBytes === 0) slots = 0;
      // Scratch is indexed by chunk (at most dispatch.nThreads * CHUNKS_PER_THREAD chunks): a wide
      // query tile (many heads per KV head, large heads) may run on fewer chunks than threads.
      const maxChunks = Math.floor((scratchBytes - slopesBytes - partialBytes) / perShare);
      if (maxChunks < 1) throw new BackendError('INVALID_ARGUMENT', `attention: ${group} heads per KV head of ${headDim} values do not fit the scratch`);
      c.i[K.ATTN_K_CACHE] = mem.at(layer.k, 'K cache');
      c.i[K.ATTN_V_CACHE] = mem.at(layer.v, 'V cache');
      c.i[K.ATTN_KV_TYPE] = kvElementType(layer.type);
      c.i[K.ATTN_BLOCK_SIZE] = layer.blockSize;
      c.i[K.ATTN_KV_DIM] = layer.kvDim;
      c.i[K.ATTN_TOKEN_INFO] = infoPtr;
      c.i[K.ATTN_HALF] = half;
      c.i[K.ATTN_SCRATCH] = scratch + slopesBytes;
      c.i[K.ATTN_ALIBI_SLOPES] = slopes ? scratch : 0;
      c.i[K.ATTN_POSITIONS] = positionsPtr;
      c.i[K.ATTN_HEADS_PER_UNIT] = hpu;
      c.i[K.ATTN_TABLES] = tablesPtr;
      // Work units: (token, head) pairs for the half path, (query tile, KV head, hpu heads) otherwise,
      // and split, each of those per segment slot, then (token, head) pairs folding their segments.
      if (slots > 0) {
        c.i[K.ATTN_PARTIALS] = scratch + scratchBytes - partialBytes;
        c.i[K.ATTN_SEGMENT_SLOTS] = slots;
        c.i[K.ATTN_SPLIT_PHASE] = 1;
        dispatch.run(2 * keys * nHeads * headDim, MIN_WORK.attention, tiles * nKvHeads * (group / hpu) * slots, maxChunks);
        c.i[K.ATTN_SPLIT_PHASE] = 2;
        dispatch.run(3 * nTokens * nHeads * slots * headDim, MIN_WORK.attention, nTokens * nHeads, maxChunks);
        return;
      }
      dispatch.run(2 * keys * nHeads * headDim, MIN_WORK.attention, half ? nTokens * nHeads : tiles * nKvHeads * (group / hpu), maxChunks);
    },

  };
}
