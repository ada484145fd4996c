// Copy-on-write support: duplicate the first `rows` token slots of one KV block into another, for
// every layer's K and V. The Backend contract has no copy op, but every backend keeps all memory in
// one linear buffer addressed by byte offsets, so a byte copy inside that buffer is correct for any.
import type { Backend, KVLayer } from '../backend/backend.js';

export function copyBlockRows(backend: Backend, layers: readonly KVLayer[], src: number, dst: number, rows: number): void {
  if (rows <= 0 || src === dst) return;
  const mem = backend.u8(); // one view for all layers: nothing allocates in between
  for (const layer of layers) {
    const slotBytes = layer.kvDim * (layer.type === 'f16' ? 2 : 4);
    const blockBytes = layer.blockSize * slotBytes;
    const n = rows * slotBytes;
    for (const base of [layer.kPtr, layer.vPtr]) {
      const from = base + src * blockBytes;
      mem.copyWithin(base + dst * blockBytes, from, from + n);
    }
  }
}
