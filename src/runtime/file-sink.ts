// Runtime adapter: write GGUF files through node:fs (Node, Deno and Bun all provide it).
// Imported lazily so browser bundles never touch node:fs. Chunks are streamed one by one, so a
// large model is never concatenated into one buffer; the file appears under its final name only
// once complete (written beside it, then renamed).
import type { GGUFEntry } from '../gguf/reader.js';
import { encodeGGUF, type GGUFWriteOptions, type GGUFWriteTensor } from '../gguf/writer.js';
import { streamGGUF, type LazyTensor } from '../model/quantize-model.js';

type ChunkWriter = (chunk: Uint8Array) => Promise<void>;

/** Write whatever `fill` produces to a temporary file beside `path`, then rename it into place. */
async function writeFileAtomically(path: string, fill: (write: ChunkWriter) => Promise<void>): Promise<number> {
  const fs = await import('node:fs/promises');
  const tmp = `${path}.partial-${process.pid}-${Date.now()}`;
  const handle = await fs.open(tmp, 'w');
  let bytes = 0;
  try {
    await fill(async (chunk) => {
      let done = 0;
      while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
      bytes += chunk.length;
    });
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw err;
  }
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return bytes;
}

/** A GGUF file from tensors already in memory. */
export async function writeGGUFFile(
  path: string,
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: GGUFWriteTensor[],
  opts: GGUFWriteOptions = {},
): Promise<{ bytes: number }> {
  // Encode (and so validate) before creating anything on disk.
  const chunks = encodeGGUF(metadata, tensors, opts);
  return { bytes: await writeFileAtomically(path, async (write) => { for (const chunk of chunks) await write(chunk); }) };
}

/** A GGUF file from lazy tensors, each produced only when the writer reaches it (quantize, synthesize). */
export async function writeLazyGGUFFile(
  path: string,
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: readonly LazyTensor[],
  opts: GGUFWriteOptions = {},
): Promise<{ bytes: number }> {
  return { bytes: await writeFileAtomically(path, async (write) => { await streamGGUF(metadata, tensors, write, opts); }) };
}
