// The inverse of loading a Hugging Face model directory, for tests: a GGUF model (test/helpers/synthetic.ts)
// written out as the directory transformers would have saved it: config.json from the GGUF metadata,
// the tensors under their Hugging Face names in safetensors (one file, or shards with an index), llama's
// q/k rows put back in Hugging Face's order (the inverse of llama.cpp's convert_hf_to_gguf.py permute),
// tokenizer.json / tokenizer_config.json from the vocabulary (hf-tokenizer-json.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readGGUF, type GGUFFile } from '../../src/gguf/reader.js';
import { readRange } from '../../src/io/byte-source.js';
import { fileSource } from '../../src/runtime/file-source.js';
import { GGMLType } from '../../src/tensor/ggml-types.js';
import { hfFilesFromGGUF } from './hf-tokenizer-json.js';

export interface HFTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I32';
  /** PyTorch order, outermost first. */
  shape: number[];
  data: Uint8Array;
}

export interface HFDirectoryOptions {
  /** Split the tensors over this many safetensors files with model.safetensors.index.json (default 1: model.safetensors). */
  shards?: number;
  /** Change config.json before it is written. */
  config?: (config: Record<string, unknown>) => void;
  /** Change the tensors before they are written. */
  tensors?: (tensors: HFTensor[]) => void;
  /** Leave llama's q/k rows in GGUF order (a directory a loader that skips the permutation would read right). */
  skipUnpermute?: boolean;
  generationConfig?: Record<string, unknown>;
  chatTemplate?: string;
}

/** GGUF name → Hugging Face name (llama.cpp's tensor map for llama / qwen2 / qwen3, read backwards). */
const LAYER_NAMES: Record<string, string> = {
  'attn_norm.weight': 'input_layernorm.weight',
  'attn_q.weight': 'self_attn.q_proj.weight', 'attn_k.weight': 'self_attn.k_proj.weight',
  'attn_v.weight': 'self_attn.v_proj.weight', 'attn_output.weight': 'self_attn.o_proj.weight',
  'attn_q.bias': 'self_attn.q_proj.bias', 'attn_k.bias': 'self_attn.k_proj.bias', 'attn_v.bias': 'self_attn.v_proj.bias',
  'attn_q_norm.weight': 'self_attn.q_norm.weight', 'attn_k_norm.weight': 'self_attn.k_norm.weight',
  'ffn_norm.weight': 'post_attention_layernorm.weight',
  'ffn_gate.weight': 'mlp.gate_proj.weight', 'ffn_up.weight': 'mlp.up_proj.weight', 'ffn_down.weight': 'mlp.down_proj.weight',
};
const GLOBAL_NAMES: Record<string, string> = { 'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight' };

function hfName(gguf: string): string {
  const m = /^blk\.(\d+)\.(.+)$/.exec(gguf);
  const name = m ? (LAYER_NAMES[m[2]!] && `model.layers.${m[1]}.${LAYER_NAMES[m[2]!]}`) : GLOBAL_NAMES[gguf];
  if (!name) throw new Error(`no Hugging Face name for ${gguf}`);
  return name;
}

/**
 * Undo llama.cpp's permute(w, n_head, n_head_kv) on rows: GGUF row h*hd + 2j + s came from Hugging
 * Face row h*hd + s*hd/2 + j (numpy: w.reshape(n_head, 2, hd/2, -1).swapaxes(1, 2)).
 */
function unpermuteRows(data: Uint8Array, rows: number, heads: number): Uint8Array {
  const rowBytes = data.length / rows, hd = rows / heads, out = new Uint8Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      for (let s = 0; s < 2; s++) {
        const ggufRow = h * hd + 2 * j + s, hfRow = h * hd + s * (hd / 2) + j;
        out.set(data.subarray(ggufRow * rowBytes, (ggufRow + 1) * rowBytes), hfRow * rowBytes);
      }
    }
  }
  return out;
}

/** One safetensors file as the format lays it out (header padded with spaces to 8 bytes). */
export function safetensorsBytes(tensors: readonly HFTensor[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.data.length] };
    at += t.data.length;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + at);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  let p = 8 + h.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

const meta = (file: GGUFFile, key: string) => file.metadata.get(key)?.value;

/** Write `dir` as the Hugging Face directory of the GGUF model at `ggufPath`; returns config.json as written. */
export async function writeHFDirectory(ggufPath: string, dir: string, opts: HFDirectoryOptions = {}): Promise<Record<string, unknown>> {
  const source = await fileSource(ggufPath);
  try {
    const file = await readGGUF(source);
    const arch = String(meta(file, 'general.architecture'));
    const num = (key: string) => meta(file, `${arch}.${key}`) as number | undefined;
    const nHeads = num('attention.head_count')!, nKvHeads = num('attention.head_count_kv')!;
    const vocab = file.tensorsByName.get('token_embd.weight')!.dims[1]!;
    const config: Record<string, unknown> = {
      architectures: [{ llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[arch]],
      model_type: arch,
      hidden_size: num('embedding_length'), intermediate_size: num('feed_forward_length'), num_hidden_layers: num('block_count'),
      num_attention_heads: nHeads, num_key_value_heads: nKvHeads,
      // the GGUF holds f32 values: written as the f32 value's shortest decimal, they read back the same
      rms_norm_eps: num('attention.layer_norm_rms_epsilon'), rope_theta: num('rope.freq_base'),
      max_position_embeddings: num('context_length'), vocab_size: vocab,
      tie_word_embeddings: !file.tensorsByName.has('output.weight'),
      bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32',
      ...(num('attention.key_length') !== undefined ? { head_dim: num('attention.key_length') } : {}),
      ...(arch === 'qwen2' ? { use_sliding_window: false, sliding_window: 4096 } : {}),
    };
    opts.config?.(config);

    const tensors: HFTensor[] = [];
    for (const t of file.tensors) {
      if (t.name === 'rope_freqs.weight') continue; // config.json's rope_scaling stands for it
      let data = await readRange(source, t.fileOffset, t.nBytes);
      const rows = t.dims.length === 1 ? t.dims[0]! : t.dims[1]!;
      if (arch === 'llama' && !opts.skipUnpermute) {
        if (/attn_q\.(weight|bias)$/.test(t.name)) data = unpermuteRows(data, rows, nHeads);
        if (/attn_k\.(weight|bias)$/.test(t.name)) data = unpermuteRows(data, rows, nKvHeads);
      }
      const dtype = ({ [GGMLType.F32]: 'F32', [GGMLType.F16]: 'F16', [GGMLType.BF16]: 'BF16' } as const)[t.type as GGMLType.F32];
      if (!dtype) throw new Error(`${t.name}: type ${t.type} has no safetensors dtype`);
      tensors.push({ name: hfName(t.name), dtype, shape: [...t.dims].reverse(), data });
    }
    opts.tensors?.(tensors);

    mkdirSync(dir, { recursive: true });
    const shards = opts.shards ?? 1;
    if (shards === 1) writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(tensors));
    else {
      const weightMap: Record<string, string> = {};
      const per = Math.ceil(tensors.length / shards);
      for (let k = 0; k < shards; k++) {
        const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
        const part = tensors.slice(k * per, (k + 1) * per);
        for (const t of part) weightMap[t.name] = name;
        writeFileSync(join(dir, name), safetensorsBytes(part));
      }
      const totalSize = tensors.reduce((s, t) => s + t.data.length, 0);
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
    const tok = hfFilesFromGGUF(file.metadata);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok.tokenizer));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...tok.config, ...(opts.chatTemplate ? { chat_template: opts.chatTemplate } : {}) }));
    if (opts.generationConfig) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(opts.generationConfig));
    return config;
  } finally {
    await source.close();
  }
}
