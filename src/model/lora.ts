// LoRA adapters in llama.cpp's GGUF format (general.type = adapter, adapter.type = lora,
// adapter.lora.alpha; for a weight W, tensors "W.lora_a" [in x rank] and "W.lora_b" [rank x out]),
// applied unmerged as llama.cpp does: y = W·x + s·B·(A·x) with s = scale · alpha / rank. An adapter
// is loaded onto a model (its tensors in the model's backend) and switched on per engine with a
// scale, without reloading the model.
import { asWeight, type WeightTensor } from '../backend/backend.js';
import { getNumber, getString, has } from '../gguf/metadata.js';
import { openGGUF, type ModelInput } from '../io/open-source.js';
import { GGMLType, typeName } from '../tensor/ggml-types.js';
import { dequantize } from '../tensor/dequant.js';
import { quantize, QUANTIZABLE_TYPES } from '../tensor/quantize.js';
import { ModelError } from './errors.js';
import { layerTensorName } from './load-weights.js';
import type { Model } from './model.js';

export interface LoraPair {
  /** The model weight it adapts. */
  readonly target: WeightTensor;
  readonly a: WeightTensor;
  readonly b: WeightTensor;
  readonly rank: number;
}

export interface LoraAdapter {
  readonly name: string;
  readonly alpha: number;
  readonly pairs: readonly LoraPair[];
}

/** An adapter and its strength (llama.cpp's adapter scale; 1 = as trained). */
export interface ActiveAdapter {
  adapter: LoraAdapter;
  scale: number;
}

const SUPPORTED = new Set<GGMLType>([GGMLType.F32, GGMLType.F16]);

/** Read a LoRA adapter for `model` and put its tensors in the model's backend (ModelError ADAPTER_MISMATCH when it does not fit). */
export async function loadLoraAdapter(model: Model, input: ModelInput): Promise<LoraAdapter> {
  const { file, source } = await openGGUF(input);
  try {
    const meta = file.metadata;
    const fail = (why: string): never => {
      throw new ModelError('ADAPTER_MISMATCH', `${source.name}: ${why}`);
    };
    if (getString(meta, 'general.type', '') !== 'adapter' || getString(meta, 'adapter.type', '') !== 'lora') fail('not a LoRA adapter (general.type "adapter", adapter.type "lora")');
    const arch = getString(meta, 'general.architecture', '');
    if (arch !== model.architecture) fail(`an adapter for ${arch || 'an unnamed architecture'}, the model is ${model.architecture}`);
    const alpha = has(meta, 'adapter.lora.alpha') ? getNumber(meta, 'adapter.lora.alpha') : 0;
    const targets = targetsOf(model);
    const pairs: LoraPair[] = [];
    const offsets: [number, number][] = [];
    for (const ta of file.tensors) {
      if (!ta.name.endsWith('.lora_a')) {
        if (!ta.name.endsWith('.lora_b')) fail(`tensor "${ta.name}" is neither a .lora_a nor a .lora_b`);
        continue;
      }
      const base = ta.name.slice(0, -'.lora_a'.length);
      const tb = file.tensorsByName.get(`${base}.lora_b`) ?? fail(`"${ta.name}" has no "${base}.lora_b"`);
      const target = targets.get(base) ?? fail(`"${base}" is not a matrix of this model the adapter can change`);
      for (const t of [ta, tb]) if (!SUPPORTED.has(t.type)) fail(`"${t.name}" is ${typeName(t.type)}; adapters in F32 or F16 are supported`);
      const [aIn, rank] = ta.dims as [number, number];
      const [bRank, bOut] = tb.dims as [number, number];
      if (ta.dims.length !== 2 || tb.dims.length !== 2 || aIn !== target.cols || bOut !== target.rows || bRank !== rank) {
        fail(`"${base}" is [${target.cols} x ${target.rows}] in the model; the adapter's A is [${ta.dims.join(' x ')}] and B [${tb.dims.join(' x ')}], expected [${target.cols} x r] and [r x ${target.rows}]`);
      }
      pairs.push({ target, a: asWeight(model.backend.allocate(ta.type, [aIn, rank]), aIn, rank), b: asWeight(model.backend.allocate(tb.type, [rank, bOut]), rank, bOut), rank });
      offsets.push([ta.fileOffset, tb.fileOffset]);
    }
    if (pairs.length === 0) fail('it adapts no tensor');
    // Everything checked and allocated: read the tensors in.
    for (const [k, p] of pairs.entries()) {
      await model.backend.uploadFrom(p.a, source, offsets[k]![0]);
      await model.backend.uploadFrom(p.b, source, offsets[k]![1]);
    }
    return { name: source.name, alpha, pairs };
  } finally {
    await source.close();
  }
}

/** The model's matrices an adapter may target, by GGUF name (layer matrices and the output head; not tied or fused slices). */
function targetsOf(model: Model): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  // Fused q/k/v and gate/up are used as row slices, and experts through routed matmuls: no adapter applies there.
  const fused = (role: string, t: WeightTensor) => role === 'attn_qkv' || (role === 'ffn_up' && t.rows !== model.config.ffnDim) || role.includes('_exps') || role === 'ffn_gate_inp';
  const roles = model.arch.layerTensors(model.config).map((d) => d.role).filter((r) => !r.endsWith('.bias'));
  model.weights.layers.forEach((layer, l) => {
    for (const role of roles) {
      const t = layer.optional(role) as WeightTensor | undefined;
      if (t && 'rows' in t && !fused(role, t)) out.set(layerTensorName(l, role), t);
    }
  });
  if (model.weights.output && model.weights.output !== model.weights.tokenEmbedding) out.set('output.weight', model.weights.output);
  return out;
}

/**
 * Merge an adapter into the model's weights for good (W += s·B·A, s = scale · alpha / rank), as
 * llama.cpp's export-lora does: afterwards every engine computes with the adapted weights at no extra
 * cost, and the adapter must not be applied again. Quantized weights are dequantized, changed and
 * quantized again with the reference quantizers (lossy, like any requantization). Engines' prefix
 * caches hold KV of the old weights: clear them (Engine.clearPrefixCache).
 */
export async function mergeLoraAdapter(model: Model, adapter: LoraAdapter, scale: number): Promise<void> {
  if (!Number.isFinite(scale)) throw new ModelError('ADAPTER_MISMATCH', `the merge scale must be a finite number, got ${scale}`);
  const be = model.backend;
  const f32 = async (t: WeightTensor) => dequantize(t.type, await be.read(t), t.rows * t.cols);
  for (const p of adapter.pairs) {
    const W = p.target;
    if (W.type !== GGMLType.F32 && !QUANTIZABLE_TYPES.includes(W.type)) {
      throw new ModelError('UNSUPPORTED_OPERATION', `${adapter.name}: cannot merge into ${typeName(W.type)} weights (no quantizer for the type); apply the adapter unmerged`);
    }
  }
  for (const p of adapter.pairs) {
    const W = p.target, s = adapter.alpha ? (scale * adapter.alpha) / p.rank : scale;
    const [w, a, b] = [await f32(W), await f32(p.a), await f32(p.b)];
    // Row o of W (cols inputs) += s · Σ_k B[o][k] · A[k][:]
    for (let o = 0; o < W.rows; o++) {
      for (let k = 0; k < p.rank; k++) {
        const f = s * b[o * p.rank + k]!;
        if (f === 0) continue;
        const row = o * W.cols, arow = k * W.cols;
        for (let i = 0; i < W.cols; i++) w[row + i] += f * a[arow + i]!;
      }
    }
    be.upload(W, W.type === GGMLType.F32 ? w : quantize(W.type, w, W.cols));
  }
}
