// The suite's environment in a browser page or Web Worker: models are URLs on the test server
// (read with HTTP Range requests), /models/ first, then /shared/models/ (../shared, when mounted).
// Threads only when cross-origin isolated, one otherwise. The F32 model is passed as a root-relative
// string (resolved against the page), the others as absolute URLs.
export function browserEnv(runtime) {
  const find = async (paths) => {
    for (const p of paths) {
      const res = await fetch(p, { method: 'HEAD' });
      if (res.ok) return p.includes('stories260K.gguf') ? p : new URL(p, self.location.href).href;
    }
    return undefined;
  };
  return {
    runtime,
    threads: self.crossOriginIsolated ? 2 : 1,
    model: (name) => find([`/models/${name}`, `/shared/models/${name}`]),
    reference: async () => {
      const url = await find(['/shared/models/reference/stories260K_greedy_llama2c_run.txt']);
      return url ? (await fetch(url)).text() : undefined;
    },
  };
}
