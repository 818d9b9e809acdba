// Cold start, edgenn: import the engine (edgenn/engine: dist/engine.mjs, which compiles the bundled
// engine with its build-time V8 code cache and registers build/edgenn.infer.wasm), load the .enn
// file with loadEngineFile (as docs/SERVING.md does: the file's bytes are read once, into kernel
// memory, and not copied), predict one sample, print the argmax.
// Usage: node edgenn.mjs model.enn input.f32
// Built-in modules come from process.getBuiltinModule (Node >= 20.16) in every child and in
// bare.mjs: an ES import of node:fs cost a cold process here 3.1-3.4 ms (Node builds the module's
// namespace), and reading the input file is the bench's scaffolding, not any runtime's start.
// The helper is written out in each child: a shared module would be one more file for every cold
// process to resolve and load.
import { loadEngineFile } from "../../dist/engine.mjs";

// process.getBuiltinModule: Node >= 20.16; older Node gets a CommonJS require.
const builtin = process.getBuiltinModule
  ? (id) => process.getBuiltinModule(id)
  : (await import("node:module")).createRequire(import.meta.url);
const { readFileSync } = builtin("node:fs");

const [model, input] = process.argv.slice(2);
const engine = loadEngineFile(model, { maxBatch: 1 });
const b = readFileSync(input);
const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + engine.inputSize * 4));
const y = engine.predict(x, 1);
console.log(`argmax ${y.indexOf(Math.max(...y))}`);
