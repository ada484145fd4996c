// The portable suite inside a module Web Worker (the worker pool then starts nested workers).
import * as wf from '../../dist/wasmforge.js';
import { runSuite } from './suite.js';
import { browserEnv } from './browser-env.js';

const browser = new URL(import.meta.url).searchParams.get('browser') ?? 'chromium';
const runtime = `${browser}-worker${self.crossOriginIsolated ? '-isolated' : ''}`;
runSuite(wf, browserEnv(runtime)).then(
  (result) => self.postMessage(result),
  (e) => self.postMessage({ runtime, error: String(e?.stack ?? e) }),
);
