// LoRA adapters (llama.cpp's GGUF format) against llama.cpp with the same adapter (node-llama-cpp's
// `lora` option): a random adapter on stories260K's attention, feed-forward and output matrices,
// written by our writer. The adapter's effect on the logits (with minus without) must be llama.cpp's
// up to the implementations' own difference without it; switching it off gives the base logits back
// bit for bit; a wrong adapter is a typed error.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { createServerHandler } from '../src/server/handler.js';
import { GGUFValueType as T } from '../src/gguf/constants.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { NormalRng } from './helpers/synthetic.js';
import { disposeLlamaCpp, isLlamaCppAvailable, llamaCppNextTokenLogits } from './oracle/llama-cpp.js';

const haveLlamaCpp = await isLlamaCppAvailable();
const Q8 = '../shared/models/stories260K-q8_0.gguf';
const RANK = 4, ALPHA = 8, SCALE = 0.75;
const TOKENS = [1, 403, 407, 261, 378, 259, 20, 31, 300, 12, 88, 412];

let dir: string;
let path: string;
let adapterPath: string;
let model: Model;
let engine: Engine;

/** A rank-4 F32 adapter on these matrices of stories260K (dim 64, ffn 172, 5 layers, vocab 512). */
function writeAdapter(file: string, targets: [string, number, number][], opts: { arch?: string; type?: string } = {}): void {
  const rng = new NormalRng(17);
  const f32 = (n: number, std: number) => {
    const a = new Float32Array(n);
    rng.fillNormal(a, std);
    return new Uint8Array(a.buffer);
  };
  const tensors = targets.flatMap(([name, inDim, outDim]) => [
    { name: `${name}.lora_a`, dims: [inDim, RANK], type: GGMLType.F32, data: f32(inDim * RANK, 0.1) },
    { name: `${name}.lora_b`, dims: [RANK, outDim], type: GGMLType.F32, data: f32(RANK * outDim, 0.1) },
  ]);
  writeFileSync(file, writeGGUF([
    ['general.architecture', { type: T.STRING, value: opts.arch ?? 'llama' }],
    ['general.type', { type: T.STRING, value: opts.type ?? 'adapter' }],
    ['adapter.type', { type: T.STRING, value: 'lora' }],
    ['adapter.lora.alpha', { type: T.FLOAT32, value: ALPHA }],
  ], tensors));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmforge-lora-'));
  path = await bundledModelPath();
  adapterPath = join(dir, 'adapter.gguf');
  const c = { dim: 64, ffn: 172, vocab: 512 };
  writeAdapter(adapterPath, [
    ['blk.0.attn_q.weight', c.dim, c.dim], ['blk.0.attn_v.weight', c.dim, 16 * 2], ['blk.2.attn_output.weight', c.dim, c.dim],
    ['blk.1.ffn_gate.weight', c.dim, c.ffn], ['blk.3.ffn_down.weight', c.ffn, c.dim], ['blk.4.ffn_up.weight', c.dim, c.ffn], ['output.weight', c.dim, c.vocab],
  ]);
  model = await loadModel(path, { threads: 1 });
  engine = await createEngine(model);
});

afterAll(async () => {
  await engine?.dispose();
  await model?.dispose();
  await disposeLlamaCpp();
  rmSync(dir, { recursive: true, force: true });
});

const maxAbs = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.flatMap((row, i) => Array.from(row, (v, j) => Math.abs(v - b[i]![j]!))));
const diff = (a: Float32Array[], b: Float32Array[]) => a.map((row, i) => row.map((v, j) => v - b[i]![j]!));

describe('LoRA adapters', () => {
  it('switching an adapter on changes the logits, and off gives the base ones back bit for bit', async () => {
    const adapter = await model.loadAdapter(adapterPath);
    expect(adapter.pairs).toHaveLength(7);
    const base = await engine.evaluate(TOKENS);
    engine.setAdapters([{ adapter, scale: SCALE }]);
    const adapted = await engine.evaluate(TOKENS);
    expect(maxAbs(adapted, base)).toBeGreaterThan(0.05);
    engine.setAdapters([]);
    expect(await engine.evaluate(TOKENS)).toEqual(base);
    // Two adapters (the same one twice) add up: twice the scale.
    engine.setAdapters([{ adapter, scale: SCALE }, { adapter, scale: SCALE }]);
    const twice = await engine.evaluate(TOKENS);
    engine.setAdapters([{ adapter, scale: 2 * SCALE }]);
    expect(maxAbs(twice, await engine.evaluate(TOKENS))).toBeLessThan(1e-4);
    engine.setAdapters([]);
  });

  it.skipIf(!haveLlamaCpp)('the adapter\'s effect is llama.cpp\'s (same file, same scale), up to the two implementations\' difference without it', async () => {
    const adapter = await model.loadAdapter(adapterPath);
    const base = await engine.evaluate(TOKENS);
    engine.setAdapters([{ adapter, scale: SCALE }]);
    const ours = await engine.evaluate(TOKENS);
    engine.setAdapters([]);
    const theirBase = await llamaCppNextTokenLogits(path, TOKENS, { kvCacheType: 'f16' });
    const theirs = await llamaCppNextTokenLogits(path, TOKENS, { kvCacheType: 'f16', lora: [{ filePath: adapterPath, scale: SCALE }] });
    const baseGap = maxAbs(base, theirBase);
    const effect = maxAbs(ours, base);
    const gap = maxAbs(ours, theirs);
    const effectGap = maxAbs(diff(ours, base), diff(theirs, theirBase));
    console.log(`LoRA parity: effect ${effect.toExponential(2)}, ours vs llama.cpp with it ${gap.toExponential(2)}, without it ${baseGap.toExponential(2)}, effect vs effect ${effectGap.toExponential(2)}`);
    expect(effect).toBeGreaterThan(0.05);
    // The adapter adds no more difference than the base computation already has (4x, plus float rounding of the effect).
    expect(gap).toBeLessThanOrEqual(4 * baseGap + 1e-4 * effect + 1e-6);
    expect(effectGap).toBeLessThan(0.01 * effect);
  });

  it('adapters per request: requests with different adapters run side by side, each as it would alone, and never share KV', async () => {
    const adapter = await model.loadAdapter(adapterPath);
    const prompt = 'Once upon a time, there was a little';
    const kinds = [undefined, [{ adapter, scale: SCALE }], [{ adapter, scale: -SCALE }], []] as const;
    const req = (k: number, seed: number) => ({ prompt, maxTokens: 24, temperature: 0.9, seed, logprobs: true, ...(kinds[k] ? { adapters: kinds[k] } : {}) });
    const alone = [];
    for (let k = 0; k < kinds.length; k++) {
      engine.clearPrefixCache();
      alone.push(await engine.generate(req(k, 5)).result);
    }
    expect(new Set(alone.map((r) => r.tokens.join())).size).toBe(3); // no adapter = [] = the engine default (none)
    expect(alone[3]!.tokens).toEqual(alone[0]!.tokens);
    engine.clearPrefixCache();
    const together = await Promise.all(kinds.map((_, k) => engine.generate(req(k, 5)).result));
    together.forEach((r, k) => {
      expect(r.tokens).toEqual(alone[k]!.tokens);
      expect(r.completions[0]!.logprobs).toEqual(alone[k]!.completions[0]!.logprobs);
    });
    // The same prompt again: each reuses only the KV of its own adapter set.
    const again = await engine.generate(req(1, 6)).result;
    expect(again.usage.cachedPromptTokens).toBeGreaterThan(0);
    engine.clearPrefixCache();
    await engine.generate(req(0, 6)).result;
    expect((await engine.generate(req(1, 6)).result).usage.cachedPromptTokens).toBe(0);
    expect(() => engine.generate({ prompt, adapters: [{ adapter, scale: NaN }] })).toThrow(/finite/);
  });

  it('merged into the weights (W += s·B·A), the model computes what the unmerged adapter does', async () => {
    const adapter = await model.loadAdapter(adapterPath);
    const base = await engine.evaluate(TOKENS);
    engine.setAdapters([{ adapter, scale: SCALE }]);
    const adapted = await engine.evaluate(TOKENS);
    engine.setAdapters([]);
    const other = await loadModel(path, { threads: 1 });
    try {
      await other.mergeAdapter(await other.loadAdapter(adapterPath), SCALE);
      const merged = await other.evaluate(TOKENS);
      const effect = maxAbs(adapted, base);
      expect(maxAbs(merged, adapted)).toBeLessThan(1e-4 * effect + 1e-5);
    } finally {
      await other.dispose();
    }
    // Into Q8_0 weights: requantized, so close to the unmerged adapter on the same file, not equal.
    if (existsSync(Q8)) {
      const q8 = await loadModel(Q8, { threads: 1 });
      const q8Merged = await loadModel(Q8, { threads: 1 });
      try {
        const a8 = await q8.loadAdapter(adapterPath);
        const q8Base = await q8.evaluate(TOKENS);
        q8.engine().setAdapters([{ adapter: a8, scale: SCALE }]);
        const q8Adapted = await q8.evaluate(TOKENS);
        await q8Merged.mergeAdapter(await q8Merged.loadAdapter(adapterPath), SCALE);
        const gap = maxAbs(await q8Merged.evaluate(TOKENS), q8Adapted), effect = maxAbs(q8Adapted, q8Base);
        console.log(`LoRA merged into Q8_0: ${gap.toExponential(2)} from the unmerged adapter (effect ${effect.toExponential(2)})`);
        // Requantizing W + s·B·A costs what rounding a weight to 8 bits costs: small beside what the adapter changes.
        expect(gap).toBeLessThan(0.1 * effect);
      } finally {
        await q8.dispose();
        await q8Merged.dispose();
      }
    }
  });

  it('wasmforge generate --lora FILE:SCALE and the server\'s lora option apply it', async () => {
    const adapter = await model.loadAdapter(adapterPath);
    engine.setAdapters([{ adapter, scale: SCALE }]);
    const want = (await engine.generate({ prompt: 'Once upon a time', maxTokens: 20, temperature: 0 }).result).text;
    engine.setAdapters([]);
    const plain = (await engine.generate({ prompt: 'Once upon a time', maxTokens: 20, temperature: 0 }).result).text;
    expect(want).not.toBe(plain);
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
    try {
      expect(await main(['generate', '-m', path, '-t', '1', '-p', 'Once upon a time', '-n', '20', '--temp', '0', '--lora', `${adapterPath}:${SCALE}`])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    expect(out.join('')).toBe(`Once upon a time${want}\n`);
    const served = loadModel(path, { threads: 1 });
    const h = createServerHandler(served, { modelId: 'm', lora: [{ input: adapterPath, scale: SCALE }] });
    await h.ready;
    const complete = async (extra: object) => (await h.fetch(new Request('http://x/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 20, temperature: 0, ...extra }) }))).json();
    expect((await complete({})).choices[0].text).toBe(want);
    // llama.cpp server's per-request scales over the loaded adapters, and its adapter list.
    expect((await complete({ lora: [{ id: 0, scale: 0 }] })).choices[0].text).toBe(plain);
    expect((await complete({ lora: [{ id: 0, scale: SCALE }] })).choices[0].text).toBe(want);
    expect((await complete({ lora: [{ id: 1, scale: 1 }] })).error).toMatchObject({ param: 'lora[0].id' });
    expect(await (await h.fetch(new Request('http://x/lora-adapters'))).json()).toEqual([{ id: 0, path: adapterPath, scale: SCALE }]);
    await h.close();
    await (await served).dispose();
  });

  it('an adapter of another architecture, of another shape, or not an adapter: ModelError ADAPTER_MISMATCH', async () => {
    const bad = (name: string, targets: [string, number, number][], opts = {}) => {
      const file = join(dir, name);
      writeAdapter(file, targets, opts);
      return model.loadAdapter(file);
    };
    await expect(bad('arch.gguf', [['blk.0.attn_q.weight', 64, 64]], { arch: 'qwen2' })).rejects.toMatchObject({ name: 'ModelError', code: 'ADAPTER_MISMATCH', message: expect.stringMatching(/for qwen2, the model is llama/) });
    await expect(bad('shape.gguf', [['blk.0.attn_q.weight', 32, 64]])).rejects.toMatchObject({ code: 'ADAPTER_MISMATCH', message: expect.stringMatching(/"blk.0.attn_q.weight" is \[64 x 64\]/) });
    await expect(bad('name.gguf', [['blk.9.attn_q.weight', 64, 64]])).rejects.toMatchObject({ code: 'ADAPTER_MISMATCH', message: expect.stringMatching(/not a matrix of this model/) });
    await expect(bad('type.gguf', [['blk.0.attn_q.weight', 64, 64]], { type: 'model' })).rejects.toMatchObject({ code: 'ADAPTER_MISMATCH', message: expect.stringMatching(/not a LoRA adapter/) });
    await expect(model.loadAdapter(path)).rejects.toMatchObject({ code: 'ADAPTER_MISMATCH' });
  });
});
