// Where the bench keeps things. The launcher (bench/run.js) sets WASMFORGE_BENCH_ROOT to the repo root; the
// bundle runs from bench/.cache/build, so paths are never taken relative to the bundle itself.
import { join, resolve } from 'node:path';

export const ROOT = resolve(process.env.WASMFORGE_BENCH_ROOT ?? process.cwd());
export const BENCH = join(ROOT, 'bench');
export const CACHE = join(BENCH, '.cache');
export const MODELS_DIR = join(CACHE, 'models');
export const PEERS_DIR = join(CACHE, 'peers');
export const BUILD_DIR = join(CACHE, 'build');
export const RESULTS_DIR = join(BENCH, 'results');
export const WEB_DIR = join(BENCH, 'web');
/** The bench bundle itself (set by bench/run.js): children are started as `node BUNDLE --child ...`. */
export const BUNDLE = process.env.WASMFORGE_BENCH_BUNDLE ?? join(BUILD_DIR, 'bench.mjs');
