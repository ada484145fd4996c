// llama.cpp's tokenizer conformance files (ggml-vocab-NAME.gguf with .inp/.out vectors). ../shared/vocab holds
// six of them; the llama.cpp source that npm node-llama-cpp ships as a git bundle has the others (llama-bpe,
// qwen2, ...). Those are read out of the bundle with git, once, into a cache folder.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SHARED = join(import.meta.dirname, '..', '..', '..', 'shared', 'vocab');
const BUNDLE = join(import.meta.dirname, '..', '..', 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');

/** The .gguf path of a vocabulary whose .inp/.out sit beside it, or why there is none. */
export function llamaCppVocab(name: string): { path?: string; why?: string } {
  const shared = join(SHARED, `ggml-vocab-${name}.gguf`);
  if (existsSync(shared)) return { path: shared };
  if (!existsSync(BUNDLE)) return { why: `ggml-vocab-${name}.gguf is not in ${SHARED} and node-llama-cpp's source bundle is not installed` };
  const stat = statSync(BUNDLE);
  const cache = join(tmpdir(), 'wasmforge-llama-cpp-vocab', `${stat.size}-${Math.floor(stat.mtimeMs)}`);
  const path = join(cache, `ggml-vocab-${name}.gguf`);
  if (existsSync(path) && existsSync(path + '.out')) return { path };
  try {
    const repo = join(cache, 'repo.git');
    if (!existsSync(join(repo, 'FETCH_HEAD'))) {
      mkdirSync(cache, { recursive: true });
      execFileSync('git', ['init', '-q', '--bare', repo]);
      execFileSync('git', ['-C', repo, 'fetch', '-q', BUNDLE, 'HEAD'], { stdio: 'ignore' });
    }
    for (const ext of ['.gguf', '.gguf.inp', '.gguf.out']) {
      const data = execFileSync('git', ['-C', repo, 'show', `FETCH_HEAD:models/ggml-vocab-${name}${ext}`], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
      // written under a temporary name first: a reader never sees half a file
      writeFileSync(join(cache, `.tmp${ext}`), data);
      renameSync(join(cache, `.tmp${ext}`), join(cache, `ggml-vocab-${name}${ext}`));
    }
    return { path };
  } catch (e) {
    return { why: `ggml-vocab-${name}.gguf could not be read from node-llama-cpp's source bundle: ${(e as Error).message.split('\n')[0]}` };
  }
}
