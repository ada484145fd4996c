// Split GGUF files (llama.cpp's gguf-split: model-00001-of-00003.gguf ...): the parts are read and
// checked as one set, and become one GGUFFile over one virtual byte source (the parts end to end),
// so everything after loading sees a single file. Each part is untrusted on its own (readGGUF), and
// so is the set: every part must be there, say it belongs (split.no / split.count), and the parts
// together must hold the tensors the first one announces, none twice.
import type { ByteSource } from '../io/byte-source.js';
import { checkRange } from '../io/byte-source.js';
import { GGUFError } from './errors.js';
import { getCount, has } from './metadata.js';
import { readGGUF, type GGUFFile, type GGUFTensorInfo } from './reader.js';

export const SPLIT_COUNT = 'split.count';
export const SPLIT_NO = 'split.no';
export const SPLIT_TENSORS = 'split.tensors.count';

/** The most parts a set may have (gguf-split numbers them with 5 digits). */
const MAX_PARTS = 99_999;

/** llama.cpp's part name: the first part's name with its -00001-of-0000N.gguf numbering changed; undefined if it has none. */
export function splitPartName(firstName: string, no: number, count: number): string | undefined {
  const m = /-(\d{5})-of-(\d{5})\.gguf$/.exec(firstName);
  if (!m) return undefined;
  return `${firstName.slice(0, m.index)}-${String(no + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.gguf`;
}

/**
 * A GGUF file, or the whole set when it is the first part of a split: `openPart(no, count)` opens
 * part `no` (0-based) for the rest. Returns the file and the source its tensor offsets point into.
 */
export async function readGGUFSet(first: ByteSource, openPart: (no: number, count: number) => Promise<ByteSource>): Promise<{ file: GGUFFile; source: ByteSource }> {
  const head = await readGGUF(first);
  if (!has(head.metadata, SPLIT_COUNT)) return { file: head, source: first };
  const count = getCount(head.metadata, SPLIT_COUNT, { min: 1, max: MAX_PARTS });
  const no = getCount(head.metadata, SPLIT_NO, { min: 0, max: MAX_PARTS });
  if (no !== 0) throw new GGUFError('INVALID_VALUE', `${first.name} is part ${no + 1} of a ${count}-part split model: load its first part`);
  if (count === 1) return { file: head, source: first };
  const parts: { source: ByteSource; file: GGUFFile }[] = [{ source: first, file: head }];
  try {
    for (let k = 1; k < count; k++) {
      let source: ByteSource;
      try {
        source = await openPart(k, count);
      } catch (err) {
        throw new GGUFError('MISSING_SPLIT_PART', `part ${k + 1} of ${count} of ${first.name} could not be opened: ${(err as Error)?.message ?? err}`, { cause: err });
      }
      parts.push({ source, file: undefined as unknown as GGUFFile });
      const file = await readGGUF(source);
      parts[k]!.file = file;
      const theirCount = has(file.metadata, SPLIT_COUNT) ? getCount(file.metadata, SPLIT_COUNT, { min: 1, max: MAX_PARTS }) : undefined;
      const theirNo = has(file.metadata, SPLIT_NO) ? getCount(file.metadata, SPLIT_NO, { min: 0, max: MAX_PARTS }) : undefined;
      if (theirCount !== count || theirNo !== k) {
        throw new GGUFError('SPLIT_MISMATCH', `${source.name} is not part ${k + 1} of ${count} of ${first.name} (it says ${theirNo === undefined ? 'nothing about a split' : `part ${theirNo + 1} of ${theirCount}`})`);
      }
    }
    return merge(parts, head);
  } catch (err) {
    for (const p of parts.slice(1)) await p.source.close();
    throw err;
  }
}

function merge(parts: { source: ByteSource; file: GGUFFile }[], head: GGUFFile): { file: GGUFFile; source: ByteSource } {
  const tensors: GGUFTensorInfo[] = [];
  const byName = new Map<string, GGUFTensorInfo>();
  let base = 0;
  for (const { source, file } of parts) {
    for (const t of file.tensors) {
      if (byName.has(t.name)) throw new GGUFError('DUPLICATE_TENSOR', `tensor "${t.name}" is in more than one part (again in ${source.name})`);
      const moved = { ...t, fileOffset: base + t.fileOffset };
      tensors.push(moved);
      byName.set(t.name, moved);
    }
    base += source.size;
  }
  if (has(head.metadata, SPLIT_TENSORS)) {
    const want = getCount(head.metadata, SPLIT_TENSORS, { min: 0, max: Number.MAX_SAFE_INTEGER });
    if (want !== tensors.length) throw new GGUFError('SPLIT_MISMATCH', `${parts[0]!.source.name}: the split announces ${want} tensors, its ${parts.length} parts hold ${tensors.length}`);
  }
  const source = concatSources(parts.map((p) => p.source));
  return { file: { ...head, tensors, tensorsByName: byName, fileSize: source.size }, source };
}

/** Sources read as one, end to end (a read may span parts). */
export function concatSources(parts: readonly ByteSource[]): ByteSource {
  const starts: number[] = [];
  let size = 0;
  for (const p of parts) {
    starts.push(size);
    size += p.size;
  }
  const name = `${parts[0]!.name} (+${parts.length - 1} parts)`;
  return {
    size,
    name,
    async readInto(offset, dest) {
      checkRange({ size, name }, offset, dest.length);
      let done = 0;
      for (let k = 0; k < parts.length && done < dest.length; k++) {
        const start = starts[k]!, end = start + parts[k]!.size;
        const at = offset + done;
        if (at >= end) continue;
        const n = Math.min(end - at, dest.length - done);
        await parts[k]!.readInto(at - start, dest.subarray(done, done + n));
        done += n;
      }
    },
    async close() {
      for (const p of parts) await p.close();
    },
  };
}
