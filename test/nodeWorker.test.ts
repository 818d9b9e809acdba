// The training API over comlink on Node worker_threads (worker/nodeWorker.ts): the same numbers
// as training directly in this thread, progress events, cancellation within one batch, transfers
// instead of copies, and errors that reach the caller as rejected promises.
import { join } from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildNodeWorker, ROOT } from "../scripts/build-web.mjs";
import type { Dataset } from "../src/dataset.js";
import { flattenShape, subsetDataset } from "../src/dataset.js";
import { exportModel } from "../src/export.js";
import { Model } from "../src/model.js";
import { InferenceEngine } from "../src/node/engine.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { resolveSpec, SpecError, type ModelSpec } from "../src/spec.js";
import { fit } from "../src/train.js";
import { spawnNodeTrainer, Trainer, type TrainEvent } from "../worker/nodeClient.js";
import type { TrainWorkerApi } from "../worker/trainWorker.js";

// BN and dropout both in the spec: equal weights then also mean the dropout RNG and BN statistics
// advanced identically on both sides.
const SPEC: ModelSpec = {
  inputShape: [784],
  layers: [
    { type: "dense", units: 32 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.2 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};
const SEED = 7;
const OPTIMIZER = { type: "adam", learningRate: 0.002 } as const;
const FIT = { epochs: 2, batchSize: 50 };

let workerScript: string;
let train: Dataset;
let test: Dataset;
const trainers: Trainer[] = [];

function trainer(): Trainer {
  const t = spawnNodeTrainer(workerScript);
  trainers.push(t);
  return t;
}

beforeAll(async () => {
  workerScript = await buildNodeWorker({ outfile: join(ROOT, "dist-test", "nodeWorker.mjs") });
  const data = await readIdxDataset(defaultDataDir());
  train = flattenShape(subsetDataset(data.train, 1000));
  test = flattenShape(subsetDataset(data.test, 200));
});

afterAll(async () => {
  await Promise.all(trainers.map((t) => t.terminate()));
});

describe("training worker on worker_threads", () => {
  it("trains, exports and predicts exactly as training in this thread does", async () => {
    // Direct: the same spec, seed, optimizer and data in this thread.
    const direct = new Model(loadKernels(), SPEC, { seed: SEED, optimizer: OPTIMIZER });
    const directHistory = await fit(direct, train.x, train.y, FIT);
    const directWeights = direct.getWeights();
    const directEnn = exportModel(direct).bytes;

    const t = trainer();
    expect(t.sharedCancel).toBe(true);
    const info = await t.create(SPEC, { seed: SEED, optimizer: OPTIMIZER });
    expect(info.inputShape).toEqual([784]);
    expect(info.outputShape).toEqual([10]);
    expect(info.params).toBe(direct.resolved.params);

    const events: TrainEvent[] = [];
    const x = train.x.slice();
    const y = train.y.slice();
    const history = await t.fit(x, y, { ...FIT, onProgress: (e) => events.push(e) });

    // Transferred, not copied: the caller's buffers now belong to the worker.
    expect(x.buffer.byteLength).toBe(0);
    expect(y.buffer.byteLength).toBe(0);

    expect(history.cancelled).toBe(false);
    expect(history.batchesRun).toBe(40);
    expect(history.epochs).toEqual(
      directHistory.epochs.map((e) => ({
        ...e,
        seconds: expect.any(Number),
        samplesPerSecond: expect.any(Number),
      })),
    );
    // Progress: every batch of both epochs and both epoch logs, in order, each its own object.
    const batches = events.filter((e) => e.type === "batch");
    const epochs = events.filter((e) => e.type === "epoch");
    // Every event has been delivered by the time fit resolves.
    expect(events.length).toBe(42);
    expect(batches.map((e) => e.epoch * 100 + e.batch)).toEqual([
      ...Array.from({ length: 20 }, (_, i) => i),
      ...Array.from({ length: 20 }, (_, i) => 100 + i),
    ]);
    expect(batches[19].loss).toBeCloseTo(directHistory.epochs[0].loss, 12);
    expect(epochs.map((e) => e.epoch)).toEqual([0, 1]);

    // Bit-identical weights: same WASM, same seed, same data.
    const weights = await t.getWeights();
    expect(Object.keys(weights).sort()).toEqual([...directWeights.keys()].sort());
    for (const [name, w] of directWeights) expect(weights[name], name).toEqual(w);

    const probe = test.x.slice();
    const remote = await t.predict(probe, { copy: true });
    expect(probe.buffer.byteLength).toBeGreaterThan(0); // copy: true keeps the caller's array
    expect(remote).toEqual(direct.predict(test.x));

    const exported = await t.export();
    expect(exported.bytes).toEqual(directEnn);
    expect(exported.report.weights).toBe("f32");
    expect(exported.report.paramsAfter).toBeGreaterThan(0);
    const engine = InferenceEngine.loadSync(exported.bytes, { maxBatch: 200 });
    const fromEnn = engine.predict(test.x.slice(), 200);
    const fromDirectEnn = InferenceEngine.loadSync(directEnn, { maxBatch: 200 }).predict(
      test.x.slice(),
      200,
    );
    expect(fromEnn).toEqual(fromDirectEnn);

    const evaluated = await t.evaluate(test.x, test.y, { copy: true });
    expect(evaluated.accuracy).toBeGreaterThan(0.5);
  });

  it("cancel() stops a run within one batch and leaves the model usable", async () => {
    const t = trainer();
    await t.create(SPEC, { seed: SEED, optimizer: OPTIMIZER });
    let calls = 0;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const run = t.fit(train.x, train.y, {
      epochs: 200,
      batchSize: 10,
      copy: true,
      onProgress: () => {
        if (++calls === 5) started();
      },
    });
    await running;
    // Calls that would read or replace the model mid-run are refused, not interleaved.
    await expect(t.predict(test.x, { copy: true })).rejects.toThrow(/while fit is running/);
    await expect(t.create(SPEC)).rejects.toThrow(/while fit is running/);
    const atCancel = t.cancel()!;
    const history = await run;
    expect(history.cancelled).toBe(true);
    expect(atCancel).toBeGreaterThanOrEqual(5);
    // The worker finishes the batch it is in when the flag is set, and no other.
    expect(history.batchesRun).toBeLessThanOrEqual(atCancel + 1);
    expect(history.batchesRun).toBeLessThan(200 * 100);

    // Still usable: predicts probabilities, exports, and trains again.
    const p = await t.predict(test.x, { copy: true });
    expect(p.length).toBe(200 * 10);
    for (let i = 0; i < 200; i++) {
      const row = p.subarray(i * 10, i * 10 + 10);
      expect(row.every(Number.isFinite)).toBe(true);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    }
    const { bytes } = await t.export();
    expect(InferenceEngine.loadSync(bytes).outputSize).toBe(10);
    // fit trains until `epochs` epochs are complete; the cancelled run may have finished some.
    const again = await t.fit(train.x, train.y, {
      epochs: history.epochs.length + 1,
      batchSize: 100,
      copy: true,
    });
    expect(again.cancelled).toBe(false);
    expect(again.batchesRun).toBe(10);
  });

  it("without a shared flag, cancel() arrives as a message when fit yields", async () => {
    // The bare comlink API, as a caller without SharedArrayBuffer (a page that is not
    // cross-origin isolated) sees it.
    const worker = new Worker(workerScript);
    const remote = Comlink.wrap<TrainWorkerApi>(nodeEndpoint(worker));
    try {
      await remote.create(SPEC, { seed: SEED });
      let batches = 0;
      let cancelled: Promise<boolean> | undefined;
      const history = await remote.fit(
        train.x.slice(),
        train.y.slice(),
        { epochs: 200, batchSize: 10 },
        Comlink.proxy((e: TrainEvent) => {
          if (e.type === "batch" && ++batches === 5) cancelled = remote.cancel();
        }),
      );
      expect(await cancelled).toBe(true);
      expect(history.cancelled).toBe(true);
      expect(history.batchesRun).toBeLessThan(200 * 100);
      expect(await remote.cancel()).toBe(false); // nothing running any more
      expect((await remote.predict(test.x.slice(0, 784))).length).toBe(10);
    } finally {
      remote[Comlink.releaseProxy]();
      await worker.terminate();
    }
  });

  it("a bad spec, a call out of order or a bad input rejects with the worker's error", async () => {
    const t = trainer();
    const bad = {
      inputShape: [784],
      layers: [{ type: "dense", units: 0 }, { type: "softmax" }],
    } as unknown as ModelSpec;
    let expected: SpecError | undefined;
    try {
      resolveSpec(bad);
    } catch (e) {
      expected = e as SpecError;
    }
    expect(expected).toBeInstanceOf(SpecError);
    const err = (await t.create(bad).then(
      () => undefined,
      (e: unknown) => e,
    )) as SpecError;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe(expected!.message);
    expect(err.name).toBe("SpecError");
    expect(err.layer).toBe(0); // the error's own fields cross too

    await expect(t.predict(new Float32Array(784))).rejects.toThrow(/call create\(spec\) first/);
    await t.create(SPEC, { seed: 1 });
    await expect(t.predict(new Float32Array(100))).rejects.toThrow(
      /100 values, not a whole number of samples of shape \[784\]/,
    );
    await expect(t.fit(train.x, train.y.subarray(0, 10), { copy: true })).rejects.toThrow(
      /y has 10 values but 1000 samples need/,
    );
    // The worker survived all of it.
    expect((await t.predict(test.x.subarray(0, 784))).length).toBe(10);
  });

  it("a worker that dies rejects pending and later calls instead of hanging", async () => {
    const t = trainer();
    await t.create(SPEC);
    const pending = t.fit(train.x, train.y, { epochs: 1000, copy: true });
    const rejected = expect(pending).rejects.toThrow(/exited|terminated/);
    await t.terminate();
    await rejected;
    await expect(t.predict(test.x.subarray(0, 784))).rejects.toThrow(/terminated/);

    const missing = spawnNodeTrainer(join(ROOT, "dist-test", "no-such-worker.mjs"));
    trainers.push(missing);
    await expect(missing.create(SPEC)).rejects.toThrow(/training worker (failed|exited)/);
  });

  it("terminate() rejects pending calls even where the worker reports no death (a browser Worker)", async () => {
    // A browser Worker fires no event when terminated. Stand-in: a channel nobody answers, and a
    // connection that never hears of a death.
    const { port1, port2 } = new MessageChannel();
    const t = new Trainer({
      endpoint: nodeEndpoint(port1),
      onDeath: () => undefined,
      terminate: () => {
        port1.close();
        port2.close();
      },
    });
    const pending = [
      t.create(SPEC),
      t.fit(train.x, train.y, { copy: true }),
      t.predict(test.x, { copy: true }),
    ];
    const rejected = pending.map((p) => expect(p).rejects.toThrow(/terminated/));
    await t.terminate();
    await Promise.all(rejected);
    await expect(t.export()).rejects.toThrow(/terminated/);
  });

  it("a cancel() made before the fit message reaches the worker cancels that fit (shared flag and message)", async () => {
    const g = globalThis as { crossOriginIsolated?: boolean };
    for (const shared of [true, false]) {
      // A page that is not cross-origin isolated has no SharedArrayBuffer: the message path.
      if (!shared) g.crossOriginIsolated = false;
      let t: Trainer;
      try {
        t = trainer();
      } finally {
        delete g.crossOriginIsolated;
      }
      expect(t.sharedCancel).toBe(shared);
      await t.create(SPEC, { seed: SEED });
      const run = t.fit(train.x, train.y, { epochs: 50, batchSize: 10, copy: true });
      t.cancel(); // the fit call is still awaiting its way to the worker
      const h = await run;
      expect(h.cancelled).toBe(true);
      // The shared flag is read before the first batch; a message arrives when fit first yields.
      if (shared) expect(h.batchesRun).toBeLessThanOrEqual(1);
      else expect(h.batchesRun).toBeLessThan(50 * 100);
      // A cancel with no fit on its way does not stop the next one.
      t.cancel();
      const again = await t.fit(train.x, train.y, { epochs: 1, batchSize: 100, copy: true });
      expect(again.cancelled).toBe(false);
    }
  });

  it("an array already transferred to the worker is refused, not sent into a call that never settles", async () => {
    const t = trainer();
    await t.create(SPEC, { seed: 1 });
    const q = test.x.slice(0, 784);
    expect((await t.predict(q)).length).toBe(10); // transfers q's buffer
    expect(q.length).toBe(0);
    await expect(t.predict(q)).rejects.toThrow(/already transferred to the worker/);
    const x = train.x.slice();
    const y = train.y.slice();
    await t.fit(x, y, { epochs: 1, batchSize: 100 });
    await expect(t.fit(x, y, { epochs: 2, batchSize: 100 })).rejects.toThrow(
      /x is empty, or its buffer was already transferred/,
    );
    // Validating on the training arrays themselves: one buffer, transferred once.
    const x2 = train.x.slice();
    const y2 = train.y.slice();
    const events: string[] = [];
    const h = await t.fit(x2, y2, {
      epochs: 3,
      batchSize: 100,
      validationData: [x2, y2],
      onProgress: (e) => events.push(e.type),
    });
    expect(h.epochs.at(-1)!.valAccuracy).toBeGreaterThan(0);
    expect(events).toContain("epoch");
  });
});
