// Every error wasmforge throws on purpose shares one base, WasmforgeError: a program can catch them
// all with one instanceof and switch on `code`; each keeps its own class name.
import { describe, expect, it } from 'vitest';
import {
  BackendError, ByteSourceError, ChatTemplateError, EngineError, GGUFError, HFModelError, KVCacheError, ModelCacheError, ModelError,
  SafetensorsError, SamplingError, TensorTypeError, TokenizerError, WasmforgeError, bufferSource, readGGUF, Sampler,
} from '../src/index.js';
import { QuantizeModelError } from '../src/model/quantize-model.js';
import { SyntheticModelError } from './helpers/synthetic.js';

describe('typed errors', () => {
  const classes = {
    BackendError, ByteSourceError, ChatTemplateError, EngineError, GGUFError, HFModelError, KVCacheError, ModelCacheError, ModelError,
    SafetensorsError, SamplingError, TensorTypeError, TokenizerError, QuantizeModelError, SyntheticModelError,
  };

  it.each(Object.entries(classes))('%s is a WasmforgeError with its own name and the code it was given', (name, Cls) => {
    const e = new (Cls as new (code: string, message: string) => Error & { code: string })('SOME_CODE', 'what was wrong');
    expect(e).toBeInstanceOf(WasmforgeError);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe(name);
    expect(e.code).toBe('SOME_CODE');
    expect(e.message).toBe('what was wrong');
  });

  it('errors thrown by the library are caught by one instanceof', async () => {
    const notGGUF = new TextEncoder().encode('this is not a GGUF file at all');
    const gguf = await readGGUF(bufferSource(notGGUF)).catch((e: unknown) => e);
    expect(gguf).toBeInstanceOf(GGUFError);
    expect(gguf).toBeInstanceOf(WasmforgeError);
    expect((gguf as GGUFError).code).toBe('BAD_MAGIC');
    const sampling = (() => {
      try {
        new Sampler({ topP: 2 });
      } catch (e) {
        return e;
      }
    })();
    expect(sampling).toBeInstanceOf(SamplingError);
    expect(sampling).toBeInstanceOf(WasmforgeError);
  });
});
