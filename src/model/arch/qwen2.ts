// qwen2: the llama layer with q/k/v biases and RoPE on the two halves of each head (NeoX).
import type { ArchDef } from './arch.js';
import { llama } from './llama.js';

export const qwen2: ArchDef = { ...llama, names: ['qwen2'], ropeStyle: 'neox' };
