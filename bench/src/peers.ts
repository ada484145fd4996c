// Finding (and on first use installing) the peers the bench compares against. node-llama-cpp is a devDependency
// of the repo; playwright-core and @wllama/wllama are installed on demand into bench/.cache/peers with npm, so
// the repo does not need them to build or test. A peer that cannot be found or installed is skipped with a message.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PEERS_DIR, ROOT } from './paths.js';

/** Versions installed on demand (wllama 2.3.7: its wasm32 build is the faster one here, see shared/notes/peers.md). */
export const PEER_VERSIONS: Record<string, string> = { 'playwright-core': '1.65.1', '@wllama/wllama': '2.3.7' };

/** The entry file of `name` as resolved from the repo, else from bench/.cache/peers; undefined if neither has it. */
export function resolvePeer(name: string): string | undefined {
  for (const base of [ROOT, PEERS_DIR]) {
    try {
      return createRequire(join(base, 'package.json')).resolve(name);
    } catch {
      // not installed there
    }
  }
  return undefined;
}

/** The package's directory (for its static files, such as wllama's wasm). */
export function peerDir(name: string): string | undefined {
  for (const base of [ROOT, PEERS_DIR]) {
    const dir = join(base, 'node_modules', ...name.split('/'));
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  return undefined;
}

export function peerVersion(name: string): string | undefined {
  const dir = peerDir(name);
  if (!dir) return undefined;
  return (createRequire(join(dir, 'package.json'))(join(dir, 'package.json')) as { version: string }).version;
}

/**
 * Make sure the named packages are installed (in the repo or the peers cache); install the missing ones into
 * the cache with npm. Returns a reason per package that is still missing.
 */
export function ensurePeers(names: string[], opts: { install: boolean; log: (s: string) => void }): Map<string, string> {
  const missing = names.filter((n) => !peerDir(n));
  const failures = new Map<string, string>();
  if (missing.length === 0) return failures;
  if (!opts.install) {
    for (const n of missing) failures.set(n, `${n} is not installed (run without --no-install, or npm install --prefix bench/.cache/peers ${n}@${PEER_VERSIONS[n] ?? 'latest'})`);
    return failures;
  }
  mkdirSync(PEERS_DIR, { recursive: true });
  const pkg = join(PEERS_DIR, 'package.json');
  if (!existsSync(pkg)) writeFileSync(pkg, JSON.stringify({ name: 'wasmforge-bench-peers', private: true }, null, 2) + '\n');
  const specs = missing.map((n) => `${n}@${PEER_VERSIONS[n] ?? 'latest'}`);
  opts.log(`installing ${specs.join(' ')} into ${PEERS_DIR} ...`);
  try {
    execFileSync('npm', ['install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund', '--loglevel=error', ...specs], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    const why = (err.stderr?.toString().trim().split('\n').slice(-3).join(' ') || err.message).slice(0, 300);
    for (const n of missing) failures.set(n, `npm install ${n} failed: ${why}`);
    return failures;
  }
  for (const n of missing) if (!peerDir(n)) failures.set(n, `${n} still not found after npm install`);
  return failures;
}

/** import() a peer by its resolved path (the bundle's own location is not where peers live). */
export async function importPeer<T>(name: string): Promise<T> {
  const entry = resolvePeer(name);
  if (!entry) throw new Error(`${name} is not installed`);
  return (await import(pathToFileURL(entry).href)) as T;
}

