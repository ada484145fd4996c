// Builds a SentencePiece `precompiled_charsmap` (the Precompiled normalizer's rules) from a list of
// (from, to) rules: a darts-clone double array over the UTF-8 keys whose leaves hold offsets into a pool of
// NUL-terminated replacements, laid out as [u32 LE trie bytes][units][pool], base64.
// A plain first-fit builder: small maps for tests, not SentencePiece's compact layout.

interface Node {
  children: Map<number, Node>;
  value?: number;
}

const LEAF = 0x80000000;
const HAS_LEAF = 1 << 8;

function encodeOffset(offset: number): number {
  if (offset < 1 << 21) return offset << 10;
  if (offset % 256 === 0 && offset >>> 8 < 1 << 21) return ((offset >>> 8) << 10) | (1 << 9);
  throw new Error(`offset ${offset} cannot be encoded`);
}

export function buildCharsmap(rules: [from: string, to: string][]): string {
  const encoder = new TextEncoder();
  const root: Node = { children: new Map() };
  const pool: number[] = [];
  for (const [from, to] of rules) {
    let node = root;
    for (const b of encoder.encode(from)) {
      let child = node.children.get(b);
      if (!child) node.children.set(b, (child = { children: new Map() }));
      node = child;
    }
    node.value = pool.length;
    pool.push(...encoder.encode(to), 0);
  }

  const units: number[] = [0];
  const used = new Set<number>([0]);
  const queue: [Node, number][] = [[root, 0]];
  // a unit is known by its label only, so no two nodes may share a base (as in darts-clone)
  const bases = new Set<number>();
  while (queue.length > 0) {
    const [node, index] = queue.shift()!;
    const labels = [...node.children.keys()];
    if (node.value !== undefined && node !== root) labels.push(0);
    if (labels.length === 0) continue;
    // the first unused base whose children's places are all free
    let base = 1;
    while (bases.has(base) || labels.some((c) => used.has(base ^ c) || (base ^ c) === 0)) base++;
    bases.add(base);
    units[index] = (units[index] ?? 0) | encodeOffset(index ^ base);
    for (const c of labels) used.add(base ^ c);
    if (node.value !== undefined && node !== root) units[base] = (node.value | LEAF) >>> 0;
    for (const [c, child] of node.children) {
      const at = base ^ c;
      units[at] = c | (child.value !== undefined ? HAS_LEAF : 0);
      queue.push([child, at]);
    }
  }
  // every place a lookup can reach (base ^ any byte) lies inside the array, as darts-clone's 256-unit blocks
  // ensure: the library does not check
  const size = Math.max(units.length, ...[...bases].map((b) => (b | 0xff) + 1));
  const bytes = new Uint8Array(4 + size * 4 + pool.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, size * 4, true);
  for (let i = 0; i < size; i++) view.setUint32(4 + 4 * i, (units[i] ?? 0) >>> 0, true);
  bytes.set(pool, 4 + size * 4);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
