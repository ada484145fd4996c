import { loadModel, type GenerateOptions, type Model } from '../model/model.js';
import { Sampler, SamplingError } from '../sampling/sampler.js';
import { numberOption, parseArgs, UsageError } from './args.js';
import { KV_TYPE_HELP, loadModelFromArgs, loraArg, MODEL_OPTIONS, progressBar, speculativeArgs } from './common.js';

export const summary = 'generate text from a prompt (default model: the bundled stories260K)';

const HELP = `usage: wasmforge generate [-m FILE] [-p PROMPT] [-n N] [options]
  -m, --model FILE        GGUF model (default: bundled stories260K.gguf)
  -p, --prompt TEXT       prompt (default: "Once upon a time")
  -n, --n-predict N       tokens to generate (default 128)
  --temp T                temperature, 0 = greedy (default 0.8)
  --top-k K --top-p P --min-p P   sampling filters (defaults 40, 0.95, 0.05)
  --repeat-penalty R --frequency-penalty F --presence-penalty P --repeat-last-n N
  --seed S                random seed (default: random)
  --stop TEXT             stop when TEXT appears (repeatable: --stop a --stop b)
  -t, --threads N         worker threads (default: all cores)
  -c, --ctx N             context length
${KV_TYPE_HELP}
  --backend NAME          auto | wasm | webgpu | reference (default auto: a hardware GPU if the runtime offers one, else wasm)
  --ignore-eos            keep generating past end-of-text
  --lookup N              speculative decoding by prompt lookup: up to N draft tokens per step
                          (same output, fewer forward passes when the text repeats the prompt)
  --draft FILE            speculative decoding with a draft model: a smaller GGUF with the same
                          vocabulary, loaded on the model's backend, proposes tokens the model checks
                          in one pass (greedy: the same output; sampling: the same distribution)
  --draft-tokens N        draft tokens per step with --draft (1..32, default 4)
  --draft-fixed           always draft the most tokens (N): by default each step drafts as many as
                          pay, from how often drafts were kept and what a pass costs per token
  --lora FILE[:SCALE]     apply a LoRA adapter (llama.cpp GGUF; repeatable; scale default 1)
  --verbose               debug logging (model loading, kernels, engine)`;

/** The sampler's option names as this command spells them. */
const FLAG_OF: Record<string, string> = {
  temperature: '--temp', topK: '--top-k', topP: '--top-p', minP: '--min-p', repeatPenalty: '--repeat-penalty', penaltyWindow: '--repeat-last-n', penalties: '--frequency-penalty / --presence-penalty',
};

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    values: {
      ...MODEL_OPTIONS, prompt: ['p'], 'n-predict': ['n'], temp: ['temperature'], 'top-k': [], 'top-p': [], 'min-p': [],
      'repeat-penalty': [], 'frequency-penalty': [], 'presence-penalty': [], 'repeat-last-n': [], seed: ['s'], stop: [], lookup: [], draft: [], 'draft-tokens': [], lora: [],
    },
    repeatable: ['stop', 'lora'],
    flags: { help: ['h'], 'ignore-eos': [], 'draft-fixed': [] },
  });
  if (args.flags.has('help')) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const { lookup, draftPath, draftTokens, adaptive } = speculativeArgs(args);
  const options: GenerateOptions = {
    maxTokens: numberOption(args, 'n-predict', 128, { integer: true, min: 0 }),
    temperature: numberOption(args, 'temp', 0.8),
    topK: numberOption(args, 'top-k', 40),
    topP: numberOption(args, 'top-p', 0.95),
    minP: numberOption(args, 'min-p', 0.05),
    repeatPenalty: numberOption(args, 'repeat-penalty', 1),
    frequencyPenalty: numberOption(args, 'frequency-penalty', 0),
    presencePenalty: numberOption(args, 'presence-penalty', 0),
    penaltyWindow: numberOption(args, 'repeat-last-n', 64),
    seed: args.values.has('seed') ? numberOption(args, 'seed', 0, { integer: true, min: 0 }) : undefined,
    stop: args.lists.get('stop'),
    ignoreEos: args.flags.has('ignore-eos'),
    speculative: lookup === undefined ? undefined : { method: 'prompt-lookup', draftTokens: lookup, adaptive },
  };
  // The sampler's own checks, before the model loads: its ranges are the command's.
  try {
    new Sampler(options);
  } catch (err) {
    if (!(err instanceof SamplingError)) throw err;
    throw new UsageError(err.message.replace(/^(\w+)/, (name) => FLAG_OF[name] ?? name));
  }
  if (options.stop?.some((s) => s === '')) throw new UsageError('--stop needs a non-empty text');
  const prompt = args.values.get('prompt') ?? 'Once upon a time';
  const lora = (args.lists.get('lora') ?? []).map(loraArg);
  const model = await loadModelFromArgs(args);
  let draft: Model | undefined;
  try {
    if (draftPath !== undefined) {
      // On the model's own backend: the same kind and threads, one worker pool; disposed before the model.
      draft = await loadModel(draftPath, { backend: model.backend, contextLength: model.contextLength, kvCacheType: model.kvCacheType, onProgress: progressBar(draftPath.replace(/^.*[/\\]/, '')) });
      options.speculative = { method: 'draft-model', draft, draftTokens, adaptive };
    }
    if (lora.length) {
      const adapters = [];
      for (const { input, scale } of lora) adapters.push({ adapter: await model.loadAdapter(input), scale });
      model.engine().setAdapters(adapters);
    }
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once('SIGINT', onSigint);
    const generation = model.generate(prompt, { ...options, signal: abort.signal });
    // The prompt is echoed once the model has taken it (a bad prompt fails before anything is printed).
    let echoed = false;
    const echo = () => {
      if (!echoed) process.stdout.write(prompt);
      echoed = true;
    };
    for await (const piece of generation) {
      echo();
      process.stdout.write(piece.text);
    }
    const r = await generation.result;
    echo();
    process.off('SIGINT', onSigint);
    process.stdout.write('\n');
    process.stderr.write(
      `\nload ${(model.loadMs / 1000).toFixed(2)} s | prompt ${r.promptTokens} tokens, ${r.promptTokensPerSecond.toFixed(1)} tok/s | ` +
        `decode ${r.tokens.length} tokens, ${r.decodeTokensPerSecond.toFixed(1)} tok/s | ${model.backend.name}, ${model.backend.nThreads} threads | stop: ${r.stopReason}\n`,
    );
    if (options.speculative) {
      const m = model.engine().metrics();
      process.stderr.write(`speculative (${options.speculative.method}): ${m.draftedTokens} draft tokens, ${(100 * m.draftAcceptanceRate).toFixed(1)}% accepted, ${m.steps} forward passes\n`);
    }
    return 0;
  } finally {
    await draft?.dispose();
    await model.dispose();
  }
}
