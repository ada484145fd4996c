// The one base of every error wasmforge throws on purpose: a stable `code` a program can switch
// on, and a message naming the field and the values that were wrong. Each module has its own
// subclass (GGUFError, ModelError, ...) with its own code list; `instanceof WasmforgeError`
// catches them all.
export class WasmforgeError<Code extends string = string> extends Error {
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
