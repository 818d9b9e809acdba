// Minimal TensorFlow.js inference bundle (bench/bundleSize.ts): tfjs-core, tfjs-layers and
// tfjs-backend-wasm; load a layers model, predict one sample. tfjs-backend-wasm-simd.wasm (the
// single-thread SIMD binary) ships beside it.
import * as tf from "@tensorflow/tfjs-core";
import { loadLayersModel } from "@tensorflow/tfjs-layers";
import { setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";

setWasmPaths("./");
setThreadsCount(1);
await tf.setBackend("wasm");
const model = await loadLayersModel("model.json");
const shape = [1, ...model.inputs[0].shape.slice(1)] as number[];
console.log(tf.tidy(() => (model.predict(tf.zeros(shape)) as tf.Tensor).dataSync()));
