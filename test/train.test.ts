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

  it("one-hot labels as integers train exactly as float ones; integers that are not 0/1 are refused", async () => {
    const [x, y] = slice(train, 96);
    const hot = new Uint8Array(96 * 10);
    y.forEach((c, i) => (hot[i * 10 + c] = 1));
    const a = new Model(loadKernels(), small, { seed: 6 });
    const b = new Model(loadKernels(), small, { seed: 6 });
    await fit(a, x, Float32Array.from(hot), { epochs: 1, batchSize: 32 });
    await fit(b, x, hot, { epochs: 1, batchSize: 32 });
    expect(weightsEqual(a, b)).toBe(true);
    // 960 class indices for 96 samples x 10 classes: labels for other data, not one-hot rows.
    const labels = Int32Array.from({ length: 960 }, (_, i) => i % 10);
    // Plain number arrays work wherever a Float32Array does.
    const [tx, ty] = slice(test, 50);
    expect(evaluate(b, Array.from(tx), Array.from(ty))).toEqual(evaluate(b, tx, ty));
    await expect(fit(b, x, labels)).rejects.toThrow(
      /y has 960 values: not 96 class labels, and not one-hot rows for 96 samples x 10 classes either \(y\[2\] = 2/,
    );
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

  it("a cancel inside an epoch, then a checkpoint, resumes exactly as an uninterrupted run", async () => {
    const [x, y] = slice(train, 250); // 8 batches of 32, the last partial
    const opts = { optimizer: { type: "adam" as const, learningRate: 2e-3 }, seed: 9 };
    const whole = new Model(loadKernels(), small, opts);
    const wholeH = await fit(whole, x, y, { epochs: 3, batchSize: 32 });

    // Stop in the middle of epoch 2 (0-based 1), save, load into a fresh model, continue.
    const first = new Model(loadKernels(), small, opts);
    const ac = new AbortController();
    const h1 = await fit(first, x, y, {
      epochs: 3,
      batchSize: 32,
      signal: ac.signal,
      onBatchEnd: (p) => {
        if (p.epoch === 1 && p.batch === 4) ac.abort();
      },
    });
    expect(h1.cancelled).toBe(true);
    expect(first.epoch).toBe(1);
    expect(first.epochProgress?.batch).toBe(5);
    const resumed = loadCheckpoint(saveCheckpoint(first), loadKernels());
    expect(resumed.epochProgress).toEqual(first.epochProgress);
    const h2 = await fit(resumed, x, y, { epochs: 3, batchSize: 32 });
    expect(h2.cancelled).toBe(false);
    expect(resumed.step).toBe(whole.step);
    expect(weightsEqual(resumed, whole)).toBe(true);
    expect(resumed.epochProgress).toBeUndefined();
    // The continued epoch's log covers the whole epoch, as the uninterrupted run's does.
    expect(h2.epochs.map((e) => e.epoch)).toEqual([1, 2]);
    expect(h2.epochs[0].loss).toBe(wholeH.epochs[1].loss);
    expect(h2.epochs[0].accuracy).toBe(wholeH.epochs[1].accuracy);
  });

  it("a cancel between epochs resumes exactly; another batch size starts the interrupted epoch over", async () => {
    const [x, y] = slice(train, 200);
    const whole = new Model(loadKernels(), small, { seed: 4 });
    await fit(whole, x, y, { epochs: 3, batchSize: 32 });

    const m = new Model(loadKernels(), small, { seed: 4 });
    const ac = new AbortController();
    const h = await fit(m, x, y, {
      epochs: 3,
      batchSize: 32,
      signal: ac.signal,
      onEpochEnd: (log) => {
        if (log.epoch === 0) ac.abort(); // "stop after this epoch"
      },
    });
    expect(h.cancelled).toBe(true);
    expect(m.epoch).toBe(1);
    expect(m.epochProgress).toBeUndefined();
    await fit(m, x, y, { epochs: 3, batchSize: 32 });
    expect(m.step).toBe(whole.step);
    expect(weightsEqual(m, whole)).toBe(true);

    // Interrupted, then continued with another batch size: the epoch runs again in full.
    const other = new Model(loadKernels(), small, { seed: 4 });
    const ac2 = new AbortController();
    await fit(other, x, y, {
      epochs: 1,
      batchSize: 32,
      signal: ac2.signal,
      onBatchEnd: (p) => p.batch === 2 && ac2.abort(),
    });
    expect(other.step).toBe(3);
    expect(other.epochProgress?.batch).toBe(3);
    await fit(other, x, y, { epochs: 1, batchSize: 50 });
    expect(other.step).toBe(3 + 4);
    expect(other.epoch).toBe(1);
    expect(other.epochProgress).toBeUndefined();
  });

  it("rejects a checkpoint whose epoch position is invalid", () => {
    const m = new Model(loadKernels(), small, { seed: 1 });
    m.epochProgress = {
      shuffleRng: [1, 2, 3, 4],
      batch: 9,
      samples: 100,
      batchSize: 32,
      shuffle: true,
      lossSum: 1,
      correct: 0,
    };
    expect(() => loadCheckpoint(saveCheckpoint(m), loadKernels())).toThrow(
      /epoch position is invalid: batch 9 is past the epoch's end/,
    );
  });

  it("predict and evaluate inside fit's callbacks leave the training data and the run unchanged", async () => {
    const [x, y] = slice(train, 300);
    const [tx, ty] = slice(test, 200);
    const plain = new Model(loadKernels(), small, { seed: 3 });
    const h0 = await fit(plain, x, y, { epochs: 3, batchSize: 32 });
    // New batch sizes (200 rows, 7 rows) planned mid-run must not land on the copied data set.
    const busy = new Model(loadKernels(), small, { seed: 3 });
    const h1 = await fit(busy, x, y, {
      epochs: 3,
      batchSize: 32,
      onBatchEnd: (p) => {
        if (p.batch === 2) busy.predict(tx.subarray(0, 7 * 784));
      },
      onEpochEnd: () => {
        busy.predict(tx);
        evaluate(busy, tx, ty);
      },
    });
    expect(h1.epochs.map((e) => e.loss)).toEqual(h0.epochs.map((e) => e.loss));
    expect(weightsEqual(busy, plain)).toBe(true);
  });

  it("refuses a second fit on a model while one runs", async () => {
    const [x, y] = slice(train, 200);
    const m = new Model(loadKernels(), small, { seed: 1 });
    const running = fit(m, x, y, { epochs: 2, batchSize: 32, yieldEveryMs: 0 });
    await expect(fit(m, x, y, { epochs: 3 })).rejects.toThrow(/fit is already running/);
    await running;
    expect(m.epoch).toBe(2);
    await fit(m, x, y, { epochs: 3, batchSize: 32 }); // allowed once the first has finished
    expect(m.epoch).toBe(3);
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
