// Server-sent events: each value of an async iterable as one `data: <json>` event, then
// `data: [DONE]` (OpenAI's end marker). A client that goes away cancels the stream, which aborts
// `signal` so the engine frees the request's KV blocks at once. An error after the first byte can
// no longer change the status: it is sent as a last `data: {"error": ...}` event, as OpenAI and
// llama.cpp's server do.
const encoder = new TextEncoder();

export function sseResponse(
  events: AsyncIterable<unknown>,
  abort: AbortController,
  options: { headers: Record<string, string>; errorBody: (err: unknown) => unknown; onEnd?: (err?: unknown) => void },
): Response {
  const iterator = events[Symbol.asyncIterator]();
  let ended = false;
  const end = (err?: unknown) => {
    if (ended) return;
    ended = true;
    options.onEnd?.(err);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await iterator.next();
        if (next.done) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
          end();
        } else {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(next.value)}\n\n`));
        }
      } catch (err) {
        if (abort.signal.aborted) return; // the client left; cancel() ends it
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(options.errorBody(err))}\n\n`));
        controller.close();
        end(err);
        abort.abort(err); // whatever else the request started stops too
      }
    },
    async cancel(reason) {
      abort.abort(reason ?? new Error('the client closed the stream'));
      end(reason ?? new Error('the client closed the stream'));
      await iterator.return?.();
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    status: 200,
    headers: { ...options.headers, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' },
  });
}
