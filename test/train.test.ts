import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  CheckpointError,
  loadCheckpoint,
  restoreCheckpoint,
  saveCheckpoint,
} from "../src/checkpoint.js";
import type { Dataset } from "../src/dataset.js";
import { Model, ModelError } from "../src/model.js";
import { readFileBytes, writeFileAtomic } from "../src/node/checkpointFile.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { mlpSpec } from "../src/referenceModels.js";
import type { ModelSpec } from "../src/spec.js";
import { TrainingDivergedError, evaluate, fit } from "../src/train.js";

let train: Dataset;
let test: Dataset;

beforeAll(async () => {
  ({ train, test } = await readIdxDataset(defaultDataDir()));
});

const small: ModelSpec = {
  inputShape: [28, 28, 1],
  layers: [
    { type: "conv2d", filters: 4, kernelSize: 3, strides: 2, padding: "same", useBias: false },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "maxPool2d", poolSize: 2 },
    { type: "flatten" },
    { type: "dense", units: 16 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.3 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};

function slice(ds: Dataset, n: number): [Float32Array, Int32Array] {
  const per = ds.x.length / ds.count;
  return [ds.x.slice(0, n * per), ds.y.slice(0, n)];
}

function weightsEqual(a: Model, b: Model): boolean {
  const wa = a.getWeights();
  const wb = b.getWeights();
  for (const [name, v] of wa) {
    const u = wb.get(name)!;
    for (let i = 0; i < v.length; i++) if (!Object.is(v[i], u[i])) return false;
  }
  return true;
}

describe("training", () => {
  it("the same seed gives bit-identical weights; another seed does not", async () => {
    const [x, y] = slice(train, 300);
    const run = async (seed: number) => {
      const m = new Model(loadKernels(), small, { seed });
      await fit(m, x, y, { epochs: 2, batchSize: 32 });
      return m;
    };
    const a = await run(7);
    const b = await run(7);
    const c = await run(8);
    expect(weightsEqual(a, b)).toBe(true);
    expect(weightsEqual(a, c)).toBe(false);
  });

  it("resuming from a checkpoint continues exactly as an uninterrupted run", async () => {
    const [x, y] = slice(train, 250); // 250 % 32 != 0: a partial last batch every epoch
    const opts = { optimizer: { type: "adamw" as const, learningRate: 2e-3 }, seed: 5 };
    const whole = new Model(loadKernels(), small, opts);
    await fit(whole, x, y, { epochs: 3, batchSize: 32 });

    const first = new Model(loadKernels(), small, opts);
    await fit(first, x, y, { epochs: 1, batchSize: 32 });
    const dir = mkdtempSync(join(tmpdir(), "edgenn-"));
    const path = join(dir, "run.ckpt");
    writeFileAtomic(path, saveCheckpoint(first));
    const resumed = loadCheckpoint(readFileBytes(path), loadKernels());
    expect(resumed.epoch).toBe(1);
    await fit(resumed, x, y, { epochs: 3, batchSize: 32 });
    expect(resumed.step).toBe(whole.step);
    expect(weightsEqual(resumed, whole)).toBe(true);
    // Optimizer state too.
    const sa = whole.optimizerSlotsBytes();
    const sb = resumed.optimizerSlotsBytes();
    expect(sa.length).toBe(2);
    for (let s = 0; s < sa.length; s++)
      expect(Buffer.from(sb[s].data.buffer).equals(Buffer.from(sa[s].data.buffer))).toBe(true);
  });

  it("rejects corrupt and mismatched checkpoints", async () => {
    const m = new Model(loadKernels(), small, { seed: 1 });
    const bytes = saveCheckpoint(m);
    const flipped = bytes.slice();
    flipped[flipped.length >> 1] ^= 0x40;
    expect(() => loadCheckpoint(flipped, loadKernels())).toThrow(/CRC-32 mismatch/);
    expect(() => loadCheckpoint(bytes.slice(0, 100), loadKernels())).toThrow(CheckpointError);
    expect(() => loadCheckpoint(new Uint8Array(10), loadKernels())).toThrow(/truncated/);
    const bad = bytes.slice();
    bad[0] = 0x58;
    expect(() => loadCheckpoint(bad, loadKernels())).toThrow(/not an edgenn checkpoint/);
    const other = new Model(loadKernels(), {
      ...small,
      layers: small.layers.map((l, i) => (i === 5 ? { type: "dense", units: 17 } : l)),
    });
    expect(() => restoreCheckpoint(other, bytes)).toThrow(/layer 5/);
  });

  it("stops with a clear error when the loss turns NaN, leaving the last checkpoint intact", async () => {
    const [x, y] = slice(train, 128);
    const m = new Model(
      loadKernels(),
      { inputShape: [784], layers: [{ type: "dense", units: 10 }, { type: "softmax" }] },
      { optimizer: { type: "sgd", learningRate: 1 } },
    );
    const dir = mkdtempSync(join(tmpdir(), "edgenn-"));
    const path = join(dir, "good.ckpt");
    await fit(m, x, y, {
      epochs: 1,
      batchSize: 32,
      onEpochEnd: () => writeFileAtomic(path, saveCheckpoint(m)),
    });
    const good = readFileSync(path);
    // Poison a weight: the next forward pass produces a NaN loss.
    m.kernels.f32[m.params[0].ptr >>> 2] = NaN;
    const err = await fit(m, x, y, {
      epochs: 2,
      batchSize: 32,
      onEpochEnd: () => writeFileAtomic(path, saveCheckpoint(m)),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.message).toMatch(/loss became NaN at epoch 2, batch 1/);
    expect(readFileSync(path).equals(good)).toBe(true);
    expect(existsSync(path)).toBe(true);
  });

  it("names bad data: wrong shapes, labels out of range, non-finite inputs", async () => {
    const m = new Model(loadKernels(), mlpSpec());
    await expect(fit(m, new Float32Array(785), [1])).rejects.toThrow(
      /not a whole number of samples of shape \[784\]/,
    );
    await expect(fit(m, new Float32Array(784 * 2), [1, 10])).rejects.toThrow(
      /y\[1\] = 10 is not a class label in \[0, 9\]/,
    );
    await expect(fit(m, new Float32Array(784 * 2), [1])).rejects.toThrow(
      /y has 1 values but 2 samples/,
    );
    const x = new Float32Array(784);
    x[5] = NaN;
    await expect(fit(m, x, [1])).rejects.toThrow(/non-finite value \(NaN\) at index 5/);
    expect(() => m.predict(new Float32Array(10))).toThrow(ModelError);
  });

  it("a training step and a prediction leave the memory plan untouched", async () => {
    const [x, y] = slice(train, 256);
    const m = new Model(loadKernels(), mlpSpec(), { seed: 2 });
    await fit(m, x, y, { epochs: 1, batchSize: 64 });
    const bytes = m.kernels.memory.buffer.byteLength;
    const plan = m.plan(64);
    await fit(m, x, y, { epochs: 3, batchSize: 64 });
    m.predict(x.subarray(0, 64 * 784), { batchSize: 64 });
    expect(m.kernels.memory.buffer.byteLength).toBe(bytes);
    expect(m.plan(64)).toBe(plan);
  });

  it("cancels within one batch and leaves the model usable", async () => {
    const [x, y] = slice(train, 640);
    const m = new Model(loadKernels(), mlpSpec(), { seed: 2 });
    const ac = new AbortController();
    let batches = 0;
    const h = await fit(m, x, y, {
      epochs: 5,
      batchSize: 32,
      signal: ac.signal,
      onBatchEnd: (p) => {
        batches++;
        if (p.batch === 3) ac.abort();
      },
    });
    expect(h.cancelled).toBe(true);
    expect(batches).toBe(4);
    expect(m.step).toBe(4);
    const r = evaluate(m, ...slice(test, 100));
    expect(Number.isFinite(r.loss)).toBe(true);
  });

  it("the reference mlp learns the bundled Fashion-MNIST subset (>= 0.80 test accuracy in 3 epochs)", async () => {
    const m = new Model(loadKernels(), mlpSpec(), { seed: 0 });
    const h = await fit(m, train.x, train.y, {
      epochs: 3,
      batchSize: 64,
      validationData: [test.x, test.y],
    });
    const r = evaluate(m, test.x, test.y);
    expect(h.epochs[2].valAccuracy).toBeCloseTo(r.accuracy, 6);
    expect(h.epochs[2].loss).toBeLessThan(h.epochs[0].loss);
    expect(r.accuracy).toBeGreaterThanOrEqual(0.8);
  });
});

describe("strict layer-order lint", () => {
  const bad: ModelSpec = {
    inputShape: [8],
    layers: [
      { type: "dense", units: 4 },
      { type: "dropout", rate: 0.5 },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "dense", units: 2 },
      { type: "softmax" },
    ],
  };
  it("turns warnings into errors at model creation and at fit", async () => {
    expect(() => new Model(loadKernels(), bad, { strict: true })).toThrow(
      /dropout-before-batchnorm/,
    );
    const m = new Model(loadKernels(), bad);
    await expect(fit(m, new Float32Array(16), [0, 1], { strict: true })).rejects.toThrow(
      /layer-order lint found 1 error/,
    );
    expect(() => new Model(loadKernels(), mlpSpec(), { strict: true })).not.toThrow();
  });
});
