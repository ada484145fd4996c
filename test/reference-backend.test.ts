// The oracles judged against outside truth:
//  1. the plain llama forward pass (test/reference/llama-reference.ts) reproduces llama2.c's greedy
//     runs of stories260K token for token, and the F16/Q8_0/Q4_0 variants' dequantized-weight runs;
//  2. the reference backend, driven through the Backend contract by a batched graph written here,
//     gives the same logits as that forward pass (prefill in one batch, shuffled block table,
//     f32 and f16 cache);
//  3. the f16 conversion used for the cache is round-to-nearest-even per IEEE 754.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { asF32, type RopeParams } from '../src/backend/backend.js';
import { GGUFValueType } from '../src/gguf/constants.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { GGMLType } from '../src/tensor/ggml-types.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/backend/reference/half.js';
import { loadLlamaReference, type LlamaReference } from './reference/llama-reference.js';
import { loadIntoBackend, maxRelDiff } from './reference/backend-graph.js';
import { llama2cTokenizer } from './reference/llama2c-tokenizer.js';
import { createReferenceBackend, ropeAngle } from '../src/backend/reference/reference-backend.js';

const MODELS = new URL('../../shared/models/', import.meta.url).pathname;
const haveModels = existsSync(MODELS + 'stories260K.gguf') && existsSync(MODELS + 'reference/stories260K_greedy_llama2c_run.txt');
const SKIP_MSG = `shared models not found at ${MODELS}: skipping stories260K reference checks`;
if (!haveModels) console.warn(SKIP_MSG);

interface Expected {
  header: string;
  prompt: string;
  steps: number;
  text: string;
}

/** Sections "### <header>\n<text>" of a reference file; the prompt follows "prompt: " or "-i '". */
function parseReference(path: string): Expected[] {
  const raw = readFileSync(path, 'utf8');
  return raw
    .split(/^### /m)
    .filter((s) => s.trim().length > 0)
    .map((section) => {
      const nl = section.indexOf('\n');
      const header = section.slice(0, nl);
      const prompt = /-i '([^']*)'/.exec(header)?.[1] ?? /^prompt: (.*?) \|/.exec(header)?.[1];
      const steps = Number(/-n (\d+)/.exec(header)?.[1]);
      if (prompt === undefined || !Number.isInteger(steps)) throw new Error(`cannot parse reference header: ${header}`);
      // llama2.c ends the run with "\n"; sections are separated by a blank line.
      return { header, prompt, steps, text: section.slice(nl + 1).replace(/\n+$/, '') };
    });
}

/** llama2.c run.c's generate() with temperature 0: argmax, first maximum wins. */
function generateLikeLlama2c(model: LlamaReference, prompt: string, steps: number): string {
  const tok = llama2cTokenizer(model.gguf);
  const ids = tok.encode(prompt);
  model.reset();
  const bytes: number[] = [];
  let token = ids[0];
  for (let pos = 0; pos < steps; pos++) {
    const logits = model.forward(token, pos);
    let next: number;
    if (pos < ids.length - 1) next = ids[pos + 1];
    else {
      next = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[next]) next = i;
    }
    if (next === 1) break;
    bytes.push(...tok.decode(token, next));
    token = next;
  }
  return new TextDecoder().decode(new Uint8Array(bytes)).replace(/\n+$/, '');
}

describe.skipIf(!haveModels)('llama reference forward vs llama2.c (stories260K)', () => {
  it('reproduces the three F32 greedy runs of llama2.c run.c token for token', async () => {
    const model = await loadLlamaReference(MODELS + 'stories260K.gguf');
    const runs = parseReference(MODELS + 'reference/stories260K_greedy_llama2c_run.txt');
    expect(runs.length).toBe(3);
    for (const run of runs) expect(generateLikeLlama2c(model, run.prompt, run.steps), run.header).toBe(run.text);
  });

  it('reproduces the F16, Q8_0 and Q4_0 runs (weights dequantized to f32, f32 activations)', async () => {
    const variants = parseReference(MODELS + 'reference/stories260K_greedy_variants.txt');
    const files: Record<string, string> = { f32: '', f16: '-f16', q8_0: '-q8_0', q4_0: '-q4_0' };
    const seen = new Set<string>();
    for (const run of variants) {
      const name = /^variant: (\S+)/.exec(run.header)?.[1] ?? '';
      expect(files[name], `unknown variant in ${run.header}`).toBeDefined();
      seen.add(name);
      const model = await loadLlamaReference(`${MODELS}stories260K${files[name]}.gguf`);
      expect(generateLikeLlama2c(model, run.prompt, run.steps), run.header).toBe(run.text);
    }
    expect([...seen].sort()).toEqual(['f16', 'f32', 'q4_0', 'q8_0']);
  });
});

describe.skipIf(!haveModels)('reference backend vs llama reference forward (stories260K)', () => {
  // Both compute in f64 and round to f32 at nearly the same points (measured: identical logits), so
  // 1e-5 of the logit range leaves room only for rounding; a wrong op (rope pairing, GQA mapping,
  // slot math) moves logits by O(1). An f16 cache rounds K/V by up to 2^-11 relative (measured
  // 9e-4 of the logit range after 5 layers), hence 5e-3 there.
  const cases = [
    { file: 'stories260K.gguf', kv: 'f32', bound: 1e-5 },
    { file: 'stories260K-q4_0.gguf', kv: 'f32', bound: 1e-5 },
    { file: 'stories260K-q8_0.gguf', kv: 'f16', bound: 5e-3 },
  ] as const;
  for (const c of cases) {
    it(`${c.file}, ${c.kv} cache: 13-token prefill in one batch, then 6 single-token steps`, async () => {
      const ref = await loadLlamaReference(MODELS + c.file);
      const be = createReferenceBackend();
      const model = await loadIntoBackend(be, MODELS + c.file, c.kv, 32);
      const tokens = [1, 403, 407, 261, 378, 1, 65, 280, 300, 500, 2, 17, 333, 45, 99, 123, 456, 7, 88];
      const want = tokens.map((t, p) => ref.forward(t, p));
      const got = [...(await model.forwardBatch(tokens.slice(0, 13), 0))];
      for (let p = 13; p < tokens.length; p++) got.push(...(await model.forwardBatch([tokens[p]], p)));
      const worst = Math.max(...got.map((g, p) => maxRelDiff(g, want[p])));
      expect(worst).toBeLessThan(c.bound);
      await be.dispose();
    });
  }
});

describe('reference backend vs llama reference forward (synthetic qwen2: biases, NeoX RoPE, tied output)', () => {
  it('gives the same logits for a random 2-layer qwen2 model', async () => {
    // dim 64, 4 heads of 16, 2 kv heads, ffn 96, vocab 80, rope base 1e6; random f32 weights
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    const f32 = (n: number, scale: number, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rnd());
    const t = (name: string, dims: number[], data: Float32Array) => ({ name, dims, type: GGMLType.F32, data: new Uint8Array(data.buffer) });
    const dim = 64, kvDim = 32, ffn = 96, vocab = 80;
    const tensors = [t('token_embd.weight', [dim, vocab], f32(dim * vocab, 1)), t('output_norm.weight', [dim], f32(dim, 0.2, 1))];
    for (let l = 0; l < 2; l++) {
      const p = `blk.${l}.`;
      tensors.push(
        t(p + 'attn_norm.weight', [dim], f32(dim, 0.2, 1)), t(p + 'ffn_norm.weight', [dim], f32(dim, 0.2, 1)),
        t(p + 'attn_q.weight', [dim, dim], f32(dim * dim, 0.3)), t(p + 'attn_q.bias', [dim], f32(dim, 1)),
        t(p + 'attn_k.weight', [dim, kvDim], f32(dim * kvDim, 0.3)), t(p + 'attn_k.bias', [kvDim], f32(kvDim, 1)),
        t(p + 'attn_v.weight', [dim, kvDim], f32(dim * kvDim, 0.3)), t(p + 'attn_v.bias', [kvDim], f32(kvDim, 1)),
        t(p + 'attn_output.weight', [dim, dim], f32(dim * dim, 0.2)),
        t(p + 'ffn_gate.weight', [dim, ffn], f32(dim * ffn, 0.2)), t(p + 'ffn_up.weight', [dim, ffn], f32(dim * ffn, 0.2)),
        t(p + 'ffn_down.weight', [ffn, dim], f32(dim * ffn, 0.2)),
      );
    }
    const u32 = (value: number) => ({ type: GGUFValueType.UINT32, value });
    const meta: [string, { type: GGUFValueType; value: string | number }][] = [
      ['general.architecture', { type: GGUFValueType.STRING, value: 'qwen2' }],
      ['qwen2.embedding_length', u32(dim)], ['qwen2.block_count', u32(2)], ['qwen2.feed_forward_length', u32(ffn)],
      ['qwen2.attention.head_count', u32(4)], ['qwen2.attention.head_count_kv', u32(2)], ['qwen2.context_length', u32(64)],
      ['qwen2.rope.freq_base', { type: GGUFValueType.FLOAT32, value: 1e6 }],
      ['qwen2.attention.layer_norm_rms_epsilon', { type: GGUFValueType.FLOAT32, value: 1e-6 }],
    ];
    const dir = mkdtempSync(join(tmpdir(), 'wasmforge-ref-'));
    const path = join(dir, 'qwen2-tiny.gguf');
    try {
      writeFileSync(path, writeGGUF(meta, tensors));
      const ref = await loadLlamaReference(path);
      expect(ref.config.neox).toBe(true);
      const be = createReferenceBackend();
      const model = await loadIntoBackend(be, path, 'f32', 32);
      // positions up to 24: with base 1e6 the slow pairs barely turn, the fast ones wrap several times
      const tokens = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % vocab);
      const want = tokens.map((tok, p) => ref.forward(tok, p));
      const got = [...(await model.forwardBatch(tokens.slice(0, 9), 0))];
      for (let p = 9; p < tokens.length; p++) got.push(...(await model.forwardBatch([tokens[p]], p)));
      expect(Math.max(...got.map((g, p) => maxRelDiff(g, want[p])))).toBeLessThan(1e-5);
      await be.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reference f16 conversion (IEEE 754 round to nearest even)', () => {
  it('round-trips every finite f16 value and rounds midpoints to the even neighbour', () => {
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const nextUp = (x: number) => { f32[0] = x; u32[0] += x >= 0 ? 1 : -1; return f32[0]; };
    const nextDown = (x: number) => { f32[0] = x; u32[0] += x >= 0 ? -1 : 1; return f32[0]; };
    for (let h = 0; h < 0x7c00; h++) {
      const a = f16BitsToF32(h);
      expect(f32ToF16Bits(a)).toBe(h);
      expect(f32ToF16Bits(-a)).toBe(h | 0x8000);
      // midpoint between h and h+1 (h+1 = 0x7c00 is infinity: its midpoint 65520 rounds up to it)
      const b = h + 1 === 0x7c00 ? 65536 : f16BitsToF32(h + 1);
      const mid = (a + b) / 2; // exact in f32: one more bit than f16 has
      expect(f32ToF16Bits(mid)).toBe(h % 2 === 0 ? h : h + 1);
      expect(f32ToF16Bits(nextDown(mid))).toBe(h);
      expect(f32ToF16Bits(nextUp(mid))).toBe(h + 1);
    }
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
    expect(f32ToF16Bits(1e-9)).toBe(0);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });
});

describe('reference RoPE follows its definition', () => {
  const base: RopeParams = { ropeDims: 8, freqBase: 10000, freqScale: 1, neox: false, extFactor: 0, attnFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 4096 };

  it('rotates pair (2i, 2i+1) or (i, i+d/2) by pos*base^(-2i/d), passes dims beyond ropeDims', async () => {
    for (const neox of [false, true]) {
      const be = createReferenceBackend();
      const headDim = 12, nHeads = 2; // ropeDims 8 < headDim: partial rotation
      const x = be.allocate(GGMLType.F32, [nHeads * headDim]), pos = be.allocate(GGMLType.I32, [1]);
      const input = Float32Array.from({ length: nHeads * headDim }, (_, i) => Math.sin(i + 1) * 2);
      be.upload(x, input);
      be.upload(pos, Int32Array.of(37));
      be.rope(x, 1, nHeads, headDim, pos, { ...base, neox });
      const out = asF32(await be.read(x));
      for (let h = 0; h < nHeads; h++) {
        for (let i = 0; i < 4; i++) {
          const th = 37 * 10000 ** (-2 * i / 8);
          const [a, b] = neox ? [i, i + 4] : [2 * i, 2 * i + 1];
          const x0 = input[h * headDim + a], x1 = input[h * headDim + b];
          expect(out[h * headDim + a]).toBeCloseTo(x0 * Math.cos(th) - x1 * Math.sin(th), 5);
          expect(out[h * headDim + b]).toBeCloseTo(x0 * Math.sin(th) + x1 * Math.cos(th), 5);
        }
        for (let i = 8; i < headDim; i++) expect(out[h * headDim + i]).toBe(input[h * headDim + i]);
      }
    }
  });

  it('YaRN: low pairs extrapolate, high pairs interpolate, mscale = attnFactor(1 + 0.1 ln(1/s))', () => {
    const p: RopeParams = { ...base, ropeDims: 64, freqScale: 0.25, extFactor: 1, attnFactor: 0.9 };
    const mscale = 0.9 * (1 + 0.1 * Math.log(4));
    // corr dims: floor/ceil of 64 ln(4096 / (beta 2 pi)) / (2 ln 10000) for beta 32 and 1
    const low = Math.floor((64 * Math.log(4096 / (32 * 2 * Math.PI))) / (2 * Math.log(10000)));
    const high = Math.ceil((64 * Math.log(4096 / (1 * 2 * Math.PI))) / (2 * Math.log(10000)));
    expect(low).toBeGreaterThan(0);
    expect(high).toBeLessThan(31);
    const th = (i: number) => 100 * 10000 ** (-2 * i / 64);
    const at0 = ropeAngle(100, 0, p), atLow = ropeAngle(100, low, p), atTop = ropeAngle(100, 31, p);
    expect(at0.cos).toBeCloseTo(Math.cos(th(0)) * mscale, 12);
    expect(atLow.sin).toBeCloseTo(Math.sin(th(low)) * mscale, 12);
    expect(atTop.cos).toBeCloseTo(Math.cos(th(31) * 0.25) * mscale, 12);
    const mid = Math.floor((low + high) / 2), w = 1 - (mid - low) / (high - low);
    expect(ropeAngle(100, mid, p).cos).toBeCloseTo(Math.cos(th(mid) * 0.25 * (1 - w) + th(mid) * w) * mscale, 12);
    // extFactor 0: plain linear scaling, still multiplied by attnFactor (as ggml does)
    const off = ropeAngle(100, 3, { ...p, extFactor: 0 });
    expect(off.sin).toBeCloseTo(Math.sin(th(3) * 0.25) * 0.9, 12);
  });
});
