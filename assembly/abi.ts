// The wire format between the TS host and the kernels: op codes and the command-block layout.
// scripts/build-wasm.js copies every `export const NAME = <int>;` line below into
// src/backend/wasm/kernels.generated.ts, so host and kernels share this one definition.
//
// A command block is ARG_SLOTS i32 slots: slot 0 holds the op code, the rest its arguments
// in the order exec.ts documents per op (f32 arguments are stored as their bit patterns).

export const ARG_SLOTS = 32;

export const OP_QUANT_Q8_0 = 1;
export const OP_QUANT_Q8_K = 2;
export const OP_MATMUL = 3;
export const OP_GET_ROWS = 4;
export const OP_RMS_NORM = 5;
export const OP_ROPE = 6;
export const OP_SWIGLU = 7;
export const OP_ADD = 8;
export const OP_ADD_BIAS = 9;
export const OP_STORE_KV = 10;
export const OP_ATTENTION = 11;
export const OP_SILU = 12;
export const OP_GELU = 13;
export const OP_ROUND_ACT = 14;

/** Most weight matrices one OP_MATMUL command carries (they share the activations). */
export const MATMUL_MAX_PARTS = 4;

/** The f32 attention path's tiles: consecutive tokens of one sequence, and keys (they size its scratch). */
export const ATTN_QUERY_TILE = 8;
export const ATTN_KEY_TILE = 32;

// ggml type ids the kernels understand (same numbers as src/tensor/ggml-types.ts).
export const T_F32 = 0;
export const T_F16 = 1;
export const T_Q4_0 = 2;
export const T_Q4_1 = 3;
export const T_Q5_0 = 6;
export const T_Q5_1 = 7;
export const T_Q8_0 = 8;
export const T_Q2_K = 10;
export const T_Q3_K = 11;
export const T_Q4_K = 12;
export const T_Q5_K = 13;
export const T_Q6_K = 14;
export const T_IQ4_NL = 20;
export const T_BF16 = 30;
