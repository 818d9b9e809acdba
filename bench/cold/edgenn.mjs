// Cold start, edgenn: import the engine (edgenn/engine: the one-file bundle of its Node entry, which
// registers build/edgenn.wasm), load the .enn file with loadEngineFile (as docs/SERVING.md does: the
// file's bytes are read once and not copied), predict one sample, print the argmax.
// Usage: node edgenn.mjs model.enn input.f32
import { readFileSync } from "node:fs";
import { loadEngineFile } from "../../dist/engine.mjs";

const [model, input] = process.argv.slice(2);
const engine = loadEngineFile(model, { maxBatch: 1 });
const b = readFileSync(input);
const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + engine.inputSize * 4));
const y = engine.predict(x, 1);
console.log(`argmax ${y.indexOf(Math.max(...y))}`);
