// tokenizer.json post-processors, for one sequence: the special tokens added around the ids when encode is
// asked to add them (TemplateProcessing's "single" template, BERT's and RoBERTa's [CLS] A [SEP]).
import { asArray, asInt, asObject, asString, get, invalid, MAX_NESTING, reqString, unsupported } from './json.js';

/** Ids around one encoded sequence; applied only when special tokens are added. */
export type PostProcess = (ids: number[]) => number[];

function checkId(v: unknown, path: string, vocabSize: number): number {
  return asInt(v, path, 0, vocabSize - 1);
}

/** [text, id] as BertProcessing / RobertaProcessing write their tokens. */
function readTokenPair(v: unknown, path: string, vocabSize: number): number {
  const pair = asArray(v, path);
  if (pair.length !== 2) throw invalid(path, 'should be [token, id]');
  asString(pair[0], `${path}[0]`);
  return checkId(pair[1], `${path}[1]`, vocabSize);
}

type TemplatePart = number[] | 'A' | 'B';

function readTemplate(v: unknown, path: string, specials: Map<string, number[]>): TemplatePart[] {
  return asArray(v, path).map((piece, i) => {
    const at = `${path}[${i}]`;
    const o = asObject(piece, at);
    const keys = Object.keys(o);
    if (keys.length !== 1 || (keys[0] !== 'Sequence' && keys[0] !== 'SpecialToken')) throw invalid(at, 'should be {"Sequence": ...} or {"SpecialToken": ...}');
    const body = asObject(o[keys[0]], `${at}.${keys[0]}`);
    const typeId = get(body, 'type_id');
    if (typeId !== undefined) asInt(typeId, `${at}.${keys[0]}.type_id`, 0, 0xffffffff);
    const id = reqString(body, 'id', `${at}.${keys[0]}`);
    if (keys[0] === 'Sequence') {
      if (id !== 'A' && id !== 'B') throw invalid(`${at}.Sequence.id`, 'should be "A" or "B"');
      return id;
    }
    const ids = specials.get(id);
    if (!ids) throw invalid(`${at}.SpecialToken.id`, `${JSON.stringify(id)} is not in special_tokens`);
    return ids;
  });
}

export function readPostProcessor(v: unknown, path: string, vocabSize: number, depth = 0): PostProcess {
  if (depth > MAX_NESTING) throw invalid(path, `nested more than ${MAX_NESTING} levels`);
  const o = asObject(v, path);
  const type = reqString(o, 'type', path);
  switch (type) {
    case 'TemplateProcessing': {
      const specials = new Map<string, number[]>();
      const table = asObject(get(o, 'special_tokens') ?? {}, `${path}.special_tokens`);
      for (const name of Object.keys(table)) {
        const at = `${path}.special_tokens[${JSON.stringify(name)}]`;
        const entry = asObject(table[name], at);
        const ids = asArray(get(entry, 'ids'), `${at}.ids`).map((id, i) => checkId(id, `${at}.ids[${i}]`, vocabSize));
        const tokens = asArray(get(entry, 'tokens'), `${at}.tokens`).map((t, i) => asString(t, `${at}.tokens[${i}]`));
        if (ids.length !== tokens.length) throw invalid(at, `has ${ids.length} ids but ${tokens.length} tokens`);
        specials.set(name, ids);
      }
      const single = readTemplate(get(o, 'single'), `${path}.single`, specials);
      if (single.includes('B')) throw invalid(`${path}.single`, 'uses sequence B, which a single sequence does not have');
      const pair = readTemplate(get(o, 'pair'), `${path}.pair`, specials);
      if (!pair.includes('A') || !pair.includes('B')) throw invalid(`${path}.pair`, 'must use both sequences A and B');
      return (ids) => single.flatMap((part) => (part === 'A' ? ids : (part as number[])));
    }
    case 'BertProcessing':
    case 'RobertaProcessing': {
      const cls = readTokenPair(get(o, 'cls'), `${path}.cls`, vocabSize);
      const sep = readTokenPair(get(o, 'sep'), `${path}.sep`, vocabSize);
      return (ids) => [cls, ...ids, sep];
    }
    case 'ByteLevel':
      return (ids) => ids; // offsets only
    case 'Sequence': {
      const list = asArray(get(o, 'processors'), `${path}.processors`).map((p, i) => readPostProcessor(p, `${path}.processors[${i}]`, vocabSize, depth + 1));
      return (ids) => list.reduce((acc, p) => p(acc), ids);
    }
    default:
      throw unsupported(path, `unknown post-processor type ${JSON.stringify(type)}`);
  }
}
