import { numberOption, parseArgs } from './args.js';
import { loadModelFromArgs, MODEL_OPTIONS } from './common.js';

export const summary = 'print the top-K next-token logits at each prompt position';

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: { ...MODEL_OPTIONS, prompt: ['p'], top: ['k'] }, flags: { json: [], help: ['h'], 'no-bos': [] } });
  if (args.flags.has('help')) {
    process.stdout.write('usage: wasmforge logits [-m FILE] -p TEXT [--top K] [--json] [--no-bos]\n');
    return 0;
  }
  const text = args.values.get('prompt');
  if (text === undefined) throw new Error('give the text with -p');
  const k = numberOption(args, 'top', 5, { integer: true, min: 1 });
  const model = await loadModelFromArgs(args);
  try {
    const tokens = model.tokenizer.encode(text, { addSpecial: !args.flags.has('no-bos') });
    const rows = await model.evaluate(tokens);
    const positions = rows.map((logits, pos) => {
      const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
      return { position: pos, token: tokens[pos], top: top.map((id) => ({ id, logit: logits[id] })) };
    });
    if (args.flags.has('json')) {
      process.stdout.write(JSON.stringify({ tokens, positions }) + '\n');
    } else {
      for (const p of positions) {
        const piece = JSON.stringify(new TextDecoder().decode(model.tokenizer.tokenToPiece(p.token)));
        process.stdout.write(`${String(p.position).padStart(4)} ${String(p.token).padStart(6)} ${piece.padEnd(14)} ${p.top.map((t) => `${t.id}:${t.logit.toFixed(4)}`).join('  ')}\n`);
      }
    }
    return 0;
  } finally {
    await model.dispose();
  }
}
