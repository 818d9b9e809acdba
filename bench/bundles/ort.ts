// Minimal ONNX Runtime Web inference bundle (bench/bundleSize.ts): the wasm-only entry
// (onnxruntime-web/wasm), one thread; create a session from an .onnx file, run one sample.
// ort-wasm-simd-threaded.wasm (the wasm EP's only binary, used for one thread too) ships beside it.
import * as ort from "onnxruntime-web/wasm";

ort.env.wasm.numThreads = 1;
const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
const x = new ort.Tensor("float32", new Float32Array(784), [1, 784]);
console.log((await session.run({ x })).y.data);
