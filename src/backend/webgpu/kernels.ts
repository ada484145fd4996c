/// <reference types="@webgpu/types" />
// The WGSL programs: each kernel of webgpu/ declares its tensor arguments and u32 parameters here
// once; `compose` writes what the kernel body reads them through. Tensors are named by handles, so
// two arguments may live in one GPU buffer (an op in place, views of one allocation), and WebGPU
// forbids binding a buffer twice in one dispatch when one binding writes: arguments are grouped by
// buffer, each group bound once (read-only unless an argument of it is written), and every
// argument reads and writes through accessors with its own offset, passed as a parameter:
//   a_w(i) / a_f(i) / a_i(i): word i of tensor a as u32 / f32 / i32 (a's offset must be 4-aligned)
//   a_u8(b): byte b of a (any alignment: weight blocks are 2-byte aligned)
//   a_f16(b): the f16 at byte b of a (b even) as f32: exact, by integer operations (common.wgsl's
//     f16_to_f32); for an argument a kernel lists as `halves`, on a device with shader-f16, read
//     through an array<f16> view of the same buffer and converted by the hardware
//   a_set(i, v) / a_setf(i, v): write word i; a_and / a_or: atomic word updates (f16 cache halves)
//   a_raw(i) / a_raw_set(i, v): word i of the whole buffer (copy_bytes)
// An argument a kernel lists as `parts` may be a tensor split by rows over several buffers (a KV
// cache past the binding limit): it is bound once per part and its accessors (all but a_raw) pick
// the part of word i, every part but the last holding P.a_part words.
// Parameters are u32 fields of the uniform P (f32 ones are bit patterns: bitcast<f32>(P.x)).
import { GGMLType, typeName, typeTraits } from '../../tensor/ggml-types.js';
import { MAX_TOP_K } from '../backend.js';
import { BackendError } from '../errors.js';
import { SHADERS } from './shaders.generated.js';

/** Threads per workgroup for every kernel. */
export const WG = 64;
/** The largest head dim attention takes (each thread keeps up to MAX_HEAD_DIM / WG output dims). */
export const MAX_HEAD_DIM = 512;
/**
 * Keys per attention segment (a multiple of WG), on a grid fixed by key position: attention.wgsl
 * folds a row's segments in order, in one workgroup or (split) in workgroups of their own.
 */
export const ATTENTION_SEGMENT_KEYS = 256;

export type ArgAccess = 'read' | 'write' | 'atomic';

export interface KernelDef {
  /** webgpu/<source>.wgsl */
  readonly source: string;
  readonly args: readonly { readonly name: string; readonly access: ArgAccess }[];
  readonly params: readonly string[];
  /** Includes webgpu/dequant.wgsl (reads the argument named w). */
  readonly dequant?: boolean;
  /** Includes the lane reductions: webgpu/lanes_subgroups.wgsl where the device has subgroups, else webgpu/lanes.wgsl. */
  readonly lanes?: boolean;
  /** Arguments that may span several buffers (read through accessors that pick the part). */
  readonly parts?: readonly string[];
  /** Read-only arguments whose f16 values (a_f16) go through an array<f16> view where the device has shader-f16. */
  readonly halves?: readonly string[];
}

const r = (name: string) => ({ name, access: 'read' as const });
const w = (name: string) => ({ name, access: 'write' as const });

/** The cache arguments of storeKV and attention: a layer's K and V may each span several buffers. */
const KV_CACHE = ['kc', 'vc'];
/** The weight of the dequantizing kernels (webgpu/dequant.wgsl reads it as w). */
const WEIGHT = ['w'];
/**
 * The most storage buffers the KV kernels bind besides the cache (attention with ALiBi: q, out,
 * tables, info, positions, slopes): what a device's per-stage limit leaves is shared by K and V.
 */
export const KV_OTHER_BINDINGS = 6;
/** The most parts one cache tensor spans (each a case of its accessors' switch). */
export const MAX_KV_PARTS = 8;

/** slots: workgroups per (token, head) row when split (the variant's SPLIT), one segment each. */
const ATTENTION_PARAMS = ['n_heads', 'n_kv_heads', 'head_dim', 'kv_dim', 'block_size', 'scale', 'softcap', 'one_row', 'slots'];
const MATMUL_PARAMS = ['rows', 'cols', 'row_bytes', 'used', 'per_slot', 'n_experts', 'out_rows', 'row_base', 'slots'];

export const KERNELS = {
  matmul: { source: 'matmul', args: [w('out'), r('x'), r('w')], params: MATMUL_PARAMS, dequant: true, lanes: true, halves: WEIGHT },
  matmulRouted: { source: 'matmul', args: [w('out'), r('x'), r('w'), r('ids')], params: MATMUL_PARAMS, dequant: true, lanes: true, halves: WEIGHT },
  matmulTiled: { source: 'matmul_tiled', args: [w('out'), r('x'), r('w')], params: ['rows', 'cols', 'row_bytes', 'out_rows', 'row_base', 'slots'], dequant: true, lanes: true, halves: WEIGHT },
  getRows: { source: 'get_rows', args: [w('out'), r('ids'), r('w')], params: ['rows', 'cols', 'row_bytes', 'row_base', 'only_own'], dequant: true, halves: WEIGHT },
  rmsNorm: { source: 'norm', args: [w('out'), r('x'), r('weight')], params: ['n', 'eps'], lanes: true },
  layerNorm: { source: 'norm', args: [w('out'), r('x'), r('weight'), r('bias')], params: ['n', 'eps'], lanes: true },
  rope: {
    source: 'rope', args: [w('x'), r('positions')],
    params: ['rope_dims', 'n_heads', 'head_dim', 'theta_scale', 'freq_scale', 'ext_factor', 'low', 'high', 'mscale', 'neox'],
  },
  ropeFactors: {
    source: 'rope', args: [w('x'), r('positions'), r('factors')],
    params: ['rope_dims', 'n_heads', 'head_dim', 'theta_scale', 'freq_scale', 'ext_factor', 'low', 'high', 'mscale', 'neox'],
  },
  elementwise: { source: 'elementwise', args: [w('out'), r('a'), r('b')], params: ['factor', 'cap', 'n'] },
  argmax: { source: 'argmax', args: [w('out'), r('x')], params: ['n'] },
  topK: { source: 'topk', args: [w('ids'), w('values'), r('x')], params: ['n', 'k'] },
  storeKVf32: { source: 'store_kv', args: [w('kc'), w('vc'), r('k'), r('v'), r('slots')], params: ['kv_dim', 'n_slots'], parts: KV_CACHE },
  storeKVf16: { source: 'store_kv', args: [{ name: 'kc', access: 'atomic' }, { name: 'vc', access: 'atomic' }, r('k'), r('v'), r('slots')], params: ['kv_dim', 'n_slots'], parts: KV_CACHE },
  storeKVBlocks: { source: 'store_kv_blocks', args: [{ name: 'kc', access: 'atomic' }, { name: 'vc', access: 'atomic' }, r('k'), r('v'), r('slots')], params: ['kv_dim', 'n_slots'], parts: KV_CACHE },
  attention: {
    source: 'attention', args: [r('q'), w('out'), r('kc'), r('vc'), r('tables'), r('info')],
    params: ATTENTION_PARAMS, parts: KV_CACHE, halves: KV_CACHE,
  },
  attentionAlibi: {
    source: 'attention', args: [r('q'), w('out'), r('kc'), r('vc'), r('tables'), r('info'), r('apos'), r('slopes')],
    params: ATTENTION_PARAMS, parts: KV_CACHE, halves: KV_CACHE,
  },
  /** Split attention's second pass: out ([tokens][heads][head_dim]) from the segment states in part. */
  attentionFold: { source: 'attention_fold', args: [w('out'), r('part')], params: ['head_dim', 'slots'] },
  routeExperts: { source: 'route_experts', args: [w('ids'), w('weights'), r('logits')], params: ['n_experts', 'used', 'normalize'] },
  combineExperts: { source: 'combine_experts', args: [w('out'), r('y'), r('weights')], params: ['n', 'used'] },
  copyBytes: { source: 'copy_bytes', args: [w('dst'), r('src')], params: ['dst_byte', 'src_byte', 'bytes'] },
} satisfies Record<string, KernelDef>;

export type KernelName = keyof typeof KERNELS;

/** Code a kernel body expects from its variant (a weight type, a cache type, an op). */
export interface Variant {
  readonly key: string;
  readonly code: string;
}

/** matmul's variant also says how many lanes sum an output row, how many threads share them, and how many slots an item has. */
export interface MatmulVariant extends Variant {
  readonly tpr: number;
  readonly tpt: number;
  readonly tt: number;
}

/**
 * How mat x vec spreads a row's lanes over threads (the same bits either way: matmul.wgsl).
 * 'lanes': a thread per lane, the lanes added across threads (GPUs: many threads per row, their
 * loads side by side). 'row': one thread sums all the lanes of its row (adapters that run
 * invocations on a CPU, where threads sharing a row cost a workgroup barrier each step).
 */
export type MatvecSplit = 'lanes' | 'row';

const DEQUANT_FN = new Map<GGMLType, string>([
  [GGMLType.F32, 'deq_f32'], [GGMLType.F16, 'deq_f16'], [GGMLType.BF16, 'deq_bf16'],
  [GGMLType.Q8_0, 'deq_q8_0'], [GGMLType.Q4_0, 'deq_q4_0'], [GGMLType.Q4_1, 'deq_q4_1'],
  [GGMLType.Q5_0, 'deq_q5_0'], [GGMLType.Q5_1, 'deq_q5_1'], [GGMLType.IQ4_NL, 'deq_iq4_nl'],
  [GGMLType.Q2_K, 'deq_q2_k'], [GGMLType.Q3_K, 'deq_q3_k'], [GGMLType.Q4_K, 'deq_q4_k'],
  [GGMLType.Q5_K, 'deq_q5_k'], [GGMLType.Q6_K, 'deq_q6_k'],
]);

/**
 * Types whose matmul has its own block dot product in matmul.wgsl, reading the codes a word at a
 * time and each scale once (the float types go element by element through deq).
 */
const BLOCK_DOT = new Map<GGMLType, string>([
  [GGMLType.Q4_0, 'block_dot_q4_0'], [GGMLType.Q8_0, 'block_dot_q8_0'], [GGMLType.Q4_1, 'block_dot_q4_1'], [GGMLType.Q5_0, 'block_dot_q5_0'],
  [GGMLType.Q5_1, 'block_dot_q5_1'], [GGMLType.IQ4_NL, 'block_dot_iq4_nl'],
  [GGMLType.Q2_K, 'block_dot_q2_k'], [GGMLType.Q3_K, 'block_dot_q3_k'], [GGMLType.Q4_K, 'block_dot_q4_k'], [GGMLType.Q5_K, 'block_dot_q5_k'], [GGMLType.Q6_K, 'block_dot_q6_k'],
]);
/**
 * Types whose block dot product applies the block's scale to the block's sum (the rest, the
 * K-quants included, scale every element as the dequantizer does): the tiled kernel does the same.
 */
const SCALED_SUM: ReadonlySet<GGMLType> = new Set([GGMLType.Q4_0, GGMLType.Q8_0]);

/** Weight types the kernels read in place (dequantized inside the shader). */
export const WEBGPU_WEIGHT_TYPES: ReadonlySet<GGMLType> = new Set(DEQUANT_FN.keys());

/**
 * The weight-type variant of matmul / getRows: QK elements per block of BLOCK_BYTES, deq, and the
 * activation the dot product sees (f16/bf16-rounded for F16/BF16 weights, as ggml's vec_dot_type;
 * f32 for the block types, whose activations the WebGPU kernels do not quantize).
 */
/** The weight type's block layout and per-element dequantization (getRows; the base of matmul's variant). */
export function dequantVariant(type: GGMLType): Variant {
  const fn = DEQUANT_FN.get(type);
  const traits = typeTraits(type);
  if (!fn || !traits) throw new BackendError('UNSUPPORTED_TYPE', `the WebGPU backend has no kernel for ${typeName(type)} weights`);
  return {
    key: typeName(type),
    code: [
      `const QK: u32 = ${traits.blockSize}u;`,
      `const BLOCK_BYTES: u32 = ${traits.blockBytes}u;`,
      `fn deq(blk: u32, j: u32) -> f32 { return ${fn}(blk, j); }`,
    ].join('\n'),
  };
}

/**
 * matmul's variant: the weight type's blocks, the activation its dot product sees (f16/bf16-rounded
 * for F16/BF16 weights, as ggml's vec_dot_type; f32 for the block types, whose activations the
 * WebGPU kernels do not quantize), its block dot product, threads per row and slots per thread.
 */
export function weightVariant(type: GGMLType, routed = false, cols = 0, slots = 1, split: MatvecSplit = 'lanes'): MatmulVariant {
  const base = dequantVariant(type);
  const tpr = lanesPerRow(type, cols);
  const tpt = split === 'lanes' ? tpr : 1;
  // slots per thread: 4 for batches (prompts), 1 for decode and routed experts (a slot group must share an expert)
  const tt = !routed && slots >= 4 ? 4 : 1;
  return {
    tpr,
    tpt,
    tt,
    key: `${base.key}${routed ? '-routed' : ''}-tpr${tpr}-tpt${tpt}-tt${tt}`,
    code: [
      base.code,
      `const TPR: u32 = ${tpr}u;`,
      `const TPT: u32 = ${tpt}u;`,
      `const TT: u32 = ${tt}u;`,
      `fn act(v: f32) -> f32 { return ${activation(type)}; }`,
      BLOCK_DOT.has(type)
        ? `fn block_dot(blk: u32, xb: u32) -> f32 { return ${BLOCK_DOT.get(type)}(blk, xb); }`
        : 'fn block_dot(blk: u32, xb: u32) -> f32 { var s = 0.0; for (var j = 0u; j < QK; j++) { s += deq(blk, j) * act(x_f(xb + j)); } return s; }',
      routed ? 'fn expert_of(slot: u32) -> u32 { return u32(ids_i(slot)); }' : 'fn expert_of(slot: u32) -> u32 { return 0u; }',
    ].join('\n'),
  };
}

/**
 * Lanes that sum an output row (TPR in the WGSL): 4 for rows of up to 64 blocks, else 16 (software
 * adapters pay ~50 us a workgroup, so one workgroup per row made small models crawl). Both matmul
 * kernels take it from here: it fixes each output's summation order.
 */
function lanesPerRow(type: GGMLType, cols: number): number {
  return cols / typeTraits(type)!.blockSize <= 64 ? 4 : 16;
}

/** The activation the dot product sees: f16/bf16-rounded for F16/BF16 weights (ggml's vec_dot_type), f32 otherwise. */
function activation(type: GGMLType): string {
  return type === GGMLType.F16 ? 'round_f16(v)' : type === GGMLType.BF16 ? 'round_bf16(v)' : 'v';
}

/** matmul_tiled's variant: its tile is `tile` rows by as many tokens, by 256 threads. */
export interface TiledVariant extends Variant {
  readonly tile: number;
  /**
   * Batches of at least this many tokens take it: half a tile. Below, more than half of the tile's
   * products would be padding, while the mat x vec kernel's 4-token register tile already reads each
   * weight block once per 4 tokens; from there a GPU, bound by weight traffic at small batches, reads
   * each weight once per tile instead of once per 4 tokens (llama.cpp switches to its tiled kernels
   * above 8 tokens in Vulkan, above 4 in WebGPU). Not measured on a GPU yet: on SwiftShader, which
   * is bound by arithmetic, the two kernels are even from a full tile on and the tiled one is
   * 1.3-1.9x slower at half a tile (bench/results/2026-12-02-webgpu-tiled.md).
   */
  readonly minTokens: number;
}

/**
 * The tiled kernel's variant: matmul's block layout, lanes and activation, plus how a chunk walks
 * the blocks (see matmul_tiled.wgsl): CB blocks of JC elements per chunk, 32 (TPR 4) or 64 (TPR 16)
 * elements per tile row; the weight value of each walk position (Q4_0 and Q8_0: the code, the
 * block's scale applied to the block's sum as their block_dot does; the rest: the dequantized value).
 */
export function tiledVariant(type: GGMLType, cols: number): TiledVariant {
  const base = dequantVariant(type);
  const qk = typeTraits(type)!.blockSize;
  const tpr = lanesPerRow(type, cols);
  const side = tpr === 4 ? 8 : 4; // 256 threads: 4 lanes x 8 x 8 items, or 16 lanes x 4 x 4
  const perRow = tpr === 4 ? 32 : 64;
  const jc = qk === 1 ? 1 : perRow / tpr;
  const cb = qk === 1 ? perRow : tpr;
  // Q4_0's block_dot walks its 16 bytes in order, adding low and high nibble's products as a pair:
  // walk position o is element o / 2 (+ 16 for the high nibble)
  const weightAt = type === GGMLType.Q4_0
    ? [
      'fn tile_w(blk: u32, o: u32) -> f32 { let byte = w_u8(blk + 2u + o / 2u); return f32(i32(select(byte & 15u, byte >> 4u, (o & 1u) == 1u)) - 8); }',
      'fn walk_elem(o: u32) -> u32 { return o / 2u + 16u * (o & 1u); }',
      'const STEP: u32 = 2u;',
      'fn step_dot(w0: f32, x0: vec4<f32>, w1: f32, x1: vec4<f32>) -> vec4<f32> { return w0 * x0 + w1 * x1; }',
    ]
    : [
      type === GGMLType.Q8_0
        ? 'fn tile_w(blk: u32, o: u32) -> f32 { return f32(sext8(w_u8(blk + 2u + o))); }'
        : 'fn tile_w(blk: u32, o: u32) -> f32 { return deq(blk, o); }',
      'fn walk_elem(o: u32) -> u32 { return o; }',
      'const STEP: u32 = 1u;',
      'fn step_dot(w0: f32, x0: vec4<f32>, w1: f32, x1: vec4<f32>) -> vec4<f32> { return w0 * x0; }',
    ];
  const scaled = SCALED_SUM.has(type);
  return {
    tile: side * 4,
    minTokens: side * 2,
    key: `${base.key}-tpr${tpr}`,
    code: [
      base.code,
      `const TPR: u32 = ${tpr}u;`,
      `const SIDE: u32 = ${side}u;`,
      `const JC: u32 = ${jc}u;`,
      `const CB: u32 = ${cb}u;`,
      `fn act(v: f32) -> f32 { return ${activation(type)}; }`,
      ...weightAt,
      `const HAS_SCALE = ${scaled};`,
      scaled ? 'fn block_scale(blk: u32) -> f32 { return w_f16(blk); }' : 'fn block_scale(blk: u32) -> f32 { return 1.0; }',
      scaled ? 'fn scaled(s: vec4<f32>, d: f32) -> vec4<f32> { return s * d; }' : 'fn scaled(s: vec4<f32>, d: f32) -> vec4<f32> { return s; }',
    ].join('\n'),
  };
}

export const NO_VARIANT: Variant = { key: '', code: '' };

/** The two variants of webgpu/norm.wgsl. */
export const RMS_NORM: Variant = { key: 'rms', code: 'const LAYER_NORM = false;\nfn bias_at(i: u32) -> f32 { return 0.0; }' };
export const LAYER_NORM: Variant = { key: 'layer', code: 'const LAYER_NORM = true;\nfn bias_at(i: u32) -> f32 { return bias_f(i); }' };

/**
 * The WGSL of one kernel for one variant and one grouping of its arguments into buffers (an
 * argument split over several buffers: several groups); with `subgroups` (a device with the
 * feature), its lane reductions shuffle within subgroups; `halfViews` are the arguments (by index)
 * read through array<f16> views bound after the groups (a device with shader-f16).
 */
export function compose(def: KernelDef, variant: Variant, groupOf: readonly (readonly number[])[], groupAccess: readonly ArgAccess[], subgroups = false, halfViews: readonly number[] = []): string {
  const fields = paramFields(def);
  const shuffles = subgroups && def.lanes === true;
  const out: string[] = [
    ...(shuffles ? ['enable subgroups;'] : []),
    ...(halfViews.length > 0 ? ['enable f16;'] : []),
    `const WG: u32 = ${WG}u;`, `const MAX_HEAD_DIM: u32 = ${MAX_HEAD_DIM}u;`, `const MAX_TOP_K: u32 = ${MAX_TOP_K}u;`,
    `const SEG_KEYS: u32 = ${ATTENTION_SEGMENT_KEYS}u;`,
  ];
  out.push(`struct Params {\n${fields.map((f) => `  ${f}: u32,`).join('\n')}\n}`);
  out.push('@group(0) @binding(0) var<uniform> P: Params;');
  groupAccess.forEach((access, g) => {
    const mode = access === 'read' ? 'read' : 'read_write';
    const elem = access === 'atomic' ? 'atomic<u32>' : 'u32';
    out.push(`@group(0) @binding(${g + 1}) var<storage, ${mode}> buf${g}: array<${elem}>;`);
  });
  // f16 views: bound after the groups, the same buffers as array<f16>
  halfViews.forEach((k, n) => out.push(`@group(0) @binding(${groupAccess.length + 1 + n}) var<storage, read> half${n}: array<f16>;`));
  def.args.forEach((a, k) => {
    const groups = groupOf[k]!;
    if (groups.length > 1) {
      if (!def.parts?.includes(a.name)) throw new Error(`argument ${a.name} of webgpu/${def.source}.wgsl is one buffer, not ${groups.length}`);
      out.push(...partAccessors(a.name, groups, groupAccess[groups[0]!]!));
      return;
    }
    const g = groups[0]!, buf = `buf${g}`, access = groupAccess[g]!;
    const view = halfViews.indexOf(k);
    if (view >= 0 && (access !== 'read' || !def.halves?.includes(a.name))) throw new Error(`argument ${a.name} of webgpu/${def.source}.wgsl has no f16 view`);
    const at = `${buf}[P.${a.name}_w + i]`;
    const load = (ref: string) => (access === 'atomic' ? `atomicLoad(&${ref})` : ref);
    out.push(view >= 0
      ? `fn ${a.name}_f16(b: u32) -> f32 { return f32(half${view}[(P.${a.name}_b + b) >> 1u]); }`
      : `fn ${a.name}_f16(b: u32) -> f32 { let o = P.${a.name}_b + b; return f16_to_f32((${load(`${buf}[o >> 2u]`)} >> ((o & 2u) * 8u)) & 0xffffu); }`);
    out.push(`fn ${a.name}_w(i: u32) -> u32 { return ${load(at)}; }`);
    out.push(`fn ${a.name}_f(i: u32) -> f32 { return bitcast<f32>(${a.name}_w(i)); }`);
    out.push(`fn ${a.name}_i(i: u32) -> i32 { return bitcast<i32>(${a.name}_w(i)); }`);
    out.push(`fn ${a.name}_u8(b: u32) -> u32 { let o = P.${a.name}_b + b; return (${load(`${buf}[o >> 2u]`)} >> ((o & 3u) * 8u)) & 0xffu; }`);
    out.push(`fn ${a.name}_raw(i: u32) -> u32 { return ${load(`${buf}[i]`)}; }`);
    if (access === 'write') {
      out.push(`fn ${a.name}_set(i: u32, v: u32) { ${at} = v; }`);
      out.push(`fn ${a.name}_setf(i: u32, v: f32) { ${at} = bitcast<u32>(v); }`);
      out.push(`fn ${a.name}_raw_set(i: u32, v: u32) { ${buf}[i] = v; }`);
    } else if (access === 'atomic') {
      out.push(`fn ${a.name}_set(i: u32, v: u32) { atomicStore(&${at}, v); }`);
      out.push(`fn ${a.name}_setf(i: u32, v: f32) { atomicStore(&${at}, bitcast<u32>(v)); }`);
      out.push(`fn ${a.name}_and(i: u32, v: u32) { atomicAnd(&${at}, v); }`);
      out.push(`fn ${a.name}_or(i: u32, v: u32) { atomicOr(&${at}, v); }`);
    }
  });
  out.push(SHADERS['common']!);
  if (def.dequant) out.push(SHADERS['dequant']!);
  if (def.lanes) out.push(SHADERS[shuffles ? 'lanes_subgroups' : 'lanes']!);
  out.push(variant.code);
  const body = SHADERS[def.source];
  if (!body) throw new Error(`no WGSL source webgpu/${def.source}.wgsl`);
  out.push(body);
  return out.join('\n');
}

/**
 * The accessors of an argument split over the buffers `groups` (whole rows, from offset 0): word i
 * lies in part i / P.a_part. The same names and meanings as one buffer's accessors.
 */
function partAccessors(name: string, groups: readonly number[], access: ArgAccess): string[] {
  const atomic = access === 'atomic';
  /** A function of word i whose statement for its part's buffer element `ref` is `stmt(ref)`. */
  const perPart = (header: string, stmt: (ref: string) => string, result?: string) => [
    `fn ${header} {`,
    `  let s = min(i / P.${name}_part, ${groups.length - 1}u);`,
    `  let j = i - s * P.${name}_part;`,
    ...(result ? [`  var r: ${result};`] : []),
    '  switch s {',
    ...groups.map((g, p) => `    ${p === groups.length - 1 ? 'default' : `case ${p}u`}: { ${stmt(`buf${g}[j]`)} }`),
    '  }',
    ...(result ? ['  return r;'] : []),
    '}',
  ].join('\n');
  const out = [
    perPart(`${name}_w(i: u32) -> u32`, (ref) => `r = ${atomic ? `atomicLoad(&${ref})` : ref};`, 'u32'),
    `fn ${name}_f(i: u32) -> f32 { return bitcast<f32>(${name}_w(i)); }`,
    `fn ${name}_i(i: u32) -> i32 { return bitcast<i32>(${name}_w(i)); }`,
    `fn ${name}_u8(b: u32) -> u32 { return (${name}_w(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu; }`,
    `fn ${name}_f16(b: u32) -> f32 { return f16_to_f32((${name}_w(b >> 2u) >> ((b & 2u) * 8u)) & 0xffffu); }`,
  ];
  if (access === 'write') {
    out.push(perPart(`${name}_set(i: u32, v: u32)`, (ref) => `${ref} = v;`));
    out.push(`fn ${name}_setf(i: u32, v: f32) { ${name}_set(i, bitcast<u32>(v)); }`);
  } else if (atomic) {
    out.push(perPart(`${name}_set(i: u32, v: u32)`, (ref) => `atomicStore(&${ref}, v);`));
    out.push(`fn ${name}_setf(i: u32, v: f32) { ${name}_set(i, bitcast<u32>(v)); }`);
    out.push(perPart(`${name}_and(i: u32, v: u32)`, (ref) => `atomicAnd(&${ref}, v);`));
    out.push(perPart(`${name}_or(i: u32, v: u32)`, (ref) => `atomicOr(&${ref}, v);`));
  }
  return out;
}

/** The fields of the uniform block: groups, count, the kernel's parameters, the offset words and bytes of each argument, then the part words of each argument that may span buffers. */
export function paramFields(def: KernelDef): string[] {
  return ['groups', 'count', ...def.params, ...def.args.flatMap((a) => [`${a.name}_w`, `${a.name}_b`]), ...(def.parts ?? []).map((name) => `${name}_part`)];
}

const paramCounts = new WeakMap<KernelDef, number>();

/** How many u32 parameters a kernel's uniform block holds (asked at every dispatch: kept per kernel). */
export function paramCount(def: KernelDef): number {
  let n = paramCounts.get(def);
  if (n === undefined) paramCounts.set(def, (n = paramFields(def).length));
  return n;
}
