// The WASM backend's memory: one wasm32 memory (shared with the worker pool when threads > 1), a
// bump allocator over it, tensors as byte ranges of it (buffer 0), and cached views for the host.
import { BackendError } from '../errors.js';
import { tensorBytes, type Tensor } from '../backend.js';
import type { GGMLType } from '../../tensor/ggml-types.js';

export const PAGE = 65536;
export const MAX_BYTES = 2 ** 32; // wasm32

export class WasmMemory {
  private top: number;
  private viewBuf: ArrayBuffer | SharedArrayBuffer | undefined;
  private view8 = new Uint8Array(0);
  private view32 = new Int32Array(0);

  constructor(readonly memory: WebAssembly.Memory, readonly heapBase: number) {
    this.top = heapBase;
  }

  /** Bump-allocate `bytes` (aligned to `align`); grows the memory, OUT_OF_MEMORY past 4 GiB. */
  alloc(bytes: number, align = 64): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new BackendError('INVALID_ARGUMENT', `alloc: bad size ${bytes}`);
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) throw new BackendError('INVALID_ARGUMENT', `alloc: bad alignment ${align}`);
    const ptr = Math.ceil(this.top / align) * align;
    const end = ptr + bytes;
    if (end > MAX_BYTES) {
      throw new BackendError('OUT_OF_MEMORY', `alloc(${bytes}): ${this.top} bytes in use, the request would end at ${end}, past the 4 GiB wasm32 limit (${MAX_BYTES})`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch (e) {
        throw new BackendError('OUT_OF_MEMORY', `alloc(${bytes}): growing memory from ${have} to ${end} bytes failed: ${(e as Error).message}`);
      }
    }
    this.top = end;
    return ptr;
  }

  /** The memory offset of tensor `t`, checked to be `need` allocated bytes of this memory. */
  at(t: Tensor, what: string, need = t.bytes): number {
    if (t.buffer !== 0 || !Number.isSafeInteger(t.offset) || t.offset < this.heapBase || t.offset + need > this.top || need > t.bytes) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: tensor [buffer ${t.buffer}, ${t.offset}..${t.offset + t.bytes}) is not ${need} bytes of this backend's memory`);
    }
    return t.offset;
  }

  tensorAt(ptr: number, type: GGMLType, shape: readonly number[]): Tensor {
    return { buffer: 0, offset: ptr, bytes: tensorBytes(type, shape), type, shape };
  }

  /** A byte view of the whole memory, re-made only when the memory grows. */
  u8(): Uint8Array {
    this.refresh();
    return this.view8;
  }

  /** An i32 view of the whole memory (for checking indices before a kernel reads them). */
  i32(): Int32Array {
    this.refresh();
    return this.view32;
  }

  private refresh(): void {
    const buf = this.memory.buffer;
    if (this.viewBuf !== buf || this.view8.length !== buf.byteLength) {
      this.viewBuf = buf;
      this.view8 = new Uint8Array(buf);
      this.view32 = new Int32Array(buf);
    }
  }
}
