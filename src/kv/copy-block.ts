// Copy-on-write support: duplicate the first `rows` token slots of one KV block into another, for
// every layer's K and V, with the backend's copy (the cache may live where the host cannot see it).
import { kvRowBytes, type Backend, type KVLayer } from '../backend/backend.js';

export function copyBlockRows(backend: Backend, layers: readonly KVLayer[], src: number, dst: number, rows: number): void {
  if (rows <= 0 || src === dst) return;
  for (const layer of layers) {
    const slotBytes = kvRowBytes(layer.type, layer.kvDim);
    const blockBytes = layer.blockSize * slotBytes;
    const n = rows * slotBytes;
    for (const cache of [layer.k, layer.v]) backend.copy(cache, dst * blockBytes, cache, src * blockBytes, n);
  }
}
