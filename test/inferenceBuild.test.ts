// The inference-only kernel build (assembly/inference.ts, build/edgenn.infer.wasm): Node's engine
// loads it by default, the Cloudflare Worker and the size benchmark ship it. It must hold every
// kernel the engine calls (a missing one would be a TypeError at predict) and compute the same
// bits as the full build, on every layer type and export path, at batch 1 and at the packed
// batch-64 path, f32 and int8.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { exportModel } from "../src/export.js";
import { INFERENCE_KERNEL_FILES, KERNEL_FILES, Kernels } from "../src/kernels.js";
import { Model } from "../src/model.js";
import { InferenceEngine } from "../src/node/engine.js";
import { kernelModule, kernelModulePath, kernelWasmPath } from "../src/node/loadKernels.js";
import {
  engineTestFiles,
  fakeModel,
  predictBits,
  randomInputs,
  smallCnn,
} from "./exportFixtures.js";

const full = readFileSync(kernelWasmPath(KERNEL_FILES.baseline));
const infer = readFileSync(kernelWasmPath(INFERENCE_KERNEL_FILES.baseline));

const exportsOf = (bytes: Uint8Array<ArrayBuffer>) =>
  WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => e.name);

/** Outputs of one model file on both builds, as raw bits (NaN-safe, -0 distinct from 0). */
function bothBuilds(file: Uint8Array, maxBatch: number, seed: number): [Uint32Array, Uint32Array] {
  const run = (kernels: Uint8Array<ArrayBuffer>) => {
    const e = InferenceEngine.loadSync(file, { kernels, maxBatch });
    return predictBits(e, randomInputs(maxBatch * e.inputSize, seed), maxBatch);
  };
  return [run(infer), run(full)];
}

describe("inference-only kernel build", () => {
  it("holds no training kernels and is under half the full build (raw and gzipped)", async () => {
    const { gzipSync } = await import("node:zlib");
    const names = exportsOf(infer);
    const fullNames = new Set(exportsOf(full));
    for (const n of names) expect(fullNames.has(n), n).toBe(true);
    expect(
      names.filter((n) => /_bwd_|_scalar$|adam|sgd|loss|dropout|batchnorm_train/.test(n)),
    ).toEqual([]);
    expect(names).toContain("gemm_f32_prepacked");
    expect(infer.length).toBeLessThan(full.length / 2);
    expect(gzipSync(infer, { level: 9 }).length).toBeLessThan(
      gzipSync(full, { level: 9 }).length / 2,
    );
  });

  it("is what Node's engine loads by default; the full build trains", () => {
    delete process.env.EDGENN_WASM;
    expect(kernelModulePath("inference")).toMatch(/edgenn\.infer(\.relaxed)?\.wasm$/);
    expect(kernelModulePath()).toMatch(/edgenn(\.relaxed)?\.wasm$/);
    const e = InferenceEngine.loadSync(exportModel(fakeModel(smallCnn, 3)).bytes);
    expect(e.kernels.inferenceOnly).toBe(true);
    expect(Kernels.loadSync(kernelModule()).inferenceOnly).toBe(false);
  });

  it("a Model refuses the inference-only kernels, naming the build it needs", () => {
    const k = Kernels.loadSync(infer);
    expect(() => new Model(k, smallCnn)).toThrow(
      /inference-only build.*needs the full build \(edgenn\.wasm\)/,
    );
  });

  it("predicts the same bits as the full build: reference models and 40 random stacks, batch 1 and 64, f32 and int8", () => {
    const files = engineTestFiles(40);
    let compared = 0;
    for (const [name, file] of files)
      for (const maxBatch of [1, 64]) {
        const [a, b] = bothBuilds(file, maxBatch, files.length + maxBatch);
        expect(a.length).toBeGreaterThan(0);
        let differing = 0;
        for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) differing++;
        expect(differing, `${name} at batch ${maxBatch}`).toBe(0);
        compared += a.length;
      }
    expect(compared).toBeGreaterThan(5000);
  });
});
