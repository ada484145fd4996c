// End-to-end generation on the WASM backend: llama2.c's greedy reference runs reproduced token for
// token, seeded sampling reproducible, stop strings, abort, and typed errors for bad input.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { loadModel, type Model } from '../src/model/model.js';
import { ModelError } from '../src/model/errors.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';

const REFERENCE = '../shared/models/reference/stories260K_greedy_llama2c_run.txt';
const haveReference = existsSync(REFERENCE);
if (!haveReference) console.warn(`generate: ${REFERENCE} is absent, skipping the llama2.c greedy gate`);

/** The reference file holds "### prompt: P | command" headers, each followed by llama2.c's output text. */
function referenceRuns(): { prompt: string; steps: number; text: string }[] {
  return readFileSync(REFERENCE, 'utf8').split('### prompt: ').slice(1).map((section) => {
    const [header, ...body] = section.split('\n');
    const [prompt, command] = header.split(' | ');
    return { prompt, steps: Number(/-n (\d+)/.exec(command)![1]), text: body.join('\n').trim() };
  });
}

describe.skipIf(!haveReference)('llama2.c greedy reference (F32 stories260K)', () => {
  for (const threads of [1, 2]) {
    it(`reproduces all three runs token for token, ${threads} thread(s)`, async () => {
      const model = await loadModel('../shared/models/stories260K.gguf', { threads, kvCacheType: 'f32' });
      try {
        for (const run of referenceRuns()) {
          const prompt = model.tokenizer.encode(run.prompt, { addSpecial: true });
          // llama2.c runs one forward pass per position 0..steps-1; the passes from the last prompt
          // token on each sample one token: steps - prompt + 1 generated tokens.
          const n = run.steps - prompt.length + 1;
          const r = await model.generate(prompt, { temperature: 0, maxTokens: n, ignoreEos: true }).result;
          expect(r.tokens.length).toBe(n);
          // llama2.c also stops when it samples BOS (the story delimiter): compare up to there.
          const bos = model.tokenizer.bosId!;
          const upToBos = r.tokens.includes(bos) ? r.tokens.slice(0, r.tokens.indexOf(bos)) : r.tokens;
          expect(model.tokenizer.decode([...prompt, ...upToBos], { skipSpecial: true }).trim()).toBe(run.text);
        }
      } finally {
        await model.dispose();
      }
    });
  }
});

describe('sampling defaults from the model (general.sampling.*)', () => {
  it('fill what a request leaves unset, and only that', async () => {
    const { readGGUF } = await import('../src/gguf/reader.js');
    const { writeGGUF } = await import('../src/gguf/writer.js');
    const { GGUFValueType } = await import('../src/gguf/constants.js');
    const { fileSource } = await import('../src/runtime/file-source.js');
    const { readFileSync, writeFileSync, mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const path = await bundledModelPath();
    const bytes = readFileSync(path);
    const src = await fileSource(path);
    const file = await readGGUF(src);
    await src.close();
    // greedy by default: temperature 0 and top-k 1 recommended by the file
    const metadata = [...file.metadata].filter(([k]) => k !== 'general.alignment');
    metadata.push(['general.sampling.temp', { type: GGUFValueType.FLOAT32, value: 0 }], ['general.sampling.top_k', { type: GGUFValueType.INT32, value: 1 }]);
    const tensors = file.tensors.map((t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes) }));
    const out = join(mkdtempSync(join(tmpdir(), 'wasmforge-sampling-')), 'greedy-defaults.gguf');
    writeFileSync(out, writeGGUF(metadata, tensors, { alignment: file.alignment }));
    const plain = await loadModel(path, { threads: 1 });
    const model = await loadModel(out, { threads: 1 });
    try {
      expect(plain.samplingDefaults).toEqual({});
      expect(model.samplingDefaults).toEqual({ temperature: 0, topK: 1 });
      const greedy = (await plain.generate('Once upon a time', { temperature: 0, maxTokens: 32 }).result).tokens;
      const sampled = (await plain.generate('Once upon a time', { temperature: 1.2, seed: 7, maxTokens: 32 }).result).tokens;
      expect(sampled).not.toEqual(greedy);
      // unset: the file's greedy defaults, whatever the seed
      expect((await model.generate('Once upon a time', { seed: 7, maxTokens: 32 }).result).tokens).toEqual(greedy);
      // set: the request's own (top-k set back to the library default, as the file's 1 would make it greedy)
      expect((await model.generate('Once upon a time', { temperature: 1.2, topK: 40, seed: 7, maxTokens: 32 }).result).tokens).toEqual(sampled);
    } finally {
      await plain.dispose();
      await model.dispose();
    }
  });
});

describe('generation API (bundled stories260K)', () => {
  async function withModel<T>(fn: (m: Model) => Promise<T>, threads = 2): Promise<T> {
    const model = await loadModel(await bundledModelPath(), { threads });
    try {
      return await fn(model);
    } finally {
      await model.dispose();
    }
  }

  it('streams pieces whose text and ids add up to the result', () => withModel(async (m) => {
    const g = m.generate('Once upon a time', { temperature: 0, maxTokens: 40 });
    const pieces: string[] = [];
    const ids: number[] = [];
    for await (const p of g) {
      pieces.push(p.text);
      ids.push(p.tokenId);
    }
    const r = await g.result;
    expect(pieces.join('')).toBe(r.text);
    expect(new Set(ids)).toEqual(new Set(r.tokens));
    expect(r.tokens.length).toBe(40);
    expect(r.stopReason).toBe('max_tokens');
    expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
  }));

  it('same seed gives the same tokens, at 1 and 2 threads; another seed differs', async () => {
    const sample = (seed: number, threads: number) =>
      withModel(async (m) => (await m.generate('The dog', { temperature: 1, topK: 40, topP: 0.95, seed, maxTokens: 48 }).result).tokens, threads);
    const a = await sample(7, 2);
    expect(await sample(7, 1)).toEqual(a);
    expect(await sample(8, 2)).not.toEqual(a);
  });

  it('top-k sampling reads back only each step\'s k candidates and draws the same tokens as from whole rows', () => withModel(async (m) => {
    const rowBytes = 4 * m.config.vocabSize;
    for (const options of [{ topK: 40 }, { topK: 5, topP: 1, minP: 0, temperature: 1.5 }, { topK: 200, topP: 0.9, minP: 0.01, temperature: 1.2 }]) {
      for (const seed of [1, 2, 3]) {
        const request = { ...options, seed, maxTokens: 48, ignoreEos: true };
        const topK = vi.spyOn(m.backend, 'topK'), read = vi.spyOn(m.backend, 'read');
        let fast;
        try {
          fast = (await m.generate('Once upon a time', request).result).tokens;
          expect(topK).toHaveBeenCalledTimes(48); // the prompt's last position and each generated token but the last
          expect(read.mock.calls.every(([, , bytes]) => bytes !== undefined && bytes < rowBytes), 'a whole row was read').toBe(true);
        } finally {
          topK.mockRestore();
          read.mockRestore();
        }
        // a processor that changes nothing: the sampler now needs whole rows
        const none = vi.spyOn(m.backend, 'topK');
        const whole = (await m.generate('Once upon a time', { ...request, logitsProcessors: () => [{ process() {} }] }).result).tokens;
        expect(none).not.toHaveBeenCalled();
        none.mockRestore();
        expect(fast, `${JSON.stringify(options)} seed ${seed}`).toEqual(whole);
      }
    }
  }));

  it('stops at a stop string without emitting it', () => withModel(async (m) => {
    const free = await m.generate('Once upon a time', { temperature: 0, maxTokens: 60 }).result;
    const stop = free.text.slice(20, 26); // a string that occurs in the greedy continuation
    const r = await m.generate('Once upon a time', { temperature: 0, maxTokens: 60, stop: [stop] }).result;
    expect(r.stopReason).toBe('stop_string');
    expect(r.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
  }));

  it('aborts promptly through an AbortSignal', () => withModel(async (m) => {
    const controller = new AbortController();
    const g = m.generate('Once upon a time', { temperature: 0, maxTokens: 10_000, ignoreEos: true, signal: controller.signal });
    let n = 0;
    for await (const _ of g) if (++n === 5) controller.abort();
    const r = await g.result;
    expect(r.stopReason).toBe('aborted');
    expect(r.tokens.length).toBeLessThan(10);
  }));

  it('evaluate returns one logit row per position, matching generate\'s greedy choice', () => withModel(async (m) => {
    const tokens = m.tokenizer.encode('Once upon a time', { addSpecial: true });
    const rows = await m.evaluate(tokens);
    expect(rows.length).toBe(tokens.length);
    expect(rows[0].length).toBe(m.config.vocabSize);
    const last = rows[rows.length - 1];
    const argmax = last.indexOf(Math.max(...last));
    const r = await m.generate(tokens, { temperature: 0, maxTokens: 1 }).result;
    expect(r.tokens[0]).toBe(argmax);
  }));

  it('rejects bad input with typed errors and keeps working after', () => withModel(async (m) => {
    await expect(m.generate([], {}).result).rejects.toMatchObject({ name: 'EngineError', code: 'INVALID_REQUEST' });
    await expect(m.generate(new Array(m.contextLength).fill(1), {}).result).rejects.toMatchObject({ code: 'PROMPT_TOO_LONG' });
    await expect(m.evaluate([1, 999_999])).rejects.toMatchObject({ name: 'EngineError', code: 'INVALID_REQUEST', message: expect.stringMatching(/999999/) });
    await expect(m.generate('hi', { topP: 2 }).result).rejects.toMatchObject({ name: 'SamplingError' });
    const r = await m.generate('Once upon a time', { temperature: 0, maxTokens: 8 }).result;
    expect(r.tokens.length).toBe(8);
  }));

  it('fails cleanly on a file that is not a model', async () => {
    await expect(loadModel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))).rejects.toMatchObject({ name: 'GGUFError', code: 'BAD_MAGIC' });
  });
});
