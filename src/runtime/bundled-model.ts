// Runtime adapter (Node, Deno, Bun): the path of the stories260K model shipped in the package,
// found by walking up from this module to the package root (works from src/ and dist/src/).
export async function bundledModelPath(): Promise<string> {
  const { fileURLToPath } = await import('node:url');
  const { existsSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'models', 'stories260K.gguf');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('the bundled model models/stories260K.gguf is missing from the package');
}
