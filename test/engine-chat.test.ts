// Chat templates from GGUF metadata: a copy of stories260K written with our GGUF writer plus a
// tokenizer.chat_template (Llama 2's and a ChatML one), rendered with @huggingface/jinja, and
// engine.chat() generating from exactly the rendered prompt (BOS once, whoever writes it).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplateError } from '../src/chat/errors.js';
import { ChatTemplate } from '../src/chat/template.js';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { GGUFValueType } from '../src/gguf/constants.js';
import { readGGUF } from '../src/gguf/reader.js';
import { writeGGUF } from '../src/gguf/writer.js';
import { bufferSource } from '../src/io/byte-source.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';

// Llama 2's template as shipped with the chat models.
const LLAMA2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 %}{% set content = system_message + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const CHATML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** stories260K re-written with a chat template in its metadata. */
async function withTemplate(template: string): Promise<Uint8Array> {
  const bytes = readFileSync(await bundledModelPath());
  const file = await readGGUF(bufferSource(bytes));
  const metadata = [...file.metadata].filter(([k]) => k !== 'general.alignment');
  metadata.push(['tokenizer.chat_template', { type: GGUFValueType.STRING, value: template }]);
  const tensors = file.tensors.map((t) => ({ name: t.name, dims: [...t.dims], type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.nBytes) }));
  return writeGGUF(metadata, tensors, { alignment: file.alignment });
}

const conversation = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Tell me a story.' },
  { role: 'assistant', content: 'Once there was a cat.' },
  { role: 'user', content: 'More!' },
];

describe('chat templates', () => {
  let model: Model;
  let engine: Engine;
  beforeAll(async () => {
    model = await loadModel(await withTemplate(LLAMA2), { threads: 2, kvCacheTokens: 16 });
    engine = await createEngine(model, { kvCacheTokens: 1024 });
  });
  afterAll(async () => {
    await engine?.dispose();
    await model?.dispose();
  });

  it('reads the template from GGUF metadata and renders Llama 2 turns with the model\'s BOS/EOS text', () => {
    const t = ChatTemplate.fromMetadata(model.file.metadata, model.tokenizer);
    expect([t.bosToken, t.eosToken]).toEqual(['<s>', '</s>']);
    expect(t.render(conversation)).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nTell me a story. [/INST] Once there was a cat. </s><s>[INST] More! [/INST]');
  });

  it('renders ChatML with and without the generation prompt', async () => {
    const file = await readGGUF(bufferSource(await withTemplate(CHATML)));
    const t = ChatTemplate.fromMetadata(file.metadata);
    const msgs = conversation.slice(0, 2);
    expect(t.render(msgs)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n');
    expect(t.render(msgs, { addGenerationPrompt: false })).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n');
  });

  it('typed errors: no template, unparsable template, template raising, bad messages', async () => {
    const plain = await readGGUF(bufferSource(readFileSync(await bundledModelPath())));
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ChatTemplateError);
        return (e as ChatTemplateError).code;
      }
      return 'none';
    };
    expect(err(() => ChatTemplate.fromMetadata(plain.metadata))).toBe('NO_TEMPLATE');
    expect(err(() => new ChatTemplate('{% for %}'))).toBe('BAD_TEMPLATE');
    expect(err(() => new ChatTemplate(LLAMA2).render([{ role: 'assistant', content: 'hi' }]))).toBe('RENDER_FAILED');
    expect(err(() => new ChatTemplate(CHATML).render([]))).toBe('BAD_MESSAGES');
  });

  it('engine.chat generates from the rendered prompt with exactly one BOS (template-written or added)', async () => {
    const tok = model.tokenizer;
    // Llama 2 writes <s> itself: nothing is added
    const rendered = ChatTemplate.fromMetadata(model.file.metadata, tok).render(conversation);
    const expected = tok.encode(rendered, { addSpecial: false, parseSpecial: true });
    expect(expected[0]).toBe(tok.bosId);
    expect(expected[1]).not.toBe(tok.bosId);
    const viaChat = await engine.chat(conversation, { maxTokens: 12, temperature: 0 }).result;
    const viaTokens = await engine.generate({ prompt: expected, maxTokens: 12, temperature: 0 }).result;
    expect(viaChat.usage.promptTokens).toBe(expected.length);
    expect(viaChat.tokens).toEqual(viaTokens.tokens);

    // ChatML writes no BOS: the tokenizer's BOS is added once
    const chatml = new ChatTemplate(CHATML).render(conversation);
    const withBos = tok.encode(chatml, { addSpecial: true, parseSpecial: true });
    expect(withBos.filter((t) => t === tok.bosId).length).toBe(1);
    const r = await engine.chat(conversation, { chatTemplate: CHATML, maxTokens: 12, temperature: 0 }).result;
    expect(r.usage.promptTokens).toBe(withBos.length);
    expect(r.tokens).toEqual((await engine.generate({ prompt: withBos, maxTokens: 12, temperature: 0 }).result).tokens);
  });
});
