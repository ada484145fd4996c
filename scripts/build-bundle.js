#!/usr/bin/env node
// Builds dist/wasmforge.js: the whole library as ONE ES module, the wasm kernels inlined (they are
// base64 strings in src/backend/wasm/kernels.generated.ts, so no fetch or fs is needed to start).
// The same file is imported unchanged by Node, Deno, Bun, a browser page, a Web Worker and an edge
// fetch handler. `node:*` modules stay external: the core never imports them statically, and the
// runtime adapters (src/runtime/, src/backend/wasm/runtime.ts) import them lazily with import(),
// which a browser only resolves if that code path runs (it never does there).
import { build } from 'esbuild';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist/wasmforge.js');

const result = await build({
  entryPoints: [join(root, 'src/index.ts')],
  outfile,
  bundle: true,
  format: 'esm',
  // 'neutral': no Node or browser assumptions; dependencies resolve through their ESM entries.
  platform: 'neutral',
  mainFields: ['module', 'main'],
  conditions: ['import', 'default'],
  target: 'es2022',
  external: ['node:*'],
  sourcemap: 'linked',
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
  banner: { js: '// wasmforge: portable LLM inference (one ES module, wasm kernels inlined). See README.md.' },
});

// Every node:* import left in the file must be a lazy import(): a static one would stop a browser
// from loading the module at all.
const code = await readFile(outfile, 'utf8');
const staticNode = /^\s*import\s[^;]*?from\s*["']node:[^"']+["']|^\s*import\s*["']node:/m.exec(code);
if (staticNode) throw new Error(`dist/wasmforge.js has a static Node import: ${staticNode[0]}`);
const inputs = Object.keys(result.metafile.inputs).length;
const { size } = await stat(outfile);
process.stdout.write(`build-bundle: wrote dist/wasmforge.js (${size} bytes, ${(size / 1024).toFixed(1)} KiB, ${inputs} modules)\n`);
