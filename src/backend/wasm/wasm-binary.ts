// Just enough of the wasm binary format to read and rewrite the kernels' memory import: the
// modules are built importing a *shared* memory; the single-thread path (no SharedArrayBuffer)
// needs the same code importing a non-shared one, which differs only in the limits flag byte.

export interface MemoryImport {
  /** Byte offset of the limits flag (bit 0: has maximum, bit 1: shared). */
  readonly flagOffset: number;
  readonly shared: boolean;
  readonly minPages: number;
  readonly maxPages: number | undefined;
}

function readLeb(bytes: Uint8Array<ArrayBuffer>, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++]!;
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7;
  }
}

function skipName(bytes: Uint8Array<ArrayBuffer>, pos: number): number {
  const [len, next] = readLeb(bytes, pos);
  return next + len;
}

function readLimits(bytes: Uint8Array<ArrayBuffer>, pos: number): { flag: number; min: number; max?: number; next: number } {
  const flag = bytes[pos]!;
  let [min, next] = readLeb(bytes, pos + 1);
  let max: number | undefined;
  if (flag & 1) [max, next] = readLeb(bytes, next);
  return { flag, min, max, next };
}

/** The module's imported memory, or undefined when it imports none. */
export function findMemoryImport(bytes: Uint8Array<ArrayBuffer>): MemoryImport | undefined {
  let pos = 8; // magic + version
  while (pos < bytes.length) {
    const id = bytes[pos]!;
    const [size, start] = readLeb(bytes, pos + 1);
    if (id === 2) {
      let [count, p] = readLeb(bytes, start);
      for (; count > 0; count--) {
        p = skipName(bytes, skipName(bytes, p));
        const kind = bytes[p++]!;
        if (kind === 0) p = readLeb(bytes, p)[1];
        else if (kind === 1) p = readLimits(bytes, p + 1).next;
        else if (kind === 2) {
          const l = readLimits(bytes, p);
          return { flagOffset: p, shared: (l.flag & 2) !== 0, minPages: l.min, maxPages: l.max };
        } else if (kind === 3) p += 2;
        else return undefined;
      }
      return undefined;
    }
    pos = start + size;
  }
  return undefined;
}

/** A copy of the module whose memory import is not shared (atomics stay valid on it). */
export function withUnsharedMemory(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const mem = findMemoryImport(bytes);
  if (!mem || !mem.shared) return bytes;
  const copy = bytes.slice();
  copy[mem.flagOffset] = copy[mem.flagOffset]! & ~2;
  return copy;
}

/** Base64 to bytes with the one decoder every runtime has (atob). */
export function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
