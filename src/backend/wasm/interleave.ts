// Quantized weights with rows interleaved in fours (OP_INTERLEAVE_ROWS in assembly/abi.ts): the
// 4-row matmul kernels then read one sequential stream of blocks instead of four rows hundreds of
// bytes apart, which the CPU's prefetchers follow far better (Q4_0 64000x1536 out of cache:
// 3.8 -> 9.0 GB/s on one AMD EPYC thread, bench/results/2026-12-02-interleaved-weights.md). For
// Q4_0, Q4_1 and Q8_0 the four blocks' f16 heads (scale, min) also go side by side after their
// codes, so the kernels get four scales in one load instead of four loads and three inserts.
// Same bytes, same size, same arithmetic: only their order in memory changes. This registry knows
// which byte ranges are interleaved and checks that every weight view of one lines up with its groups.
import { BackendError } from '../errors.js';
import type { Tensor, WeightTensor } from '../backend.js';
import { GGMLType, typeTraits } from '../../tensor/ggml-types.js';

export interface InterleavedRange {
  readonly offset: number;
  readonly bytes: number;
  readonly type: GGMLType;
  readonly rowBytes: number;
  readonly blockBytes: number;
  /** Bytes of f16 fields at a block's head stored side by side for the group (packedHead in assembly/common.ts). */
  readonly headBytes: number;
}

/** assembly/common.ts packedHead: the kernels read these types' heads side by side. */
function packedHeadBytes(type: GGMLType): number {
  return type === GGMLType.Q4_0 || type === GGMLType.Q8_0 ? 2 : type === GGMLType.Q4_1 ? 4 : 0;
}

/** The range a weight tensor becomes once uploaded, or undefined where it keeps the file's layout. */
export function interleavable(t: Tensor, maxGroupBytes: number): InterleavedRange | undefined {
  const traits = typeTraits(t.type);
  // float types (blocks of one value) have no blocks to group: their kernels read rows whole
  if (!traits || traits.blockSize === 1 || t.shape.length < 2) return undefined;
  // [cols, rows] or a stack of matrices [cols, rows, n] (experts): each matrix whole groups of 4 rows.
  const cols = t.shape[0]!, rows = t.shape[1]!;
  if (cols % traits.blockSize !== 0 || rows % 4 !== 0 || rows === 0) return undefined;
  const rowBytes = (cols / traits.blockSize) * traits.blockBytes;
  if (4 * rowBytes > maxGroupBytes) return undefined;
  return { offset: t.offset, bytes: t.bytes, type: t.type, rowBytes, blockBytes: traits.blockBytes, headBytes: packedHeadBytes(t.type) };
}

export class InterleavedWeights {
  /** Sorted by offset; ranges never overlap (each is one allocation). */
  private readonly ranges: InterleavedRange[] = [];

  add(range: InterleavedRange): void {
    let i = this.ranges.length;
    while (i > 0 && this.ranges[i - 1]!.offset > range.offset) i--;
    this.ranges.splice(i, 0, range);
  }

  /**
   * The part of an interleaved weight that an upload of [offset, offset + bytes) rewrites (to be
   * interleaved again once written), checked to be whole groups of 4 rows; undefined for other memory.
   */
  uploadTarget(offset: number, bytes: number): InterleavedRange | undefined {
    const r = this.find(offset, bytes);
    if (!r) return undefined;
    const group = 4 * r.rowBytes;
    if ((offset - r.offset) % group !== 0 || bytes % group !== 0 || offset + bytes > r.offset + r.bytes) {
      throw new BackendError('INVALID_ARGUMENT', `upload: a weight is written in whole groups of 4 rows (${group} bytes); got ${bytes} bytes at +${offset - r.offset}`);
    }
    return { ...r, offset, bytes };
  }

  /** The interleaved range overlapping [offset, offset + bytes), if any. */
  find(offset: number, bytes: number): InterleavedRange | undefined {
    const r = this.ranges;
    let lo = 0, hi = r.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, m = r[mid]!;
      if (m.offset + m.bytes <= offset) lo = mid + 1;
      else if (m.offset >= offset + Math.max(bytes, 1)) hi = mid - 1;
      else return m;
    }
    return undefined;
  }

  /** 1 when matmul / getRows must read `w` interleaved (a view of whole groups), 0 when it is in the file's layout. */
  layoutOf(w: WeightTensor, what: string): 0 | 1 {
    const r = this.find(w.offset, w.rows * w.rowBytes);
    if (!r) return 0;
    const group = 4 * r.rowBytes;
    if (w.rowBytes !== r.rowBytes || (w.offset - r.offset) % group !== 0 || w.rows % 4 !== 0 || w.offset + w.rows * w.rowBytes > r.offset + r.bytes) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: a view of an interleaved weight must cover whole groups of 4 rows of ${r.rowBytes} bytes (got ${w.rows} rows of ${w.rowBytes} bytes at +${w.offset - r.offset})`);
    }
    return 1;
  }
}

/** The file's layout of interleaved bytes (the inverse of OP_INTERLEAVE_ROWS), for read(). */
export function deinterleave(src: Uint8Array, r: InterleavedRange): Uint8Array {
  const out = new Uint8Array(src.length);
  const group = 4 * r.rowBytes, nb = r.rowBytes / r.blockBytes, bb = r.blockBytes, hb = r.headBytes, cb = bb - hb;
  for (let g = 0; g < src.length; g += group) {
    for (let b = 0; b < nb; b++) {
      const from = g + 4 * b * bb;
      for (let k = 0; k < 4; k++) {
        const to = g + k * r.rowBytes + b * bb;
        out.set(src.subarray(from + k * cb, from + (k + 1) * cb), to + hb);
        for (let f = 0; f < hb; f += 2) {
          const head = from + 4 * cb + 4 * f + 2 * k;
          out.set(src.subarray(head, head + 2), to + f);
        }
      }
    }
  }
  return out;
}
