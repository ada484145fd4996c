// Split GGUF models, as llama.cpp's own llama-gguf-split (../shared/bin) writes them: loaded from the
// first part's path, from URLs (HTTP Range, the other parts found by name) or from a list of parts
// in order, with logits bit-identical to the unsplit file. The set is untrusted like each file: a
// missing part, a part of another set, parts out of order or too few are typed errors naming them.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../examples/serve.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';

const SPLIT = join(import.meta.dirname, '../../shared/bin/llama-gguf-split');
const haveSplit = existsSync(SPLIT);
if (!haveSplit) console.warn(`gguf-split: ${SPLIT} is absent, skipping`);

describe.skipIf(!haveSplit)('split GGUF (llama-gguf-split)', () => {
  let dir: string;
  let whole: Model;
  let want: Float32Array[];
  const TOKENS = [1, 403, 407, 261, 378, 1281 % 512, 20, 31, 300];
  const part = (k: number, n = 3) => join(dir, `st-${String(k).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.gguf`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wasmforge-split-'));
    const src = await bundledModelPath();
    const r = spawnSync(SPLIT, ['--split', '--split-max-tensors', '20', src, join(dir, 'st')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    whole = await loadModel(src, { threads: 1 });
    want = await whole.evaluate(TOKENS);
  });
  afterAll(async () => {
    await whole?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function logitsOf(input: Parameters<typeof loadModel>[0]): Promise<Float32Array[]> {
    const m = await loadModel(input, { threads: 1 });
    try {
      expect(m.file.tensors.length).toBe(whole.file.tensors.length);
      return await m.evaluate(TOKENS);
    } finally {
      await m.dispose();
    }
  }

  it('from the first part\'s path: the other parts are found by name; logits bit-identical to the whole file', async () => {
    expect(existsSync(part(3))).toBe(true);
    expect(await logitsOf(part(1))).toEqual(want);
  });

  it('from a list of parts (buffers, Blobs), and from URLs read with HTTP Range requests', async () => {
    expect(await logitsOf([1, 2, 3].map((k) => new Uint8Array(readFileSync(part(k)))))).toEqual(want);
    expect(await logitsOf([1, 2, 3].map((k) => new Blob([readFileSync(part(k))])))).toEqual(want);
    const server = await startServer({ isolated: false, mounts: { '/split/': dir } });
    try {
      expect(await logitsOf(`${server.url}/split/st-00001-of-00003.gguf`)).toEqual(want);
    } finally {
      await server.close();
    }
  });

  it('a set that is not whole or not one set is a typed error naming the part', async () => {
    const other = mkdtempSync(join(tmpdir(), 'wasmforge-split-bad-'));
    try {
      // The last part missing.
      copyFileSync(part(1), join(other, 'st-00001-of-00003.gguf'));
      copyFileSync(part(2), join(other, 'st-00002-of-00003.gguf'));
      await expect(loadModel(join(other, 'st-00001-of-00003.gguf'))).rejects.toMatchObject({ name: 'GGUFError', code: 'MISSING_SPLIT_PART', message: expect.stringMatching(/part 3 of 3 .*st-00003-of-00003\.gguf: no such file/) });
      // A later part given as the model.
      await expect(loadModel(part(2))).rejects.toMatchObject({ name: 'GGUFError', code: 'INVALID_VALUE', message: expect.stringMatching(/is part 2 of a 3-part split model: load its first part/) });
      // Out of order, too few.
      const bytes = [1, 2, 3].map((k) => new Uint8Array(readFileSync(part(k))));
      await expect(loadModel([bytes[0]!, bytes[2]!, bytes[1]!])).rejects.toMatchObject({ code: 'SPLIT_MISMATCH', message: expect.stringMatching(/not part 2 of 3 .*it says part 3 of 3/) });
      await expect(loadModel([bytes[0]!, bytes[1]!])).rejects.toMatchObject({ code: 'MISSING_SPLIT_PART', message: expect.stringMatching(/the model has 3 parts, 2 were given/) });
      // A part whose tensors are already in another (the same part twice).
      await expect(loadModel([bytes[0]!, bytes[1]!, bytes[1]!])).rejects.toMatchObject({ code: 'SPLIT_MISMATCH' });
      // A truncated part.
      writeFileSync(join(other, 'st-00003-of-00003.gguf'), bytes[2]!.subarray(0, bytes[2]!.length - 100));
      await expect(loadModel(join(other, 'st-00001-of-00003.gguf'))).rejects.toMatchObject({ name: 'GGUFError', message: expect.stringMatching(/st-00003-of-00003\.gguf/) });
      // A first part whose name does not say where the others are.
      await expect(loadModel(new Uint8Array(readFileSync(part(1))))).rejects.toMatchObject({ code: 'MISSING_SPLIT_PART', message: expect.stringMatching(/pass all the parts, in order/) });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
