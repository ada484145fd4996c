// The subcommands' argv parsing: node:util's parseArgs (Node, Deno and Bun all have it) under a
// small spec of options with aliases. Two things it does not do are added here: long aliases
// (--temperature for --temp) and negative numbers as values (`--frequency-penalty -0.5`, which
// parseArgs would take for an option).
import { parseArgs as parseArgv } from 'node:util';

export interface ArgSpec {
  /** Options that take a value, with their aliases (e.g. { model: ['m'] }). */
  values?: Record<string, string[]>;
  /** Of those, the ones that may be given several times (`--stop a --stop b`). */
  repeatable?: string[];
  /** Boolean flags with their aliases. */
  flags?: Record<string, string[]>;
}

export interface ParsedArgs {
  /** Each value option's value (the last one given). */
  values: Map<string, string>;
  /** Every value of a repeatable option, in order. */
  lists: Map<string, string[]>;
  flags: Set<string>;
  positionals: string[];
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const NEGATIVE_NUMBER = /^-(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export function parseArgs(argv: string[], spec: ArgSpec): ParsedArgs {
  // Every spelling of an option is its own parseArgs option; results fold back to the main name.
  const options: Record<string, { type: 'string' | 'boolean'; multiple: true; short?: string }> = {};
  const mainName = new Map<string, string>();
  const add = (name: string, aliases: string[], type: 'string' | 'boolean') => {
    options[name] = { type, multiple: true };
    mainName.set(name, name);
    for (const a of aliases) {
      if (a.length === 1) options[name]!.short = a;
      else {
        options[a] = { type, multiple: true };
        mainName.set(a, name);
      }
    }
  };
  for (const [name, aliases] of Object.entries(spec.values ?? {})) add(name, aliases, 'string');
  for (const [name, aliases] of Object.entries(spec.flags ?? {})) add(name, aliases, 'boolean');
  const shortTakesValue = new Set(Object.values(options).filter((o) => o.type === 'string' && o.short).map((o) => o.short!));
  // `--opt -1` → `--opt=-1`, `-x -1` → `-x-1`... the latter parseArgs reads as x = "-1".
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, next = argv[i + 1];
    const long = /^--([^=]+)$/.exec(a)?.[1], short = /^-([A-Za-z])$/.exec(a)?.[1];
    const takesValue = (long !== undefined && options[long]?.type === 'string') || (short !== undefined && shortTakesValue.has(short));
    if (takesValue && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      args.push(long !== undefined ? `--${long}=${next}` : `-${short}${next}`);
      i++;
    } else args.push(a);
  }
  let parsed: ReturnType<typeof parseArgv>;
  try {
    parsed = parseArgv({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs's messages name the option; drop its multi-line hints.
    throw new UsageError(String((err as Error).message).split('\n')[0]!.replace(/^Unknown option '([^']+)'.*$/, 'unknown option $1'));
  }
  const out: ParsedArgs = { values: new Map(), lists: new Map(), flags: new Set(), positionals: parsed.positionals };
  const repeatable = new Set(spec.repeatable ?? []);
  for (const [key, raw] of Object.entries(parsed.values)) {
    const name = mainName.get(key)!;
    const given = raw as (string | boolean)[];
    if (options[key]!.type === 'boolean') {
      out.flags.add(name);
      continue;
    }
    const list = [...(out.lists.get(name) ?? []), ...(given as string[])];
    if (list.length > 1 && !repeatable.has(name)) throw new UsageError(`option --${name} was given ${list.length} times; give it once`);
    out.lists.set(name, list);
    out.values.set(name, list.at(-1)!);
  }
  return out;
}

export function numberOption(args: ParsedArgs, name: string, fallback: number, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const raw = args.values.get(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw new UsageError(`--${name} must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` <= ${opts.max}` : ''}, got "${raw}"`);
  }
  return v;
}
