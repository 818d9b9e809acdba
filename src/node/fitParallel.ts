// Data-parallel training over N worker_threads (see src/dataParallel.ts for how gradients and
// BatchNorm statistics are handled). Returns an ordinary Model (replica 0's state, which every
// replica shares) and the per-epoch history.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { loadCheckpoint } from "../checkpoint.js";
import { makeSharedLayout, paramFloats, stateFloats } from "../dataParallel.js";
import { Model, type ModelOptions } from "../model.js";
import type { ModelSpec } from "../spec.js";
import { prepareLabels, type EpochLog, type Labels } from "../train.js";
import type { ReplicaApi } from "../../worker/parallelNodeWorker.js";
import { loadKernels } from "./loadKernels.js";
import { packageRoot } from "./readDataset.js";

export interface ParallelFitOptions extends ModelOptions {
  workers: number;
  epochs: number;
  batchSize?: number;
  onEpochEnd?: (log: EpochLog) => void;
  /** The compiled worker script (default: dist/worker/parallelNodeWorker.js of this package). */
  workerScript?: string;
}

export async function fitParallel(
  spec: ModelSpec,
  x: Float32Array,
  y: Labels,
  options: ParallelFitOptions,
): Promise<{ model: Model; history: EpochLog[]; replicasIdentical: boolean }> {
  const world = options.workers;
  if (!Number.isInteger(world) || world < 1)
    throw new Error(`workers must be a positive integer, got ${world}`);
  const { workers: _w, epochs, batchSize: _b, onEpochEnd, workerScript, ...modelOptions } = options;
  const probe = new Model(loadKernels(), spec, modelOptions);
  const N = probe.checkInputs(x, "x");
  const labels = prepareLabels(probe, y, N);
  if (!labels.sparse) throw new Error("data-parallel training takes integer class labels");
  const B = Math.min(options.batchSize ?? 32, N);
  const layout = makeSharedLayout(
    world,
    x,
    labels.data as Int32Array,
    probe.inputSize,
    paramFloats(probe),
    stateFloats(probe),
  );
  const script = workerScript ?? join(packageRoot(), "dist", "worker", "parallelNodeWorker.js");
  if (!existsSync(script))
    throw new Error(`edgenn: ${script} not found; run "npm run build" first`);
  const threads = Array.from({ length: world }, () => new Worker(script));
  const replicas = threads.map((t) => Comlink.wrap<ReplicaApi>(nodeEndpoint(t)));
  try {
    await Promise.all(replicas.map((r, rank) => r.init(layout, spec, modelOptions, rank, B)));
    // The coordinator shuffles with the probe model's stream: the one fit() uses for this seed.
    const shuffle = probe.shuffleRng;
    const perm = new Int32Array(layout.perm);
    const history: EpochLog[] = [];
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 0; i < N; i++) perm[i] = i;
      shuffle.shuffle(perm);
      const t0 = performance.now();
      const results = await Promise.all(replicas.map((r) => r.runEpoch()));
      const seconds = (performance.now() - t0) / 1000;
      const log: EpochLog = {
        epoch,
        loss: results[0].loss,
        accuracy: results[0].accuracy,
        seconds,
        samplesPerSecond: N / seconds,
      };
      history.push(log);
      onEpochEnd?.(log);
    }
    const digests = await Promise.all(replicas.map((r) => r.weightsDigest()));
    const bytes = await replicas[0].checkpoint();
    return {
      model: loadCheckpoint(bytes, loadKernels()),
      history,
      replicasIdentical: digests.every((d) => d === digests[0]),
    };
  } finally {
    for (const r of replicas) r[Comlink.releaseProxy]();
    await Promise.all(threads.map((t) => t.terminate()));
  }
}
