// Shapes shared by the orchestrator, the Node child runs and the browser page.

export type RuntimeId = 'wasmforge' | 'wasmforge-web' | 'llama.cpp' | 'wllama';

export const RUNTIMES: { id: RuntimeId; label: string; where: 'node' | 'browser' }[] = [
  { id: 'wasmforge', label: 'wasmforge (Node)', where: 'node' },
  { id: 'wasmforge-web', label: 'wasmforge (Chromium)', where: 'browser' },
  { id: 'llama.cpp', label: 'llama.cpp (node-llama-cpp)', where: 'node' },
  { id: 'wllama', label: 'wllama 2.3.7 (Chromium)', where: 'browser' },
];

export interface RunRequest {
  runtime: RuntimeId;
  modelPath: string;
  /** For browser runs: the model's URL on the bench server. */
  modelUrl?: string;
  threads: number;
  promptText: string;
  promptTokens: number;
  decodeTokens: number;
  warmupText: string;
  warmup: boolean;
  contextLength: number;
}

export interface RunFigures {
  loadS: number;
  promptTps: number;
  decodeTps: number;
  /** Node runs: the child's ru_maxrss; browser runs: the renderer process's VmHWM. Null when not measurable. */
  peakRssBytes: number | null;
  /** What actually ran (backend, thread count), for the JSON. */
  detail?: string;
}

export interface Cell {
  model: string;
  type: string;
  runtime: RuntimeId;
  threads: number;
  runs: RunFigures[];
  /** Per-figure medians over runs. */
  median?: RunFigures;
  error?: string;
  skipped?: string;
}
