/// <reference types="@webgpu/types" />
// Finding a GPU: the runtime's own navigator.gpu (browsers, Deno), else in Node and Bun the npm
// `webgpu` package (Dawn), an optional dependency loaded only when asked for. The device gets the
// adapter's real limits (the spec defaults cap a binding at 128 MiB) and the features we use.
import { log } from '../../log.js';
import { BackendError } from '../errors.js';

export interface GPUChoice {
  readonly device: GPUDevice;
  /**
   * The GPU object the device came from. Holders keep it: Dawn's Node binding frees its instance
   * when this object is garbage-collected, even while the device is in use (a crash in ProcessEvents).
   */
  readonly gpu?: GPU;
  /** Where the GPU came from and what it is, for logs and errors. */
  readonly description: string;
  readonly limits: {
    readonly maxBufferSize: number;
    readonly maxStorageBufferBindingSize: number;
    readonly maxStorageBuffersPerShaderStage: number;
  };
  /** The optional features the device was given that the kernels use. */
  readonly features: GPUFeatures;
  /** Whether the adapter runs shaders on the CPU (softwareAdapter): kernels pick their thread layouts by it. */
  readonly software: boolean;
}

/** The adapter's name from its info: vendor, architecture, device, description. */
export function adapterName(adapter: GPUAdapter): string {
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  return [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s).join(' ') || 'unnamed adapter';
}

/** Whether an adapter runs shaders on the CPU (lavapipe / llvmpipe, SwiftShader, WARP): the fallback flag, or its name. */
export function softwareAdapter(adapter: GPUAdapter): boolean {
  const info = (adapter as { info?: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).info;
  return info?.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software|basic render/i.test(adapterName(adapter));
}

/** Optional WebGPU features the kernels use when present; each has a path without. */
export interface GPUFeatures {
  /** Subgroup shuffles in the lane reductions of matmul and the norms (the same bits as without: webgpu/lanes_subgroups.wgsl). */
  readonly subgroups: boolean;
  /**
   * `shader-f16`: f16 values (F16 weights, block scales, an f16 KV cache) become f32 by the hardware's
   * conversion instead of integer bit work (the same bits: every f16 is exact in f32).
   */
  readonly shaderF16: boolean;
}

/** Each feature's WebGPU name. */
const FEATURE_NAMES: Record<keyof GPUFeatures, GPUFeatureName> = { subgroups: 'subgroups' as GPUFeatureName, shaderF16: 'shader-f16' };

/** Which optional features to use: true requires one (a typed error without it), false leaves it off, absent uses it when the adapter has it. */
export type GPUFeatureChoice = { readonly [K in keyof GPUFeatures]?: boolean };

/** The features to request of an adapter (or to use of a given device) offering `offered`. */
export function chooseFeatures(offered: ReadonlySet<string>, choice: GPUFeatureChoice = {}, where = 'the WebGPU adapter'): GPUFeatures {
  const use = (key: keyof GPUFeatures): boolean => {
    const name = FEATURE_NAMES[key];
    if (choice[key] === true && !offered.has(name)) throw new BackendError('NO_ADAPTER', `the ${name} feature was required, and ${where} does not offer it`);
    return choice[key] !== false && offered.has(name);
  };
  return { subgroups: use('subgroups'), shaderF16: use('shaderF16') };
}

/** The WebGPU names of the features chosen. */
export function featureNames(features: GPUFeatures): GPUFeatureName[] {
  return (Object.keys(FEATURE_NAMES) as (keyof GPUFeatures)[]).filter((k) => features[k]).map((k) => FEATURE_NAMES[k]);
}

export interface AcquireGPUOptions {
  /** A GPU object to use instead of looking for one (e.g. from the npm `webgpu` package's create()). */
  readonly gpu?: GPU;
  /** An adapter already chosen (from `gpu`, or navigator.gpu): no second requestAdapter. */
  readonly adapter?: GPUAdapter;
  readonly powerPreference?: GPUPowerPreference;
  /** Optional features to use or leave off (default: each when the adapter offers it). */
  readonly features?: GPUFeatureChoice;
}

/** The storage buffers our largest kernel binds (attention with ALiBi: q, out, K, V, tables, token info, positions, slopes). */
const STORAGE_BUFFERS_NEEDED = 8;

/** navigator.gpu where the runtime has one, else Dawn from the optional `webgpu` package (Node, Bun). */
async function findGPU(): Promise<{ gpu: GPU; source: string } | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, source: 'navigator.gpu' };
  const isNodeLike = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  if (!isNodeLike) return undefined;
  try {
    const specifier = 'webgpu'; // a variable, so bundlers leave this optional package alone
    const dawn = (await import(specifier)) as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    // Dawn's enums and classes (GPUBufferUsage, ...) are not globals in Node; the backend needs them.
    for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    return { gpu: dawn.create([]), source: 'npm webgpu (Dawn)' };
  } catch (err) {
    log.debug(`webgpu: the optional npm package "webgpu" could not be loaded: ${(err as Error).message}`);
    return undefined;
  }
}

/** A device on the best adapter here, or a typed error saying why there is none. */
export async function acquireGPU(options: AcquireGPUOptions = {}): Promise<GPUChoice> {
  const found = options.gpu ? { gpu: options.gpu, source: 'given GPU' } : await findGPU();
  if (!found) {
    const nodeLike = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
    throw new BackendError('NO_ADAPTER', nodeLike
      ? 'WebGPU is not available here: no navigator.gpu, and the optional package "webgpu" (Dawn) could not be loaded'
      : 'WebGPU is not available here: this runtime has no navigator.gpu');
  }
  let adapter: GPUAdapter | null = options.adapter ?? null;
  try {
    adapter ??= await found.gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (err) {
    throw new BackendError('NO_ADAPTER', `WebGPU (${found.source}): requestAdapter failed: ${(err as Error).message}`);
  }
  if (!adapter) throw new BackendError('NO_ADAPTER', `WebGPU (${found.source}) found no adapter`);
  const a = adapter.limits;
  if (a.maxStorageBuffersPerShaderStage < STORAGE_BUFFERS_NEEDED) {
    throw new BackendError('NO_ADAPTER', `the WebGPU adapter offers ${a.maxStorageBuffersPerShaderStage} storage buffers per shader stage; ${STORAGE_BUFFERS_NEEDED} are needed`);
  }
  const name = adapterName(adapter);
  const features = chooseFeatures(adapter.features as ReadonlySet<string>, options.features, `adapter ${name}`);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: featureNames(features),
      requiredLimits: {
        maxBufferSize: a.maxBufferSize,
        maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
        maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      },
    });
  } catch (err) {
    throw new BackendError('NO_ADAPTER', `WebGPU adapter ${name}: requestDevice failed: ${(err as Error).message}`);
  }
  return {
    device,
    gpu: found.gpu,
    description: `${name} (${found.source})`,
    features,
    software: softwareAdapter(adapter),
    limits: {
      maxBufferSize: device.limits.maxBufferSize,
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    },
  };
}
