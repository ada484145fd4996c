// The benchmark prompt: plain English text that the Llama 2 tokenizer turns into exactly PROMPT_TOKENS tokens
// with BOS. Every runtime is given this text (wllama and node-llama-cpp tokenize it themselves) and each run
// checks that it saw PROMPT_TOKENS tokens, so all runtimes process the same batch.
import { readGGUF } from '../../src/gguf/reader.js';
import { fileSource } from '../../src/runtime/file-source.js';
import { Tokenizer } from '../../src/tokenizer/index.js';

export const PROMPT_TOKENS = 128;
export const DECODE_TOKENS = 128;

const STORY =
  'Once upon a time, in a small village near the sea, there lived a little girl named Lily. She loved to walk on ' +
  'the beach every morning and collect shiny shells. One day, she found a big blue shell that sang a soft song ' +
  'when she held it to her ear. Lily ran home to show her mother. "Look, Mom! This shell can sing!" she said. Her ' +
  'mother smiled and listened carefully. "That is the song of the ocean," she told Lily. "It remembers the waves ' +
  'and the wind." The next day, Lily took the shell to school. All her friends wanted to hear it. Tom, a boy with ' +
  'curly hair, asked if he could hold it. Lily was afraid he might drop it, but she shared it anyway. Tom held the ' +
  'shell gently and closed his eyes. He heard the song too, and he laughed with joy. After school, the two friends ' +
  'walked to the beach together to look for more singing shells. They searched until the sun went down.';

export interface BenchPrompt {
  text: string;
  /** With BOS, as our tokenizer encodes the text. */
  tokens: number[];
  /** A short text for the untimed warm-up pass. */
  warmupText: string;
}

/** Cut STORY to the longest prefix (on a word boundary) that encodes to `n` tokens with BOS. */
export async function benchPrompt(modelPath: string, n = PROMPT_TOKENS): Promise<BenchPrompt> {
  const source = await fileSource(modelPath);
  let tokenizer: Tokenizer;
  try {
    tokenizer = Tokenizer.fromGGUF((await readGGUF(source)).metadata);
  } finally {
    await source.close();
  }
  const words = STORY.split(' ');
  let best: BenchPrompt | undefined;
  for (let k = 1; k <= words.length; k++) {
    const text = words.slice(0, k).join(' ');
    const tokens = tokenizer.encode(text, { addSpecial: true });
    if (tokens.length > n) break;
    if (tokens.length === n) best = { text, tokens, warmupText: words.slice(0, 12).join(' ') };
  }
  if (!best) throw new Error(`no prefix of the bench story encodes to exactly ${n} tokens`);
  return best;
}
