// The origin private file system, shared by the browser model cache and the saved KV states.

export type OPFSDirectory = FileSystemDirectoryHandle & { values(): AsyncIterable<FileSystemHandle> };

/** Directory `name` of this origin's private file system (made if absent), or undefined where there is none. */
export async function opfsDirectory(name: string): Promise<OPFSDirectory | undefined> {
  const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
  if (typeof storage?.getDirectory !== 'function') return undefined;
  return (await (await storage.getDirectory()).getDirectoryHandle(name, { create: true })) as OPFSDirectory;
}

export const NO_OPFS = 'the origin private file system (navigator.storage.getDirectory) is not available here';
