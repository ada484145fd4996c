// The edge handler under Bun.serve:  PORT=8787 bun examples/edge/bun.js
import handler from './handler.js';

const server = Bun.serve({ hostname: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 8787), fetch: handler.fetch });
console.log(`wasmforge edge handler on http://${server.hostname}:${server.port}/`);
