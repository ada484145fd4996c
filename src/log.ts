// The one logger of the library. Library code never writes to the console directly:
// it logs here, and the host (CLI, app) decides the level and where lines go.

export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug';
export type LogSink = (level: Exclude<LogLevel, 'silent'>, message: string) => void;

const rank: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };

let currentLevel: LogLevel = 'warn';
let sink: LogSink = (level, message) => {
  // stderr in every runtime: console.error is the portable way to reach it.
  console.error(`[wasmforge ${level}] ${message}`);
};

export function setLogLevel(level: LogLevel): void {
  currentLevel = level;
}

export function getLogLevel(): LogLevel {
  return currentLevel;
}

export function setLogSink(next: LogSink): void {
  sink = next;
}

function emit(level: Exclude<LogLevel, 'silent'>, message: string): void {
  if (rank[level] <= rank[currentLevel]) sink(level, message);
}

export const log = {
  error: (message: string) => emit('error', message),
  warn: (message: string) => emit('warn', message),
  info: (message: string) => emit('info', message),
  debug: (message: string) => emit('debug', message),
};
