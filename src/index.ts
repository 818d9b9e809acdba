// edgenn: the platform-neutral API (no Node built-ins). Node conveniences: src/node/index.ts.
export {
  Kernels,
  KernelsTakenError,
  supportsRelaxedSimd,
  pickKernelIsa,
  KERNEL_FILES,
  INFERENCE_KERNEL_FILES,
  type KernelIsa,
} from "./kernels.js";
export type { KernelAbi, Ptr } from "./kernelAbi.js";
export * from "./spec.js";
export { Model, ModelError, type ModelOptions, type LossName, type BatchPlan } from "./model.js";
export * from "./train.js";
export * from "./recalibrate.js";
export * from "./optimizer.js";
export * from "./checkpoint.js";
export { Rng } from "./random.js";
export { crc32 } from "./crc32.js";
export * from "./referenceModels.js";
export * from "./lint.js";
export * from "./idx.js";
export * from "./dataset.js";
export * from "./ennFormat.js";
export * from "./export.js";
export * from "./engine.js";
export * from "./quantize.js";
export * from "./tfjsImport.js";
export * from "./serveHandler.js";
export {
  createEdgeWorker,
  type EdgeEnv,
  type EdgeWorker,
  type EdgeWorkerOptions,
} from "./edgeWorker.js";
