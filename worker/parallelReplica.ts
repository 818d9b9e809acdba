// One data-parallel replica (src/dataParallel.ts) as a comlink API: the worker side of
// worker/parallelClient.ts. Platform-neutral: worker/parallelNodeWorker.ts exposes it on a Node
// worker_threads Worker, worker/parallelWebWorker.ts on a browser Web Worker.
import * as Comlink from "comlink";
import { saveCheckpoint } from "../src/checkpoint.js";
import { crc32 } from "../src/crc32.js";
import { Replica, type ReplicaEpoch } from "../src/dataParallel.js";
import { MessageTransport, type PeerPort } from "../src/dataParallelMessage.js";
import { SharedTransport, type SharedLayout } from "../src/dataParallelShared.js";
import { Kernels } from "../src/kernels.js";
import type { EpochProgress, ModelOptions } from "../src/model.js";
import type { ModelSpec } from "../src/spec.js";
import { installErrorSerializer } from "./trainWorker.js";

/** How this replica meets the others. */
export type ReplicaLink =
  | { kind: "shared"; layout: SharedLayout }
  | {
      kind: "message";
      /** ports[peer]: this replica's end of its channel to that peer (null at its own rank). */
      ports: (MessagePort | null)[];
      paramFloats: number;
      stateFloats: number;
      /** [samples][inputSize] the training set, a copy for this replica. */
      x: Float32Array;
      /** [samples] class indices. */
      y: Int32Array;
    };

export interface ReplicaSetup {
  spec: ModelSpec;
  options: ModelOptions;
  rank: number;
  batchSize: number;
  link: ReplicaLink;
  /** The compiled kernel module (browsers); a Node replica loads build/edgenn.wasm without it. */
  kernels?: WebAssembly.Module;
}

export interface ReplicaApiOptions {
  /** The kernel module when init() brings none (Node: build/edgenn.wasm from disk). */
  defaultKernels?: () => WebAssembly.Module;
  /** Sees every replica once it is built (an embedder's hook; the tests inject faults with it). */
  onReplica?: (replica: Replica) => void;
}

export function createReplicaApi(options: ReplicaApiOptions = {}) {
  let replica: Replica | undefined;
  let sharedPerm: Int32Array | undefined;
  let messages: MessageTransport | undefined;

  const current = (): Replica => {
    if (!replica) throw new Error("edgenn: the replica was not initialised (call init first)");
    return replica;
  };

  return {
    async init(setup: ReplicaSetup): Promise<void> {
      const module = setup.kernels ?? options.defaultKernels?.();
      if (!module)
        throw new Error("edgenn: a browser replica needs the compiled kernel module in init()");
      const kernels = await Kernels.load(module);
      const { link } = setup;
      if (link.kind === "shared") {
        sharedPerm = new Int32Array(link.layout.perm);
        replica = new Replica(
          kernels,
          setup.spec,
          setup.options,
          new SharedTransport(link.layout, setup.rank),
          setup.batchSize,
          new Float32Array(link.layout.x),
          new Int32Array(link.layout.y),
        );
      } else {
        messages = new MessageTransport(
          setup.rank,
          link.paramFloats,
          link.stateFloats,
          link.ports as unknown as (PeerPort | null)[],
        );
        replica = new Replica(
          kernels,
          setup.spec,
          setup.options,
          messages,
          setup.batchSize,
          link.x,
          link.y,
        );
      }
      options.onReplica?.(replica);
    },

    /**
     * Trains one epoch. The permutation comes with the call over messages; over shared memory the
     * coordinator has written it into the shared buffer.
     */
    runEpoch(perm?: Int32Array): Promise<ReplicaEpoch> {
      const r = current();
      const order = perm ?? sharedPerm;
      if (!order) throw new Error("edgenn: runEpoch over messages needs the permutation");
      return r.runEpoch(order);
    },

    /**
     * Asks the replica to stop after the step in flight (message transport; over shared memory the
     * coordinator sets a word in the shared buffer instead).
     */
    requestStop(): void {
      messages?.requestStop();
    },

    /** CRC-32 of every weight and BN statistic: equal on all replicas when they agree bit for bit. */
    weightsDigest(): number {
      const m = current().model;
      let crc = 0;
      for (const t of [...m.params, ...m.state])
        crc = (crc * 31 + crc32(m.kernels.u8, t.ptr, t.ptr + t.size * 4)) >>> 0;
      return crc;
    },

    /**
     * The replica's model as checkpoint bytes, transferred back. `shuffleRng` is the coordinator's
     * shuffle state (replicas never shuffle) and `progress` where a stop ended an epoch early, so
     * fit() resumes from the checkpoint as it would after training (or a cancel) in one thread.
     */
    checkpoint(shuffleRng: number[], progress?: EpochProgress): Uint8Array {
      const m = current().model;
      m.shuffleRng.setState(shuffleRng);
      m.epochProgress = progress;
      const bytes = saveCheckpoint(m);
      return Comlink.transfer(bytes, [bytes.buffer]);
    },

    /** Closes the replica's channels (the run is over). */
    close(): void {
      messages?.close();
    },
  };
}

export type ReplicaApi = ReturnType<typeof createReplicaApi>;

/** Exposes a replica on an endpoint (a worker's global scope, a Node parentPort adapter). */
export function exposeReplica(endpoint: Comlink.Endpoint, options: ReplicaApiOptions = {}): void {
  // Errors cross with their own fields (TrainingDivergedError.epoch, ReplicaAbortedError.failedRank).
  installErrorSerializer();
  Comlink.expose(createReplicaApi(options), endpoint);
}
