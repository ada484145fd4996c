// Runtime adapter: whether a local path is a directory (a Hugging Face model directory), through
// node:fs. Imported lazily so browser bundles never touch node:fs.

/** Whether `path` is a directory (false when it does not exist or cannot be read). */
export async function isDirectory(path: string): Promise<boolean> {
  const fs = await import('node:fs/promises');
  try {
    return (await fs.stat(path)).isDirectory();
  } catch {
    return false;
  }
}
