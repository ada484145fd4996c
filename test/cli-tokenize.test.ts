import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run as detokenize, parseIds } from '../src/cli/detokenize.js';
import { main } from '../src/cli/main.js';
import { run as tokenize } from '../src/cli/tokenize.js';
import { readGGUF, type GGUFFile } from '../src/gguf/reader.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { captureOutput } from './helpers/capture-output.js';
import type { RecordedRead } from './helpers/recording-file-source.js';
import { Tokenizer } from '../src/tokenizer/index.js';

// Record every read, to prove the commands stay in the header.
const reads = vi.hoisted(() => [] as RecordedRead[]);
vi.mock('../src/runtime/file-source.js', async (importOriginal) =>
  (await import('./helpers/recording-file-source.js')).recordingFileSourceModule(await importOriginal(), reads));

const MODEL = join(import.meta.dirname, '..', 'models', 'stories260K.gguf');

const io = captureOutput(() => {
  reads.length = 0;
});

const dir = mkdtempSync(join(tmpdir(), 'wasmforge-tokenize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let meta: GGUFFile['metadata'];
let tok: Tokenizer;
beforeAll(async () => {
  const { fileSource } = await import('../src/runtime/file-source.js');
  const src = await fileSource(MODEL);
  meta = (await readGGUF(src)).metadata;
  await src.close();
  tok = Tokenizer.fromGGUF(meta);
});

const stdinOf = (text: string) => async () => text;
const ids = (s: string) => s.trim().split(' ').map(Number);

describe('wasmforge tokenize', () => {
  it('prints the ids the library gives, space-separated', async () => {
    expect(await tokenize(['-m', MODEL, 'Once upon a time'])).toBe(0);
    expect(ids(io.out)).toEqual(tok.encode('Once upon a time'));
    expect(io.out.endsWith('\n')).toBe(true);
  });

  it('--bos adds BOS, --json prints an array, several words are joined by spaces', async () => {
    expect(await tokenize(['-m', MODEL, '--bos', '--json', 'Once', 'upon'])).toBe(0);
    const arr = JSON.parse(io.out) as number[];
    expect(arr[0]).toBe(tok.bosId);
    expect(arr.slice(1)).toEqual(tok.encode('Once upon'));
  });

  it('--parse-special turns "<s>" into the BOS token', async () => {
    await tokenize(['-m', MODEL, '--parse-special', '<s>Hi']);
    expect(ids(io.out)[0]).toBe(tok.bosId);
    io.out = '';
    await tokenize(['-m', MODEL, '<s>Hi']);
    expect(ids(io.out)).not.toContain(tok.bosId);
  });

  it('reads stdin as is for "-"', async () => {
    expect(await tokenize(['-m', MODEL, '-'], stdinOf('line one\nline two\n'))).toBe(0);
    expect(ids(io.out)).toEqual(tok.encode('line one\nline two\n'));
  });

  it('defaults to the bundled model', async () => {
    expect(await tokenize(['hello'])).toBe(0);
    expect(ids(io.out)).toEqual(tok.encode('hello'));
  });

  it('reads only the header of a model with large tensors', async () => {
    const path = join(dir, 'big.gguf');
    const n = 1 << 22; // 16 MiB of F32
    writeFileSync(path, writeGGUF(meta, [{ name: 'token_embd.weight', dims: [1024, n / 1024], type: GGMLType.F32, data: new Uint8Array(n * 4) }]));
    expect(await tokenize(['-m', path, 'Once upon a time'])).toBe(0);
    expect(ids(io.out)).toEqual(tok.encode('Once upon a time'));
    const read = reads.filter((x) => x.path === path).reduce((s, x) => s + x.length, 0);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(1 << 18); // one header chunk, not 16 MiB of weights
  });

  it('reports usage errors through main', async () => {
    expect(await main(['tokenize', '-m', MODEL])).toBe(1);
    expect(io.err).toMatch(/UsageError: no text given/);
  });
});

describe('wasmforge detokenize', () => {
  it('round-trips what tokenize printed', async () => {
    const text = 'Lily and Tom went to the park. "Hi!" 🦙';
    await tokenize(['-m', MODEL, text]);
    const printed = io.out.trim();
    io.out = '';
    expect(await detokenize(['-m', MODEL, ...printed.split(' ')])).toBe(0);
    expect(io.out).toBe(text + '\n');
  });

  it('takes ids as one comma list, a JSON array or stdin', async () => {
    const list = tok.encode('The cat');
    await detokenize(['-m', MODEL, list.join(',')]);
    await detokenize(['-m', MODEL, JSON.stringify(list)]);
    await detokenize(['-m', MODEL, '-'], stdinOf(list.join(' ') + '\n'));
    expect(io.out).toBe('The cat\nThe cat\nThe cat\n');
  });

  it('renders control tokens unless --skip-special', async () => {
    const list = [tok.bosId!, ...tok.encode('Hi'), tok.eosId!];
    await detokenize(['-m', MODEL, list.join(' ')]);
    expect(io.out).toBe(tok.decode(list) + '\n');
    expect(io.out).toContain('</s>');
    io.out = '';
    await detokenize(['-m', MODEL, '--skip-special', list.join(' ')]);
    expect(io.out).not.toContain('<');
  });

  it('rejects ids that are not numbers or not in the vocabulary', async () => {
    expect(() => parseIds('1 two 3')).toThrowError(/"two" is not a token id/);
    expect(parseIds(' [1, 2,3] ')).toEqual([1, 2, 3]);
    expect(await main(['detokenize', '-m', MODEL, '1', '999999'])).toBe(1);
    expect(io.err).toMatch(/TokenizerError \[INVALID_TOKEN_ID\]/);
  });
});
