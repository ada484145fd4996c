// The wire format between the TS host and the kernels: op codes and the command-block layout.
// scripts/build-wasm.js copies every `export const NAME = <int>;` line below into
// src/backend/wasm/kernels.generated.ts, so host and kernels share this one definition.
//
// A command block is ARG_SLOTS i32 slots: slot 0 holds the op code, the rest its arguments at the
// named slots below, the same names on both sides (f32 arguments are stored as their bit
// patterns; pointers are byte offsets in the wasm memory).

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
export const OP_GEGLU = 15;
export const OP_SCALE = 16;
export const OP_SOFTCAP = 17;
export const OP_ARGMAX = 18;
export const OP_LAYER_NORM = 19;
export const OP_SIGMOID = 20;
export const OP_INTERLEAVE_ROWS = 21;
export const OP_TOP_K = 22;

// ---- argument slots, per op

// OP_QUANT_Q8_0, OP_QUANT_Q8_K: f32 rows x ([nTokens][cols]) to blocks: quants qs, scales d, sums s
// (Q8_1 sums, or Q8_K bsums); OP_QUANT_Q8_0 reads the weight type to choose the layout.
export const QUANT_X = 1;
export const QUANT_N_TOKENS = 2;
export const QUANT_COLS = 3;
export const QUANT_QS = 4;
export const QUANT_D = 5;
export const QUANT_S = 6;
export const QUANT_WEIGHT_TYPE = 7;

// OP_ROUND_ACT: out[i] = x[i] rounded to f16 (or bf16 when ROUND_BF16 is 1), kept as f32.
export const ROUND_X = 1;
export const ROUND_COUNT = 2;
export const ROUND_OUT = 3;
export const ROUND_BF16 = 4;

// OP_MATMUL: weights of one type and width over one input (f32 x, or its quantized qs/d/s, in the
// layout MATMUL_ACT names: one of ACT_*, which the host takes from the type table's vecDotType),
// then MATMUL_N_PARTS parts of MATMUL_PART_SLOTS slots from MATMUL_PARTS: weight, rows, out, and
// whether the weight's rows are interleaved in fours (OP_INTERLEAVE_ROWS; 0: the file's layout).
export const MATMUL_TYPE = 1;
export const MATMUL_COLS = 2;
export const MATMUL_ROW_BYTES = 3;
export const MATMUL_N_TOKENS = 4;
export const MATMUL_X = 5;
export const MATMUL_QS = 6;
export const MATMUL_D = 7;
export const MATMUL_S = 8;
export const MATMUL_ACT = 9;
export const MATMUL_N_PARTS = 10;
export const MATMUL_PARTS = 11;
export const MATMUL_PART_WEIGHT = 0;
export const MATMUL_PART_ROWS = 1;
export const MATMUL_PART_OUT = 2;
export const MATMUL_PART_INTERLEAVED = 3;
export const MATMUL_PART_SLOTS = 4;
/** Activation layouts: f32 rows (also f16/bf16-rounded ones), Q8_0 blocks of 32, Q8_K blocks of 256. */
export const ACT_F32 = 0;
export const ACT_Q8_0 = 1;
export const ACT_Q8_K = 2;

// OP_GET_ROWS: out[t] = row ids[t] of a table of GET_ROWS_TYPE, dequantized.
export const GET_ROWS_TYPE = 1;
export const GET_ROWS_TABLE = 2;
export const GET_ROWS_COLS = 3;
export const GET_ROWS_ROW_BYTES = 4;
export const GET_ROWS_IDS = 5;
export const GET_ROWS_N_TOKENS = 6;
export const GET_ROWS_OUT = 7;
/** 1: the table's rows are interleaved in fours (OP_INTERLEAVE_ROWS). */
export const GET_ROWS_INTERLEAVED = 8;

// OP_INTERLEAVE_ROWS: a quantized weight's rows rewritten in groups of four, block by block
// (rows 4g..4g+3's blocks b side by side in group g's slot b), so a 4-row kernel reads one
// sequential stream instead of four. Q4_0, Q4_1 and Q8_0 also put the four blocks' f16 scales
// (and mins) side by side after their codes, so one load gives all four (see common.ts:
// packedHead). INTERLEAVE_TEMP holds one group (4 x INTERLEAVE_ROW_BYTES). One thread.
export const INTERLEAVE_PTR = 1;
export const INTERLEAVE_GROUPS = 2;
export const INTERLEAVE_ROW_BYTES = 3;
export const INTERLEAVE_TYPE = 4;
export const INTERLEAVE_TEMP = 5;

// OP_RMS_NORM: out[t] = x[t] / rms(x[t]) * weight, rows of NORM_N.
// OP_LAYER_NORM: out[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias.
export const NORM_OUT = 1;
export const NORM_X = 2;
export const NORM_WEIGHT = 3;
export const NORM_N = 4;
export const NORM_N_TOKENS = 5;
export const NORM_EPS = 6;
/** OP_LAYER_NORM only: f32 bias added after the weight. */
export const NORM_BIAS = 7;

// OP_ROPE: in place on x [nTokens][nHeads][headDim] at positions (i32[nTokens]).
export const ROPE_X = 1;
export const ROPE_N_TOKENS = 2;
export const ROPE_N_HEADS = 3;
export const ROPE_HEAD_DIM = 4;
export const ROPE_POSITIONS = 5;
export const ROPE_N_DIMS = 6;
export const ROPE_FREQ_BASE = 7;
export const ROPE_FREQ_SCALE = 8;
export const ROPE_NEOX = 9;
export const ROPE_EXT_FACTOR = 10;
export const ROPE_ATTN_FACTOR = 11;
export const ROPE_BETA_FAST = 12;
export const ROPE_BETA_SLOW = 13;
export const ROPE_N_CTX_ORIG = 14;
/** f32[nDims / 2] frequency factors (theta_i / factor_i: llama 3's rope_freqs, phi3's LongRoPE), or 0 for none. */
export const ROPE_FREQ_FACTORS = 15;

// OP_SWIGLU, OP_GEGLU, OP_ADD: out[i] = f(a[i], b[i]).
export const BINARY_OUT = 1;
export const BINARY_A = 2;
export const BINARY_B = 3;
export const BINARY_COUNT = 4;

// OP_SILU, OP_GELU, OP_SIGMOID, OP_SCALE (x * p), OP_SOFTCAP (p * tanh(x / p)): out[i] = f(x[i]) with an f32 parameter p.
export const UNARY_OUT = 1;
export const UNARY_X = 2;
export const UNARY_COUNT = 3;
export const UNARY_PARAM = 4;

// OP_ARGMAX: out[r] (i32) = the first index of the largest of row r of x (ARGMAX_ROWS rows of ARGMAX_N f32).
export const ARGMAX_OUT = 1;
export const ARGMAX_X = 2;
export const ARGMAX_N = 3;
export const ARGMAX_ROWS = 4;

// OP_TOP_K: ids[r][j] (i32) and values[r][j] (f32, x's bits) = the TOPK_K largest of row r of x
// (TOPK_ROWS rows of TOPK_N f32), largest first; equal values by the lower index, NaN above every number.
export const TOPK_IDS = 1;
export const TOPK_VALUES = 2;
export const TOPK_X = 3;
export const TOPK_N = 4;
export const TOPK_ROWS = 5;
export const TOPK_K = 6;

// OP_ADD_BIAS: out[t][i] = x[t][i] + bias[i], rows of BIAS_N.
export const BIAS_OUT = 1;
export const BIAS_X = 2;
export const BIAS_BIAS = 3;
export const BIAS_N = 4;
export const BIAS_N_TOKENS = 5;

// OP_STORE_KV: K and V rows into their cache slots, as the cache's ggml type KV_TYPE (T_F32, T_F16, T_Q8_0, T_Q4_0).
export const KV_K_CACHE = 1;
export const KV_V_CACHE = 2;
export const KV_TYPE = 3;
export const KV_DIM = 4;
export const KV_K = 5;
export const KV_V = 6;
export const KV_SLOTS = 7;
export const KV_N_TOKENS = 8;

// OP_ATTENTION: see attention.ts.
export const ATTN_Q = 1;
export const ATTN_OUT = 2;
export const ATTN_N_TOKENS = 3;
export const ATTN_N_HEADS = 4;
export const ATTN_N_KV_HEADS = 5;
export const ATTN_HEAD_DIM = 6;
export const ATTN_SCALE = 7;
export const ATTN_K_CACHE = 8;
export const ATTN_V_CACHE = 9;
/** The cache's ggml type: T_F32, T_F16, T_Q8_0 or T_Q4_0. */
export const ATTN_KV_TYPE = 10;
export const ATTN_BLOCK_SIZE = 11;
export const ATTN_KV_DIM = 12;
export const ATTN_TOKEN_INFO = 13;
export const ATTN_HALF = 14;
export const ATTN_SCRATCH = 15;
export const ATTN_HEADS_PER_UNIT = 16;
export const ATTN_TABLES = 17;
/** f32: scores become softcap * tanh(score) (score already times ATTN_SCALE, which the host divides by softcap); 0: off. */
export const ATTN_SOFTCAP = 18;
/** ALiBi: f32[nHeads] per-head slopes (0: off); each score gets slope * -|query position - key position|. */
export const ATTN_ALIBI_SLOPES = 19;
/** ALiBi: i32[nTokens] query positions (read only with ATTN_ALIBI_SLOPES). */
export const ATTN_POSITIONS = 20;
/**
 * Split decode (the f32 path, every query tile one token): 0 off; 1: each unit computes one key
 * segment's (max, sum, unnormalized output) of its rows into ATTN_PARTIALS; 2: each (token, head)
 * folds its segments in order into out (see attention.ts).
 */
export const ATTN_SPLIT_PHASE = 21;
/** f32[nTokens][nHeads][ATTN_SEGMENT_SLOTS][2 + headDim]: per segment max, sum, output. */
export const ATTN_PARTIALS = 22;
/** Segments per (token, head) in split mode: the most any token's key range spans. */
export const ATTN_SEGMENT_SLOTS = 23;

// ---- limits and tiles

/** Most weight matrices one OP_MATMUL command carries (they share the activations). */
export const MATMUL_MAX_PARTS = 4;

/** The f32 attention path's tiles: consecutive tokens of one sequence, and keys (they size its scratch). */
export const ATTN_QUERY_TILE = 8;
export const ATTN_KEY_TILE = 32;
/** Keys per segment of the f32 path (a multiple of ATTN_KEY_TILE), on a grid fixed by key position. */
export const ATTN_SEGMENT_KEYS = 256;

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
