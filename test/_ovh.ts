import { loadModel } from '../src/model/model.js';
const m = await loadModel('bench/.cache/models/m135-q4_0-s1-v1.gguf', { threads: 2 });
const prompt = Array.from({ length: 16 }, (_, i) => 100 + ((i * 7919) % 20000));
const eng: number[] = [], dir: number[] = [];
for (let rep = 0; rep < 8; rep++) {
  m.engine().clearPrefixCache();
  const r = await m.generate(prompt, { temperature: 0, maxTokens: 96, ignoreEos: true }).result;
  eng.push(r.decodeMs / (r.tokens.length - 1));
  const g = m.graph; const kv = g.kv; kv.createSequence(999);
  let logits = (await g.forward(prompt.map((token, i) => ({ token, seqId: 999, logits: i === prompt.length - 1 }))))[0];
  const t3 = performance.now();
  for (let i = 0; i < 95; i++) {
    let best = 0; for (let j = 0; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    logits = (await g.forward([{ token: best, seqId: 999, logits: true }]))[0];
    await new Promise((res) => setImmediate(res));
  }
  dir.push((performance.now() - t3) / 95); kv.removeSequence(999);
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`ms/token engine ${med(eng).toFixed(2)} [${eng.map((x) => x.toFixed(1)).join(' ')}], direct ${med(dir).toFixed(2)} [${dir.map((x) => x.toFixed(1)).join(' ')}]`);
await m.dispose(); process.exit(0);
