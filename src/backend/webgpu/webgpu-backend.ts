/// <reference types="@webgpu/types" />
// The WebGPU backend: every tensor its own GPU buffer, every op a compute dispatch recorded into
// one command encoder, submitted when the host needs a result (read) or writes memory the recorded
// work may read (upload): a forward pass is one submission. Weights stay in their GGUF type and are
// dequantized inside the shaders; they go from the byte source to the GPU in bounded chunks.
// The kernels are webgpu/*.wgsl (see kernels.ts for how arguments reach them); their results are
// held to the reference backend by test/backend-ops.test.ts like every backend's.
import type { ByteSource } from '../../io/byte-source.js';
import { log } from '../../log.js';
import { GGMLType, rowBytes as typeRowBytes, typeName } from '../../tensor/ggml-types.js';
import { alibiSlopes, checkTopK, kvCacheTypeProblem, kvRowBytes, rowsPerPart, tensorBytes, type AttentionArgs, type Backend, type KVCacheType, type ExpertRouting, type KVLayer, type RopeParams, type Tensor, type WeightTensor } from '../backend.js';
import { BackendError } from '../errors.js';
import { acquireGPU, chooseFeatures, type AcquireGPUOptions, type GPUChoice, type GPUFeatures } from './gpu.js';
import { ATTENTION_SEGMENT_KEYS, compose, dequantVariant, KERNELS, KV_OTHER_BINDINGS, LAYER_NORM, MAX_HEAD_DIM, MAX_KV_PARTS, NO_VARIANT, RMS_NORM, paramCount, tiledVariant, weightVariant, WEBGPU_WEIGHT_TYPES, WG, type ArgAccess, type KernelDef, type KernelName, type MatvecSplit, type Variant } from './kernels.js';

export interface WebGPUBackendOptions extends AcquireGPUOptions {
  /** A device to use as it is (its limits are read from it). */
  readonly device?: GPUDevice;
  /** Bind at most this many bytes per tensor (default: the device's limit); weights past it are split by rows. Tests use it to force splits. */
  readonly maxBindingBytes?: number;
  /** What the backend may hold in all (default: no limit but the device's own; WebGPU cannot query free memory). */
  readonly memoryBytes?: number;
  /** How mat x vec spreads a row over threads (default: 'row' on a software adapter, else 'lanes'; the same bits either way). */
  readonly matvecSplit?: MatvecSplit;
  /**
   * Split attention over key segments when a step has too few (token, head) rows to fill the GPU (decode): each
   * segment a workgroup, then a pass folding them (default: on; the same bits either way, attention.wgsl).
   */
  readonly attentionSplit?: boolean;
}

export interface WebGPUBackend extends Backend {
  readonly device: GPUDevice;
  /** Kept alive with the backend (see GPUChoice.gpu). */
  readonly gpu?: GPU;
  /** The adapter and where it came from. */
  readonly adapter: string;
  /** The optional features its kernels use (AcquireGPUOptions.features chooses). */
  readonly features: GPUFeatures;
}

/** Split attention only below this many (token, head) rows: past it the rows alone fill a GPU. */
const SPLIT_ATTENTION_BELOW_ROWS = 1024;
/** The most split attention's partials take (past it, one pass: the same bits). */
const MAX_ATTENTION_PARTIALS_BYTES = 64 * 2 ** 20;

/** Bytes of one dispatch's parameters in the uniform pages (minUniformBufferOffsetAlignment). */
const SLOT_BYTES = 256;
const SLOTS_PER_PAGE = 256;
/** uploadFrom's chunk: the most tensor bytes held in JS memory at once. */
const UPLOAD_CHUNK = 8 << 20;
const MAX_GROUPS_X = 65535;
/** A buffer bound for several arguments is bound with the widest access among them. */
const ACCESS_RANK: Record<ArgAccess, number> = { read: 0, write: 1, atomic: 2 };
/** Bind groups kept per pipeline. */
const MAX_BIND_GROUPS = 4096;

const f32Scratch = new Float32Array(1);
const f32ScratchBits = new Uint32Array(f32Scratch.buffer);
const f32Bits = (x: number): number => {
  f32Scratch[0] = x;
  return f32ScratchBits[0]!;
};
const align4 = (n: number) => Math.ceil(n / 4) * 4;

/** ggml's YaRN correction dimension (as rope_yarn_corr_dims, in f32 like the kernels). */
function yarnCorrDim(nDims: number, nCtxOrig: number, nRot: number, base: number): number {
  return Math.fround((nDims * Math.log(nCtxOrig / (nRot * 2 * Math.PI))) / (2 * Math.log(base)));
}

/** KV cache types store_kv.wgsl / store_kv_blocks.wgsl and attention.wgsl take. */
const WEBGPU_KV_TYPES: ReadonlySet<KVCacheType> = new Set<KVCacheType>(['f32', 'f16', 'q8_0', 'q4_0']);

/** attention.wgsl's reading of a cache type: cache_k / cache_v as f32 values, and whether the query is quantized to Q8_0 first. */
const CACHE_READS: Record<KVCacheType, string> = {
  f32: 'const QUANT_Q = false;\nfn cache_k(e: u32) -> f32 { return kc_f(e); }\nfn cache_v(e: u32) -> f32 { return vc_f(e); }',
  f16: `const QUANT_Q = false;
fn cache_k(e: u32) -> f32 { return kc_f16(2u * e); }
fn cache_v(e: u32) -> f32 { return vc_f16(2u * e); }`,
  // element e of the cache: block e / 32 (rows are whole blocks), its f16 scale, then the level
  q8_0: `const QUANT_Q = true;
fn q8_at(d: f32, q: u32) -> f32 { return f32(sext8(q)) * d; }
fn cache_k(e: u32) -> f32 { let b = (e / 32u) * 34u; return q8_at(kc_f16(b), kc_u8(b + 2u + e % 32u)); }
fn cache_v(e: u32) -> f32 { let b = (e / 32u) * 34u; return q8_at(vc_f16(b), vc_u8(b + 2u + e % 32u)); }`,
  q4_0: `const QUANT_Q = true;
fn q4_at(j: u32, d: f32, byte: u32) -> f32 { return f32(i32(select(byte & 15u, byte >> 4u, j >= 16u)) - 8) * d; }
fn cache_k(e: u32) -> f32 { let b = (e / 32u) * 18u; let j = e % 32u; return q4_at(j, kc_f16(b), kc_u8(b + 2u + j % 16u)); }
fn cache_v(e: u32) -> f32 { let b = (e / 32u) * 18u; let j = e % 32u; return q4_at(j, vc_f16(b), vc_u8(b + 2u + j % 16u)); }`,
};

/** Element-wise op codes of webgpu/elementwise.wgsl. */
const ELEMENTWISE_OPS = { swiglu: 0, geglu: 1, gelu: 2, sigmoid: 3, scale: 4, softcap: 5, add: 6, addBias: 7 } as const;

export async function createWebGPUBackend(options: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
  const choice: GPUChoice = options.device
    ? {
      device: options.device, description: 'given device',
      limits: {
        maxBufferSize: options.device.limits.maxBufferSize,
        maxStorageBufferBindingSize: options.device.limits.maxStorageBufferBindingSize,
        maxStorageBuffersPerShaderStage: options.device.limits.maxStorageBuffersPerShaderStage,
      },
      features: chooseFeatures(options.device.features as ReadonlySet<string>, options.features, 'the given device'),
      software: false,
    }
    : await acquireGPU(options);
  const { device, features } = choice;
  const matvecSplit = options.matvecSplit ?? (choice.software ? 'row' : 'lanes');
  const attentionSplit = options.attentionSplit ?? true;
  const maxTensorBytes = Math.min(choice.limits.maxBufferSize, choice.limits.maxStorageBufferBindingSize, options.maxBindingBytes ?? Infinity);
  // K and V share the storage bindings the KV kernels leave free
  const maxStorageBuffers = choice.limits.maxStorageBuffersPerShaderStage;
  const kvParts = Math.max(1, Math.min(MAX_KV_PARTS, Math.floor((maxStorageBuffers - KV_OTHER_BINDINGS) / 2)));
  log.debug(`webgpu: ${choice.description}, largest tensor ${maxTensorBytes} bytes, a KV layer in up to ${kvParts} buffers, subgroups ${features.subgroups ? 'on' : 'off'}, shader-f16 ${features.shaderF16 ? 'on' : 'off'}, mat x vec split by ${matvecSplit}`);

  const buffers: (GPUBuffer | undefined)[] = [undefined]; // ids from 1, as the reference backend
  // Tensors larger than one binding: a virtual buffer id whose rows lie in several GPU buffers
  // (segments of whole rows), each an id of its own. matmul and getRows run once per segment of a
  // weight; storeKV and attention bind every segment of a KV cache (KERNELS' `parts`).
  const splits = new Map<number, { readonly rowBytes: number; readonly segments: readonly { id: number; firstRow: number; rows: number }[] }>();
  let disposed = false;
  let lost: string | undefined;
  let gpuError: string | undefined;
  void device.lost.then((info) => {
    if (!disposed) lost = `${info.reason}: ${info.message}`;
  });
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
    gpuError ??= ev.error.message;
    log.error(`webgpu: ${ev.error.message}`);
  };

  // Host copies of the i32 tensors the host wrote (token ids, slots, block tables, expert ids):
  // a GPU cannot throw, so index arguments are checked here against what was uploaded, as the
  // WASM backend checks them in its kernels. A buffer a kernel or copy writes loses its copy.
  const indexMirrors = new Map<number, Int32Array>();
  const mirrored = (t: Tensor, count: number): Int32Array | undefined => {
    const m = indexMirrors.get(t.buffer);
    return m && t.offset % 4 === 0 ? m.subarray(t.offset / 4, t.offset / 4 + count) : undefined;
  };
  const checkIndices = (what: string, t: Tensor, count: number, limit: number) => {
    const ids = mirrored(t, count);
    if (!ids) return;
    for (let i = 0; i < count; i++) {
      if (!(ids[i]! >= 0 && ids[i]! < limit)) throw new BackendError('INVALID_ARGUMENT', `${what}: entry ${i} is ${ids[i]}, outside 0..${limit - 1}`);
    }
  };

  /** ALiBi slopes by (maxBias, heads): a few small tensors made once (exactly the contract's f32 slopes). */
  const slopeTensors = new Map<string, Tensor>();
  /**
   * Pipelines by kernel, variant and binding shape, each with the bind groups made for it: a bind
   * group costs ~15 us of host time to create (Dawn), more than many dispatches take on a GPU, and a
   * decode step binds the same buffers and parameter page every time (the parameters' slot in the page
   * is a dynamic offset).
   */
  const pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; bindGroups: Map<string, GPUBindGroup> }>();
  /** The parameters' slot in their page, the dynamic offset of binding 0 (one array for every dispatch). */
  const dynamicOffset = new Uint32Array(1);
  /** Buffers that live for one dispatch (unaligned uploads' staging): their bind groups are not kept. */
  const transient = new Set<number>();
  let encoder: GPUCommandEncoder | undefined;
  let pass: GPUComputePassEncoder | undefined;
  /** The pipeline the open pass has set last: a dispatch of the same kernel does not set it again. */
  let passPipeline: GPUComputePipeline | undefined;
  const endPass = () => {
    pass?.end();
    pass = undefined;
    passPipeline = undefined;
  };
  const pages: { buffer: GPUBuffer; data: Uint32Array<ArrayBuffer> }[] = [];
  let slot = 0; // next free parameter slot over all pages

  const check = () => {
    if (disposed) throw new BackendError('DISPOSED', 'the WebGPU backend was disposed');
    if (lost) throw new BackendError('DEVICE_LOST', `the WebGPU device was lost (${lost})`);
  };
  const gpuBuffer = (t: Tensor, what: string, need = t.bytes): GPUBuffer => {
    check();
    const b = Number.isInteger(t.buffer) ? buffers[t.buffer] : undefined;
    if (!b || !Number.isInteger(t.offset) || t.offset < 0 || need > t.bytes || t.offset + need > b.size) {
      throw new BackendError('INVALID_ARGUMENT', `${what}: [buffer ${t.buffer}, ${t.offset}..${t.offset + need}) is not allocated memory of this backend`);
    }
    return b;
  };

  /**
   * The real tensors holding bytes [from, from + bytes) of `t` (a split weight's segments, or t
   * itself), each with where its bytes start inside t.
   */
  const pieces = (t: Tensor, from = 0, bytes = t.bytes - from): { tensor: Tensor; at: number }[] => {
    const split = splits.get(t.buffer);
    if (!split) return [{ tensor: { ...t, offset: t.offset + from, bytes }, at: from }];
    const out: { tensor: Tensor; at: number }[] = [];
    const start = t.offset + from, end = start + bytes;
    for (const seg of split.segments) {
      const s0 = seg.firstRow * split.rowBytes, s1 = s0 + seg.rows * split.rowBytes;
      const a = Math.max(start, s0), b = Math.min(end, s1);
      if (a < b) out.push({ tensor: { buffer: seg.id, offset: a - s0, bytes: b - a, type: t.type, shape: [b - a] }, at: a - t.offset });
    }
    if (out.reduce((n, p) => n + p.tensor.bytes, 0) !== bytes) throw new BackendError('INVALID_ARGUMENT', `[${start}, ${end}) is outside the split tensor ${t.buffer}`);
    return out;
  };
  /** A weight's row ranges per segment: the weight view of each and its first row inside the weight. */
  const weightPieces = (wt: WeightTensor): { w: WeightTensor; row: number }[] => {
    const split = splits.get(wt.buffer);
    if (!split) return [{ w: wt, row: 0 }];
    if (wt.offset % wt.rowBytes !== 0 || wt.rowBytes !== split.rowBytes) throw new BackendError('INVALID_ARGUMENT', 'a view of a split weight must start on a row');
    const r0 = wt.offset / wt.rowBytes, r1 = r0 + wt.rows;
    return split.segments.flatMap((seg) => {
      const a = Math.max(r0, seg.firstRow), b = Math.min(r1, seg.firstRow + seg.rows);
      if (a >= b) return [];
      const bytes = (b - a) * wt.rowBytes;
      return [{ w: { buffer: seg.id, offset: (a - seg.firstRow) * wt.rowBytes, bytes, type: wt.type, shape: [wt.cols, b - a], rows: b - a, cols: wt.cols, rowBytes: wt.rowBytes }, row: a - r0 }];
    });
  };

  const pipelineFor = (name: string, def: KernelDef, variant: Variant, groupOf: number[][], groupAccess: ArgAccess[], halfViews: number[]) => {
    const key = `${name}|${variant.key}|${groupOf.map((g) => g.join('+')).join(',')}|${groupAccess.join(',')}|${halfViews.join(',')}`;
    let p = pipelines.get(key);
    if (!p) {
      const code = compose(def, variant, groupOf, groupAccess, features.subgroups, halfViews);
      const module = device.createShaderModule({ code, label: key });
      const layout = device.createBindGroupLayout({
        entries: [
          { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
          ...groupAccess.map((a, g) => ({ binding: g + 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: a === 'read' ? 'read-only-storage' as const : 'storage' as const } })),
          ...halfViews.map((_, n) => ({ binding: groupAccess.length + 1 + n, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' as const } })),
        ],
      });
      const pipeline = device.createComputePipeline({
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' }, label: key,
      });
      p = { pipeline, layout, bindGroups: new Map() };
      pipelines.set(key, p);
    }
    return p;
  };

  /** A parameter slot in the current pages: its page and index. */
  const takeSlot = (): { page: (typeof pages)[number]; pageIndex: number; index: number } => {
    const pageIndex = Math.floor(slot / SLOTS_PER_PAGE);
    if (pageIndex === pages.length) {
      pages.push({
        buffer: device.createBuffer({ size: SLOT_BYTES * SLOTS_PER_PAGE, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
        data: new Uint32Array((SLOT_BYTES * SLOTS_PER_PAGE) / 4),
      });
    }
    return { page: pages[pageIndex]!, pageIndex, index: slot++ % SLOTS_PER_PAGE };
  };

  /** Record one kernel: `groups` workgroups; `count` is the kernel's own element bound. */
  const dispatch = (name: KernelName, variant: Variant, tensors: readonly Tensor[], params: Record<string, number>, groups: number, count = 0) => {
    check();
    if (groups === 0) return;
    const def: KernelDef = KERNELS[name];
    const ids: number[] = [];
    const bind = (id: number) => {
      const g = ids.indexOf(id);
      return g < 0 ? ids.push(id) - 1 : g;
    };
    // a tensor split by rows (a KV cache past the binding limit) is bound part by part
    const groupOf = tensors.map((t, k) => {
      const split = splits.get(t.buffer);
      if (!split) return [bind(t.buffer)];
      const arg = def.args[k]!.name;
      if (!def.parts?.includes(arg) || t.offset !== 0) throw new BackendError('INVALID_ARGUMENT', `${name}: ${arg} is a tensor split over ${split.segments.length} buffers, which it does not take`);
      return split.segments.map((seg) => bind(seg.id));
    });
    const groupAccess: ArgAccess[] = ids.map(() => 'read');
    def.args.forEach((a, k) => {
      for (const g of groupOf[k]!) if (ACCESS_RANK[a.access] > ACCESS_RANK[groupAccess[g]!]) groupAccess[g] = a.access;
    });
    // shader-f16: the kernel's f16 arguments read through array<f16> views, as many as the bindings allow
    const halfViews: number[] = [];
    if (features.shaderF16) {
      def.args.forEach((a, k) => {
        const groups = groupOf[k]!;
        if (def.halves?.includes(a.name) && groups.length === 1 && groupAccess[groups[0]!] === 'read' && ids.length + halfViews.length < maxStorageBuffers) halfViews.push(k);
      });
    }
    const { pipeline, layout, bindGroups } = pipelineFor(name, def, variant, groupOf, groupAccess, halfViews);
    def.args.forEach((a, k) => { if (a.access !== 'read') indexMirrors.delete(tensors[k]!.buffer); });

    const { page, pageIndex, index } = takeSlot();
    const words = page.data.subarray(index * (SLOT_BYTES / 4), (index + 1) * (SLOT_BYTES / 4));
    if (paramCount(def) > words.length) throw new Error(`kernel ${name} has more parameters than a slot holds`);
    let at = 0;
    words[at++] = groups;
    words[at++] = count;
    for (const p of def.params) {
      const v = params[p];
      if (v === undefined) throw new Error(`kernel ${name}: parameter ${p} missing`);
      words[at++] = v >>> 0;
    }
    tensors.forEach((t) => {
      words[at++] = Math.floor(t.offset / 4);
      words[at++] = t.offset;
    });
    for (const arg of def.parts ?? []) {
      const split = splits.get(tensors[def.args.findIndex((a) => a.name === arg)]!.buffer);
      words[at++] = split ? (split.segments[0]!.rows * split.rowBytes) / 4 : 0;
    }

    const bindKey = `${pageIndex}|${ids.join(',')}`;
    let bindGroup = bindGroups.get(bindKey);
    if (!bindGroup) {
      bindGroup = device.createBindGroup({
        layout,
        entries: [
          { binding: 0, resource: { buffer: page.buffer, offset: 0, size: SLOT_BYTES } },
          ...ids.map((id, g) => ({ binding: g + 1, resource: { buffer: buffers[id]! } })),
          ...halfViews.map((k, n) => ({ binding: ids.length + 1 + n, resource: { buffer: buffers[ids[groupOf[k]![0]!]!]! } })),
        ],
      });
      if (!ids.some((id) => transient.has(id))) {
        if (bindGroups.size >= MAX_BIND_GROUPS) bindGroups.clear(); // bounded: shapes a long-running engine has not seen for a while are remade
        bindGroups.set(bindKey, bindGroup);
      }
    }
    encoder ??= device.createCommandEncoder();
    pass ??= encoder.beginComputePass();
    if (pipeline !== passPipeline) {
      pass.setPipeline(pipeline);
      passPipeline = pipeline;
    }
    dynamicOffset[0] = index * SLOT_BYTES;
    pass.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
    const x = Math.min(groups, MAX_GROUPS_X);
    pass.dispatchWorkgroups(x, Math.ceil(groups / x));
  };

  /** Submit what was recorded (with its parameters) so later queue writes come after it. */
  const flush = () => {
    endPass();
    if (!encoder) return;
    const used = Math.ceil(slot / SLOTS_PER_PAGE);
    for (let p = 0; p < used; p++) {
      const n = p < used - 1 ? SLOTS_PER_PAGE : slot - p * SLOTS_PER_PAGE;
      device.queue.writeBuffer(pages[p]!.buffer, 0, pages[p]!.data, 0, n * (SLOT_BYTES / 4));
    }
    device.queue.submit([encoder.finish()]);
    encoder = undefined;
    slot = 0;
  };

  const elementwise = (op: keyof typeof ELEMENTWISE_OPS, out: Tensor, a: Tensor, b: Tensor, count: number, extra: { factor?: number; cap?: number; n?: number } = {}) => {
    need(out, 4 * count, op);
    need(a, 4 * count, op);
    need(b, op === 'addBias' ? 4 * (extra.n ?? 0) : 4 * count, op);
    const variant = { key: op, code: `const OP: u32 = ${ELEMENTWISE_OPS[op]}u;` };
    dispatch('elementwise', variant, [out, a, b], { factor: f32Bits(extra.factor ?? 0), cap: f32Bits(extra.cap ?? 0), n: extra.n ?? 0 }, Math.ceil(count / WG), count);
  };

  /** Checks that `t` holds `bytes` bytes of this backend's memory and is 4-byte aligned (f32 / i32 data). */
  const need = (t: Tensor, bytes: number, what: string) => {
    gpuBuffer(t, what, bytes);
    if (t.offset % 4 !== 0) throw new BackendError('INVALID_ARGUMENT', `${what}: offset ${t.offset} is not 4-byte aligned`);
  };
  const checkWeight = (wt: WeightTensor, what: string) => {
    if (!WEBGPU_WEIGHT_TYPES.has(wt.type)) throw new BackendError('UNSUPPORTED_TYPE', `${what}: the WebGPU backend has no kernel for ${typeName(wt.type)} weights`);
    if (wt.rowBytes !== typeRowBytes(wt.type, wt.cols)) throw new BackendError('INVALID_ARGUMENT', `${what}: rowBytes ${wt.rowBytes} does not match ${typeName(wt.type)} with ${wt.cols} cols`);
    if (!splits.has(wt.buffer)) gpuBuffer(wt, what, wt.rows * wt.rowBytes);
  };
  const checkKVType = (layer: KVLayer, headDim: number, what: string) => {
    const problem = kvCacheTypeProblem(layer.type, headDim, WEBGPU_KV_TYPES);
    if (problem) throw new BackendError(problem.code === 'INVALID' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED_TYPE', `${what}: ${problem.message}`);
  };
  /** A layer's K and V: each one tensor of this backend, or whole tensors split into at most kvParts segments. */
  const needCache = (layer: KVLayer, what: string) => {
    for (const [t, name] of [[layer.k, 'K'], [layer.v, 'V']] as const) {
      const split = splits.get(t.buffer);
      if (!split) {
        need(t, t.bytes, `${what} ${name} cache`);
      } else if (t.offset !== 0 || split.segments.length > kvParts) {
        throw new BackendError('INVALID_ARGUMENT', `${what}: the ${name} cache is a view of a split tensor, or split over more than ${kvParts} buffers`);
      }
    }
  };
  const posInt = (what: string, v: number, min = 1) => {
    if (!Number.isInteger(v) || v < min) throw new BackendError('INVALID_ARGUMENT', `${what} must be an integer >= ${min}, got ${v}`);
  };

  const copyBytes = (dst: Tensor, dstOffset: number, src: Tensor, srcOffset: number, bytes: number) => {
    const start = dst.offset + dstOffset;
    const words = Math.ceil((start + bytes) / 4) - Math.floor(start / 4);
    dispatch('copyBytes', NO_VARIANT, [dst, src], { dst_byte: dstOffset, src_byte: srcOffset, bytes }, Math.ceil(words / WG), words);
  };

  const matmulInto = (out: Tensor, wt: WeightTensor, x: Tensor, nTokens: number) => {
    checkWeight(wt, 'matmul weight');
    posInt('matmul nTokens', nTokens, 0);
    need(x, 4 * nTokens * wt.cols, 'matmul x');
    need(out, 4 * nTokens * wt.rows, 'matmul out');
    const tiled = tiledVariant(wt.type, wt.cols);
    if (nTokens >= tiled.minTokens) {
      // prompts and batches: workgroup-shared tiles, the same bits per output as below (matmul_tiled.wgsl)
      for (const { w: part, row } of weightPieces(wt)) {
        dispatch('matmulTiled', tiled, [out, x, part], {
          rows: part.rows, cols: wt.cols, row_bytes: wt.rowBytes, out_rows: wt.rows, row_base: row, slots: nTokens,
        }, Math.ceil(part.rows / tiled.tile) * Math.ceil(nTokens / tiled.tile));
      }
      return;
    }
    const variant = weightVariant(wt.type, false, wt.cols, nTokens, matvecSplit);
    for (const { w: part, row } of weightPieces(wt)) {
      const items = Math.ceil(nTokens / variant.tt) * part.rows;
      dispatch('matmul', variant, [out, x, part], {
        rows: part.rows, cols: wt.cols, row_bytes: wt.rowBytes, used: 1, per_slot: 0, n_experts: 1, out_rows: wt.rows, row_base: row, slots: nTokens,
      }, Math.ceil(items / (WG / variant.tpt)));
    }
  };

  /**
   * Workgroups per (token, head) row for split attention: the most key segments a token's range spans
   * (ATTENTION_SEGMENT_KEYS on the key-position grid), or 0 for one pass: when the rows fill the GPU
   * already, a range spans one segment, the token ranges were not written by the host (no mirror), or
   * the partials would be too large.
   */
  const splitSlots = (tokenInfo: Tensor, nTokens: number, rows: number, headDim: number): number => {
    if (!attentionSplit || rows >= SPLIT_ATTENTION_BELOW_ROWS) return 0;
    const info = mirrored(tokenInfo, 3 * nTokens);
    if (!info) return 0;
    let slots = 0;
    for (let t = 0; t < nTokens; t++) {
      const first = info[3 * t + 1]!, end = info[3 * t + 2]!;
      if (end > first) slots = Math.max(slots, Math.ceil(end / ATTENTION_SEGMENT_KEYS) - Math.floor(first / ATTENTION_SEGMENT_KEYS));
    }
    return slots >= 2 && partialsBytes(rows, slots, headDim) <= partialsLimit ? slots : 0;
  };
  /** Each (row, segment) state: started, max, sum, then the head's unnormalized output (attention.wgsl). */
  const partialsBytes = (rows: number, slots: number, headDim: number) => 4 * rows * slots * (headDim + 3);
  const partialsLimit = Math.min(maxTensorBytes, MAX_ATTENTION_PARTIALS_BYTES);
  /**
   * Split attention's scratch, grown (doubling, within the limit) as needed. The one it replaces stays
   * allocated until dispose: work recorded in this step may bind it.
   */
  let partialsTensor: Tensor | undefined;
  const attentionPartials = (bytes: number): Tensor => {
    if (!partialsTensor || partialsTensor.bytes < bytes) {
      const grown = Math.min(Math.max(bytes, 2 * (partialsTensor?.bytes ?? 0)), partialsLimit); // splitSlots keeps bytes within the limit
      partialsTensor = backend.allocate(GGMLType.F32, [Math.floor(grown / 4)]);
    }
    return partialsTensor;
  };

  const backend: WebGPUBackend = {
    name: 'webgpu',
    nThreads: 1,
    device,
    gpu: choice.gpu,
    adapter: choice.description,
    features,
    capabilities: { weightTypes: WEBGPU_WEIGHT_TYPES, maxTensorBytes, memoryBytes: options.memoryBytes ?? Number.MAX_SAFE_INTEGER, kvTypes: WEBGPU_KV_TYPES, kvParts },

    allocate(type: GGMLType, shape: readonly number[]) {
      check();
      const bytes = tensorBytes(type, shape);
      if (bytes > maxTensorBytes) {
        // a matrix ([cols, rows]: a weight, a layer's KV cache) goes in segments of whole rows
        const rb = shape.length === 2 ? typeRowBytes(type, shape[0]!) : 0;
        const rowsPer = rb > 0 ? rowsPerPart(rb, maxTensorBytes) : 0;
        if (rowsPer < 1) throw new BackendError('OUT_OF_MEMORY', `a ${typeName(type)} tensor [${shape.join(', ')}] of ${bytes} bytes is larger than this GPU binds at once (${maxTensorBytes}), and it is not a matrix that splits by rows`);
        const segments = [];
        for (let firstRow = 0; firstRow < shape[1]!; firstRow += rowsPer) {
          const rows = Math.min(rowsPer, shape[1]! - firstRow);
          buffers.push(device.createBuffer({ size: align4(rows * rb), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }));
          segments.push({ id: buffers.length - 1, firstRow, rows });
        }
        buffers.push(undefined); // the virtual buffer: its id names the segments
        splits.set(buffers.length - 1, { rowBytes: rb, segments });
        log.debug(`webgpu: a ${typeName(type)} [${shape.join(', ')}] tensor split into ${segments.length} buffers of up to ${rowsPer} rows`);
        return { buffer: buffers.length - 1, offset: 0, bytes, type, shape };
      }
      const buffer = device.createBuffer({ size: Math.max(4, align4(bytes)), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      buffers.push(buffer);
      if (type === GGMLType.I32) indexMirrors.set(buffers.length - 1, new Int32Array(buffer.size / 4)); // GPU buffers start zeroed
      return { buffer: buffers.length - 1, offset: 0, bytes, type, shape };
    },

    upload(dst, data, byteOffset = 0) {
      const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (!Number.isInteger(byteOffset) || byteOffset < 0) throw new BackendError('INVALID_ARGUMENT', `upload: bad offset ${byteOffset}`);
      if (splits.has(dst.buffer)) {
        for (const p of pieces(dst, byteOffset, src.length)) backend.upload(p.tensor, src.subarray(p.at - byteOffset, p.at - byteOffset + p.tensor.bytes));
        return;
      }
      const b = gpuBuffer(dst, 'upload', byteOffset + src.length);
      if (src.length === 0) return;
      flush(); // recorded work reads the old contents: it goes first
      const at = dst.offset + byteOffset;
      const mirror = indexMirrors.get(dst.buffer);
      if (mirror) new Uint8Array(mirror.buffer).set(src, at);
      if (at % 4 === 0 && src.length % 4 === 0) {
        // writeBuffer takes no views of shared memory
        const plain = src.buffer instanceof ArrayBuffer ? (src as Uint8Array<ArrayBuffer>) : src.slice();
        device.queue.writeBuffer(b, at, plain);
        return;
      }
      // unaligned: through a staging buffer and the byte-copy kernel
      const staging = device.createBuffer({ size: align4(src.length), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      const padded = new Uint8Array(align4(src.length));
      padded.set(src);
      device.queue.writeBuffer(staging, 0, padded);
      buffers.push(staging);
      const id = buffers.length - 1;
      transient.add(id);
      copyBytes(dst, byteOffset, { buffer: id, offset: 0, bytes: src.length, type: GGMLType.I8, shape: [src.length] }, 0, src.length);
      flush();
      buffers[id] = undefined;
      transient.delete(id);
      staging.destroy();
    },

    async uploadFrom(dst, source: ByteSource, sourceOffset) {
      if (!splits.has(dst.buffer)) gpuBuffer(dst, 'uploadFrom');
      const chunk = new Uint8Array(Math.min(UPLOAD_CHUNK, align4(dst.bytes)));
      for (let pos = 0; pos < dst.bytes;) {
        const n = Math.min(chunk.length, dst.bytes - pos);
        await source.readInto(sourceOffset + pos, chunk.subarray(0, n));
        check();
        backend.upload(dst, chunk.subarray(0, n), pos);
        pos += n;
      }
    },

    async read(src, byteOffset = 0, bytes = src.bytes - byteOffset) {
      if (!Number.isInteger(byteOffset) || !Number.isInteger(bytes) || byteOffset < 0 || bytes < 0) {
        throw new BackendError('INVALID_ARGUMENT', `read: bad byte range ${byteOffset} + ${bytes}`);
      }
      if (splits.has(src.buffer)) {
        const out = new Uint8Array(bytes);
        for (const p of pieces(src, byteOffset, bytes)) out.set(await backend.read(p.tensor), p.at - byteOffset);
        return out;
      }
      const b = gpuBuffer(src, 'read', byteOffset + bytes);
      const start = src.offset + byteOffset;
      const from = start - (start % 4), to = align4(start + bytes);
      const staging = device.createBuffer({ size: Math.max(4, to - from), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      encoder ??= device.createCommandEncoder();
      endPass();
      if (to > from) encoder.copyBufferToBuffer(b, from, staging, 0, to - from);
      flush();
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (err) {
        check();
        throw new BackendError('KERNEL_FAILED', `read: mapping the result failed: ${(err as Error).message}`);
      }
      const out = new Uint8Array(staging.getMappedRange()).slice(start - from, start - from + bytes);
      staging.unmap();
      staging.destroy();
      check();
      if (gpuError) throw new BackendError('KERNEL_FAILED', `a WebGPU error came before this read: ${gpuError}`);
      return out;
    },

    copy(dst, dstOffset, src, srcOffset, bytes) {
      if (![dstOffset, srcOffset, bytes].every((v) => Number.isInteger(v) && v >= 0)) throw new BackendError('INVALID_ARGUMENT', `copy: bad range ${srcOffset} -> ${dstOffset} + ${bytes}`);
      if (splits.has(dst.buffer) || splits.has(src.buffer)) {
        // part by part: each run of bytes that lies in one segment of each side (KV blocks)
        for (const d of pieces(dst, dstOffset, bytes)) {
          const from = srcOffset + d.at - dstOffset;
          for (const s of pieces(src, from, d.tensor.bytes)) backend.copy(d.tensor, s.at - from, s.tensor, 0, s.tensor.bytes);
        }
        return;
      }
      const db = gpuBuffer(dst, 'copy destination', dstOffset + bytes);
      const sb = gpuBuffer(src, 'copy source', srcOffset + bytes);
      if (bytes === 0) return;
      const d = dst.offset + dstOffset, s = src.offset + srcOffset;
      indexMirrors.delete(dst.buffer);
      if (db !== sb && d % 4 === 0 && s % 4 === 0 && bytes % 4 === 0) {
        encoder ??= device.createCommandEncoder();
        endPass();
        encoder.copyBufferToBuffer(sb, s, db, d, bytes);
      } else {
        copyBytes(dst, dstOffset, src, srcOffset, bytes); // same buffer (WebGPU forbids that copy) or unaligned
      }
    },

    matmul: matmulInto,

    matmulShared(parts, x, nTokens) {
      for (const p of parts) matmulInto(p.out, p.w, x, nTokens);
    },

    matmulRouted(out, wt, nExperts, x, routing: ExpertRouting, inputPerSlot) {
      checkWeight(wt, 'matmulRouted weight');
      posInt('matmulRouted nExperts', nExperts);
      if (wt.rows % nExperts !== 0) throw new BackendError('INVALID_ARGUMENT', `matmulRouted: ${wt.rows} rows do not split into ${nExperts} experts`);
      const rows = wt.rows / nExperts, slots = routing.nTokens * routing.used;
      need(routing.ids, 4 * slots, 'matmulRouted ids');
      const chosen = mirrored(routing.ids, slots);
      chosen?.forEach((e, i) => {
        if (!(e >= 0 && e < nExperts)) throw new BackendError('INVALID_ARGUMENT', `matmulRouted: token ${Math.floor(i / routing.used)} slot ${i % routing.used} names expert ${e} of ${nExperts}`);
      });
      need(x, 4 * (inputPerSlot ? slots : routing.nTokens) * wt.cols, 'matmulRouted x');
      need(out, 4 * slots * rows, 'matmulRouted out');
      if (splits.has(wt.buffer)) throw new BackendError('OUT_OF_MEMORY', `matmulRouted: an experts tensor of ${wt.bytes} bytes is over this GPU's binding limit (${maxTensorBytes}); routed weights are not split`);
      const variant = weightVariant(wt.type, true, wt.cols, 1, matvecSplit);
      dispatch('matmulRouted', variant, [out, x, wt, routing.ids], {
        rows, cols: wt.cols, row_bytes: wt.rowBytes, used: routing.used, per_slot: inputPerSlot ? 1 : 0, n_experts: nExperts, out_rows: rows, row_base: 0, slots,
      }, Math.ceil((slots * rows) / (WG / variant.tpt)));
    },

    routeExperts(routing, logits, nExperts, normalize) {
      const { nTokens, used } = routing;
      posInt('routeExperts nExperts', nExperts);
      if (!Number.isInteger(used) || used < 1 || used > nExperts) throw new BackendError('INVALID_ARGUMENT', `routeExperts: ${used} experts of ${nExperts}`);
      need(logits, 4 * nTokens * nExperts, 'routeExperts logits');
      need(routing.ids, 4 * nTokens * used, 'routeExperts ids');
      need(routing.weights, 4 * nTokens * used, 'routeExperts weights');
      dispatch('routeExperts', NO_VARIANT, [routing.ids, routing.weights, logits], { n_experts: nExperts, used, normalize: normalize ? 1 : 0 }, Math.ceil(nTokens / WG), nTokens);
    },

    combineExperts(out, y, routing, n) {
      const { nTokens, used } = routing;
      need(y, 4 * nTokens * used * n, 'combineExperts y');
      need(routing.weights, 4 * nTokens * used, 'combineExperts weights');
      need(out, 4 * nTokens * n, 'combineExperts out');
      dispatch('combineExperts', NO_VARIANT, [out, y, routing.weights], { n, used }, Math.ceil((nTokens * n) / WG), nTokens * n);
    },

    getRows(out, table, ids, nTokens) {
      checkWeight(table, 'getRows table');
      need(ids, 4 * nTokens, 'getRows ids');
      checkIndices('getRows ids', ids, nTokens, table.rows);
      need(out, 4 * nTokens * table.cols, 'getRows out');
      const count = nTokens * table.cols;
      const parts = weightPieces(table);
      for (const { w: part, row } of parts) {
        dispatch('getRows', dequantVariant(table.type), [out, ids, part], {
          rows: part.rows, cols: table.cols, row_bytes: table.rowBytes, row_base: row, only_own: parts.length > 1 ? 1 : 0,
        }, Math.ceil(count / WG), count);
      }
    },

    rmsNorm(out, x, weight, n, nTokens, eps) {
      need(x, 4 * n * nTokens, 'rmsNorm x');
      need(out, 4 * n * nTokens, 'rmsNorm out');
      need(weight, 4 * n, 'rmsNorm weight');
      dispatch('rmsNorm', RMS_NORM, [out, x, weight], { n, eps: f32Bits(eps) }, nTokens);
    },

    layerNorm(out, x, weight, bias, n, nTokens, eps) {
      need(x, 4 * n * nTokens, 'layerNorm x');
      need(out, 4 * n * nTokens, 'layerNorm out');
      need(weight, 4 * n, 'layerNorm weight');
      need(bias, 4 * n, 'layerNorm bias');
      dispatch('layerNorm', LAYER_NORM, [out, x, weight, bias], { n, eps: f32Bits(eps) }, nTokens);
    },

    rope(x, nTokens, nHeads, headDim, positions, p: RopeParams, freqFactors) {
      if (p.ropeDims % 2 !== 0 || p.ropeDims < 2 || p.ropeDims > headDim) {
        throw new BackendError('INVALID_ARGUMENT', `rope: ropeDims ${p.ropeDims} must be even and in 2..headDim (${headDim})`);
      }
      need(x, 4 * nTokens * nHeads * headDim, 'rope x');
      need(positions, 4 * nTokens, 'rope positions');
      if (freqFactors) need(freqFactors, 4 * (p.ropeDims / 2), 'rope frequency factors');
      const base = Math.fround(p.freqBase);
      const low = Math.max(0, Math.floor(yarnCorrDim(p.ropeDims, p.nCtxOrig, p.betaFast, base)));
      const high = Math.min(p.ropeDims - 1, Math.ceil(yarnCorrDim(p.ropeDims, p.nCtxOrig, p.betaSlow, base)));
      let mscale = Math.fround(p.attnFactor);
      if (p.extFactor !== 0) mscale = Math.fround(mscale * Math.fround(1 + Math.fround(0.1 * Math.log(1 / Math.fround(p.freqScale)))));
      const count = nTokens * nHeads * (p.ropeDims / 2);
      const params = {
        rope_dims: p.ropeDims, n_heads: nHeads, head_dim: headDim, theta_scale: f32Bits(Math.pow(base, -2 / p.ropeDims)),
        freq_scale: f32Bits(p.freqScale), ext_factor: f32Bits(p.extFactor), low: f32Bits(low), high: f32Bits(high), mscale: f32Bits(mscale), neox: p.neox ? 1 : 0,
      };
      if (freqFactors) {
        dispatch('ropeFactors', { key: 'factors', code: 'fn factor(i: u32) -> f32 { return factors_f(i); }' }, [x, positions, freqFactors], params, Math.ceil(count / WG), count);
      } else {
        dispatch('rope', { key: 'plain', code: 'fn factor(i: u32) -> f32 { return 1.0; }' }, [x, positions], params, Math.ceil(count / WG), count);
      }
    },

    swiglu: (out, gate, up, count) => elementwise('swiglu', out, gate, up, count),
    geglu: (out, gate, up, count) => elementwise('geglu', out, gate, up, count),
    gelu: (out, x, count) => elementwise('gelu', out, x, x, count),
    sigmoid: (out, x, count) => elementwise('sigmoid', out, x, x, count),
    scale: (out, x, count, factor) => elementwise('scale', out, x, x, count, { factor: Math.fround(factor) }),
    softcap(out, x, count, cap) {
      if (!(cap > 0 && Number.isFinite(cap))) throw new BackendError('INVALID_ARGUMENT', `softcap: cap ${cap} must be a finite number > 0`);
      elementwise('softcap', out, x, x, count, { factor: Math.fround(1 / cap), cap: Math.fround(cap) });
    },
    add: (out, a, b, count) => elementwise('add', out, a, b, count),
    addBias: (out, x, bias, n, nTokens) => elementwise('addBias', out, x, bias, n * nTokens, { n }),

    argmax(out, x, n, nRows) {
      posInt('argmax n', n);
      need(x, 4 * n * nRows, 'argmax x');
      need(out, 4 * nRows, 'argmax out');
      dispatch('argmax', NO_VARIANT, [out, x], { n }, nRows);
    },

    topK(ids, values, x, n, nRows, k) {
      checkTopK(n, nRows, k);
      need(x, 4 * n * nRows, 'topK x');
      need(ids, 4 * k * nRows, 'topK ids');
      need(values, 4 * k * nRows, 'topK values');
      dispatch('topK', NO_VARIANT, [ids, values, x], { n, k }, nRows);
    },

    storeKV(layer: KVLayer, k, v, slots, nTokens) {
      checkKVType(layer, layer.kvDim, 'storeKV');
      need(k, 4 * nTokens * layer.kvDim, 'storeKV k');
      need(v, 4 * nTokens * layer.kvDim, 'storeKV v');
      need(slots, 4 * nTokens, 'storeKV slots');
      needCache(layer, 'storeKV');
      const nSlots = Math.floor(Math.min(layer.k.bytes, layer.v.bytes) / kvRowBytes(layer.type, layer.kvDim));
      checkIndices('storeKV slots', slots, nTokens, nSlots);
      if (layer.type === 'q8_0' || layer.type === 'q4_0') {
        // one thread per 32-value block of a row (K and V)
        const q8 = layer.type === 'q8_0', blocks = (nTokens * layer.kvDim) / 32;
        const variant = { key: layer.type, code: `const Q8 = ${q8};\nconst BLOCK_BYTES: u32 = ${q8 ? 34 : 18}u;` };
        dispatch('storeKVBlocks', variant, [layer.k, layer.v, k, v, slots], { kv_dim: layer.kvDim, n_slots: nSlots }, Math.ceil(blocks / WG), blocks);
        return;
      }
      const count = nTokens * layer.kvDim;
      const variant = layer.type === 'f16'
        ? {
          key: 'f16', code: `fn store(e: u32, kv: f32, vv: f32) {
  let word = e >> 1u;
  let shift = (e & 1u) * 16u;
  kc_and(word, ~(0xffffu << shift));
  kc_or(word, f32_to_f16(kv) << shift);
  vc_and(word, ~(0xffffu << shift));
  vc_or(word, f32_to_f16(vv) << shift);
}`,
        }
        : { key: 'f32', code: 'fn store(e: u32, kv: f32, vv: f32) { kc_setf(e, kv); vc_setf(e, vv); }' };
      dispatch(layer.type === 'f16' ? 'storeKVf16' : 'storeKVf32', variant, [layer.k, layer.v, k, v, slots], { kv_dim: layer.kvDim, n_slots: nSlots }, Math.ceil(count / WG), count);
    },

    attention(args: AttentionArgs) {
      const { nTokens, nHeads, nKvHeads, headDim, layer } = args;
      if (nKvHeads <= 0 || nHeads % nKvHeads !== 0) throw new BackendError('INVALID_ARGUMENT', `attention: nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
      if (layer.kvDim !== nKvHeads * headDim) throw new BackendError('INVALID_ARGUMENT', `attention: kvDim ${layer.kvDim} != nKvHeads * headDim`);
      if (headDim > MAX_HEAD_DIM) throw new BackendError('INVALID_ARGUMENT', `attention: head dim ${headDim} is over the WebGPU kernel's ${MAX_HEAD_DIM}`);
      checkKVType(layer, headDim, 'attention');
      const dim = nHeads * headDim;
      need(args.q, 4 * nTokens * dim, 'attention q');
      need(args.out, 4 * nTokens * dim, 'attention out');
      need(args.tokenInfo, 4 * 3 * nTokens, 'attention tokenInfo');
      need(args.blockTables, 4, 'attention block tables');
      needCache(layer, 'attention');
      const f16 = layer.type === 'f16';
      const alibi = args.alibi;
      let slopes: Tensor | undefined;
      if (alibi) {
        const key = `${alibi.maxBias}/${nHeads}`;
        slopes = slopeTensors.get(key);
        if (!slopes) {
          const values = alibiSlopes(alibi.maxBias, nHeads);
          slopes = backend.allocate(GGMLType.F32, [nHeads]);
          backend.upload(slopes, values);
          slopeTensors.set(key, slopes);
        }
        need(alibi.positions, 4 * nTokens, 'attention ALiBi positions');
      }
      const bias = alibi
        ? 'fn alibi_bias(h: u32, t: u32, p: u32) -> f32 { return slopes_f(h) * -abs(f32(apos_i(t)) - f32(p)); }'
        : 'fn alibi_bias(h: u32, t: u32, p: u32) -> f32 { return 0.0; }';
      const cache = { key: layer.type, code: CACHE_READS[layer.type] };
      const oneRow = f16 && headDim % 16 !== 0;
      const rows = nTokens * nHeads;
      const slots = oneRow ? 0 : splitSlots(args.tokenInfo, nTokens, rows, headDim);
      const dimsPerThread = Math.ceil(headDim / WG);
      const variant = {
        key: `${cache.key}${alibi ? '-alibi' : ''}-d${dimsPerThread}${slots > 0 ? '-split' : ''}`,
        code: `${cache.code}\n${bias}\nconst DIMS_PER_THREAD: u32 = ${dimsPerThread}u;\nconst SPLIT = ${slots > 0};`,
      };
      // split: the first pass writes each segment's state to the partials, the second folds them into out
      const partials = slots > 0 ? attentionPartials(partialsBytes(rows, slots, headDim)) : undefined;
      const tensors = [args.q, partials ?? args.out, layer.k, layer.v, args.blockTables, args.tokenInfo];
      dispatch(alibi ? 'attentionAlibi' : 'attention', variant, alibi ? [...tensors, alibi.positions, slopes!] : tensors, {
        n_heads: nHeads, n_kv_heads: nKvHeads, head_dim: headDim, kv_dim: layer.kvDim, block_size: layer.blockSize,
        scale: f32Bits(args.scale), softcap: f32Bits(args.softcap ?? 0), one_row: oneRow ? 1 : 0, slots: Math.max(1, slots),
      }, rows * Math.max(1, slots));
      if (partials) dispatch('attentionFold', NO_VARIANT, [args.out, partials], { head_dim: headDim, slots }, rows);
    },

    async dispose() {
      if (disposed) return;
      disposed = true;
      for (const b of buffers) b?.destroy();
      for (const p of pages) p.buffer.destroy();
      buffers.length = 1;
      pipelines.clear();
      if (!options.device) device.destroy(); // a device given to us stays its owner's
    },
  };
  return backend;
}
