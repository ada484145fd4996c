// Results do not change by accident: the SHA-256 of the logits that evaluate() returns, and the
// tokens greedy generation and the engine produce, for the shared models and random-weight models
// in several types and mixes, at 1 and 2 threads, checked against test/fixtures/golden-logits.json.
//
// Why a fixture: refactors of the core (backend contract, graph, generation stack) must keep every
// result bit-identical, and only a record taken before the change can show that. The WASM
// backend's baseline build is deterministic on every CPU and in every runtime (the portable suite
// checks that), and results do not depend on the thread count, so one record holds everywhere.
// The relaxed-SIMD build may fuse multiply-adds differently per CPU, so this test pins the
// baseline build.
//
// A change that is meant to move numbers (a new kernel that rounds differently, say) regenerates
// the record with `UPDATE_GOLDEN=1 npx vitest run test/golden-logits.test.ts` and says why in its
// commit; the parity tests against llama.cpp are what keep the new numbers right.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../src/engine/engine.js';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { loadModel, type LoadModelOptions } from '../src/model/model.js';
import { writeSyntheticLlama, type SyntheticLlamaOptions } from './helpers/synthetic.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType } from '../src/tensor/ggml-types.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'golden-logits.json');
const SHARED = join(import.meta.dirname, '..', '..', 'shared', 'models');
const haveShared = existsSync(join(SHARED, 'stories260K.gguf'));
const update = process.env.UPDATE_GOLDEN === '1';
if (!haveShared) console.warn('golden-logits: ../shared/models is absent, skipping');

const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

type Record = { [name: string]: string };
const recorded: Record = existsSync(FIXTURE) ? JSON.parse(readFileSync(FIXTURE, 'utf8')) : {};
const seen: Record = {};

function sha256(rows: readonly Float32Array[] | readonly number[]): string {
  const h = createHash('sha256');
  if (typeof rows[0] === 'number') h.update(new Int32Array(rows as number[]));
  else for (const r of rows as Float32Array[]) h.update(new Uint8Array(r.buffer, r.byteOffset, r.byteLength));
  return h.digest('hex');
}

function check(name: string, digest: string): void {
  // The same name is checked at 1 and 2 threads: they must agree with each other, too.
  if (seen[name] !== undefined) expect(digest, `${name}: differs between thread counts`).toBe(seen[name]);
  seen[name] = digest;
  if (update) return;
  expect(recorded[name], `${name}: no record (run with UPDATE_GOLDEN=1 to take one)`).toBeDefined();
  expect(digest, name).toBe(recorded[name]);
}

describe.skipIf(!haveShared)('results stay bit-identical to the record', () => {
  let tmp: string;
  let vocab: GGUFFile;
  const models: [string, () => Promise<string>][] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'wasmforge-golden-'));
    const src = await fileSource(join(SHARED, 'stories260K.gguf'));
    vocab = await readGGUF(src);
    await src.close();
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (update) writeFileSync(FIXTURE, `${JSON.stringify(seen, null, 2)}\n`);
  });

  for (const file of ['stories260K.gguf', 'stories260K-f16.gguf', 'stories260K-q8_0.gguf', 'stories260K-q4_0.gguf']) {
    models.push([file, async () => join(SHARED, file)]);
  }
  // Random models: GQA llama with an ffn that is not a multiple of 32 (fallback types), and a
  // qwen2 with biases and tied embeddings; one mixed file (Q4_K matrices, Q6_K output).
  const shape = { dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 688, seed: 11, std: 0.05 } as const;
  const random: [string, Omit<SyntheticLlamaOptions, 'vocab'>][] = [
    ['F32', { ...shape, type: GGMLType.F32 }],
    ['F16', { ...shape, type: GGMLType.F16 }],
    ['Q8_0', { ...shape, type: GGMLType.Q8_0 }],
    ['Q4_0', { ...shape, type: GGMLType.Q4_0 }],
    ['Q4_K', { ...shape, type: GGMLType.Q4_K }],
    ['Q4_K+Q6_K output', { ...shape, type: GGMLType.Q4_K, outputType: GGMLType.Q6_K }],
    ['Q8_0 qwen2 tied', { dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, ffnDim: 512, seed: 12, std: 0.05, type: GGMLType.Q8_0, arch: 'qwen2', tiedEmbeddings: true }],
  ];
  for (const [name, opts] of random) {
    models.push([`random ${name}`, async () => {
      const path = join(tmp, `${name.replace(/[^A-Za-z0-9_]/g, '-')}.gguf`);
      if (!existsSync(path)) await writeSyntheticLlama(path, { ...opts, vocab: { metadataFrom: vocab } });
      return path;
    }]);
  }

  for (const [name, path] of models) {
    it(name, async () => {
      const p = await path();
      for (const kvCacheType of ['f16', 'f32'] as const) {
        for (const threads of [1, 2]) {
          const opts: LoadModelOptions = { threads, kvCacheType, relaxedSimd: false, maxBatchTokens: 16 };
          const model = await loadModel(p, opts);
          try {
            const tokens = model.tokenizer.encode(PROMPT, { addSpecial: true });
            // Chunks of 16: prompt batches of several tokens on a cache that already holds some.
            check(`${name} evaluate kv=${kvCacheType}`, sha256(await model.evaluate(tokens)));
            check(`${name} greedy kv=${kvCacheType}`, sha256((await model.generate(tokens, { maxTokens: 24, temperature: 0, ignoreEos: true }).result).tokens));
            if (threads === 2) {
              const engine = await createEngine(model, { maxBatchTokens: 16, kvCacheTokens: 512 });
              try {
                const runs = [engine.generate({ prompt: PROMPT, maxTokens: 16, temperature: 0, ignoreEos: true }),
                  engine.generate({ prompt: PROMPT.slice(0, 40), maxTokens: 16, temperature: 0.8, seed: 3, ignoreEos: true })];
                const results = await Promise.all(runs.map((r) => r.result));
                check(`${name} engine kv=${kvCacheType}`, sha256(results.flatMap((r) => r.completions[0].tokens)));
              } finally {
                await engine.dispose();
              }
            }
          } finally {
            await model.dispose();
          }
        }
      }
    });
  }
});
