// For tests that prove a command reads only the GGUF header: wraps the file-source module so every
// read is recorded. Use from a vi.mock factory (vi.mock itself must stay in the test file).
import type * as FileSourceModule from '../../src/runtime/file-source.js';

export interface RecordedRead {
  path: string;
  offset: number;
  length: number;
}

export function recordingFileSourceModule(real: typeof FileSourceModule, reads: RecordedRead[]): typeof FileSourceModule {
  return {
    fileSource: async (path: string) => {
      const s = await real.fileSource(path);
      return {
        size: s.size,
        name: s.name,
        readInto: (offset: number, dest: Uint8Array) => {
          reads.push({ path, offset, length: dest.length });
          return s.readInto(offset, dest);
        },
        close: () => s.close(),
      };
    },
  };
}
