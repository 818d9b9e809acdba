// Cold start, TensorFlow.js: tfjs-core + tfjs-layers + tfjs-backend-wasm (SIMD, one thread), load
// the layers model (model.json + weights.bin, from memory as Node has no file:// handler in pure
// tfjs), predict one sample, print the argmax. Usage: node tfjs.mjs model.json input.f32
// Built-in modules through process.getBuiltinModule, as in every child (edgenn.mjs says why).
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import * as wasm from "@tensorflow/tfjs-backend-wasm";

// process.getBuiltinModule: Node >= 20.16; older Node gets a CommonJS require.
const builtin = process.getBuiltinModule
  ? (id) => process.getBuiltinModule(id)
  : (await import("node:module")).createRequire(import.meta.url);
const { readFileSync } = builtin("node:fs");

const [model, input] = process.argv.slice(2);
wasm.setThreadsCount(1);
await tf.setBackend("wasm");
const json = JSON.parse(readFileSync(model, "utf8"));
const bin = readFileSync(model.replace(/\.json$/, ".bin"));
const m = await tfl.loadLayersModel(
  tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightSpecs,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  }),
);
const dims = m.inputs[0].shape.slice(1);
const n = dims.reduce((a, b) => a * b, 1);
const b = readFileSync(input);
const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + n * 4));
const y = tf.tidy(() => m.predict(tf.tensor(x, [1, ...dims])).dataSync());
console.log(`argmax ${y.indexOf(Math.max(...y))}`);
