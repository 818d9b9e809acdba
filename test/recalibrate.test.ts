// BatchNorm recalibration: the moving statistics become the population mean and biased variance
// of each BN layer's inputs in inference mode (dropout off, earlier BN layers already
// recalibrated), checked against an independent float64 computation through a prefix model.
import { beforeAll, describe, expect, it } from "vitest";
import type { Dataset } from "../src/dataset.js";
import { Model } from "../src/model.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { Rng } from "../src/random.js";
import { recalibrateBatchNorm } from "../src/recalibrate.js";
import type { LayerSpec, ModelSpec } from "../src/spec.js";
import { fit } from "../src/train.js";

let train: Dataset;
beforeAll(async () => {
  ({ train } = await readIdxDataset(defaultDataDir()));
});

const dense: ModelSpec = {
  inputShape: [784],
  layers: [
    { type: "dense", units: 24 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.5 },
    { type: "dense", units: 16 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.3 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};
const conv: ModelSpec = {
  inputShape: [28, 28, 1],
  layers: [
    { type: "conv2d", filters: 6, kernelSize: 3, strides: 2, padding: "same", useBias: false },
    { type: "batchNorm", momentum: 0.9 },
    { type: "relu" },
    { type: "dropout", rate: 0.4 },
    { type: "conv2d", filters: 8, kernelSize: 3, strides: 2, padding: "valid" },
    { type: "batchNorm", momentum: 0.9 },
    { type: "relu" },
    { type: "flatten" },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};

/** Mean and biased variance per channel of the inputs of layer `j`, via a prefix model, in f64. */
function oracleStats(
  model: Model,
  spec: ModelSpec,
  j: number,
  x: Float32Array,
  rows: number[],
): { mean: Float64Array; variance: Float64Array } {
  const prefix: ModelSpec = { inputShape: spec.inputShape, layers: spec.layers.slice(0, j) };
  const p = new Model(loadKernels(), prefix, { loss: "meanSquaredError" });
  const w = new Map([...model.getWeights()].filter(([k]) => Number(k.split(".")[1]) < j));
  p.setWeights(w);
  const D = model.inputSize;
  const xs = new Float32Array(rows.length * D);
  rows.forEach((r, i) => xs.set(x.subarray(r * D, (r + 1) * D), i * D));
  const y = p.predict(xs, { batchSize: 97 });
  const C = model.layers[j].channels;
  const R = y.length / C;
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) mean[c] += y[r * C + c];
  for (let c = 0; c < C; c++) mean[c] /= R;
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++) variance[c] += (y[r * C + c] - mean[c]) ** 2;
  for (let c = 0; c < C; c++) variance[c] /= R;
  return { mean, variance };
}

function bnIndices(spec: ModelSpec): number[] {
  return spec.layers.flatMap((l: LayerSpec, i) => (l.type === "batchNorm" ? [i] : []));
}

describe("recalibrateBatchNorm", () => {
  for (const [name, spec] of [
    ["dense", dense],
    ["conv", conv],
  ] as const) {
    it(`${name}: moving statistics become the inference-mode population statistics`, async () => {
      const n = 1200;
      const x = train.x.subarray(0, n * 784);
      const model = new Model(loadKernels(), spec, { seed: 5 });
      await fit(model, x, train.y.subarray(0, n), { epochs: 1, batchSize: 64 });
      const before = model.getWeights();
      // All rows, in batches that do not divide n (a partial last batch).
      const report = recalibrateBatchNorm(model, x, { samples: n, batchSize: 250 });
      expect(report).toEqual({ layers: bnIndices(spec), samples: n });
      const all = Array.from({ length: n }, (_, i) => i);
      for (const j of report.layers) {
        const { mean, variance } = oracleStats(model, spec, j, x, all);
        const w = model.getWeights();
        const m = w.get(`layers.${j}.movingMean`)!;
        const v = w.get(`layers.${j}.movingVariance`)!;
        for (let c = 0; c < m.length; c++) {
          expect(Math.abs(m[c] - mean[c])).toBeLessThan(1e-4 * Math.max(1, Math.abs(mean[c])));
          expect(Math.abs(v[c] - variance[c])).toBeLessThan(1e-4 * Math.max(1, variance[c]));
        }
        // It changed the statistics and nothing else.
        expect(m).not.toEqual(before.get(`layers.${j}.movingMean`));
      }
      for (const [k, v] of model.getWeights())
        if (!/moving/.test(k)) expect(v).toEqual(before.get(k));
    });
  }

  it("a subset is a seeded random choice of rows: same seed, same statistics", async () => {
    const n = 1000;
    const x = train.x.subarray(0, n * 784);
    const a = new Model(loadKernels(), dense, { seed: 1 });
    await fit(a, x, train.y.subarray(0, n), { epochs: 1, batchSize: 100 });
    const ckpt = a.getWeights();
    const b = new Model(loadKernels(), dense, { seed: 1 });
    b.setWeights(ckpt);
    expect(recalibrateBatchNorm(a, x, { samples: 300, seed: 7 }).samples).toBe(300);
    recalibrateBatchNorm(b, x, { samples: 300, seed: 7, batchSize: 64 });
    const wa = a.getWeights();
    const wb = b.getWeights();
    for (const [k, v] of wa) {
      const u = wb.get(k)!;
      for (let i = 0; i < v.length; i++) expect(Math.abs(v[i] - u[i])).toBeLessThan(1e-5);
    }
    // The subset is the first 300 of the seed's permutation: the oracle on those rows agrees.
    const perm = new Int32Array(n).map((_, i) => i);
    new Rng(7).shuffle(perm);
    const rows = Array.from(perm.subarray(0, 300));
    const { mean } = oracleStats(a, dense, 1, x, rows);
    const m = wa.get("layers.1.movingMean")!;
    for (let c = 0; c < m.length; c++)
      expect(Math.abs(m[c] - mean[c])).toBeLessThan(1e-4 * Math.max(1, Math.abs(mean[c])));
  });

  it("removes dropout's variance shift: the BN after a dropout gets the smaller test-time variance", async () => {
    // Dense -> Dropout(0.5) -> Dense -> BN: in training the BN input's variance includes the
    // dropout noise; at inference it does not.
    const spec: ModelSpec = {
      inputShape: [784],
      layers: [
        { type: "dense", units: 32 },
        { type: "relu" },
        { type: "dropout", rate: 0.5 },
        { type: "dense", units: 16 },
        { type: "batchNorm", momentum: 0.9 },
        { type: "relu" },
        { type: "dense", units: 10 },
        { type: "softmax" },
      ],
    };
    const n = 2000;
    const x = train.x.subarray(0, n * 784);
    const model = new Model(loadKernels(), spec, { seed: 2 });
    await fit(model, x, train.y.subarray(0, n), { epochs: 2, batchSize: 50 });
    const ema = model.getWeights().get("layers.4.movingVariance")!;
    recalibrateBatchNorm(model, x);
    const pop = model.getWeights().get("layers.4.movingVariance")!;
    let ratio = 0;
    for (let c = 0; c < 16; c++) ratio += pop[c] / ema[c] / 16;
    expect(ratio).toBeLessThan(0.9);
  });

  it("fit({recalibrateBatchNorm}) runs it after the last epoch; by default fit keeps the moving averages", async () => {
    const n = 600;
    const x = train.x.subarray(0, n * 784);
    const y = train.y.subarray(0, n);
    const plain = new Model(loadKernels(), dense, { seed: 3 });
    const h0 = await fit(plain, x, y, { epochs: 1, batchSize: 64 });
    expect(h0.recalibration).toBeUndefined();
    const recal = new Model(loadKernels(), dense, { seed: 3 });
    const h1 = await fit(recal, x, y, { epochs: 1, batchSize: 64, recalibrateBatchNorm: true });
    expect(h1.recalibration).toMatchObject({ layers: [1, 5], samples: n });
    // Same training, then the recalibration of the plain model gives the same statistics.
    recalibrateBatchNorm(plain, x);
    for (const [k, v] of plain.getWeights()) expect(recal.getWeights().get(k)).toEqual(v);
    // A cancelled fit does not recalibrate.
    const c = new AbortController();
    c.abort();
    const h2 = await fit(recal, x, y, {
      epochs: 3,
      signal: c.signal,
      recalibrateBatchNorm: true,
    });
    expect(h2.cancelled).toBe(true);
    expect(h2.recalibration).toBeUndefined();
  });

  it("a model without BatchNorm is left alone; bad options are named", () => {
    const m = new Model(loadKernels(), {
      inputShape: [4],
      layers: [{ type: "dense", units: 2 }, { type: "softmax" }],
    });
    const before = m.getWeights();
    expect(recalibrateBatchNorm(m, new Float32Array(8))).toEqual({ layers: [], samples: 0 });
    expect(m.getWeights()).toEqual(before);
    const bn = new Model(loadKernels(), dense);
    expect(() => recalibrateBatchNorm(bn, new Float32Array(784), { samples: 0 })).toThrow(
      /samples must be a positive integer/,
    );
    expect(() => recalibrateBatchNorm(bn, new Float32Array(784), { batchSize: 1.5 })).toThrow(
      /batchSize must be a positive integer/,
    );
    expect(() => recalibrateBatchNorm(bn, new Float32Array(783))).toThrow();
  });
});
