// Node worker_threads entry of one data-parallel replica (src/dataParallel.ts), driven through
// comlink by src/node/fitParallel.ts.
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { saveCheckpoint } from "../src/checkpoint.js";
import { crc32 } from "../src/crc32.js";
import { Replica, type SharedLayout } from "../src/dataParallel.js";
import type { ModelOptions } from "../src/model.js";
import { loadKernels } from "../src/node/loadKernels.js";
import type { ModelSpec } from "../src/spec.js";

if (!parentPort) throw new Error("edgenn: parallelNodeWorker must run in a worker_threads Worker");

let replica: Replica | undefined;

const api = {
  init(
    layout: SharedLayout,
    spec: ModelSpec,
    options: ModelOptions,
    rank: number,
    batchSize: number,
  ): void {
    replica = new Replica(loadKernels(), spec, options, rank, layout, batchSize);
  },
  runEpoch() {
    if (!replica) throw new Error("replica not initialised");
    return replica.runEpoch();
  },
  /** CRC-32 of every weight and BN statistic: equal on all replicas when they agree bit for bit. */
  weightsDigest(): number {
    if (!replica) throw new Error("replica not initialised");
    const m = replica.model;
    let crc = 0;
    for (const t of [...m.params, ...m.state])
      crc = (crc * 31 + crc32(m.kernels.u8, t.ptr, t.ptr + t.size * 4)) >>> 0;
    return crc;
  },
  checkpoint(): Uint8Array {
    if (!replica) throw new Error("replica not initialised");
    const bytes = saveCheckpoint(replica.model);
    return Comlink.transfer(bytes, [bytes.buffer]);
  },
};

export type ReplicaApi = typeof api;

Comlink.expose(api, nodeEndpoint(parentPort));
