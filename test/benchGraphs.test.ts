// The ONNX baseline graph (bench/onnxGraph.ts) computes what the engine computes: tiny mlp- and
// cnn-like models with non-trivial BN statistics, exported, run on the engine and on ONNX Runtime
// Web from the built graph, compared within 1e-4. Covers the NHWC <-> NCHW transposes, the
// HWIO -> OIHW kernels, explicit pads, NHWC flatten order, and scaleShift in both layouts.
import { describe, expect, it } from "vitest";
import { InferenceEngine } from "../src/engine.js";
import { exportModel } from "../src/export.js";
import { Model } from "../src/model.js";
import { kernelModule, loadKernels } from "../src/node/loadKernels.js";
import { Rng } from "../src/random.js";
import type { ModelSpec } from "../src/spec.js";
import { buildOnnxModel, ortPredict, ortSession } from "../bench/onnxGraph.js";

function withStats(spec: ModelSpec, seed: number): Model {
  const model = new Model(loadKernels(), spec, { seed });
  const rng = new Rng(seed + 1);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const range: Record<string, [number, number]> = {
    gamma: [0.5, 1.5],
    beta: [-0.5, 0.5],
    movingMean: [-0.3, 0.3],
    movingVariance: [0.3, 2],
  };
  const set = new Map<string, Float32Array>();
  for (const [key, v] of model.getWeights()) {
    const r = range[key.slice(key.lastIndexOf(".") + 1)];
    if (r)
      set.set(
        key,
        Float32Array.from(v, () => u(...r)),
      );
  }
  model.setWeights(set);
  return model;
}

async function maxDiff(spec: ModelSpec, B: number): Promise<{ diff: number; ops: string[] }> {
  const { bytes, content } = exportModel(withStats(spec, 3));
  const engine = InferenceEngine.loadSync(bytes, { kernels: kernelModule(), maxBatch: B });
  const session = await ortSession(buildOnnxModel(content));
  const rng = new Rng(9);
  const x = Float32Array.from({ length: B * engine.inputSize }, () => rng.next());
  const ours = engine.predict(x, B);
  const theirs = await ortPredict(session, x, [B, ...spec.inputShape]);
  await session.release();
  expect(theirs.length).toBe(ours.length);
  let diff = 0;
  for (let i = 0; i < ours.length; i++) diff = Math.max(diff, Math.abs(ours[i] - theirs[i]));
  return { diff, ops: content.ops.map((o) => o.op) };
}

describe("bench ONNX graph builder", () => {
  it("matches the engine on an mlp-like model (Gemm, folded BN, softmax)", async () => {
    const { diff } = await maxDiff(
      {
        inputShape: [12],
        layers: [
          { type: "dense", units: 8 },
          { type: "batchNorm" },
          { type: "relu" },
          { type: "dropout", rate: 0.3 },
          { type: "dense", units: 5 },
          { type: "softmax" },
        ],
      },
      3,
    );
    expect(diff).toBeLessThanOrEqual(1e-4);
  });

  it("matches the engine on a cnn-like model (NHWC flatten, pads, scaleShift in NHWC and NCHW)", async () => {
    const { diff, ops } = await maxDiff(
      {
        inputShape: [7, 6, 2],
        layers: [
          { type: "batchNorm" },
          { type: "conv2d", filters: 4, kernelSize: 3, padding: "same" },
          { type: "batchNorm" },
          { type: "relu" },
          { type: "maxPool2d", poolSize: 2 },
          { type: "batchNorm" },
          { type: "conv2d", filters: 3, kernelSize: [2, 3], strides: [1, 2], padding: "same" },
          { type: "relu" },
          { type: "flatten" },
          { type: "dense", units: 4 },
          { type: "softmax" },
        ],
      },
      2,
    );
    // Both input-side BNs stay scaleShifts (padded convs follow): one before the NCHW transpose,
    // one inside it.
    expect(ops.filter((o) => o === "scaleShift")).toHaveLength(2);
    expect(diff).toBeLessThanOrEqual(1e-4);
  });
});
