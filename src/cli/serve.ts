// `wasmforge serve`: the OpenAI-compatible HTTP server over one model. It listens at once (health
// says "loading" until the model is ready), logs one line per request, and shuts down cleanly on
// SIGINT / SIGTERM.
import { BACKEND_KINDS } from '../backend/registry.js';
import { log, getLogLevel, setLogLevel } from '../log.js';
import { loadModel, type Model } from '../model/model.js';
import { bundledModelPath } from '../runtime/bundled-model.js';
import { createServerHandler, type ServerOptions } from '../server/handler.js';
import { listen } from '../server/listen.js';
import { numberOption, parseArgs, type ArgSpec } from './args.js';
import { backendArg, KV_TYPE_HELP, kvTypeArg, loraArg, MODEL_OPTIONS, progressBar, speculativeArgs } from './common.js';

export const summary = 'serve a model over an OpenAI-compatible HTTP API (chat, completions, embeddings, SSE)';

const HELP = `usage: wasmforge serve [-m FILE] [options]
  -m, --model FILE        GGUF model (default: bundled stories260K.gguf)
  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port (default 8080; 0 picks a free one)
  --alias NAME            the model id clients send (default: the file name)
  -c, --ctx N             tokens per sequence (default: the model's, at most 4096)
${KV_TYPE_HELP}
  --parallel N            most sequences generated at once (default 64)
  --kv-tokens N           KV cache size in tokens across all sequences (default: 4 contexts)
  --queue N               most requests waiting; more get 503 with Retry-After (default 256)
  --max-tokens N          most tokens one request may generate (default: the context)
  --timeout S             fail a generation not done after S seconds with 504 (default: none)
  --body-limit BYTES      largest request body (default 4194304)
  --api-key KEYS          require "Authorization: Bearer KEY"; comma-separated keys (or $WASMFORGE_API_KEY)
  --cors ORIGINS          allow browsers from these origins, comma-separated ("*" for any; default: none)
  --chat-template FILE    a Jinja chat template file instead of the model's
  --lora FILE[:SCALE]     apply a LoRA adapter (llama.cpp GGUF) to every request (repeatable; scale default 1)
  --lookup N              speculative decoding by prompt lookup for every request: up to N draft tokens per step
  --draft FILE            speculative decoding with a draft model (a smaller GGUF, same vocabulary) for every request
  --draft-tokens N        draft tokens per step with --draft (1..32, default 4)
  --draft-fixed           always draft the most tokens (default: as many as pay, measured as decoding goes)
  --backend NAME          ${BACKEND_KINDS.join(' | ')} (default auto)
  -t, --threads N         worker threads (default: all cores)
  --verbose               debug logging
routes: POST /v1/chat/completions /v1/completions /v1/embeddings /tokenize /detokenize,
        GET /v1/models /health /metrics /props`;

export const SERVE_ARGS: ArgSpec = {
  values: {
    ...MODEL_OPTIONS, host: [], port: [], alias: [], parallel: ['np'], 'kv-tokens': [], queue: [], 'max-tokens': [], timeout: [],
    'body-limit': [], 'api-key': [], cors: [], 'chat-template': [], lora: [], lookup: [], draft: [], 'draft-tokens': [],
  },
  repeatable: ['lora'],
  flags: { help: ['h'], 'draft-fixed': [] },
};

export async function run(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const args = parseArgs(argv, SERVE_ARGS);
  if (args.flags.has('help')) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const backend = backendArg(args);
  const kvCacheType = kvTypeArg(args);
  const optional = (name: string, opts: { min?: number; max?: number; integer?: boolean }) => (args.values.has(name) ? numberOption(args, name, 0, opts) : undefined);
  const port = numberOption(args, 'port', 8080, { integer: true, min: 0, max: 65535 });
  const host = args.values.get('host') ?? '127.0.0.1';
  const threads = optional('threads', { integer: true, min: 1, max: 256 });
  const contextLength = optional('ctx', { integer: true, min: 8 });
  const timeout = optional('timeout', { min: 0.001 });
  const templateFile = args.values.get('chat-template');
  const chatTemplate = templateFile === undefined ? undefined : await (await import('node:fs/promises')).readFile(templateFile, 'utf8');
  const path = args.values.get('model') ?? (await bundledModelPath());
  const alias = args.values.get('alias') ?? path.replace(/^.*[/\\]/, '');

  const { lookup, draftPath, draftTokens, adaptive } = speculativeArgs(args);

  if (getLogLevel() !== 'debug') setLogLevel('info'); // the request lines
  let model: Model | undefined;
  let draft: Model | undefined;
  const options: ServerOptions = {
    modelId: alias,
    engine: { maxSequences: optional('parallel', { integer: true, min: 1, max: 256 }), kvCacheTokens: optional('kv-tokens', { integer: true, min: 16 }), maxQueue: optional('queue', { integer: true, min: 0 }), contextLength },
    apiKeys: list(args.values.get('api-key') ?? env.WASMFORGE_API_KEY),
    corsOrigins: list(args.values.get('cors')),
    maxBodyBytes: optional('body-limit', { integer: true, min: 1024 }),
    maxTokens: optional('max-tokens', { integer: true, min: 1 }),
    requestTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
    chatTemplate,
    lora: (args.lists.get('lora') ?? []).map(loraArg),
    speculative: lookup === undefined ? undefined : { method: 'prompt-lookup', draftTokens: lookup, adaptive },
  };
  const loading = loadModel(path, { threads, contextLength, backend, kvCacheType, onProgress: progressBar(alias) }).then(async (m) => {
    model = m;
    if (draftPath !== undefined) {
      // On the model's backend, with its context and cache type: the draft's KV follows the model's sequences.
      draft = await loadModel(draftPath, { backend: m.backend, contextLength: m.contextLength, kvCacheType: m.kvCacheType, onProgress: progressBar(draftPath.replace(/^.*[/\\]/, '')) });
      options.speculative = { method: 'draft-model', draft, draftTokens, adaptive };
    }
    return m;
  });
  const handler = createServerHandler(loading, options);
  const listener = await listen(handler, { host, port });
  log.info(`serve: listening on ${listener.url} (model ${alias} loading)`);
  try {
    await handler.ready;
  } catch (err) {
    await listener.close();
    await model?.dispose();
    throw err;
  }
  log.info(`serve: ${alias} ready on ${listener.url} (${model!.backend.name}, ${model!.backend.nThreads} threads)`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  log.info('serve: shutting down');
  await listener.close();
  await handler.close();
  await draft?.dispose();
  await model?.dispose();
  return 0;
}
