// Loopback ports for tests and benches that start servers as child processes.
import { createServer } from 'node:net';

/** A loopback port free right now (the OS picks it; it is released for the caller to use, or to find closed). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address() as { port: number };
  await new Promise((ok) => srv.close(ok));
  return port;
}
