// A predict-only page (test/browserInference.test.ts): the inference-only kernels compiled while
// they stream in, a model and a batch of inputs fetched, the outputs left on window for the test.
import { InferenceEngine } from "../../src/engine.js";
import { Kernels } from "../../src/kernels.js";

const module = await Kernels.compileStreaming(new URL("edgenn.infer.wasm", location.href));
const bytes = new Uint8Array(await (await fetch("model.enn")).arrayBuffer());
const engine = await InferenceEngine.load({ module, bytes }, { maxBatch: 8 });
const x = new Float32Array(await (await fetch("input.f32")).arrayBuffer());
const y = engine.predict(x, x.length / engine.inputSize);
(window as unknown as { inferenceResult: unknown }).inferenceResult = {
  isa: engine.kernels.isa,
  inferenceOnly: engine.kernels.inferenceOnly,
  y: Array.from(y),
};
