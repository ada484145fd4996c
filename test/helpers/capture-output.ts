// For CLI tests: collect what a command writes to stdout and stderr, fresh for each test.
import { afterEach, beforeEach, vi } from 'vitest';

export interface CapturedOutput {
  out: string;
  err: string;
}

/** Registers beforeEach/afterEach hooks; `onReset` runs with each reset (e.g. to clear other recorders). */
export function captureOutput(onReset?: () => void): CapturedOutput {
  const io: CapturedOutput = { out: '', err: '' };
  beforeEach(() => {
    io.out = '';
    io.err = '';
    onReset?.();
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      io.out += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      io.err += String(chunk);
      return true;
    });
  });
  afterEach(() => vi.restoreAllMocks());
  return io;
}
