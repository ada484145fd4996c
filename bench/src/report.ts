// The markdown report: speed side by side with ratios, load time and peak memory, and bandwidth-implied decode
// ceilings. Cells that failed or were skipped show why below the tables; nothing is left out silently.
import type { BandwidthResult } from './bandwidth.js';
import type { ModelBytes } from './models.js';
import { LLAMA_BENCH_REFERENCE } from './reference.js';
import { RUNTIMES, type Cell, type RuntimeId } from './types.js';

export interface Report {
  date: string;
  machine: Record<string, string>;
  settings: Record<string, string | number | boolean>;
  /** DRAM-sized working set. */
  bandwidth: BandwidthResult[];
  models: { key: string; model: string; type: string; bytes: ModelBytes; bandwidth: BandwidthResult[] }[];
  cells: Cell[];
  notes: string[];
}

const fmt = (x: number | undefined | null, digits?: number): string => {
  if (x === undefined || x === null || !Number.isFinite(x)) return '–';
  const d = digits ?? (x >= 100 ? 0 : x >= 10 ? 1 : 2);
  return x.toFixed(d);
};
const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}×` : '–');
const mib = (b: number | null | undefined): string => (b ? (b / 2 ** 20).toFixed(0) : '–');

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  const runtimes = RUNTIMES.filter((rt) => r.cells.some((c) => c.runtime === rt.id));
  const rows = [...new Map(r.cells.map((c) => [`${c.model} ${c.type}|${c.threads}`, c])).values()];
  const cell = (model: string, type: string, threads: number, rt: RuntimeId) =>
    r.cells.find((c) => c.model === model && c.type === type && c.threads === threads && c.runtime === rt);
  const med = (model: string, type: string, threads: number, rt: RuntimeId) => cell(model, type, threads, rt)?.median;

  out.push(`# wasmforge bench, ${r.date}`, '');
  // On 2 cores any other load distorts the figures, 2-thread ones most: say so at the top.
  const load = Math.max(...(r.machine['load average (1 min) at start / end'] ?? '').split('/').map(Number).filter(Number.isFinite));
  if (load > 1) out.push(`**Preliminary: the machine was busy during this run (1-minute load average up to ${load.toFixed(1)} on ${r.machine.cpu?.match(/(\d+) logical/)?.[1] ?? '?'} cores).**`, '');
  for (const [k, v] of Object.entries(r.machine)) out.push(`- ${k}: ${v}`);
  out.push(`- settings: ${Object.entries(r.settings).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  // What each runtime reported it ran (kernel build, thread count, isolation), from the runs themselves.
  for (const rt of runtimes) {
    const details = [...new Set(r.cells.filter((c) => c.runtime === rt.id).flatMap((c) => c.runs.map((x) => x.detail)).filter(Boolean))];
    if (details.length) out.push(`- ${rt.label} ran: ${details.join('; ')}`);
  }
  out.push('');

  out.push('## Speed (tokens/s, median of repetitions): prompt (pp, 128 tokens in one batch) / decode (tg, 128 greedy tokens)', '');
  const head = ['model', 'threads', ...runtimes.map((rt) => `${rt.label} pp / tg`)];
  const ratios: [RuntimeId, RuntimeId, string][] = [
    ['wasmforge', 'llama.cpp', 'wasmforge Node ÷ llama.cpp pp / tg'],
    ['wasmforge-web', 'wllama', 'wasmforge Chromium ÷ wllama pp / tg'],
    ['wasmforge', 'wllama', 'wasmforge Node ÷ wllama pp / tg'],
    ['wasmforge-webgpu', 'llama.cpp-gpu', 'wasmforge WebGPU ÷ llama.cpp GPU pp / tg'],
    ['wasmforge-webgpu', 'wasmforge', 'wasmforge WebGPU ÷ WASM pp / tg'],
  ];
  const shownRatios = ratios.filter(([a, b]) => runtimes.some((x) => x.id === a) && runtimes.some((x) => x.id === b));
  head.push(...shownRatios.map(([, , label]) => label));
  const showRef = runtimes.some((x) => x.id === 'wasmforge');
  if (showRef) head.push('llama-bench pp / tg (peers.md, earlier)', 'wasmforge Node ÷ llama-bench pp / tg');
  out.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const c of rows) {
    const line = [`${c.model} ${c.type}`, String(c.threads)];
    for (const rt of runtimes) {
      const m = med(c.model, c.type, c.threads, rt.id);
      const x = cell(c.model, c.type, c.threads, rt.id);
      line.push(m ? `${fmt(m.promptTps)} / ${fmt(m.decodeTps)}` : x?.skipped ? 'skipped' : x?.error ? 'failed' : '–');
    }
    for (const [a, b] of shownRatios) {
      const ma = med(c.model, c.type, c.threads, a);
      const mb = med(c.model, c.type, c.threads, b);
      line.push(`${ratio(ma?.promptTps, mb?.promptTps)} / ${ratio(ma?.decodeTps, mb?.decodeTps)}`);
    }
    if (showRef) {
      const ref = LLAMA_BENCH_REFERENCE[`${c.model} ${c.type}`]?.[c.threads];
      const mw = med(c.model, c.type, c.threads, 'wasmforge');
      line.push(ref ? `${fmt(ref[0])} / ${fmt(ref[1])}` : '–', ref ? `${ratio(mw?.promptTps, ref[0])} / ${ratio(mw?.decodeTps, ref[1])}` : '–');
    }
    out.push(`| ${line.join(' | ')} |`);
  }
  out.push('');

  out.push('## Load time (s) and peak memory (MiB, resident)', '');
  const head2 = ['model', 'threads', ...runtimes.map((rt) => `${rt.label} load s`), ...runtimes.map((rt) => `${rt.label} peak MiB`)];
  out.push(`| ${head2.join(' | ')} |`, `|${head2.map(() => '---').join('|')}|`);
  for (const c of rows) {
    const ms = runtimes.map((rt) => med(c.model, c.type, c.threads, rt.id));
    out.push(`| ${[`${c.model} ${c.type}`, String(c.threads), ...ms.map((m) => fmt(m?.loadS)), ...ms.map((m) => mib(m?.peakRssBytes))].join(' | ')} |`);
  }
  out.push('');

  if (r.bandwidth.length || r.models.some((m) => m.bandwidth.length)) {
    out.push('## Memory read bandwidth and the decode ceiling it implies', '');
    if (r.bandwidth.length) {
      out.push(`Read bandwidth over a ${mib(r.bandwidth[0]!.bytes)} MiB working set (DRAM): ` +
        r.bandwidth.map((b) => `${b.threads} thread${b.threads > 1 ? 's' : ''} ${fmt(b.gbps, 1)} GB/s (median ${fmt(b.medianGbps, 1)})`).join(', ') + '.', '');
    }
    const threadsSeen = [...new Set(r.cells.map((c) => c.threads))].sort();
    const h3 = ['model', 'weights read per token (MiB)', 'tensor types'];
    for (const t of threadsSeen) h3.push(`${t}T bandwidth GB/s`, `${t}T ceiling tok/s`, `${t}T wasmforge Node tg (% of ceiling)`, `${t}T llama.cpp tg (%)`);
    out.push(`| ${h3.join(' | ')} |`, `|${h3.map(() => '---').join('|')}|`);
    for (const m of r.models) {
      const line = [`${m.model} ${m.type}`, fmt(m.bytes.bytesPerToken / 2 ** 20, 1), m.bytes.typeMix];
      for (const t of threadsSeen) {
        const bw = m.bandwidth.find((b) => b.threads === t);
        const ceiling = bw ? (bw.gbps * 1e9) / m.bytes.bytesPerToken : undefined;
        const pct = (rt: RuntimeId) => {
          const tg = med(m.model, m.type, t, rt)?.decodeTps;
          return tg && ceiling ? `${fmt(tg)} (${((100 * tg) / ceiling).toFixed(0)}%)` : '–';
        };
        line.push(fmt(bw?.gbps, 1), fmt(ceiling), pct('wasmforge'), pct('llama.cpp'));
      }
      out.push(`| ${line.join(' | ')} |`);
    }
    out.push('', 'Bandwidth here is measured over a working set the size of the weights one decode step reads, so a ' +
      'model that fits in the last-level cache gets the cache\'s bandwidth. The ceiling is bandwidth ÷ weight bytes per token.', '');
  }

  const problems = r.cells.filter((c) => c.error || c.skipped);
  if (problems.length || r.notes.length) {
    out.push('## Notes, skips and failures', '');
    for (const n of r.notes) out.push(`- ${n}`);
    for (const c of problems) out.push(`- ${c.model} ${c.type}, ${c.runtime}, ${c.threads}T: ${c.skipped ? `skipped: ${c.skipped}` : `failed: ${c.error}`}`);
    out.push('');
  }
  return out.join('\n');
}
