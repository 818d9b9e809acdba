// Cold start, ONNX Runtime Web (wasm EP, SIMD, one thread, its .wasm from node_modules): create a
// session from the .onnx file, run one sample, print the argmax. Usage: node ort.mjs model.onnx input.f32
// Built-in modules through process.getBuiltinModule, as in every child (edgenn.mjs says why).
import * as ort from "onnxruntime-web";

// process.getBuiltinModule: Node >= 20.16; older Node gets a CommonJS require.
const builtin = process.getBuiltinModule
  ? (id) => process.getBuiltinModule(id)
  : (await import("node:module")).createRequire(import.meta.url);
const { readFileSync } = builtin("node:fs");
const { createRequire } = builtin("node:module");
const { dirname } = builtin("node:path");

const [model, input, shape] = process.argv.slice(2);
ort.env.wasm.numThreads = 1;
ort.env.wasm.simd = true;
ort.env.wasm.wasmPaths = dirname(createRequire(import.meta.url).resolve("onnxruntime-web")) + "/";
const session = await ort.InferenceSession.create(readFileSync(model), {
  executionProviders: ["wasm"],
});
const dims = shape.split(",").map(Number);
const n = dims.reduce((a, b) => a * b, 1);
const b = readFileSync(input);
const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + n * 4));
const out = await session.run({ x: new ort.Tensor("float32", x, [1, ...dims]) });
const y = out.y.data;
console.log(`argmax ${y.indexOf(Math.max(...y))}`);
