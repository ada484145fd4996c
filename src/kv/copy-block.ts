// Copy-on-write support: duplicate the first `rows` token slots of one KV block into another, for
// every layer's K and V, with the backend's copy (the cache may live where the host cannot see it).
import type { Backend, KVLayer } from '../backend/backend.js';

export function copyBlockRows(backend: Backend, layers: readonly KVLayer[], src: number, dst: number, rows: number): void {
  if (rows <= 0 || src === dst) return;
  for (const layer of layers) {
    const slotBytes = layer.kvDim * (layer.type === 'f16' ? 2 : 4);
    const blockBytes = layer.blockSize * slotBytes;
    const n = rows * slotBytes;
    for (const cache of [layer.k, layer.v]) backend.copy(cache, dst * blockBytes, cache, src * blockBytes, n);
  }
}
