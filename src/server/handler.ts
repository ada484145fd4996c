// The OpenAI-compatible server as one `fetch(Request) → Response` function over a model and its
// engine: the same handler runs under node:http, Deno.serve, Bun.serve and edge platforms (see
// listen.ts). It is usable at once: while the model loads, /health answers 503 "loading" and the
// other routes 503 with Retry-After.
import { CHATML_TEMPLATE, ChatTemplate } from '../chat/template.js';
import { createEngine, type Engine } from '../engine/engine.js';
import type { EngineOptions } from '../engine/types.js';
import { log } from '../log.js';
import type { Model } from '../model/model.js';
import type { ModelInput } from '../io/open-source.js';
import type { ActiveAdapter } from '../model/lora.js';
import { speculativeSettings, type SpeculativeOptions, type SpeculativeSettings } from '../generation/speculative.js';
import { vocabularyMismatch } from '../generation/draft-model.js';
import { VERSION } from '../version.js';
import { HttpError, httpErrorOf } from './errors.js';
import { bearerToken, CORS_PREFLIGHT, corsHeaders, jsonResponse, matchesApiKey, readJsonBody } from './http.js';
import { ServerMetrics } from './metrics.js';
import type { RequestLimits } from './openai-requests.js';
import { GENERATION_ROUTES, type RouteContext, type ServedModel } from './routes.js';

export interface ServerOptions {
  /** The id clients name in `model` (default: the file's general.name, else its architecture). */
  modelId?: string;
  /** The engine's options (KV pool, batch, sequences at once, queue length). */
  engine?: EngineOptions;
  /** Accept only requests with `Authorization: Bearer <one of these>` (/health stays open for probes). */
  apiKeys?: readonly string[];
  /** Origins browsers may call from ("*" for any); none by default, so CORS is off. */
  corsOrigins?: readonly string[];
  /** Largest request body in bytes (default 4 MiB). */
  maxBodyBytes?: number;
  /** A request body must arrive within this many ms (default 30 s): slow clients cannot hold a request open. */
  bodyTimeoutMs?: number;
  /** Most tokens one request may generate, and the default when it does not say (default: the context length). */
  maxTokens?: number;
  /** A generation not finished after this many ms fails with 504 (default: no limit). */
  requestTimeoutMs?: number;
  /** A Jinja chat template instead of the model's (a model without one gets ChatML, as llama.cpp's server does). */
  chatTemplate?: string;
  /** LoRA adapters (llama.cpp's GGUF format) applied to every request, each with its scale. */
  lora?: readonly { input: ModelInput; scale: number }[];
  /**
   * Speculative decoding for every chat and completion request: prompt lookup, or a draft model
   * (loaded by the caller, which disposes of it). The same output as without, fewer forward passes
   * where the drafts are right. Checked when the model is ready (a bad one fails loading).
   */
  speculative?: SpeculativeOptions;
}

export interface ServerHandler {
  fetch(request: Request): Promise<Response>;
  /** 'loading' until the model and engine are ready; 'failed' if loading failed. */
  readonly status: 'loading' | 'ready' | 'failed';
  /** Settles when the model is loaded and the engine made (rejects if that failed). */
  readonly ready: Promise<void>;
  /** Fail every request in flight and release the engine (the model stays the caller's). */
  close(): Promise<void>;
}

const DEFAULT_BODY_BYTES = 4 * 2 ** 20;

type Route = (ctx: RouteContext) => Promise<Response>;

export function createServerHandler(model: Model | Promise<Model>, options: ServerOptions = {}): ServerHandler {
  const metrics = new ServerMetrics();
  const apiKeys = options.apiKeys?.filter((k) => k !== '') ?? [];
  const cors = options.corsOrigins ?? [];
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_BODY_BYTES;
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 30_000;
  let status: ServerHandler['status'] = 'loading';
  let served: ServedModel | undefined;
  let loadError: unknown;

  const ready = (async () => {
    const m = await model;
    served = await serve(m, options);
    status = 'ready';
  })();
  ready.catch((err) => {
    status = 'failed';
    loadError = err;
    log.error(`server: the model did not load: ${(err as Error)?.message ?? err}`);
  });

  const routes: Record<string, Route> = {
    'GET /health': async (ctx) => health(ctx),
    'GET /v1/health': async (ctx) => health(ctx),
    'GET /metrics': async (ctx) => new Response(metrics.render(served?.engine?.metrics()), { headers: { ...ctx.headers, 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' } }),
    'GET /v1/models': async (ctx) => jsonResponse({ object: 'list', data: [modelObject(ctx.served)] }, 200, ctx.headers),
    'GET /props': async (ctx) => jsonResponse(props(ctx.served), 200, ctx.headers),
    // llama.cpp server's adapter list: id, path, the scale requests get unless they say.
    'GET /lora-adapters': async (ctx) => jsonResponse(ctx.served.limits.adapters.map((a, id) => ({ id, path: a.adapter.name, scale: a.scale })), 200, ctx.headers),
    ...GENERATION_ROUTES,
  };
  // OpenAI's paths without /v1 too, as llama.cpp's server answers both.
  for (const key of Object.keys(routes)) {
    const [method, path] = key.split(' ') as [string, string];
    if (path.startsWith('/v1/') && path !== '/v1/health') routes[`${method} ${path.slice(3)}`] ??= routes[key]!;
  }
  const paths = new Map<string, string[]>();
  for (const key of Object.keys(routes)) {
    const [method, path] = key.split(' ') as [string, string];
    paths.set(path, [...(paths.get(path) ?? []), method]);
  }

  function health(ctx: RouteContext): Response {
    if (status === 'loading') return jsonResponse({ status: 'loading' }, 503, { ...ctx.headers, 'Retry-After': '1' });
    if (status === 'failed') return jsonResponse({ status: 'error', message: String((loadError as Error)?.message ?? loadError) }, 500, ctx.headers);
    const m = served!.engine?.metrics();
    if (m && m.queuedRequests >= served!.maxQueue) return jsonResponse({ status: 'overloaded', queued: m.queuedRequests }, 503, { ...ctx.headers, 'Retry-After': '1' });
    return jsonResponse({ status: 'ok' }, 200, ctx.headers);
  }

  async function handle(request: Request, headers: Record<string, string>, finish: (status: number) => void): Promise<Response> {
    const url = new URL(request.url);
    let path = url.pathname;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    if (request.method === 'OPTIONS') return new Response(null, { status: 204, headers: 'Access-Control-Allow-Origin' in headers ? { ...headers, ...CORS_PREFLIGHT } : headers });
    let route = routes[`${request.method} ${path}`];
    let modelPath: string | undefined;
    if (!route && request.method === 'GET' && /^\/(v1\/)?models\/.+/.test(path)) {
      modelPath = decodeURIComponent(path.replace(/^\/(v1\/)?models\//, ''));
      route = async (ctx) => {
        if (modelPath !== ctx.served.id) throw new HttpError(404, 'invalid_request_error', 'model_not_found', `The model \`${modelPath}\` does not exist: this server serves \`${ctx.served.id}\``, 'model');
        return jsonResponse(modelObject(ctx.served), 200, ctx.headers);
      };
    }
    if (!route) {
      const allowed = paths.get(path);
      if (allowed) throw new HttpError(405, 'invalid_request_error', 'method_not_allowed', `${request.method} ${path} is not supported; use ${allowed.join(' or ')}`, null, { Allow: allowed.join(', ') });
      throw new HttpError(404, 'not_found_error', 'not_found', `no route ${request.method} ${path}`);
    }
    const isHealth = path === '/health' || path === '/v1/health';
    if (apiKeys.length > 0 && !isHealth && !matchesApiKey(bearerToken(request), apiKeys)) {
      throw new HttpError(401, 'authentication_error', 'invalid_api_key', request.headers.has('authorization') ? 'Incorrect API key provided' : 'Missing API key: send Authorization: Bearer <key>');
    }
    if (!isHealth && status !== 'ready') {
      if (status === 'loading') throw new HttpError(503, 'unavailable_error', 'loading', 'the model is still loading', null, { 'Retry-After': '1' });
      throw new HttpError(503, 'unavailable_error', 'load_failed', `the model failed to load: ${(loadError as Error)?.message ?? loadError}`);
    }
    return route({
      request, headers, served: served!, metrics, finish,
      json: () => readJsonBody(request, maxBodyBytes, bodyTimeoutMs),
    });
  }

  return {
    get status() {
      return status;
    },
    ready,
    async fetch(request) {
      const started = performance.now();
      const headers = corsHeaders(request, cors);
      const path = new URL(request.url).pathname;
      let logged = false;
      // Streams call finish when they end, other responses when they are made.
      const finish = (code: number) => {
        if (logged) return;
        logged = true;
        const seconds = (performance.now() - started) / 1000;
        metrics.request(path in ROUTE_LABELS ? path : 'other', code, seconds);
        log.info(`${request.method} ${path} ${code} ${(seconds * 1000).toFixed(0)} ms`);
      };
      let response: Response;
      try {
        response = await handle(request, headers, finish);
      } catch (err) {
        const e = httpErrorOf(err);
        if (e.status >= 500 && e.code === 'internal_error') log.error(`${request.method} ${path}: ${e.message}`);
        response = jsonResponse(e.body(), e.status, { ...headers, ...e.headers });
      }
      if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) finish(response.status);
      return response;
    },
    async close() {
      await ready.catch(() => {});
      await served?.engine?.dispose();
    },
  };
}

/** Paths counted under their own label in /metrics (anything else is "other", so a scanner cannot grow the label set). */
const ROUTE_LABELS: Record<string, true> = Object.fromEntries(
  ['/health', '/v1/health', '/metrics', '/props', '/lora-adapters', '/tokenize', '/detokenize', '/v1/models', '/models', '/v1/chat/completions', '/chat/completions', '/v1/completions', '/completions', '/v1/embeddings', '/embeddings'].map((p) => [p, true]),
);

/** The loaded model with what the routes need: its engine (decoders), chat template and limits. */
async function serve(model: Model, options: ServerOptions): Promise<ServedModel> {
  const id = options.modelId ?? String(model.file.metadata.get('general.name')?.value ?? model.architecture);
  const encoder = model.arch.encoder === true;
  const engine: Engine | undefined = encoder ? undefined : await createEngine(model, options.engine);
  const adapters: ActiveAdapter[] = [];
  if (engine && options.lora?.length) {
    for (const { input, scale } of options.lora) adapters.push({ adapter: await model.loadAdapter(input), scale });
    engine.setAdapters(adapters);
    log.info(`server: ${adapters.length} LoRA adapter(s): ${adapters.map((a) => `${a.adapter.name} x ${a.scale}`).join(', ')}`);
  }
  const contextLength = engine?.contextLength ?? model.contextLength;
  const maxTokens = options.maxTokens ?? contextLength;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new HttpError(500, 'server_error', 'bad_option', `maxTokens must be an integer >= 1, got ${options.maxTokens}`);
  let template: ChatTemplate | undefined;
  if (!encoder) {
    const source = options.chatTemplate ?? ChatTemplate.sourceIn(model.file.metadata);
    if (source === undefined) log.warn(`server: ${id} has no chat template; chat requests use ChatML`);
    template = ChatTemplate.forTokenizer(source ?? CHATML_TEMPLATE, model.tokenizer);
  }
  let speculative: SpeculativeSettings | undefined;
  if (options.speculative !== undefined) {
    if (!engine) throw new HttpError(500, 'server_error', 'bad_option', `speculative decoding needs a decoder; ${id} is an encoder`);
    try {
      speculative = speculativeSettings(options.speculative);
    } catch (err) {
      throw new HttpError(500, 'server_error', 'bad_option', (err as Error).message);
    }
    const mismatch = speculative.method === 'draft-model' ? vocabularyMismatch(model, speculative.draft) : undefined;
    if (mismatch) throw new HttpError(500, 'server_error', 'bad_option', `the draft model has another vocabulary than the model: ${mismatch}`);
    log.info(`server: speculative decoding by ${speculative.method}, up to ${speculative.draftTokens} draft tokens per step${speculative.adaptive ? ' (adaptive)' : ''}`);
  }
  const limits: RequestLimits = { modelId: id, maxTokens, maxN: Math.min(128, options.engine?.maxSequences ?? 64), vocabSize: model.config.vocabSize, adapters, speculative };
  return {
    id, model, engine, template, limits, contextLength,
    maxQueue: options.engine?.maxQueue ?? 256,
    created: Math.floor(Date.now() / 1000),
    systemFingerprint: `wasmforge-${VERSION}-${model.backend.name}`,
    requestTimeoutMs: options.requestTimeoutMs,
  };
}

function modelObject(s: ServedModel) {
  const c = s.model.config;
  return {
    id: s.id, object: 'model', created: s.created, owned_by: 'wasmforge',
    meta: { architecture: s.model.architecture, n_ctx: s.contextLength, n_ctx_train: c.contextLength, n_vocab: c.vocabSize, n_embd: c.dim, n_layer: c.nLayers },
  };
}

/** llama.cpp server's /props, in the fields that carry over. */
function props(s: ServedModel) {
  const spec = s.limits.speculative;
  return {
    model: s.id,
    model_alias: s.id,
    n_ctx: s.contextLength,
    total_slots: s.engine ? s.limits.maxN : 1,
    chat_template: s.template?.source ?? null,
    default_generation_settings: { n_predict: s.limits.maxTokens, temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1 },
    build_info: `wasmforge ${VERSION}`,
    backend: s.model.backend.name,
    threads: s.model.backend.nThreads,
    embedding: s.engine === undefined,
    speculative: spec ? { method: spec.method, draft_tokens: spec.draftTokens, adaptive: spec.adaptive } : null,
  };
}
