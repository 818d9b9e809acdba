// The coordinator of data-parallel training (src/dataParallel.ts), the same for Web Workers and
// Node worker_threads: it checks the inputs, lays out the shared buffers or the message channels,
// starts one replica per worker (worker/parallelReplica.ts), shuffles every epoch with the stream
// fit() uses for the seed, and returns replica 0's model, which every replica shares bit for bit.
// It never touches a gradient: the replicas exchange those among themselves.
//
// Platform-neutral (no Node built-ins): fitParallel below runs it on browser Web Workers;
// src/node/fitParallel.ts runs it on worker_threads.
//
// Failures: a replica that throws tells the others (an abort flag in shared memory, an abort
// message over the channels), so they stop with a ReplicaAbortedError instead of waiting for it;
// the coordinator reports the failing replica's own error. A worker that dies outright (a failed
// load, process.exit) rejects the run with a WorkerDiedError, and every worker is terminated.
import * as Comlink from "comlink";
import { loadCheckpoint } from "../src/checkpoint.js";
import {
  defaultTransport,
  paramFloats,
  sharedMemoryAvailable,
  stateFloats,
  type ParallelTransport,
  type ReplicaEpoch,
} from "../src/dataParallel.js";
import { makeMessageMesh } from "../src/dataParallelMessage.js";
import { abortSharedRun, makeSharedLayout, requestSharedStop } from "../src/dataParallelShared.js";
import { Kernels } from "../src/kernels.js";
import { Model, ModelError, type EpochProgress, type ModelOptions } from "../src/model.js";
import type { ModelSpec } from "../src/spec.js";
import { prepareLabels, type EpochLog, type Labels } from "../src/train.js";
import { WorkerDiedError, type KernelSource, type WorkerConnection } from "./client.js";
import type { ReplicaApi, ReplicaLink, ReplicaSetup } from "./parallelReplica.js";

export type { ParallelTransport } from "../src/dataParallel.js";
export {
  defaultTransport,
  sharedMemoryAvailable,
  ReplicaAbortedError,
} from "../src/dataParallel.js";
export { WorkerDiedError } from "./client.js";

export interface DataParallelOptions extends ModelOptions {
  /** Replicas, one worker each. */
  workers: number;
  epochs: number;
  /** The global batch, split into `workers` contiguous shards (default 32). */
  batchSize?: number;
  /**
   * How gradients travel: "shared" (a SharedArrayBuffer and Atomics) or "message" (postMessage
   * between the workers). Default: "shared" where SharedArrayBuffer exists and the page is not
   * known to lack cross-origin isolation, "message" otherwise. Both give the same bits.
   */
  transport?: ParallelTransport;
  /**
   * Shared transport: how long (ms) a replica that reaches the per-step barrier first busy-waits
   * for the others before it sleeps in Atomics.wait (a sleeping worker idles its core; on a VM the
   * wake costs more than leaving a spin: the cnn on 2 vCPUs trained 3-5% faster spinning). Default:
   * 50 when there are no more workers than cores (DataParallelHost.cores), else 0 (a spinning
   * replica would take a core from one that still computes); 0 still spins a few hundred
   * microseconds. The message transport always waits in the event loop. No effect on the bits.
   */
  spinWaitMs?: number;
  onEpochEnd?: (log: EpochLog) => void | Promise<void>;
  /**
   * Aborting stops the run after the step in flight (the replicas agree on which: each publishes
   * what it saw with its gradients) and resolves with `cancelled: true` and the model after that
   * step. A stop inside an epoch leaves `model.epochProgress` (kept in the checkpoint), so fit()
   * with the same data and batch size continues that epoch in one thread.
   */
  signal?: AbortSignal;
}

/** Every option trainDataParallel reads (fit options it lacks, e.g. validationData, are refused). */
const PARALLEL_OPTIONS = new Set([
  "workers",
  "epochs",
  "batchSize",
  "transport",
  "spinWaitMs",
  "onEpochEnd",
  "signal",
  "seed",
  "optimizer",
  "loss",
  "strict",
]);

export interface DataParallelResult {
  /** Replica 0's model (every replica holds the same bits), with its own kernel instance. */
  model: Model;
  history: EpochLog[];
  /** Whether every replica ended with the same weights and statistics (a CRC-32 of each). */
  replicasIdentical: boolean;
  transport: ParallelTransport;
  /** The trained model as checkpoint bytes (what `model` was loaded from). */
  checkpoint: Uint8Array;
  /** The signal stopped the run (after `history.length` whole epochs and, inside the next one, `model.epochProgress.batch` batches). */
  cancelled: boolean;
}

/** What the coordinator needs from a platform. */
export interface DataParallelHost {
  /** A fresh kernel instance (own memory) for a model on the coordinator's thread. */
  kernels(): Kernels | Promise<Kernels>;
  /** Starts the worker of replica `rank`. */
  spawn(rank: number): WorkerConnection;
  /** Sent to every replica with init (browsers); Node replicas load build/edgenn.wasm themselves. */
  kernelModule?: WebAssembly.Module;
  /** Logical cores the workers can run on (sets the spinWaitMs default; unknown: no spinning). */
  cores?: number;
}

/** spinWaitMs when the caller gives none and the workers fit on the cores. */
export const DEFAULT_SPIN_WAIT_MS = 50;

/**
 * How long the coordinator waits for a failing replica's own error once another replica has
 * reported that it stopped because of it (the two messages come from different workers, in no
 * fixed order).
 */
const ROOT_CAUSE_GRACE_MS = 2000;

/**
 * Every replica's result, in rank order. The first failure rejects, except that a replica which
 * only stopped because another failed (ReplicaAbortedError) gives way to that replica's own error.
 */
function allReplicas<T>(calls: Promise<T>[], died: Promise<never>): Promise<T[]> {
  return new Promise<T[]>((resolve, reject) => {
    const results = new Array<T>(calls.length);
    let pending = calls.length;
    let stopped: unknown;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      reject(e);
    };
    const done = () => {
      if (--pending > 0) return;
      if (stopped !== undefined) fail(stopped);
      else if (!settled) {
        settled = true;
        resolve(results);
      }
    };
    died.catch(fail);
    calls.forEach((call, i) =>
      call.then(
        (value) => {
          results[i] = value;
          done();
        },
        (e: unknown) => {
          if ((e as Error | undefined)?.name !== "ReplicaAbortedError") return fail(e);
          stopped ??= e;
          timer ??= setTimeout(() => fail(stopped), ROOT_CAUSE_GRACE_MS);
          done();
        },
      ),
    );
  });
}

/** Data-parallel training on workers the host starts; see fitParallel for browsers. */
export async function trainDataParallel(
  spec: ModelSpec,
  x: Float32Array,
  y: Labels,
  options: DataParallelOptions,
  host: DataParallelHost,
): Promise<DataParallelResult> {
  const {
    workers: world,
    epochs,
    batchSize,
    transport: asked,
    spinWaitMs,
    onEpochEnd,
    signal,
    ...modelOptions
  } = options;
  const unknown = Object.keys(options).filter((k) => !PARALLEL_OPTIONS.has(k));
  if (unknown.length)
    throw new ModelError(
      `data-parallel training does not support ${unknown.join(", ")} (it takes ${[...PARALLEL_OPTIONS].join(", ")}); evaluate the returned model for validation figures`,
    );
  if (!Number.isInteger(world) || world < 1)
    throw new ModelError(`workers must be a positive integer, got ${world}`);
  if (!Number.isInteger(epochs) || epochs < 0)
    throw new ModelError(`epochs must be a non-negative integer, got ${epochs}`);
  if (spinWaitMs !== undefined && !(Number.isFinite(spinWaitMs) && spinWaitMs >= 0))
    throw new ModelError(`spinWaitMs must be a finite number >= 0, got ${spinWaitMs}`);
  const spinMs =
    spinWaitMs ?? (host.cores !== undefined && world <= host.cores ? DEFAULT_SPIN_WAIT_MS : 0);
  const transport = asked ?? defaultTransport();
  if (transport !== "shared" && transport !== "message")
    throw new ModelError(`transport must be "shared" or "message", got ${JSON.stringify(asked)}`);
  if (transport === "shared" && !sharedMemoryAvailable())
    throw new ModelError(
      'transport "shared" needs a SharedArrayBuffer the workers can see, which a browser page only has when it is cross-origin isolated (served with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp); use transport "message" or leave transport unset',
    );

  const probe = new Model(await host.kernels(), spec, modelOptions);
  const N = probe.checkInputs(x, "x");
  if (N === 0) throw new ModelError("data-parallel training needs at least one sample");
  const labels = prepareLabels(probe, y, N);
  if (!labels.sparse || probe.loss !== "sparseCategoricalCrossentropy")
    throw new ModelError(
      "data-parallel training takes integer class labels (sparse cross-entropy), one per sample",
    );
  const labelData = labels.data as Int32Array;
  const B = Math.min(batchSize ?? 32, N);
  if (!Number.isInteger(B) || B < 1)
    throw new ModelError(`batchSize must be a positive integer, got ${batchSize}`);
  // Each replica normalises with its own shard's statistics: one row has zero variance, and
  // BatchNorm would then output beta for every sample and learn nothing.
  const minShard = Math.floor(B / world);
  if (probe.resolved.layers.some((l) => l.spec.type === "batchNorm") && minShard < 2)
    throw new ModelError(
      `batch size ${B} over ${world} workers gives shards of ${minShard} row${minShard === 1 ? "" : "s"}; BatchNorm normalises each shard with its own statistics and needs at least 2 rows per shard: use a batch size of at least ${2 * world} or fewer workers`,
    );
  const P = paramFloats(probe);
  const S = stateFloats(probe);
  const layout =
    transport === "shared"
      ? makeSharedLayout(world, spinMs, x, labelData, probe.inputSize, P, S)
      : undefined;
  const mesh = transport === "message" ? makeMessageMesh(world) : undefined;
  // Structured clone copies a view's whole buffer: send only the rows (once per replica).
  const xRows = x.byteOffset === 0 && x.byteLength === x.buffer.byteLength ? x : x.slice();

  const setupFor = (rank: number): ReplicaSetup => {
    const link: ReplicaLink = layout
      ? { kind: "shared", layout }
      : {
          kind: "message",
          ports: mesh![rank],
          paramFloats: P,
          stateFloats: S,
          x: xRows,
          y: labelData,
        };
    const setup: ReplicaSetup = {
      spec,
      options: modelOptions,
      rank,
      batchSize: B,
      link,
      kernels: host.kernelModule,
    };
    if (!mesh) return setup;
    return Comlink.transfer(
      setup,
      mesh[rank].filter((p): p is MessagePort => p !== null),
    );
  };

  let finished = false;
  let reportDeath!: (e: Error) => void;
  const died = new Promise<never>((_, reject) => (reportDeath = reject));
  died.catch(() => undefined); // observed through allReplicas only
  const connections: WorkerConnection[] = [];
  const replicas: Comlink.Remote<ReplicaApi>[] = [];
  let stopOnAbort: (() => void) | undefined;
  try {
    for (let rank = 0; rank < world; rank++) {
      const connection = host.spawn(rank);
      connections.push(connection);
      connection.onDeath((e) => {
        if (finished) return;
        if (layout) abortSharedRun(layout, rank);
        reportDeath(
          new WorkerDiedError(
            `edgenn: data-parallel replica ${rank} of ${world} died: ${e.message}`,
          ),
        );
      });
      replicas.push(Comlink.wrap<ReplicaApi>(connection.endpoint));
    }
    await allReplicas(
      replicas.map((r, rank) => r.init(setupFor(rank))),
      died,
    );

    // The coordinator shuffles with the probe model's stream: the one fit() uses for this seed.
    const shuffle = probe.shuffleRng;
    const perm = layout ? new Int32Array(layout.perm) : new Int32Array(N);
    const history: EpochLog[] = [];
    let cancelled = false;
    let progress: EpochProgress | undefined;
    const batches = Math.ceil(N / B);
    stopOnAbort = () => {
      if (layout) requestSharedStop(layout);
      else for (const r of replicas) r.requestStop().catch(() => undefined);
    };
    signal?.addEventListener("abort", stopOnAbort);
    for (let epoch = 0; epoch < epochs; epoch++) {
      // A cancel between epochs stops before the next permutation is drawn (as in fit()).
      if (signal?.aborted) {
        cancelled = true;
        break;
      }
      const epochRng = shuffle.getState();
      for (let i = 0; i < N; i++) perm[i] = i;
      shuffle.shuffle(perm);
      const t0 = performance.now();
      const results: ReplicaEpoch[] = await allReplicas(
        replicas.map((r) => r.runEpoch(layout ? undefined : perm)),
        died,
      );
      if (results[0].batches < batches) {
        progress = {
          shuffleRng: epochRng,
          batch: results[0].batches,
          samples: N,
          batchSize: B,
          shuffle: true,
          lossSum: results[0].lossSum,
          correct: results[0].correct,
        };
        cancelled = true;
        break;
      }
      const seconds = (performance.now() - t0) / 1000;
      const log: EpochLog = {
        epoch,
        loss: results[0].loss,
        accuracy: results[0].accuracy,
        seconds,
        samplesPerSecond: N / seconds,
      };
      history.push(log);
      await onEpochEnd?.(log);
    }
    const digests = await allReplicas(
      replicas.map((r) => r.weightsDigest()),
      died,
    );
    const [checkpoint] = await allReplicas(
      [replicas[0].checkpoint(shuffle.getState(), progress)],
      died,
    );
    await allReplicas(
      replicas.map((r) => r.close()),
      died,
    );
    return {
      model: loadCheckpoint(checkpoint, await host.kernels()),
      history,
      replicasIdentical: digests.every((d) => d === digests[0]),
      transport,
      checkpoint,
      cancelled,
    };
  } finally {
    finished = true;
    if (stopOnAbort) signal?.removeEventListener("abort", stopOnAbort);
    for (const r of replicas) r[Comlink.releaseProxy]();
    await Promise.all(connections.map((c) => c.terminate()));
  }
}

export interface WebParallelFitOptions extends DataParallelOptions {
  /** The kernel module: its URL (compiled while it streams in), its bytes, or the compiled module. */
  kernels: KernelSource;
  /**
   * Starts one replica: a module Web Worker running worker/parallelWebWorker.ts, e.g.
   * `() => new Worker(new URL("./replica.worker.ts", import.meta.url), { type: "module" })` where
   * replica.worker.ts is `import "edgenn/worker/parallel/entry"`.
   */
  spawnWorker: () => Worker;
}

/**
 * Data-parallel training on `workers` browser Web Workers. Over a SharedArrayBuffer when the page
 * is cross-origin isolated, by postMessage otherwise (or as `transport` says); the same seed gives
 * the same bits either way, and the same as Node's fitParallel with the same kernel build.
 */
export async function fitParallel(
  spec: ModelSpec,
  x: Float32Array,
  y: Labels,
  options: WebParallelFitOptions,
): Promise<DataParallelResult> {
  const { kernels: source, spawnWorker, ...rest } = options;
  const module =
    source instanceof WebAssembly.Module
      ? source
      : typeof source === "string"
        ? await Kernels.compileStreaming(source)
        : await WebAssembly.compile(source as BufferSource);
  return trainDataParallel(spec, x, y, rest, {
    kernels: () => Kernels.load(module),
    kernelModule: module,
    cores: globalThis.navigator?.hardwareConcurrency,
    spawn: () => webWorkerConnection(spawnWorker()),
  });
}

function webWorkerConnection(worker: Worker): WorkerConnection {
  return {
    endpoint: worker,
    onDeath(callback) {
      worker.addEventListener("error", (event) => {
        event.preventDefault();
        callback(new WorkerDiedError(event.message || "the worker failed to load or threw"));
      });
      worker.addEventListener("messageerror", () =>
        callback(new WorkerDiedError("the worker sent a message that could not be read")),
      );
    },
    terminate: () => worker.terminate(),
  };
}
