// llama.cpp's own llama-bench, measured earlier on this machine (shared/notes/peers.md: 128-token prompt,
// 64 decode steps, medians of 3). Not measured by this bench (no llama-bench binary ships with node-llama-cpp);
// shown because node-llama-cpp's per-token overhead hides how fast llama.cpp decodes small models.
export const LLAMA_BENCH_REFERENCE: Record<string, Record<number, [pp: number, tg: number]>> = {
  's15m Q8_0': { 1: [3342, 630], 2: [6245, 906] },
  's15m Q4_0': { 1: [4322, 821], 2: [6781, 1271] },
  'm135 Q8_0': { 1: [230, 48], 2: [375, 75] },
  'm135 Q4_0': { 1: [293, 69], 2: [536, 124] },
  'l1b Q4_0': { 1: [39, 9.5], 2: [78, 18.3] },
  'l1b Q8_0': { 1: [36, 6.2], 2: [58, 11.5] },
};
