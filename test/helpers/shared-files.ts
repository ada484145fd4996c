// Finding the developer data in ../shared (bench and tests only; Node, Deno, Bun).
import { SyntheticModelError } from './synthetic.js';

/** Where ../shared/models/llama-2-tiny-random.gguf is: $WASMFORGE_SHARED, else a shared/ beside the cwd or an ancestor. */
export async function llama2VocabPath(): Promise<string> {
  const { existsSync } = await import('node:fs');
  const { dirname, join, resolve } = await import('node:path');
  const file = join('models', 'llama-2-tiny-random.gguf');
  const candidates: string[] = [];
  const env = typeof process !== 'undefined' ? process.env.WASMFORGE_SHARED : undefined;
  if (env) candidates.push(join(env, file));
  for (let dir = resolve('.'), i = 0; i < 8; i++, dir = dirname(dir)) candidates.push(join(dir, 'shared', file));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new SyntheticModelError('VOCAB_NOT_FOUND', `the Llama 2 vocab (${file}) is not under $WASMFORGE_SHARED or any shared/ beside the working directory`);
  return found;
}

