// For sliding-window tests: small random-weight llama GGUFs that differ only in
// {arch}.attention.sliding_window (same seed, so the same weights), written to a temp directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from './synthetic.js';
import { GGMLType } from '../../src/tensor/ggml-types.js';

/** GQA 4/2, head dim 16, 2 layers, F32 weights; 512-token made-up SentencePiece vocab. */
export const SWA_SHAPE: SyntheticLlamaOptions = {
  dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, vocab: 512, type: GGMLType.F32, seed: 7,
  contextLength: 256, std: 0.15, embeddingStd: 1,
};

export interface SwaModels {
  /** Path of the model with this window (undefined: no sliding_window key). */
  path(window: number | undefined): Promise<string>;
  dispose(): Promise<void>;
}

export async function swaModels(shape: SyntheticLlamaOptions = SWA_SHAPE): Promise<SwaModels> {
  const dir = await mkdtemp(join(tmpdir(), 'wasmforge-swa-'));
  const written = new Map<string, Promise<string>>();
  return {
    path(window) {
      const file = join(dir, `swa-${window ?? 'none'}.gguf`);
      if (!written.has(file)) written.set(file, writeSyntheticLlama(file, { ...shape, slidingWindow: window }).then(() => file));
      return written.get(file)!;
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}
