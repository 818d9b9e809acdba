// Data-parallel training over N worker_threads (see src/dataParallel.ts for how gradients and
// BatchNorm statistics are handled, worker/parallelClient.ts for the coordinator). Returns an
// ordinary Model (replica 0's state, which every replica shares) and the per-epoch history.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import type { Labels } from "../train.js";
import type { ModelSpec } from "../spec.js";
import { WorkerDiedError } from "../../worker/client.js";
import {
  trainDataParallel,
  type DataParallelOptions,
  type DataParallelResult,
} from "../../worker/parallelClient.js";
import { loadKernels } from "./loadKernels.js";
import { packageRoot } from "./readDataset.js";

export type { ParallelTransport } from "../dataParallel.js";
export type { DataParallelResult } from "../../worker/parallelClient.js";

export interface ParallelFitOptions extends DataParallelOptions {
  /** The compiled worker script (default: dist/worker/parallelNodeWorker.js of this package). */
  workerScript?: string;
}

/**
 * Trains `spec` data-parallel on `workers` worker_threads. `transport` "shared" (the default in
 * Node) exchanges gradients through a SharedArrayBuffer, "message" by postMessage between the
 * threads (the browser fallback, here to test it); both give the same bits.
 */
export async function fitParallel(
  spec: ModelSpec,
  x: Float32Array,
  y: Labels,
  options: ParallelFitOptions,
): Promise<DataParallelResult> {
  const { workerScript, ...rest } = options;
  const script = workerScript ?? join(packageRoot(), "dist", "worker", "parallelNodeWorker.js");
  if (!existsSync(script))
    throw new Error(`edgenn: ${script} not found; run "npm run build" first`);
  return trainDataParallel(spec, x, y, rest, {
    kernels: loadKernels,
    cores: availableParallelism(),
    spawn(rank) {
      const thread = new Worker(script, { name: `edgenn-replica-${rank}` });
      return {
        endpoint: nodeEndpoint(thread),
        onDeath(callback) {
          thread.on("error", (e: Error) => callback(new WorkerDiedError(e.message)));
          thread.on("exit", (code: number) =>
            callback(new WorkerDiedError(`the thread exited (code ${code})`)),
          );
        },
        terminate: () => thread.terminate(),
      };
    },
  });
}
