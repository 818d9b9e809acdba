// Node entry: the platform-neutral API plus conveniences that load the kernels from disk and read
// and write files.
import { loadCheckpoint, saveCheckpoint } from "../checkpoint.js";
import { Model, type ModelOptions } from "../model.js";
import type { ModelSpec, ResolvedModel } from "../spec.js";
import { loadKernels } from "./loadKernels.js";
import { readFileBytes, writeFileAtomic } from "./checkpointFile.js";

export * from "../index.js";
export {
  loadKernels,
  kernelModule,
  kernelWasmPath,
  kernelIsa,
  kernelModulePath,
  type KernelBuild,
} from "./loadKernels.js";
export { writeFileAtomic, readFileBytes } from "./checkpointFile.js";
export { loadEngineFile, readModelFile } from "./engine.js";
export { startServer, runServe, type ServeOptions, type RunningServer } from "./serve.js";
export { readIdxDataset, defaultDataDir, fullDataDir } from "./readDataset.js";
export {
  fitParallel,
  type ParallelFitOptions,
  type ParallelTransport,
  type DataParallelResult,
} from "./fitParallel.js";

/** A model with its own kernel instance (its own memory). */
export function createModel(spec: ModelSpec | ResolvedModel, options: ModelOptions = {}): Model {
  return new Model(loadKernels(), spec, options);
}

export function writeCheckpointFile(model: Model, path: string): void {
  writeFileAtomic(path, saveCheckpoint(model));
}

export function readCheckpointFile(path: string): Model {
  return loadCheckpoint(readFileBytes(path), loadKernels());
}
