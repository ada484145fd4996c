// The WASM backend's mixture-of-experts ops. Routing and combining are a few values per token and
// run on the host over the wasm memory (f32 arithmetic through Math.fround, as ggml's f32 ops);
// the routed matmul groups the batch's slots by expert and runs the ordinary matmul kernels on
// each chosen expert's rows, gathering its input rows into a staging area when more than one
// slot reads it (a decode token's single row is used in place, and its experts share one op).
import { asWeight, subTensor, type Backend, type ExpertRouting, type Tensor, type WeightTensor } from '../backend.js';
import { BackendError } from '../errors.js';
import { GGMLType } from '../../tensor/ggml-types.js';
import { checkInt, type OpContext } from './dispatch.js';

/** Slots per gathered matmul call: bounds the staging area. */
const STAGE_ROWS = 64;

type ExpertOps = Pick<Backend, 'matmulRouted' | 'routeExperts' | 'combineExperts'>;

export function expertOps({ mem }: OpContext, { matmul, matmulShared }: Pick<Backend, 'matmul' | 'matmulShared'>): ExpertOps {
  let stage: { input: number; output: number; inBytes: number; outBytes: number } | undefined;
  /** Staging rows for inputs of `cols` and outputs of `rows` floats (grown once to the largest seen). */
  const staging = (cols: number, rows: number) => {
    const inBytes = 4 * STAGE_ROWS * cols, outBytes = 4 * STAGE_ROWS * rows;
    if (!stage || stage.inBytes < inBytes || stage.outBytes < outBytes) {
      const i = Math.max(inBytes, stage?.inBytes ?? 0), o = Math.max(outBytes, stage?.outBytes ?? 0);
      stage = { input: mem.alloc(i), output: mem.alloc(o), inBytes: i, outBytes: o };
    }
    return stage;
  };
  const f32 = () => new Float32Array(mem.memory.buffer);

  const checkRouting = (r: ExpertRouting, what: string): void => {
    checkInt(`${what} nTokens`, r.nTokens, 0);
    checkInt(`${what} used`, r.used, 1);
    mem.at(r.ids, `${what} ids`, 4 * r.nTokens * r.used);
    mem.at(r.weights, `${what} weights`, 4 * r.nTokens * r.used);
  };

  return {
    matmulRouted(out, w, nExperts, x, routing, inputPerSlot) {
      checkRouting(routing, 'matmulRouted');
      checkInt('nExperts', nExperts, 1);
      if (w.rows % nExperts !== 0) throw new BackendError('INVALID_ARGUMENT', `matmulRouted: ${w.rows} rows do not split into ${nExperts} experts`);
      const { nTokens, used } = routing;
      const rows = w.rows / nExperts, slots = nTokens * used;
      const xPtr = mem.at(x, 'matmulRouted input', 4 * (inputPerSlot ? slots : nTokens) * w.cols);
      const outPtr = mem.at(out, 'matmulRouted output', 4 * slots * rows);
      const idsAt = mem.at(routing.ids, 'matmulRouted ids') >> 2;
      const bySlot = new Map<number, number[]>(); // expert -> its slots, in order
      const ids = mem.i32();
      for (let s = 0; s < slots; s++) {
        const e = ids[idsAt + s]!;
        if (!(e >= 0 && e < nExperts)) throw new BackendError('INVALID_ARGUMENT', `matmulRouted: slot ${s} names expert ${e} of ${nExperts}`);
        const list = bySlot.get(e);
        if (list) list.push(s);
        else bySlot.set(e, [s]);
      }
      const inRow = 4 * w.cols, outRow = 4 * rows;
      const source = (s: number) => xPtr + (inputPerSlot ? s : Math.floor(s / used)) * inRow;
      const rowsOf = (ptr: number, n: number, width: number): Tensor => mem.tensorAt(ptr, GGMLType.F32, [width, n]);
      const expertWeight = (e: number): WeightTensor => asWeight(subTensor(w, e * rows * w.rowBytes, w.type, [w.cols, rows]), w.cols, rows);
      if (nTokens === 1 && !inputPerSlot) {
        // Decode's gate/up: every chosen expert reads the one token row, so they run as one
        // matmulShared (one activation quantization, one dispatch per 4 experts; the bits of a
        // matmul each). A repeated expert is computed once and copied.
        const experts = [...bySlot].sort((a, b) => a[0] - b[0]);
        matmulShared(experts.map(([e, list]) => ({ out: rowsOf(outPtr + list[0]! * outRow, 1, rows), w: expertWeight(e) })), rowsOf(xPtr, 1, w.cols), 1);
        const u8 = mem.u8();
        for (const [, list] of experts) for (const s of list.slice(1)) u8.copyWithin(outPtr + s * outRow, outPtr + list[0]! * outRow, outPtr + (list[0]! + 1) * outRow);
        return;
      }
      for (const [e, list] of [...bySlot].sort((a, b) => a[0] - b[0])) {
        const expert = expertWeight(e);
        if (list.length === 1) {
          matmul(rowsOf(outPtr + list[0]! * outRow, 1, rows), expert, rowsOf(source(list[0]!), 1, w.cols), 1);
          continue;
        }
        const st = staging(w.cols, rows);
        for (let at = 0; at < list.length; at += STAGE_ROWS) {
          const part = list.slice(at, at + STAGE_ROWS);
          const u8 = mem.u8();
          part.forEach((s, i) => u8.copyWithin(st.input + i * inRow, source(s), source(s) + inRow));
          matmul(rowsOf(st.output, part.length, rows), expert, rowsOf(st.input, part.length, w.cols), part.length);
          const u8after = mem.u8();
          part.forEach((s, i) => u8after.copyWithin(outPtr + s * outRow, st.output + i * outRow, st.output + (i + 1) * outRow));
        }
      }
    },

    routeExperts(routing, logits, nExperts, normalize) {
      checkRouting(routing, 'routeExperts');
      checkInt('nExperts', nExperts, 1);
      const { nTokens, used } = routing;
      if (used > nExperts) throw new BackendError('INVALID_ARGUMENT', `routeExperts: ${used} experts per token of ${nExperts}`);
      const lAt = mem.at(logits, 'routeExperts logits', 4 * nTokens * nExperts) >> 2;
      const idsAt = routing.ids.offset >> 2, wAt = routing.weights.offset >> 2;
      const v = f32(), ids = mem.i32();
      const p = new Float64Array(nExperts);
      const order = Array.from({ length: nExperts }, (_, i) => i);
      for (let t = 0; t < nTokens; t++) {
        // softmax in f32 values with an f64 sum, as ggml_soft_max
        let max = -Infinity;
        for (let e = 0; e < nExperts; e++) max = Math.max(max, v[lAt + t * nExperts + e]!);
        let sum = 0;
        for (let e = 0; e < nExperts; e++) sum += p[e] = Math.fround(Math.exp(Math.fround(v[lAt + t * nExperts + e]! - max)));
        const scale = Math.fround(1 / sum);
        for (let e = 0; e < nExperts; e++) p[e] = Math.fround(p[e]! * scale);
        order.sort((a, b) => p[b]! - p[a]! || a - b);
        let total = 0;
        for (let j = 0; j < used; j++) total = Math.fround(total + p[order[j]!]!);
        total = Math.max(total, 6.103515625e-5);
        for (let j = 0; j < used; j++) {
          ids[idsAt + t * used + j] = order[j]!;
          v[wAt + t * used + j] = normalize ? Math.fround(p[order[j]!]! / total) : p[order[j]!]!;
        }
      }
    },

    combineExperts(out, y, routing, n) {
      checkRouting(routing, 'combineExperts');
      checkInt('n', n, 1);
      const { nTokens, used } = routing;
      const yAt = mem.at(y, 'combineExperts input', 4 * nTokens * used * n) >> 2;
      const oAt = mem.at(out, 'combineExperts output', 4 * nTokens * n) >> 2;
      const wAt = routing.weights.offset >> 2;
      const v = f32();
      for (let t = 0; t < nTokens; t++) {
        for (let i = 0; i < n; i++) {
          // as ggml: each expert's output times its weight, then added in slot order
          let acc = Math.fround(v[yAt + t * used * n + i]! * v[wAt + t * used]!);
          for (let j = 1; j < used; j++) acc = Math.fround(acc + Math.fround(v[yAt + (t * used + j) * n + i]! * v[wAt + t * used + j]!));
          v[oAt + t * n + i] = acc;
        }
      }
    },
  };
}
