// Minimal edgenn inference bundle (bench/bundleSize.ts): compile the kernels while they download,
// load an .enn model, predict one sample. build/edgenn.infer.wasm (the inference-only kernels)
// ships beside it as its own file.
import { InferenceEngine } from "../../src/engine.js";
import { Kernels } from "../../src/kernels.js";

const module = await Kernels.compileStreaming(new URL("edgenn.infer.wasm", import.meta.url));
const bytes = new Uint8Array(await (await fetch("model.enn")).arrayBuffer());
const engine = await InferenceEngine.load({ module, bytes });
console.log(engine.predict(new Float32Array(engine.inputSize), 1));
