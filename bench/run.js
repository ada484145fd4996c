#!/usr/bin/env node
// `npm run bench`: bundle the TypeScript bench (bench/src) with esbuild, then run it. A bundle rather than tsx
// because the bench starts a fresh Node child for every measured run and each should start in milliseconds.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// One bundle per run: the children of a run still going must not pick up a bundle another run rebuilt.
const outfile = join(root, 'bench', '.cache', 'build', `bench-${process.pid}.mjs`);
mkdirSync(dirname(outfile), { recursive: true });

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (e) {
  console.error(`bench: esbuild (a devDependency) is not installed: run npm install first (${e.message})`);
  process.exit(1);
}
await esbuild.build({
  entryPoints: [join(root, 'bench', 'src', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Peers are loaded at run time from wherever they are installed (repo or bench/.cache/peers).
  external: ['node-llama-cpp', 'playwright-core', 'esbuild'],
  banner: { js: "import { createRequire as __benchCreateRequire } from 'node:module'; const require = __benchCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
process.env.WASMFORGE_BENCH_ROOT = root;
process.env.WASMFORGE_BENCH_BUNDLE = outfile;
process.on('exit', () => rmSync(outfile, { force: true }));
await import(pathToFileURL(outfile).href);
