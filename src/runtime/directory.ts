// Runtime adapter: whether a local path (or file: URL) is a directory (a Hugging Face model
// directory), through node:fs. Imported lazily so browser bundles never touch node:fs.

/** The path of the directory `pathOrFileUrl` names; undefined when it is not one (or does not exist). */
export async function localDirectory(pathOrFileUrl: string): Promise<string | undefined> {
  const fs = await import('node:fs/promises');
  const path = /^file:/i.test(pathOrFileUrl) ? (await import('node:url')).fileURLToPath(pathOrFileUrl) : pathOrFileUrl;
  try {
    return (await fs.stat(path)).isDirectory() ? path : undefined;
  } catch {
    return undefined;
  }
}
