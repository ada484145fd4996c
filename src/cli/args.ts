// Small argv parser shared by the subcommands: --flag value, --flag=value, -x value, booleans, positionals.
export interface ArgSpec {
  /** Options that take a value, with their aliases (e.g. { model: ['m'] }). */
  values?: Record<string, string[]>;
  /** Boolean flags with their aliases. */
  flags?: Record<string, string[]>;
}

export interface ParsedArgs {
  values: Map<string, string>;
  flags: Set<string>;
  positionals: string[];
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseArgs(argv: string[], spec: ArgSpec): ParsedArgs {
  const alias = new Map<string, { name: string; takesValue: boolean }>();
  for (const [name, as] of Object.entries(spec.values ?? {})) for (const a of [name, ...as]) alias.set(a, { name, takesValue: true });
  for (const [name, as] of Object.entries(spec.flags ?? {})) for (const a of [name, ...as]) alias.set(a, { name, takesValue: false });
  const out: ParsedArgs = { values: new Map(), flags: new Set(), positionals: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    const m = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (!m || arg === '-') {
      out.positionals.push(arg);
      continue;
    }
    const opt = alias.get(m[1]);
    if (!opt) throw new UsageError(`unknown option ${arg}`);
    if (!opt.takesValue) {
      out.flags.add(opt.name);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`option ${arg} needs a value`);
    out.values.set(opt.name, value);
  }
  return out;
}

export function numberOption(args: ParsedArgs, name: string, fallback: number, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const raw = args.values.get(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw new UsageError(`--${name} must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` <= ${opts.max}` : ''}, got "${raw}"`);
  }
  return v;
}
