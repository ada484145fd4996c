// Saved KV states (Engine.saveState's bytes) kept in the browser's origin private file system, so a
// page can restore a long prompt's KV after a reload instead of evaluating it again (llama.cpp's
// /slots?action=save|restore, for the browser). The bytes carry their own version and model identity:
// restoring a state of another model is Engine.restoreState's typed STATE_MISMATCH. Files in Node,
// Deno and Bun: write the bytes where you like (writeFile / Deno.writeFile / Bun.write).
import { WasmforgeError } from '../errors.js';
import { NO_OPFS, opfsDirectory, type OPFSDirectory } from './opfs.js';

export type StateStoreErrorCode =
  /** No origin private file system here (Node, an old browser, a context without storage). */
  | 'UNAVAILABLE'
  /** No state saved under that name. */
  | 'NOT_FOUND'
  /** A name that is empty, too long or holds characters a file name cannot. */
  | 'BAD_NAME';

export class StateStoreError extends WasmforgeError<StateStoreErrorCode> {
  override readonly name = 'StateStoreError';
}

const DIR = 'wasmforge-states';
const SUFFIX = '.kvstate';

async function stateDir(): Promise<OPFSDirectory> {
  const dir = await opfsDirectory(DIR);
  if (!dir) throw new StateStoreError('UNAVAILABLE', NO_OPFS);
  return dir;
}

function fileName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200 || /[\/\\\0]/.test(name) || name === '.' || name === '..') {
    throw new StateStoreError('BAD_NAME', `a saved state's name must be 1-200 characters without / \\ or NUL, got ${JSON.stringify(name)}`);
  }
  return name + SUFFIX;
}

/** Keep `bytes` (from Engine.saveState) under `name`, replacing what was there. */
export async function saveStateToOPFS(name: string, bytes: Uint8Array): Promise<void> {
  const file = fileName(name);
  const handle = await (await stateDir()).getFileHandle(file, { create: true });
  const writable = await handle.createWritable();
  try {
    await writable.write(bytes as Uint8Array<ArrayBuffer>);
  } finally {
    await writable.close();
  }
}

/** The bytes saved under `name`, for Engine.restoreState. */
export async function loadStateFromOPFS(name: string): Promise<Uint8Array> {
  const file = fileName(name);
  let handle: FileSystemFileHandle;
  try {
    handle = await (await stateDir()).getFileHandle(file);
  } catch (e) {
    if (e instanceof StateStoreError) throw e;
    throw new StateStoreError('NOT_FOUND', `no saved state named ${JSON.stringify(name)}`);
  }
  return new Uint8Array(await (await handle.getFile()).arrayBuffer());
}

/** The names of the saved states, sorted. */
export async function listSavedStates(): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of (await stateDir()).values()) {
    if (entry.kind === 'file' && entry.name.endsWith(SUFFIX)) names.push(entry.name.slice(0, -SUFFIX.length));
  }
  return names.sort();
}

/** Delete a saved state. Returns whether there was one. */
export async function deleteSavedState(name: string): Promise<boolean> {
  const file = fileName(name);
  try {
    await (await stateDir()).removeEntry(file);
    return true;
  } catch (e) {
    if (e instanceof StateStoreError) throw e;
    return false;
  }
}
