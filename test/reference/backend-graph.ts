// A batched llama/qwen2 graph over the Backend contract, written for tests independently of
// src/model/: it lets any backend (reference or WASM) run a whole GGUF model so its logits can be
// compared with the plain forward pass in llama-reference.ts.
import { asF32, asWeight, type Backend, type KVLayer, type RopeParams, type Tensor, type WeightTensor } from '../../src/backend/backend.js';
import { GGMLType } from '../../src/tensor/ggml-types.js';
import { readGGUF } from '../../src/gguf/reader.js';
import { readRange } from '../../src/io/byte-source.js';
import { fileSource } from '../../src/runtime/file-source.js';

export interface BackendModel {
  forwardBatch(tokens: number[], startPos: number): Promise<Float32Array[]>;
}

export async function loadIntoBackend(be: Backend, path: string, kvType: 'f32' | 'f16', maxSeq: number): Promise<BackendModel> {
  const src = await fileSource(path);
  const g = await readGGUF(src);
  const tensor = async (name: string): Promise<WeightTensor> => {
    const t = g.tensorsByName.get(name)!;
    const w = asWeight(be.allocate(t.type, [t.dims[0], t.dims[1] ?? 1]), t.dims[0], t.dims[1] ?? 1);
    be.upload(w, await readRange(src, t.fileOffset, t.nBytes));
    return w;
  };
  const m = g.metadata;
  const arch = m.get('general.architecture')!.value as string;
  const num = (k: string, fallback?: number) => (m.get(`${arch}.${k}`)?.value as number | undefined) ?? fallback!;
  const dim = num('embedding_length'), nHeads = num('attention.head_count');
  const nKvHeads = num('attention.head_count_kv'), nLayers = num('block_count');
  const ffn = num('feed_forward_length'), eps = num('attention.layer_norm_rms_epsilon');
  const headDim = dim / nHeads, kvDim = nKvHeads * headDim;
  const rope: RopeParams = {
    ropeDims: num('rope.dimension_count', headDim), freqBase: num('rope.freq_base', 10000), freqScale: 1, neox: arch === 'qwen2',
    extFactor: 0, attnFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 2048,
  };
  const embd = await tensor('token_embd.weight');
  const outNorm = await tensor('output_norm.weight');
  const output = g.tensorsByName.has('output.weight') ? await tensor('output.weight') : embd;
  const bias = async (name: string) => (g.tensorsByName.has(name) ? await tensor(name) : undefined);
  interface Layer {
    attnNorm: Tensor; ffnNorm: Tensor; wq: WeightTensor; wk: WeightTensor; wv: WeightTensor; wo: WeightTensor;
    gate: WeightTensor; up: WeightTensor; down: WeightTensor; bq?: Tensor; bk?: Tensor; bv?: Tensor;
  }
  const layers: Layer[] = [];
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      attnNorm: await tensor(p + 'attn_norm.weight'), ffnNorm: await tensor(p + 'ffn_norm.weight'),
      wq: await tensor(p + 'attn_q.weight'), wk: await tensor(p + 'attn_k.weight'), wv: await tensor(p + 'attn_v.weight'),
      wo: await tensor(p + 'attn_output.weight'), gate: await tensor(p + 'ffn_gate.weight'),
      up: await tensor(p + 'ffn_up.weight'), down: await tensor(p + 'ffn_down.weight'),
      bq: await bias(p + 'attn_q.bias'), bk: await bias(p + 'attn_k.bias'), bv: await bias(p + 'attn_v.bias'),
    });
  }
  await src.close();

  // Paged cache with a shuffled block table: logical block b lives in physical block perm[b].
  const blockSize = 4, nBlocks = Math.ceil(maxSeq / blockSize) + 3;
  const kvElement = kvType === 'f16' ? GGMLType.F16 : GGMLType.F32;
  const kv: KVLayer[] = layers.map(() => ({
    k: be.allocate(kvElement, [kvDim, nBlocks * blockSize]), v: be.allocate(kvElement, [kvDim, nBlocks * blockSize]),
    type: kvType, blockSize, kvDim,
  }));
  const perm = Array.from({ length: nBlocks }, (_, i) => i);
  for (let i = nBlocks - 1, r = 12345; i > 0; i--) {
    r = (r * 1103515245 + 12345) % 2147483648;
    const j = r % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const table = be.allocate(GGMLType.I32, [nBlocks]);
  be.upload(table, Int32Array.from(perm));

  return {
    async forwardBatch(tokens, startPos) {
      const T = tokens.length;
      const a = (n: number) => be.allocate(GGMLType.F32, [n, T]);
      const i = (n: number) => be.allocate(GGMLType.I32, [n]);
      const x = a(dim), xb = a(dim), q = a(dim), k = a(kvDim), v = a(kvDim);
      const att = a(dim), gate = a(ffn), up = a(ffn), logits = a(output.rows);
      const ids = i(T), pos = i(T), slots = i(T), info = i(3 * T);
      const posv = new Int32Array(T), slotv = new Int32Array(T), infov = new Int32Array(3 * T);
      for (let t = 0; t < T; t++) {
        const p = startPos + t;
        posv[t] = p;
        slotv[t] = perm[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
        infov.set([0, 0, p + 1], 3 * t); // the table from entry 0, keys 0..p
      }
      be.upload(ids, Int32Array.from(tokens));
      be.upload(pos, posv);
      be.upload(slots, slotv);
      be.upload(info, infov);
      be.getRows(x, embd, ids, T);
      layers.forEach((L, l) => {
        be.rmsNorm(xb, x, L.attnNorm, dim, T, eps);
        be.matmul(q, L.wq, xb, T);
        be.matmul(k, L.wk, xb, T);
        be.matmul(v, L.wv, xb, T);
        if (L.bq !== undefined) be.addBias(q, q, L.bq, dim, T);
        if (L.bk !== undefined) be.addBias(k, k, L.bk, kvDim, T);
        if (L.bv !== undefined) be.addBias(v, v, L.bv, kvDim, T);
        be.rope(q, T, nHeads, headDim, pos, rope);
        be.rope(k, T, nKvHeads, headDim, pos, rope);
        be.storeKV(kv[l], k, v, slots, T);
        be.attention({ q, out: att, nTokens: T, nHeads, nKvHeads, headDim, scale: 1 / Math.sqrt(headDim), layer: kv[l], blockTables: table, tokenInfo: info });
        be.matmul(xb, L.wo, att, T);
        be.add(x, x, xb, T * dim);
        be.rmsNorm(xb, x, L.ffnNorm, dim, T, eps);
        be.matmul(gate, L.gate, xb, T);
        be.matmul(up, L.up, xb, T);
        be.swiglu(gate, gate, up, T * ffn);
        be.matmul(xb, L.down, gate, T);
        be.add(x, x, xb, T * dim);
      });
      be.rmsNorm(x, x, outNorm, dim, T, eps);
      be.matmul(logits, output, x, T);
      const all = asF32(await be.read(logits));
      return Array.from({ length: T }, (_, t) => all.slice(t * output.rows, (t + 1) * output.rows));
    },
  };
}

/** max |a - b| over max |b|. */
export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}
