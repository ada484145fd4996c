// Other JavaScript runtimes for tests that run code in them (Deno, Bun as child processes).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../..');

/** A runtime's executable: node_modules/.bin first (npm packages deno, bun), then PATH. */
export function executable(name: string): { path?: string; reason?: string } {
  for (const path of [join(ROOT, 'node_modules/.bin', name), name]) {
    const r = spawnSync(path, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return { path };
  }
  return { reason: `${name} is not installed (npm install --no-save ${name}, or put it on PATH)` };
}
