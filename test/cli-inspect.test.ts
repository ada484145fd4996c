import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { run, type InspectReport } from '../src/cli/inspect.js';
import { main } from '../src/cli/main.js';
import { GGUFValueType } from '../src/gguf/constants.js';
import { readGGUF } from '../src/gguf/reader.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { readHParams } from '../src/model/hparams.js';
import { fileSource } from '../src/runtime/file-source.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { captureOutput } from './helpers/capture-output.js';
import type { RecordedRead } from './helpers/recording-file-source.js';

// Record every read the CLI makes, to prove it stays in the header.
const reads = vi.hoisted(() => [] as RecordedRead[]);
vi.mock('../src/runtime/file-source.js', async (importOriginal) =>
  (await import('./helpers/recording-file-source.js')).recordingFileSourceModule(await importOriginal(), reads));

const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const STORIES = join(SHARED, 'models', 'stories260K.gguf');
const GPT2 = join(SHARED, 'vocab', 'ggml-vocab-gpt-2.gguf');
const HAVE_SHARED = existsSync(STORIES) && existsSync(GPT2);
const T = GGUFValueType;

const io = captureOutput(() => {
  reads.length = 0;
});

const dir = mkdtempSync(join(tmpdir(), 'wasmforge-inspect-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function inspectJson(path: string): Promise<InspectReport> {
  expect(await run([path, '--json'])).toBe(0);
  expect(io.out.trim().split('\n')).toHaveLength(1); // one JSON object
  return JSON.parse(io.out) as InspectReport;
}

describe.skipIf(!HAVE_SHARED)('inspect on the shared files (skipped: ../shared missing)', () => {
  it('--json: architecture, validated hparams, tokenizer, tensor table and totals', async () => {
    const r = await inspectJson(STORIES);
    const src = await fileSource(STORIES);
    const file = await readGGUF(src);
    await src.close();
    expect(r.architecture).toBe('llama');
    expect(r.version).toBe(3);
    expect(r.fileSize).toBe(1185376);
    expect(r.hparamsError).toBeNull();
    const { slidingWindow: _none, ...expected } = readHParams(file); // undefined fields vanish in JSON
    expect(r.hparams).toEqual(expected);
    expect(r.hyperparameters).toMatchObject({ context_length: 2048, embedding_length: 64, 'attention.head_count': 8, 'attention.head_count_kv': 4, feed_forward_length: 172, block_count: 5, 'rope.dimension_count': 8 });
    expect(r.hyperparameters['attention.layer_norm_rms_epsilon']).toBe(1e-5); // float32 shown at its shortest
    expect(r.general).toEqual({ name: 'llama' });
    expect(r.tokenizer).toEqual({
      model: 'llama', pre: null, vocabSize: 512, bosId: 1, eosId: 2, unkId: 0, padId: 4294967295, addBos: null, addEos: null,
      merges: null, hasScores: true, hasTokenTypes: true, chatTemplate: false,
    });
    expect(r.tensors).toHaveLength(48);
    expect(r.tensors[0]).toEqual({ name: 'token_embd.weight', type: 'F32', shape: [64, 512], bytes: 131072, offset: file.dataOffset });
    expect(r.tensors.find((t) => t.name === 'blk.4.ffn_down.weight')).toMatchObject({ shape: [172, 64], bytes: 172 * 64 * 4 });
    expect(r.totals).toEqual({ tensors: 48, bytes: 1185376 - file.dataOffset, parameters: (1185376 - file.dataOffset) / 4, metadataKeys: 19 });
  });

  it('text output names every section and tensor', async () => {
    expect(await run([STORIES])).toBe(0);
    expect(io.out).toMatch(/^.*stories260K\.gguf: GGUF v3, 1\.13 MiB \(1185376 bytes\), alignment 32, 19 metadata keys\n/);
    expect(io.out).toContain('architecture: llama');
    expect(io.out).toMatch(/attention\.head_count_kv\s+4\n/);
    expect(io.out).toMatch(/grouped-query ratio\s+2 \(8 heads, 4 kv heads\)/);
    expect(io.out).toMatch(/rope\s+normal, base 10000, 8 dims, scaling none/);
    expect(io.out).toMatch(/attention\.layer_norm_rms_epsilon\s+0\.00001\n/);
    expect(io.out).toMatch(/model \/ pre\s+llama \/ -/);
    expect(io.out).toMatch(/bos \/ eos \/ unk \/ pad ids\s+1 \/ 2 \/ 0 \/ 4294967295/);
    expect(io.out).toMatch(/token_embd\.weight\s+F32\s+64 x 512\s+131072\n/);
    expect(io.out).toMatch(/blk\.4\.ffn_norm\.weight\s+F32\s+64\s+256\n/);
    expect(io.out).toMatch(/total: 48 tensors, 292800 parameters, 1171200 bytes of tensor data \(1\.12 MiB\)\n$/);
  });

  it('reads only the header of a file with large tensors', async () => {
    const path = join(dir, 'big.gguf');
    const n = 1 << 22; // 16 MiB of F32
    writeFileSync(path, writeGGUF([['general.architecture', { type: T.STRING, value: 'llama' }]], [
      { name: 'a', dims: [1024, n / 1024], type: GGMLType.F32, data: new Uint8Array(n * 4) },
      { name: 'b', dims: [1024, n / 1024], type: GGMLType.F32, data: new Uint8Array(n * 4) },
    ]));
    const r = await inspectJson(path);
    expect(r.totals.bytes).toBe(2 * n * 4);
    const read = reads.filter((x) => x.path === path).reduce((s, x) => s + x.length, 0);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(1 << 18); // one header chunk, not 32 MiB of weights
  });

  it('a vocab-only file of another architecture: raw hyperparameters, no llama hparams, merges counted', async () => {
    const r = await inspectJson(GPT2);
    expect(r.architecture).toBe('gpt2');
    expect(r.hparams).toBeNull();
    expect(r.hparamsError).toBeNull();
    expect(r.hyperparameters).toMatchObject({ block_count: 12, context_length: 1024, embedding_length: 768 });
    expect(r.tokenizer).toMatchObject({ model: 'gpt2', pre: 'gpt-2', vocabSize: 50257, merges: 50000, bosId: 50256, eosId: 50256 });
    expect(r.tensors).toEqual([]);
    expect(r.totals.tensors).toBe(0);
  });

  it('runs through the CLI dispatcher', async () => {
    expect(await main(['inspect', STORIES, '--json'])).toBe(0);
    expect((JSON.parse(io.out) as InspectReport).tensors).toHaveLength(48);
  });
});

describe('inspect without shared data', () => {
  it('reports hyperparameters that fail validation instead of failing', async () => {
    const path = join(dir, 'bad-heads.gguf');
    writeFileSync(path, writeGGUF([
      ['general.architecture', { type: T.STRING, value: 'llama' }],
      ['llama.context_length', { type: T.UINT32, value: 128 }],
      ['llama.embedding_length', { type: T.UINT32, value: 64 }],
      ['llama.block_count', { type: T.UINT32, value: 1 }],
      ['llama.feed_forward_length', { type: T.UINT32, value: 128 }],
      ['llama.attention.head_count', { type: T.UINT32, value: 8 }],
      ['llama.attention.head_count_kv', { type: T.UINT32, value: 3 }],
      ['llama.attention.layer_norm_rms_epsilon', { type: T.FLOAT32, value: 1e-5 }],
      ['llama.expert_count', { type: T.UINT64, value: 18446744073709551615n }],
    ], []));
    const r = await inspectJson(path);
    expect(r.hparams).toBeNull();
    expect(r.hparamsError).toMatch(/^INVALID_VALUE: .*head_count_kv 3 must divide/);
    expect(r.hyperparameters['expert_count']).toBe('18446744073709551615'); // bigints as strings in JSON
    expect(r.tokenizer).toBeNull();
    io.out = '';
    expect(await run([path])).toBe(0);
    expect(io.out).toContain('invalid for llama: INVALID_VALUE');
    expect(io.out).toContain('tokenizer:\n  (none)');
  });

  it('a corrupt file exits 1 with the error code on stderr', async () => {
    const path = join(dir, 'not.gguf');
    writeFileSync(path, 'GGML this is not a gguf file');
    expect(await main(['inspect', path])).toBe(1);
    expect(io.err).toMatch(/GGUFError \[BAD_MAGIC\]: .*not a GGUF file/);
    expect(io.out).toBe('');
  });

  it('usage: --help, and exactly one file', async () => {
    expect(await run(['--help'])).toBe(0);
    expect(io.out).toMatch(/^usage: wasmforge inspect FILE/);
    await expect(run([])).rejects.toThrow(/expected one FILE, got 0/);
    await expect(run(['a.gguf', 'b.gguf'])).rejects.toThrow(/expected one FILE, got 2/);
  });
});
