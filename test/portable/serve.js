// The server from dist/wasmforge.js in whichever runtime runs this file (Deno, Bun, Node): loads
// the model at argv[2], listens on a free loopback port with the runtime's own HTTP server, prints
// "LISTENING <url>", and serves until killed. test/server.test.ts drives it with the openai client.
import { createServerHandler, listen, loadModel } from '../../dist/wasmforge.js';

const args = globalThis.Deno ? Deno.args : process.argv.slice(2);
const model = await loadModel(args[0], { threads: 1 });
const handler = createServerHandler(model, { modelId: 'served', engine: { maxSequences: 8 } });
await handler.ready;
const listener = await listen(handler, { port: 0 });
console.log(`LISTENING ${listener.url}`);
