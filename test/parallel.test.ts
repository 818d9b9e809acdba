// Data-parallel training over worker_threads, over both transports (a SharedArrayBuffer, or
// postMessage between the workers): replicas stay bit-identical; without BN and dropout N workers
// follow the 1-worker run up to float rounding; 1 worker equals plain fit() exactly; the message
// transport gives the same bits as the shared one; a failing replica rejects the run, never hangs.
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { buildNodeWorker, ROOT } from "../scripts/build-web.mjs";
import { saveCheckpoint } from "../src/checkpoint.js";
import { paramFloats, Replica, type ReplicaTransport } from "../src/dataParallel.js";
import { MessageTransport } from "../src/dataParallelMessage.js";
import { makeSharedLayout, requestSharedStop, SharedTransport } from "../src/dataParallelShared.js";
import type { Dataset } from "../src/dataset.js";
import { Model } from "../src/model.js";
import { fitParallel, type ParallelFitOptions } from "../src/node/fitParallel.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import type { ModelSpec } from "../src/spec.js";
import { evaluate, fit } from "../src/train.js";

// The replica entry bundled from source (the tests do not depend on a prior `npm run build`), and
// two bundles of a replica that fails on purpose.
let workerScript: string;
const faultyScripts: Record<"throw" | "exit", string> = { throw: "", exit: "" };
let train: Dataset;
let test: Dataset;
beforeAll(async () => {
  const out = join(ROOT, "dist-test");
  [workerScript, faultyScripts.throw, faultyScripts.exit] = await Promise.all([
    buildNodeWorker({
      entry: join(ROOT, "worker", "parallelNodeWorker.ts"),
      outfile: join(out, "parallelNodeWorker.mjs"),
    }),
    ...(["throw", "exit"] as const).map((mode) =>
      buildNodeWorker({
        entry: join(ROOT, "test", "faultyReplicaWorker.ts"),
        outfile: join(out, `faultyReplicaWorker-${mode}.mjs`),
        define: { FAULT_MODE: JSON.stringify(mode) },
      }),
    ),
  ]);
  ({ train, test } = await readIdxDataset(defaultDataDir()));
});

const run = (spec: ModelSpec, x: Float32Array, y: Int32Array, options: ParallelFitOptions) =>
  fitParallel(spec, x, y, { workerScript, ...options });

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
    const one = await run(plain, x, y, { ...opts, workers: 1, epochs: 2, batchSize: 50 });
    expect(one.transport).toBe("shared"); // Node's default
    expect(maxDiff(one.model, direct)).toBe(0);
    const three = await run(plain, x, y, { ...opts, workers: 3, epochs: 2, batchSize: 50 });
    expect(three.replicasIdentical).toBe(true);
    expect(maxDiff(three.model, direct)).toBeLessThan(1e-5);
    expect(three.history[1].loss).toBeCloseTo(one.history[1].loss, 4);
  });

  it("with BN (per-shard batch statistics) and dropout: replicas stay identical and the model learns", async () => {
    const n = 2000;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const r = await run(withBn, x, y, { seed: 1, workers: 2, epochs: 2, batchSize: 64 });
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

  it("how long replicas spin at the barrier changes no bit (spinning, sleeping)", async () => {
    const n = 600;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const opts = { seed: 2, workers: 2, epochs: 2, batchSize: 60 };
    // The default (spin up to 50 ms where the workers fit on the cores, else ~20k loads), none,
    // and a long one; one run at a time, so spinning replicas never take a core from the others.
    const runs = [];
    for (const spinWaitMs of [undefined, 0, 20])
      runs.push(await run(withBn, x, y, { ...opts, spinWaitMs }));
    for (const r of runs) expect(r.replicasIdentical).toBe(true);
    // Weights, BN moving statistics, optimizer state, step count: the whole checkpoint.
    for (const r of runs.slice(1))
      expect(Buffer.compare(Buffer.from(r.checkpoint), Buffer.from(runs[0].checkpoint))).toBe(0);
  });
});

describe("data-parallel training over messages (no SharedArrayBuffer)", () => {
  it("1 worker equals fit() bit for bit (BN, dropout): weights and the whole checkpoint", async () => {
    const n = 600;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const opts = { seed: 4, optimizer: { type: "adam" as const, learningRate: 0.002 } };
    const direct = new Model(loadKernels(), withBn, opts);
    const history = await fit(direct, x, y, { epochs: 2, batchSize: 50 });
    const one = await run(withBn, x, y, {
      ...opts,
      workers: 1,
      epochs: 2,
      batchSize: 50,
      transport: "message",
    });
    expect(one.transport).toBe("message");
    expect(maxDiff(one.model, direct)).toBe(0);
    expect(one.history.map((e) => e.loss)).toEqual(history.epochs.map((e) => e.loss));
    // Optimizer state, step and epoch counts, both RNG streams too: fit() resumes from either alike.
    expect(Buffer.compare(Buffer.from(one.checkpoint), Buffer.from(saveCheckpoint(direct)))).toBe(
      0,
    );
  });

  it.each([2, 3])(
    "%i workers (BN, dropout, a last batch of one row) give the shared transport's bits",
    async (workers) => {
      // 15 batches of 64 and one of a single row: with 2-3 workers some shards of it are empty.
      const n = 15 * 64 + 1;
      const x = train.x.slice(0, n * 784);
      const y = train.y.slice(0, n);
      const opts = { seed: 9, workers, epochs: 2, batchSize: 64 };
      const shared = await run(withBn, x, y, { ...opts, transport: "shared" });
      const message = await run(withBn, x, y, { ...opts, transport: "message" });
      expect(shared.transport).toBe("shared");
      expect(message.transport).toBe("message");
      expect(shared.replicasIdentical).toBe(true);
      expect(message.replicasIdentical).toBe(true);
      // Weights, BN moving statistics, optimizer state, step count: the whole checkpoint.
      expect(Buffer.compare(Buffer.from(message.checkpoint), Buffer.from(shared.checkpoint))).toBe(
        0,
      );
      expect(message.history.map((e) => [e.loss, e.accuracy])).toEqual(
        shared.history.map((e) => [e.loss, e.accuracy]),
      );
      expect(message.history[1].loss).toBeLessThan(message.history[0].loss);
      expect(maxDiff(message.model, shared.model)).toBe(0);
    },
  );
});

describe("options, BatchNorm shards and cancelling", () => {
  it("moving statistics count only the steps a replica's shard had rows", async () => {
    // BN first: its batch statistics are those of the raw inputs, whatever the training does.
    // Every row is the same, so every shard's mean is that row and its variance 0: after k updates
    // from (0, 1), mean = row * (1 - m^k) and variance = m^k. 65 rows, batch 64, 2 workers: the
    // last batch (1 row) gives replica 0 a second update and replica 1 none.
    const m = 0.5;
    const spec: ModelSpec = {
      inputShape: [4],
      layers: [
        { type: "batchNorm", momentum: m },
        { type: "dense", units: 3 },
        { type: "softmax" },
      ],
    };
    const row = [0.25, -1, 2, 0.5];
    const n = 65;
    const x = Float32Array.from({ length: n * 4 }, (_, i) => row[i % 4]);
    const y = Int32Array.from({ length: n }, (_, i) => i % 3);
    const r = await run(spec, x, y, { seed: 2, workers: 2, epochs: 1, batchSize: 64 });
    const w = r.model.getWeights();
    // Weighted by updates (2 and 1), not 1:1.
    const mean = (k: number) => 1 - m ** k;
    const expectMean = row.map((v) => (v * (2 * mean(2) + 1 * mean(1))) / 3);
    const expectVar = (2 * m ** 2 + 1 * m) / 3;
    const got = w.get("layers.0.movingMean")!;
    const gotVar = w.get("layers.0.movingVariance")!;
    for (let c = 0; c < 4; c++) {
      expect(got[c]).toBeCloseTo(expectMean[c], 6);
      expect(gotVar[c]).toBeCloseTo(expectVar, 6);
    }
  });

  it("refuses BN shards of fewer than 2 rows, and fit options it does not support", async () => {
    const x = train.x.slice(0, 100 * 784);
    const y = train.y.slice(0, 100);
    await expect(run(withBn, x, y, { workers: 2, epochs: 1, batchSize: 3 })).rejects.toThrow(
      "batch size 3 over 2 workers gives shards of 1 row; BatchNorm normalises each shard with its own statistics and needs at least 2 rows per shard",
    );
    // Without BN a 1-row shard is fine.
    expect((await run(plain, x, y, { workers: 2, epochs: 1, batchSize: 3 })).history).toHaveLength(
      1,
    );
    const extra = { validationData: [x, y], onBatchEnd: () => undefined };
    await expect(
      run(plain, x, y, { workers: 2, epochs: 1, ...(extra as object) } as ParallelFitOptions),
    ).rejects.toThrow("data-parallel training does not support validationData, onBatchEnd");
  });

  it("a signal aborted between epochs stops before the next one, with a usable model", async () => {
    const x = train.x.slice(0, 300 * 784);
    const y = train.y.slice(0, 300);
    const ac = new AbortController();
    const r = await run(withBn, x, y, {
      seed: 3,
      workers: 2,
      epochs: 50,
      batchSize: 32,
      signal: ac.signal,
      onEpochEnd: (log) => {
        if (log.epoch === 1) ac.abort();
      },
    });
    expect(r.cancelled).toBe(true);
    expect(r.history).toHaveLength(2);
    expect(r.replicasIdentical).toBe(true);
    expect(r.model.epoch).toBe(2);
    const e = evaluate(r.model, test.x.slice(0, 100 * 784), test.y.slice(0, 100));
    expect(Number.isFinite(e.loss)).toBe(true);
  });

  it("1 worker: a cancel inside an epoch, then fit() to the end, equals an uninterrupted fit() byte for byte", async () => {
    const n = 2000;
    const x = train.x.slice(0, n * 784);
    const y = train.y.slice(0, n);
    const B = 10;
    const direct = new Model(loadKernels(), withBn, { seed: 6 });
    await fit(direct, x, y, { epochs: 2, batchSize: B });
    for (const transport of ["shared", "message"] as const) {
      const ac = new AbortController();
      const r = await run(withBn, x, y, {
        seed: 6,
        workers: 1,
        epochs: 2,
        batchSize: B,
        transport,
        signal: ac.signal,
        // Aborted just after epoch 1 starts: the replica stops after a step of it.
        onEpochEnd: () => void setTimeout(() => ac.abort(), 0),
      });
      expect(r.cancelled).toBe(true);
      expect(r.history).toHaveLength(1);
      const progress = r.model.epochProgress!;
      expect(progress.batch).toBeGreaterThan(0);
      expect(progress.batch).toBeLessThan(n / B);
      expect(r.model.epoch).toBe(1);
      await fit(r.model, x, y, { epochs: 2, batchSize: B });
      expect(r.model.epochProgress).toBeUndefined();
      // Weights, BN statistics, optimizer state, step count, both RNG streams.
      expect(
        Buffer.compare(Buffer.from(saveCheckpoint(r.model)), Buffer.from(saveCheckpoint(direct))),
      ).toBe(0);
    }
  });

  it.each(["shared", "message"] as const)(
    "%s transport: a stop that arrives during a step's backward pass stops the replica after that step",
    async (kind) => {
      // One replica in this thread, so the stop can be raised at an exact point of step 3.
      const n = 100;
      const x = train.x.slice(0, n * 784);
      const y = train.y.slice(0, n);
      const probe = new Model(loadKernels(), plain, { seed: 1 });
      const P = paramFloats(probe);
      let transport: ReplicaTransport;
      let stop: () => void;
      if (kind === "shared") {
        const layout = makeSharedLayout(1, 0, x, y, 784, P, 0);
        transport = new SharedTransport(layout, 0);
        stop = () => requestSharedStop(layout);
      } else {
        const messages = new MessageTransport(0, P, 0, [null]);
        transport = messages;
        stop = () => messages.requestStop();
      }
      const replica = new Replica(loadKernels(), plain, { seed: 1 }, transport, 10, x, y);
      const backward = replica.model.backward.bind(replica.model);
      let step = 0;
      replica.model.backward = (...args) => {
        if (step++ === 3) stop();
        return backward(...args);
      };
      const epoch = await replica.runEpoch(Int32Array.from({ length: n }, (_, i) => i));
      expect(epoch.batches).toBe(4);
      expect(replica.model.step).toBe(4);
      expect(replica.model.epoch).toBe(0);
    },
  );

  it.each(["shared", "message"] as const)(
    "%s transport, 2 workers: a cancel stops the replicas after the same step inside the epoch",
    async (transport) => {
      const n = 2000;
      const x = train.x.slice(0, n * 784);
      const y = train.y.slice(0, n);
      const ac = new AbortController();
      const t0 = performance.now();
      let aborted = 0;
      const r = await run(withBn, x, y, {
        seed: 7,
        workers: 2,
        epochs: 1000,
        batchSize: 8,
        transport,
        signal: ac.signal,
        onEpochEnd: () =>
          void setTimeout(() => {
            aborted = performance.now();
            ac.abort();
          }, 0),
      });
      expect(r.cancelled).toBe(true);
      expect(r.history).toHaveLength(1);
      expect(r.replicasIdentical).toBe(true); // the same steps, the same averaged statistics
      const progress = r.model.epochProgress!;
      expect(progress.batch).toBeGreaterThan(0);
      expect(progress.batch).toBeLessThan(n / 8);
      // Promptly: an epoch here is 250 steps; the stop came within a few of them.
      expect(performance.now() - aborted).toBeLessThan(2000);
      expect(performance.now() - t0).toBeLessThan(30000);
      // The model goes on training in one thread from the step where the replicas stopped.
      await fit(r.model, x, y, { epochs: 2, batchSize: 8 });
      expect(r.model.epoch).toBe(2);
      expect(r.model.epochProgress).toBeUndefined();
    },
  );
});

describe("a failing replica stops the run", () => {
  const n = 400;
  const data = () => ({ x: train.x.slice(0, n * 784), y: train.y.slice(0, n) });

  it.each(["message", "shared"] as const)(
    "%s transport: a replica that throws rejects the run with its own error",
    async (transport) => {
      const { x, y } = data();
      const t0 = performance.now();
      await expect(
        fitParallel(withBn, x, y, {
          seed: 1,
          workers: 3,
          epochs: 2,
          batchSize: 32,
          transport,
          workerScript: faultyScripts.throw,
        }),
      ).rejects.toThrow("injected failure at step 3 of replica 1");
      // The others stopped at once (they did not wait out a timeout).
      expect(performance.now() - t0).toBeLessThan(10_000);
      // And the next run on fresh workers is unaffected.
      const ok = await run(withBn, x, y, {
        seed: 1,
        workers: 3,
        epochs: 1,
        batchSize: 32,
        transport,
      });
      expect(ok.replicasIdentical).toBe(true);
    },
  );

  it.each(["message", "shared"] as const)(
    "%s transport: a replica whose thread exits rejects the run with WorkerDiedError",
    async (transport) => {
      const { x, y } = data();
      const err = await fitParallel(withBn, x, y, {
        seed: 1,
        workers: 2,
        epochs: 2,
        batchSize: 32,
        transport,
        workerScript: faultyScripts.exit,
      }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.name).toBe("WorkerDiedError");
      expect(err?.message).toMatch(/replica 1 of 2 died: the thread exited \(code 3\)/);
    },
  );

  it("asks for labels, workers and a transport that exist", async () => {
    const { x, y } = data();
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY])
      await expect(run(plain, x, y, { workers: 2, epochs: 1, spinWaitMs: bad })).rejects.toThrow(
        `spinWaitMs must be a finite number >= 0, got ${bad}`,
      );
    await expect(run(plain, x, y, { workers: 0, epochs: 1 })).rejects.toThrow(
      "workers must be a positive integer, got 0",
    );
    await expect(
      run(plain, x, y, { workers: 2, epochs: 1, transport: "carrier-pigeon" as "message" }),
    ).rejects.toThrow('transport must be "shared" or "message"');
  });
});
