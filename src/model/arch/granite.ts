// granite (IBM Granite 3.x dense; llama.cpp's src/models/granite.cpp): the llama layer with four
// multipliers from its metadata: token embeddings times embedding_scale, each branch's output times
// residual_scale before it joins the residual, attention.scale as the softmax scale, and the
// logits divided by logit_scale (required, as llama.cpp reads it).
import { getNumber } from '../../gguf/metadata.js';
import { GGUFError } from '../../gguf/errors.js';
import type { ArchDef } from './arch.js';
import { llamaLayerTensors } from './llama.js';

export const granite: ArchDef = {
  names: ['granite'],
  ropeStyle: 'normal',
  configure(c, _hp, meta) {
    /** A multiplier: absent or 0 means none (llama.cpp's convention). */
    const factor = (key: string, required = false): number | undefined => {
      const v = required ? getNumber(meta, key) : getNumber(meta, key, 0);
      if (!Number.isFinite(v) || v < 0 || (required && v === 0)) throw new GGUFError('INVALID_VALUE', `metadata "${key}" is ${v}, expected a finite number ${required ? '> 0' : '>= 0'}`);
      return v === 0 ? undefined : v;
    };
    const logitScale = factor('granite.logit_scale', true)!;
    return {
      ...c,
      embeddingScale: factor('granite.embedding_scale'),
      residualScale: factor('granite.residual_scale'),
      attentionScale: factor('granite.attention.scale'),
      logitScale: Math.fround(1 / Math.fround(logitScale)),
    };
  },
  layerTensors: (c) => llamaLayerTensors(c).filter((t) => !t.role.endsWith('.bias')),
  buildLayer(g, w, layer) {
    g.attention(w, layer);
    g.feedForward(w);
  },
};
