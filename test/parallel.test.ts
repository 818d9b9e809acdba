// Data-parallel training over worker_threads: replicas stay bit-identical; without BN and dropout
// N workers follow the 1-worker run up to float rounding; 1 worker equals plain fit() exactly.
import { beforeAll, describe, expect, it } from "vitest";
import type { Dataset } from "../src/dataset.js";
import { Model } from "../src/model.js";
import { fitParallel } from "../src/node/fitParallel.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import type { ModelSpec } from "../src/spec.js";
import { evaluate, fit } from "../src/train.js";

let train: Dataset;
let test: Dataset;
beforeAll(async () => {
  ({ train, test } = await readIdxDataset(defaultDataDir()));
});

const plain: ModelSpec = {
  inputShape: [784],
  layers: [
    { type: "dense", units: 32 },
    { type: "relu" },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};
const withBn: ModelSpec = {
  inputShape: [28, 28, 1],
  layers: [
    { type: "conv2d", filters: 8, kernelSize: 3, padding: "same", useBias: false },
    { type: "batchNorm", momentum: 0.9 },
    { type: "relu" },
    { type: "maxPool2d", poolSize: 2 },
    { type: "flatten" },
    { type: "dense", units: 32 },
    { type: "batchNorm", momentum: 0.9 },
    { type: "relu" },
    { type: "dropout", rate: 0.3 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};

function maxDiff(a: Model, b: Model): number {
  const wa = a.getWeights();
  const wb = b.getWeights();
  let d = 0;
  for (const [k, v] of wa) {
    const u = wb.get(k)!;
    for (let i = 0; i < v.length; i++) d = Math.max(d, Math.abs(v[i] - u[i]));
  }
  return d;
}

describe("data-parallel training (worker_threads, SharedArrayBuffer)", () => {
  it("1 worker equals fit() bit for bit; 3 workers follow it up to rounding (no BN, no dropout)", async () => {
    const n = 1000;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const opts = { seed: 4, optimizer: { type: "sgd" as const, learningRate: 0.05 } };
    const direct = new Model(loadKernels(), plain, opts);
    await fit(direct, x, y, { epochs: 2, batchSize: 50 });
    const one = await fitParallel(plain, x, y, { ...opts, workers: 1, epochs: 2, batchSize: 50 });
    expect(maxDiff(one.model, direct)).toBe(0);
    const three = await fitParallel(plain, x, y, { ...opts, workers: 3, epochs: 2, batchSize: 50 });
    expect(three.replicasIdentical).toBe(true);
    expect(maxDiff(three.model, direct)).toBeLessThan(1e-5);
    expect(three.history[1].loss).toBeCloseTo(one.history[1].loss, 4);
  });

  it("with BN (per-shard batch statistics) and dropout: replicas stay identical and the model learns", async () => {
    const n = 2000;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const r = await fitParallel(withBn, x, y, { seed: 1, workers: 2, epochs: 2, batchSize: 64 });
    expect(r.replicasIdentical).toBe(true);
    expect(r.history[1].loss).toBeLessThan(r.history[0].loss);
    const acc = evaluate(r.model, test.x, test.y).accuracy;
    const single = new Model(loadKernels(), withBn, { seed: 1 });
    await fit(single, x, y, { epochs: 2, batchSize: 64 });
    const singleAcc = evaluate(single, test.x, test.y).accuracy;
    expect(acc).toBeGreaterThan(0.7);
    expect(Math.abs(acc - singleAcc)).toBeLessThan(0.05);
    expect(r.model.epoch).toBe(2);
  });
});
