// The commands that run a model, as a user runs them: `wasmforge generate` (options checked before
// the model loads, typed errors for missing files and unreachable URLs, nothing printed for a
// prompt that does not fit, repeatable --stop, negative values), `wasmforge chat` (piped turns,
// /reset, Ctrl-C stopping an answer, twice exiting) and `wasmforge serve` (listens, answers, shuts
// down on SIGTERM). chat and serve run as child processes of bin/wasmforge.js (dist/, built by pretest).
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHATML_TEMPLATE, ChatTemplate, type ChatMessage } from '../src/chat/template.js';
import { main } from '../src/cli/main.js';
import { loadModel, type Model } from '../src/model/model.js';
import { bundledModelPath } from '../src/runtime/bundled-model.js';
import { captureOutput } from './helpers/capture-output.js';
import { freePort } from './helpers/ports.js';
import { swaModels } from './helpers/swa-model.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin/wasmforge.js');
let model: Model;

beforeAll(async () => {
  model = await loadModel(await bundledModelPath(), { threads: 1 });
});
afterAll(async () => model?.dispose());

/** Greedy replies of the model to a conversation, as the engine gives them with ChatML. */
async function reply(history: ChatMessage[], maxTokens: number): Promise<string> {
  const template = ChatTemplate.forTokenizer(CHATML_TEMPLATE, model.tokenizer);
  return (await model.engine().chat(history, { chatTemplate: template, maxTokens, temperature: 0 }).result).text;
}

describe('wasmforge generate --draft: speculative decoding with a draft model', () => {
  const io = captureOutput();

  it('greedy with the model as its own draft prints the plain output and the acceptance; bad combinations and another vocabulary are errors', async () => {
    const greedy = ['generate', '-p', 'Once upon a time', '-n', '30', '--temp', '0', '-t', '1'];
    expect(await main(greedy)).toBe(0);
    const plain = io.out;
    io.out = '';
    expect(await main([...greedy, '--draft', await bundledModelPath(), '--draft-tokens', '3'])).toBe(0);
    expect(io.out).toBe(plain);
    expect(io.err).toMatch(/speculative \(draft-model\): \d+ draft tokens, 100\.0% accepted/);
    io.out = '';
    expect(await main([...greedy, '--lookup', '4', '--draft-fixed'])).toBe(0);
    expect(io.out).toBe(plain);
    expect(io.err).toMatch(/speculative \(prompt-lookup\): \d+ draft tokens/);
    expect(await main([...greedy, '--draft-fixed'])).toBe(1);
    expect(io.err).toMatch(/--draft-fixed needs --lookup N or --draft FILE/);
    expect(await main([...greedy, '--draft-tokens', '3'])).toBe(1);
    expect(io.err).toMatch(/--draft-tokens needs --draft FILE/);
    expect(await main([...greedy, '--draft', '/nonexistent.gguf', '--lookup', '4'])).toBe(1);
    expect(io.err).toMatch(/give --lookup or --draft, not both/);
    expect(await main([...greedy, '--draft', '/nonexistent.gguf', '--draft-tokens', '33'])).toBe(1);
    expect(io.err).toMatch(/--draft-tokens/);
    const files = await swaModels(); // a made-up 512-token vocabulary: stories260K's size, other tokens
    try {
      io.out = '';
      expect(await main([...greedy, '--draft', await files.path(undefined)])).toBe(1);
      expect(io.err).toMatch(/EngineError \[DRAFT_MISMATCH\]: speculative\.draft has another vocabulary than the model: token \d+ is/);
      expect(io.out).toBe('');
    } finally {
      await files.dispose();
    }
    expect(await main(['generate', '--help'])).toBe(0);
    expect(io.out).toMatch(/--draft FILE/);
  });
});

describe('wasmforge generate: checks before work, typed errors', () => {
  const io = captureOutput();

  it('a sampling option out of the sampler\'s range fails before the model loads, naming the flag', async () => {
    expect(await main(['generate', '-m', '/nonexistent.gguf', '--min-p', '1'])).toBe(1);
    expect(io.err).toMatch(/--min-p must be in \[0, 1\), got 1/);
    expect(io.err).not.toMatch(/nonexistent/);
  });

  it('a missing file and an unreachable URL are typed errors naming them', async () => {
    expect(await main(['generate', '-m', '/nonexistent/model.gguf'])).toBe(1);
    expect(io.err).toMatch(/ByteSourceError \[NOT_FOUND\]: \/nonexistent\/model\.gguf: no such file/);
    const port = await freePort(); // nothing listens there
    expect(await main(['generate', '-m', `http://127.0.0.1:${port}/model.gguf`])).toBe(1);
    expect(io.err).toContain(`ByteSourceError [UNREACHABLE]: http://127.0.0.1:${port}/model.gguf: could not connect (ECONNREFUSED)`);
  });

  it('--kv-type: an unknown type is a usage error naming the allowed ones; one the model cannot take is its typed error', async () => {
    expect(await main(['generate', '-m', '/nonexistent.gguf', '--kv-type', 'q8'])).toBe(1);
    expect(io.err).toMatch(/--kv-type must be one of f32, f16, q8_0, q4_0, got "q8"/);
    expect(io.err).not.toMatch(/nonexistent/);
    expect(await main(['generate', '-p', 'Once', '-n', '2', '-t', '1', '--kv-type', 'q8_0'])).toBe(1); // stories260K: head dim 8
    expect(io.err).toMatch(/ModelError \[UNSUPPORTED_OPTION\].*head dim 8/);
    expect(await main(['generate', '--help'])).toBe(0);
    expect(io.out).toMatch(/--kv-type TYPE .*f32 \| f16 \| q8_0 \| q4_0/);
  });

  it('a prompt longer than the context prints nothing but the error', async () => {
    expect(await main(['generate', '-p', 'once upon a time '.repeat(300), '-c', '64', '-t', '1'])).toBe(1);
    expect(io.out).toBe('');
    expect(io.err).toMatch(/PROMPT_TOO_LONG/);
  });

  it('--stop repeats, negative values parse, unknown and doubled options are usage errors', async () => {
    const greedy = ['generate', '-p', 'Once upon a time', '-n', '40', '--temp', '0', '-t', '1'];
    expect(await main(greedy)).toBe(0);
    const full = io.out.slice('Once upon a time'.length).trimEnd();
    const [a, b] = [full.slice(20, 23), full.slice(12, 15)];
    io.out = '';
    expect(await main([...greedy, '--stop', a, '--stop', b, '--frequency-penalty', '-0.0'])).toBe(0);
    expect(io.out.trimEnd()).toBe(('Once upon a time' + full.slice(0, Math.min(full.indexOf(a), full.indexOf(b)))).trimEnd());
    expect(await main(['generate', '--bogus'])).toBe(1);
    expect(io.err).toMatch(/unknown option --bogus/);
    expect(await main(['generate', '-n', '3', '-n', '4'])).toBe(1);
    expect(io.err).toMatch(/--n-predict was given 2 times/);
    expect(await main(['generate', '--help'])).toBe(0);
    expect(io.out).toMatch(/--verbose/);
  });
});

function spawnCli(args: string[]): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

async function until(ok: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('wasmforge chat', () => {
  it('piped turns: each answer is the model\'s reply to the conversation so far; /reset starts over', async () => {
    const c = spawnCli(['chat', '--temp', '0', '-n', '16', '-t', '1', '--system', 'You tell stories.']);
    c.child.stdin!.end('Once upon a time\nWhat happened then?\n/reset\nOnce upon a time\n');
    expect(await c.exit, c.err()).toBe(0);
    const history: ChatMessage[] = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];
    const first = await reply(history, 16);
    history.push({ role: 'assistant', content: first }, { role: 'user', content: 'What happened then?' });
    const second = await reply(history, 16);
    expect(c.out()).toBe(`${first}\n${second}\n${first}\n`);
  });

  it('Ctrl-C stops the answer being written and the chat goes on; twice exits', async () => {
    const c = spawnCli(['chat', '--temp', '0', '-n', '4000', '--ignore-eos', '-t', '1']);
    c.child.stdin!.write('Once upon a time\n');
    await until(() => c.out().length > 40, 'the answer to start');
    c.child.kill('SIGINT');
    await until(() => c.out().endsWith('\n'), 'the stopped answer to end');
    const stopped = c.out().slice(0, -1);
    expect(stopped.length).toBeLessThan(4000);
    // Still running: the next turn is answered (and stopped, and the chat left, by two Ctrl-C).
    c.child.stdin!.write('What next?\n');
    await until(() => c.out().length > stopped.length + 41, 'the next answer to start');
    c.child.kill('SIGINT');
    c.child.kill('SIGINT');
    expect(await c.exit).toBe(0);
  });
});

describe('wasmforge serve', () => {
  it('listens, reports loading then ok, answers a chat request, checks the API key, and exits on SIGTERM', async () => {
    const c = spawnCli(['serve', '--port', '0', '--api-key', 'sekret', '-t', '1', '--alias', 'tiny']);
    await until(() => /listening on (\S+)/.test(c.err()), 'the listening line');
    const url = /listening on (\S+)/.exec(c.err())![1]!;
    await until(() => /ready on/.test(c.err()), 'the model to load');
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: 'Bearer sekret' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 12, temperature: 0 }),
    });
    expect(r.status).toBe(200);
    expect((await r.json()).choices[0].message.content).toBe(await reply([{ role: 'user', content: 'Once upon a time' }], 12));
    expect(c.err()).toMatch(/POST \/v1\/chat\/completions 200 \d+ ms/);
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    expect(c.err()).toMatch(/shutting down/);
  });

  it('--draft FILE: every request speculates with the draft model, loaded on the model\'s backend; the replies are the same', async () => {
    const c = spawnCli(['serve', '--port', '0', '-t', '1', '--alias', 'tiny', '--draft', await bundledModelPath(), '--draft-tokens', '2']);
    await until(() => /ready on/.test(c.err()), 'the model and its draft to load');
    const url = /listening on (\S+)/.exec(c.err())![1]!;
    expect(c.err()).toMatch(/speculative decoding by draft-model, up to 2 draft tokens per step \(adaptive\)/);
    expect((await (await fetch(`${url}/props`)).json()).speculative).toEqual({ method: 'draft-model', draft_tokens: 2, adaptive: true });
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 12, temperature: 0 }),
    });
    expect((await r.json()).choices[0].message.content).toBe(await reply([{ role: 'user', content: 'Once upon a time' }], 12));
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });
});

describe('wasmforge serve: bad speculative options are usage errors before anything loads', () => {
  const io = captureOutput();

  it('--lookup with --draft, --draft-tokens without --draft, --draft-fixed alone', async () => {
    expect(await main(['serve', '-m', '/nonexistent.gguf', '--lookup', '4', '--draft', '/nonexistent.gguf'])).toBe(1);
    expect(io.err).toMatch(/give --lookup or --draft, not both/);
    expect(await main(['serve', '-m', '/nonexistent.gguf', '--draft-tokens', '3'])).toBe(1);
    expect(io.err).toMatch(/--draft-tokens needs --draft FILE/);
    expect(await main(['serve', '-m', '/nonexistent.gguf', '--draft-fixed'])).toBe(1);
    expect(io.err).toMatch(/--draft-fixed needs --lookup N or --draft FILE/);
    expect(await main(['serve', '-m', '/nonexistent.gguf', '--lookup', '0'])).toBe(1);
    expect(io.err).toMatch(/--lookup/);
    expect(io.err).not.toMatch(/nonexistent/);
  });
});
