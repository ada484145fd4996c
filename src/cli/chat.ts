// `wasmforge chat`: an interactive chat in the terminal with the model's chat template. Each line
// is a user turn; the answer streams as it is generated and joins the history. /reset forgets the
// conversation, /exit (or end of input) quits. Ctrl-C stops the answer being written; Ctrl-C with
// no answer running, or twice in a row, exits. Reads piped input too (one turn per line).
import { createInterface } from 'node:readline';
import { CHATML_TEMPLATE, ChatTemplate, type ChatMessage } from '../chat/template.js';
import { EngineError } from '../engine/errors.js';
import { log } from '../log.js';
import { Sampler, SamplingError } from '../sampling/sampler.js';
import { numberOption, parseArgs, UsageError } from './args.js';
import { KV_TYPE_HELP, loadModelFromArgs, MODEL_OPTIONS } from './common.js';

export const summary = 'chat with a model in the terminal (its chat template, streaming, history, /reset)';

const HELP = `usage: wasmforge chat [-m FILE] [options]
  -m, --model FILE        GGUF model (default: bundled stories260K.gguf)
  --system TEXT           a system message that starts the conversation
  -n, --n-predict N       most tokens per answer (default 512)
  --temp T --top-k K --top-p P --min-p P --repeat-penalty R   sampling (defaults 0.8, 40, 0.95, 0.05, 1)
  --seed S                random seed (default: random)
  --ignore-eos            keep writing past end-of-turn (until -n)
  --chat-template FILE    a Jinja chat template file instead of the model's (ChatML when it has none)
  -t, --threads N         worker threads;  -c, --ctx N  context length
${KV_TYPE_HELP}
  --backend NAME          auto | wasm | webgpu | reference (default auto)
  --verbose               debug logging
in the chat: /reset forgets the conversation, /exit quits; Ctrl-C stops an answer, twice exits`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    values: { ...MODEL_OPTIONS, system: [], 'n-predict': ['n'], temp: ['temperature'], 'top-k': [], 'top-p': [], 'min-p': [], 'repeat-penalty': [], seed: ['s'], 'chat-template': [] },
    flags: { help: ['h'], 'ignore-eos': [] },
  });
  if (args.flags.has('help')) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const sampling = {
    temperature: numberOption(args, 'temp', 0.8), topK: numberOption(args, 'top-k', 40), topP: numberOption(args, 'top-p', 0.95),
    minP: numberOption(args, 'min-p', 0.05), repeatPenalty: numberOption(args, 'repeat-penalty', 1),
    seed: args.values.has('seed') ? numberOption(args, 'seed', 0, { integer: true, min: 0 }) : undefined,
  };
  try {
    new Sampler(sampling);
  } catch (err) {
    throw err instanceof SamplingError ? new UsageError(err.message) : err;
  }
  const maxTokens = numberOption(args, 'n-predict', 512, { integer: true, min: 1 });
  const templateFile = args.values.get('chat-template');
  const templateSource = templateFile === undefined ? undefined : await (await import('node:fs/promises')).readFile(templateFile, 'utf8');
  const system = args.values.get('system');

  const model = await loadModelFromArgs(args);
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true;
  try {
    const engine = model.engine();
    const source = templateSource ?? ChatTemplate.sourceIn(model.file.metadata);
    if (source === undefined) log.warn(`chat: the model has no chat template; using ChatML`);
    const template = ChatTemplate.forTokenizer(source ?? CHATML_TEMPLATE, model.tokenizer);
    const start = (): ChatMessage[] => (system ? [{ role: 'system', content: system }] : []);
    let history = start();

    let answering: AbortController | undefined;
    let lastInterrupt = 0;
    const rl = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive });
    const interrupt = () => {
      const now = Date.now();
      const twice = now - lastInterrupt < 1000;
      lastInterrupt = now;
      if (answering && !twice) return answering.abort();
      answering?.abort();
      rl.close();
    };
    rl.on('SIGINT', interrupt); // a terminal: readline sees Ctrl-C
    process.on('SIGINT', interrupt); // piped input: the signal itself
    if (interactive) process.stdout.write(`${model.architecture} model ready. /reset forgets the conversation, /exit quits, Ctrl-C stops an answer.\n`);
    const ask = () => {
      if (interactive) rl.prompt();
    };
    rl.setPrompt('> ');
    ask();
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit' || text === '/quit') break;
      if (text === '/reset') {
        history = start();
        if (interactive) process.stdout.write('(conversation cleared)\n');
        ask();
        continue;
      }
      if (text === '') {
        ask();
        continue;
      }
      history.push({ role: 'user', content: text });
      answering = new AbortController();
      let answer = '';
      try {
        const generation = engine.chat(history, { ...sampling, maxTokens, ignoreEos: args.flags.has('ignore-eos'), chatTemplate: template, signal: answering.signal });
        for await (const piece of generation) {
          answer += piece.text;
          process.stdout.write(piece.text);
        }
      } catch (err) {
        if (err instanceof EngineError && err.code === 'ABORTED') {
          if (interactive) process.stdout.write(' [stopped]');
        } else if (err instanceof EngineError && err.code === 'PROMPT_TOO_LONG') {
          history.pop(); // the turn that did not fit
          process.stderr.write(`\nchat: the conversation no longer fits the context (${err.message}); /reset to start over\n`);
          answering = undefined;
          ask();
          continue;
        } else throw err;
      } finally {
        answering = undefined;
      }
      // An answer stopped by Ctrl-C stays in the history as far as it got.
      history.push({ role: 'assistant', content: answer });
      process.stdout.write('\n');
      ask();
    }
    process.off('SIGINT', interrupt);
    rl.close();
    return 0;
  } finally {
    await model.dispose();
  }
}
