// Runs the portable suite in a server-side runtime (Node, Deno or Bun: all provide node:fs) and
// prints one line "WASMFORGE_RESULT {json}" for test/runtimes.test.ts. Models are passed as paths,
// so the suite also exercises each runtime's file adapter.
//   node test/portable/cli.js [threads]    deno run -A test/portable/cli.js    bun test/portable/cli.js
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as wf from '../../dist/wasmforge.js';
import { runSuite } from './suite.js';

const g = globalThis;
const runtime = g.Deno ? 'deno' : g.Bun ? 'bun' : 'node';
const repo = fileURLToPath(new URL('../../', import.meta.url));
const shared = `${repo}../shared/models/`;
const firstExisting = (...paths) => paths.find((p) => existsSync(p));
const args = g.Deno ? g.Deno.args : process.argv.slice(2);
const threads = Number(args[0] ?? 2);

/** Each input kind the runtime's adapters take: a path, a file: URL object, a file: URL string. */
function asInput(name, path) {
  if (!path) return undefined;
  if (name.includes('q8_0')) return pathToFileURL(path);
  if (name.includes('q4_0')) return pathToFileURL(path).href;
  return path;
}

try {
  const result = await runSuite(wf, {
    runtime,
    threads,
    model: async (name) => asInput(name, firstExisting(`${repo}models/${name}`, `${shared}${name}`)),
    reference: async () => {
      const p = firstExisting(`${shared}reference/stories260K_greedy_llama2c_run.txt`);
      return p ? readFileSync(p, 'utf8') : undefined;
    },
    progress: (m) => process.stderr.write(`[${runtime}] ${m}\n`),
  });
  process.stdout.write(`WASMFORGE_RESULT ${JSON.stringify(result)}\n`);
} catch (e) {
  process.stdout.write(`WASMFORGE_RESULT ${JSON.stringify({ runtime, error: String(e?.stack ?? e) })}\n`);
  process.exitCode = 1;
}
