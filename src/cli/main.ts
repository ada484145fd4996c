// `wasmforge` command-line entry: dispatches to one module per subcommand, loaded lazily.
import { log, setLogLevel } from '../log.js';

export interface CommandModule {
  /** One-line description for `wasmforge --help`. */
  summary: string;
  /** Runs the command; returns the process exit code. */
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<CommandModule>> = {
  generate: () => import('./generate.js'),
  inspect: () => import('./inspect.js'),
  tokenize: () => import('./tokenize.js'),
  detokenize: () => import('./detokenize.js'),
  quantize: () => import('./quantize.js'),
  convert: () => import('./convert.js'),
  logits: () => import('./logits.js'),
  perplexity: () => import('./perplexity.js'),
  embed: () => import('./embed.js'),
  serve: () => import('./serve.js'),
  chat: () => import('./chat.js'),
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (argv.includes('--verbose')) setLogLevel('debug');
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const lines = ['usage: wasmforge <command> [options]', '', 'commands:'];
    for (const [cmd, load] of Object.entries(commands)) {
      const summary = await load().then((m) => m.summary, () => '(unavailable)');
      lines.push(`  ${cmd.padEnd(12)} ${summary}`);
    }
    lines.push('', 'run `wasmforge <command> --help` for its options');
    process.stdout.write(lines.join('\n') + '\n');
    return name ? 0 : 1;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`wasmforge: unknown command "${name}" (try --help)\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest.filter((a) => a !== '--verbose'));
  } catch (err) {
    const e = err as Error;
    // Typed errors (GGUFError, TokenizerError, ...) carry a code; show it with the message, no stack.
    const code = (e as { code?: string }).code;
    process.stderr.write(`wasmforge ${name}: ${e.name}${code ? ` [${code}]` : ''}: ${e.message}\n`);
    log.debug(e.stack ?? '');
    return 1;
  }
}
