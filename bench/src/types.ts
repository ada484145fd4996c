// Shapes shared by the orchestrator, the Node child runs and the browser page.

export type RuntimeId = 'wasmforge' | 'wasmforge-web' | 'llama.cpp' | 'wllama' | 'wasmforge-webgpu' | 'llama.cpp-gpu';

/** gpu: runs on the GPU (once per model, not per thread count; not in the default selection). */
export const RUNTIMES: { id: RuntimeId; label: string; where: 'node' | 'browser'; gpu?: boolean }[] = [
  { id: 'wasmforge', label: 'wasmforge (Node)', where: 'node' },
  { id: 'wasmforge-web', label: 'wasmforge (Chromium)', where: 'browser' },
  { id: 'llama.cpp', label: 'llama.cpp (node-llama-cpp)', where: 'node' },
  { id: 'wllama', label: 'wllama 2.3.7 (Chromium)', where: 'browser' },
  { id: 'wasmforge-webgpu', label: 'wasmforge WebGPU (Node, Dawn)', where: 'node', gpu: true },
  { id: 'llama.cpp-gpu', label: 'llama.cpp GPU (node-llama-cpp Vulkan/CUDA)', where: 'node', gpu: true },
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
