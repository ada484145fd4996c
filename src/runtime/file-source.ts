// Runtime adapter: local files through node:fs, which Node, Deno and Bun all provide.
// Imported lazily so browser bundles never touch node:fs.
import { ByteSourceError, checkRange, type ByteSource } from '../io/byte-source.js';

export async function fileSource(path: string): Promise<ByteSource> {
  const fs = await import('node:fs/promises');
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new ByteSourceError('NOT_FOUND', `${path}: no such file`, { cause: err });
    throw new ByteSourceError('UNREADABLE', `${path}: cannot be opened (${code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'a directory, not a file' : code ?? (err as Error).message})`, { cause: err });
  }
  const { size } = await handle.stat();
  let closed = false;
  return {
    size,
    name: path,
    async readInto(offset, dest) {
      checkRange({ size, name: path }, offset, dest.length);
      let filled = 0;
      while (filled < dest.length) {
        const { bytesRead } = await handle.read(dest, filled, dest.length - filled, offset + filled);
        if (bytesRead === 0) throw new ByteSourceError('SHORT_READ', `${path}: file ended at ${offset + filled}`);
        filled += bytesRead;
      }
    },
    async close() {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    },
  };
}
