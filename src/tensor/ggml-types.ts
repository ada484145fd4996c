// The one table of ggml tensor types. Every layer (GGUF parsing, dequantization, quantization,
// kernel choice) consults it; block layouts match ggml-common.h.

export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

export interface TypeTraits {
  readonly type: GGMLType;
  readonly name: string;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /**
   * The format activations take before a dot product with weights of this type (ggml's
   * vec_dot_type): the float types keep theirs, 32-element block types quantize them to Q8_0 (Q8_1
   * with its block sums for the types with a min), K-quants and i-quants to Q8_K. Undefined for
   * types that are never weights.
   */
  readonly vecDotType?: GGMLType;
}

const F32 = GGMLType.F32, Q8_0 = GGMLType.Q8_0, Q8_1 = GGMLType.Q8_1, Q8_K = GGMLType.Q8_K;
const table: TypeTraits[] = ([
  [GGMLType.F32, 'F32', 1, 4, F32],
  [GGMLType.F16, 'F16', 1, 2, GGMLType.F16],
  [GGMLType.Q4_0, 'Q4_0', 32, 18, Q8_0],
  [GGMLType.Q4_1, 'Q4_1', 32, 20, Q8_1],
  [GGMLType.Q5_0, 'Q5_0', 32, 22, Q8_0],
  [GGMLType.Q5_1, 'Q5_1', 32, 24, Q8_1],
  [GGMLType.Q8_0, 'Q8_0', 32, 34, Q8_0],
  [GGMLType.Q8_1, 'Q8_1', 32, 36, undefined],
  [GGMLType.Q2_K, 'Q2_K', 256, 84, Q8_K],
  [GGMLType.Q3_K, 'Q3_K', 256, 110, Q8_K],
  [GGMLType.Q4_K, 'Q4_K', 256, 144, Q8_K],
  [GGMLType.Q5_K, 'Q5_K', 256, 176, Q8_K],
  [GGMLType.Q6_K, 'Q6_K', 256, 210, Q8_K],
  [GGMLType.Q8_K, 'Q8_K', 256, 292, undefined],
  [GGMLType.IQ2_XXS, 'IQ2_XXS', 256, 66, Q8_K],
  [GGMLType.IQ2_XS, 'IQ2_XS', 256, 74, Q8_K],
  [GGMLType.IQ3_XXS, 'IQ3_XXS', 256, 98, Q8_K],
  [GGMLType.IQ1_S, 'IQ1_S', 256, 50, Q8_K],
  [GGMLType.IQ4_NL, 'IQ4_NL', 32, 18, Q8_0],
  [GGMLType.IQ3_S, 'IQ3_S', 256, 110, Q8_K],
  [GGMLType.IQ2_S, 'IQ2_S', 256, 82, Q8_K],
  [GGMLType.IQ4_XS, 'IQ4_XS', 256, 136, Q8_K],
  [GGMLType.I8, 'I8', 1, 1, undefined],
  [GGMLType.I16, 'I16', 1, 2, undefined],
  [GGMLType.I32, 'I32', 1, 4, undefined],
  [GGMLType.I64, 'I64', 1, 8, undefined],
  [GGMLType.F64, 'F64', 1, 8, undefined],
  [GGMLType.IQ1_M, 'IQ1_M', 256, 56, Q8_K],
  [GGMLType.BF16, 'BF16', 1, 2, GGMLType.BF16],
  [GGMLType.TQ1_0, 'TQ1_0', 256, 54, Q8_K],
  [GGMLType.TQ2_0, 'TQ2_0', 256, 66, Q8_K],
  [GGMLType.MXFP4, 'MXFP4', 32, 17, Q8_0],
] as const).map(([type, name, blockSize, blockBytes, vecDotType]) => ({ type, name, blockSize, blockBytes, vecDotType }) as TypeTraits);

const byId = new Map<number, TypeTraits>(table.map((t) => [t.type, t]));
const byName = new Map<string, TypeTraits>(table.map((t) => [t.name.toLowerCase(), t]));

/** Traits of a type id, or undefined for an id ggml does not define. */
export function typeTraits(type: number): TypeTraits | undefined {
  return byId.get(type);
}

export function typeByName(name: string): TypeTraits | undefined {
  return byName.get(name.toLowerCase());
}

export function typeName(type: number): string {
  return byId.get(type)?.name ?? `unknown(${type})`;
}

/** Bytes of one row of `n` elements; n must be a multiple of the block size. */
export function rowBytes(type: GGMLType, n: number): number {
  const t = byId.get(type)!;
  return (n / t.blockSize) * t.blockBytes;
}
