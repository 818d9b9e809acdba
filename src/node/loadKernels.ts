// Node-only: finds build/edgenn.wasm whether we run from src/ (vitest) or dist/src/ (the CLI).
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { Kernels } from "../kernels.js";

let cachedModule: WebAssembly.Module | undefined;

export function kernelWasmPath(file = "edgenn.wasm"): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "build", file);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`edgenn: ${file} not found; run "npm run build:wasm" first`);
}

export function kernelModule(): WebAssembly.Module {
  // EDGENN_WASM points tests at another build (a kernel under development, the relaxed-SIMD build).
  cachedModule ??= new WebAssembly.Module(
    readFileSync(process.env.EDGENN_WASM || kernelWasmPath()),
  );
  return cachedModule;
}

/** A fresh kernel instance (own memory) from the compiled module, compiled once per process. */
export function loadKernels(): Kernels {
  return Kernels.loadSync(kernelModule());
}
