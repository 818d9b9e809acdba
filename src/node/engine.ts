// Node-only: the inference engine with the inference-only build/edgenn.infer.wasm (or its relaxed
// twin, as kernelIsa() picks) as its default kernel module, and
// readers for model files on disk (size-checked before the file is read).
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { alignUp } from "../arena.js";
import { InferenceEngine, type EngineOptions } from "../engine.js";
import { DEFAULT_ENN_LIMITS, ModelFormatError, type EnnLimits } from "../ennFormat.js";
import { Kernels } from "../kernels.js";
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

function checkFileSize(path: string, size: number, limits: Partial<EnnLimits> = {}): void {
  const max = limits.maxFileBytes ?? DEFAULT_ENN_LIMITS.maxFileBytes;
  if (size > max)
    throw new ModelFormatError(
      `${path} is ${size} bytes, over the ${max}-byte limit (raise the maxFileBytes limit if the model is really that large)`,
    );
}

/** Reads a model file, refusing one over the size limit without reading it. */
export function readModelFile(path: string, limits: Partial<EnnLimits> = {}): Uint8Array {
  checkFileSize(path, statSync(path).size, limits);
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Reads a .enn file and loads it. Without options.kernels the file is read straight into the
 * engine's own kernel memory and its f32 weights are used where they land: no copy of the file in
 * JavaScript memory and none into the arena (on a cold start of the 1.7 MB cnn that is 1.8 ms
 * instead of 3.5 for reading and copying; the memory a copy would take is not taken).
 */
export function loadEngineFile(path: string, options: EngineOptions = {}): InferenceEngine {
  if (options.kernels)
    return InferenceEngine.loadSync(readModelFile(path, options.limits), options);
  const fd = openSync(path, "r");
  let kernels: Kernels;
  let at: number;
  let size: number;
  try {
    size = fstatSync(fd).size;
    checkFileSize(path, size, options.limits);
    kernels = Kernels.loadSync(kernelModule("inference"));
    at = alignUp(kernels.heapBase);
    kernels.ensure(at + size);
    const u8 = kernels.u8;
    let read = 0;
    while (read < size) {
      const n = readSync(fd, u8, at + read, size - read, read);
      if (n === 0) break; // shrank while we read: readEnn reports the truncation
      read += n;
    }
    size = read;
  } finally {
    closeSync(fd);
  }
  return InferenceEngine.loadSync(kernels.u8.subarray(at, at + size), { ...options, kernels });
}
