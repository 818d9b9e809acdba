// Node-only: finds build/edgenn.wasm (or build/edgenn.relaxed.wasm, or the inference-only
// edgenn.infer[.relaxed].wasm) whether we run from src/ (vitest) or dist/src/ (the CLI), and picks
// the build this Node can run.
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  INFERENCE_KERNEL_FILES,
  KERNEL_FILES,
  Kernels,
  pickKernelIsa,
  type KernelIsa,
} from "../kernels.js";

/** "full": every kernel (training); "inference": what InferenceEngine calls (assembly/inference.ts). */
export type KernelBuild = "full" | "inference";

const cachedModules = new Map<string, WebAssembly.Module>();

function findBuildFile(file: string): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "build", file);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

export function kernelWasmPath(file = "edgenn.wasm"): string {
  const path = findBuildFile(file);
  if (!path) throw new Error(`edgenn: ${file} not found; run "npm run build:wasm" first`);
  return path;
}

/**
 * The kernel build this process loads: EDGENN_ISA=baseline|relaxed forces one, otherwise relaxed
 * where this Node validates relaxed SIMD (Node >= 22, or Node 20 with
 * --experimental-wasm-relaxed-simd) and its file was built, the baseline elsewhere.
 */
export function kernelIsa(): KernelIsa {
  const request = process.env.EDGENN_ISA;
  const isa = pickKernelIsa(request);
  // An install built before the relaxed target existed: auto falls back, a forced request does not.
  const forced = request?.trim().toLowerCase() === "relaxed";
  if (isa === "relaxed" && !forced && !findBuildFile(KERNEL_FILES.relaxed)) return "baseline";
  return isa;
}

/** Path of the kernel module kernelModule(build) compiles. */
export function kernelModulePath(build: KernelBuild = "full"): string {
  // EDGENN_WASM points tests at one file (a kernel under development, a specific build); the full
  // build serves inference too.
  if (process.env.EDGENN_WASM) return process.env.EDGENN_WASM;
  const isa = kernelIsa();
  if (build === "inference") {
    // An install built before the inference target existed: the full build has its kernels.
    const path = findBuildFile(INFERENCE_KERNEL_FILES[isa]);
    if (path) return path;
  }
  return kernelWasmPath(KERNEL_FILES[isa]);
}

export function kernelModule(build: KernelBuild = "full"): WebAssembly.Module {
  const path = kernelModulePath(build);
  let module = cachedModules.get(path);
  if (!module) {
    module = new WebAssembly.Module(readFileSync(path));
    cachedModules.set(path, module);
  }
  return module;
}

/** A fresh kernel instance (own memory) from the compiled module, compiled once per process. */
export function loadKernels(): Kernels {
  return Kernels.loadSync(kernelModule());
}
