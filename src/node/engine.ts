// Node-only: the inference engine with the inference-only build/edgenn.infer.wasm (or its relaxed
// twin, as kernelIsa() picks) as its default kernel module, and
// readers for model files on disk (size-checked before the file is read).
import { readFileSync, statSync } from "node:fs";
import { InferenceEngine, type EngineOptions } from "../engine.js";
import { DEFAULT_ENN_LIMITS, ModelFormatError, type EnnLimits } from "../ennFormat.js";
import { kernelModule } from "./loadKernels.js";

InferenceEngine.setDefaultKernelModule(() => kernelModule("inference"));

// zlib's CRC-32 (Node >= 20.15 / 22.2), loaded at the first model check: a cold process then checks
// a file several times faster than the kernels' unoptimised first run. Older Node keeps the kernels'.
let zlibCrc32: ((data: Uint8Array) => number) | null | undefined;
InferenceEngine.setHostCrc32((bytes) => {
  if (zlibCrc32 === undefined) {
    const zlib = process.getBuiltinModule?.("node:zlib") as
      { crc32?: (data: Uint8Array) => number } | undefined;
    zlibCrc32 = typeof zlib?.crc32 === "function" ? zlib.crc32 : null;
  }
  return zlibCrc32 ? zlibCrc32(bytes) : undefined;
});

export { InferenceEngine, ModelFormatError };
export { InferenceError, type EngineOptions } from "../engine.js";

/** Reads a model file, refusing one over the size limit without reading it. */
export function readModelFile(path: string, limits: Partial<EnnLimits> = {}): Uint8Array {
  const max = limits.maxFileBytes ?? DEFAULT_ENN_LIMITS.maxFileBytes;
  const size = statSync(path).size;
  if (size > max)
    throw new ModelFormatError(
      `${path} is ${size} bytes, over the ${max}-byte limit (raise the maxFileBytes limit if the model is really that large)`,
    );
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Reads a .enn file and loads it. */
export function loadEngineFile(path: string, options: EngineOptions = {}): InferenceEngine {
  return InferenceEngine.loadSync(readModelFile(path, options.limits), options);
}
