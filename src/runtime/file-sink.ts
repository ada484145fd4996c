// Runtime adapter: write a GGUF file through node:fs (Node, Deno and Bun all provide it).
// Imported lazily so browser bundles never touch node:fs. Chunks are streamed one by one, so a
// large model is never concatenated into one buffer; the file appears under its final name only
// once complete (written beside it, then renamed).
import type { GGUFEntry } from '../gguf/reader.js';
import { encodeGGUF, type GGUFWriteOptions, type GGUFWriteTensor } from '../gguf/writer.js';

export async function writeGGUFFile(
  path: string,
  metadata: Iterable<[string, GGUFEntry]>,
  tensors: GGUFWriteTensor[],
  opts: GGUFWriteOptions = {},
): Promise<{ bytes: number }> {
  // Encode (and so validate) before creating anything on disk.
  const chunks = encodeGGUF(metadata, tensors, opts);
  const fs = await import('node:fs/promises');
  const tmp = `${path}.partial-${process.pid}-${Date.now()}`;
  const handle = await fs.open(tmp, 'w');
  let bytes = 0;
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
      bytes += chunk.length;
    }
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
  return { bytes };
}
