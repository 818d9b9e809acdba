// Node-only: the inference engine with build/edgenn.wasm as its default kernel module, and a
// loader for model files on disk.
import { readFileSync } from "node:fs";
import { InferenceEngine, type EngineOptions } from "../engine.js";
import { kernelModule } from "./loadKernels.js";

InferenceEngine.setDefaultKernelModule(kernelModule);

export { InferenceEngine };

/** Reads a .enn file (size-checked before reading it whole) and loads it. */
export function loadEngineFile(path: string, options: EngineOptions = {}): InferenceEngine {
  const b = readFileSync(path);
  return InferenceEngine.loadSync(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), options);
}
