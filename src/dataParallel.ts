// Data-parallel training: N replicas of one model, each in its own worker with its own kernel
// memory, train on disjoint shards of every batch. After each backward pass the replicas exchange
// gradients and every replica sums them in the same fixed rank order with the same WASM kernels,
// so all replicas apply the identical update and their weights stay bit-identical.
//
// Two transports carry the gradients; the arithmetic is the same code for both (Replica below),
// so a run gives the same bits over either:
// - "shared" (src/dataParallelShared.ts): double-buffered slots in a SharedArrayBuffer and a
//   generation barrier on Atomics. Node, and browser pages that are cross-origin isolated.
// - "message" (src/dataParallelMessage.ts): every replica posts its gradients to every other over
//   a direct MessageChannel (transferred ArrayBuffers; no SharedArrayBuffer, no Atomics). Browser
//   pages without COOP/COEP headers, or anywhere by choice.
//
// BatchNorm: each replica normalises with its own shard's batch statistics (as multi-GPU
// frameworks do without SyncBatchNorm), so N-worker training is not the same function as 1-worker
// training when the model has BN; gradients are averaged exactly (weighted by shard size). The
// moving statistics are averaged across replicas at the end of every epoch and at a stop inside one
// (weighted by how many steps each replica's shard had rows), so every replica (and the exported
// model) holds the same ones. A batch whose shards would have fewer than 2 rows is refused for BN
// models. Dropout masks differ per replica (seeded by rank; replica 0 draws fit()'s stream, so one
// worker is fit() bit for bit).
// Without BN and dropout, N workers compute the same gradients as one up to float rounding.
//
// Platform-neutral: runs in Node worker_threads and in Web Workers. The coordinator
// (worker/parallelClient.ts) shuffles and starts epochs; it never touches a gradient.
import type { Kernels } from "./kernels.js";
import { Model, type ModelOptions } from "./model.js";
import type { ModelSpec } from "./spec.js";
import { TrainingDivergedError } from "./train.js";

export type ParallelTransport = "shared" | "message";

/** Whether this context can use the "shared" transport (SharedArrayBuffer that workers can see). */
export function sharedMemoryAvailable(): boolean {
  // Node has no crossOriginIsolated (undefined); a browser page has it, true only with COOP + COEP.
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  return typeof SharedArrayBuffer !== "undefined" && isolated !== false;
}

/** "shared" where shared memory works, "message" otherwise. */
export function defaultTransport(): ParallelTransport {
  return sharedMemoryAvailable() ? "shared" : "message";
}

/**
 * A replica stopped because another one failed. The coordinator reports the failing replica's own
 * error instead whenever it arrives.
 */
export class ReplicaAbortedError extends Error {
  override name = "ReplicaAbortedError";
  constructor(
    message: string,
    readonly failedRank: number,
  ) {
    super(message);
  }
}

export function paramFloats(model: Model): number {
  return model.block.bytes >> 2;
}

export function stateFloats(model: Model): number {
  return model.state.reduce((a, s) => a + s.size, 0);
}

/** Rows of batch row-range [0, b) that replica `rank` takes: a contiguous slice. */
export function shardOf(b: number, rank: number, world: number): { offset: number; rows: number } {
  const base = Math.floor(b / world);
  const extra = b % world;
  return { offset: rank * base + Math.min(rank, extra), rows: base + (rank < extra ? 1 : 0) };
}

/**
 * How gradients and moving statistics travel between replicas. A transport moves bytes and waits;
 * it never adds: Replica does every sum, in rank order, so both transports give the same bits.
 */
export interface ReplicaTransport {
  readonly rank: number;
  readonly world: number;
  /** Floats in a gradient slot (the model's parameter block) and in a state slot. */
  readonly paramFloats: number;
  readonly stateFloats: number;
  /**
   * Publishes this replica's gradients for batch `step` (null: an empty shard, read as zeros) with
   * its shard's summed loss and correct count and whether it saw a stop request, and waits until
   * every replica's are readable. Synchronous over shared memory, a promise over messages. With one
   * replica the gradients are not copied anywhere (nobody reads them).
   */
  exchangeStep(
    step: number,
    grads: Float32Array | null,
    lossSum: number,
    correct: number,
    stop: boolean,
  ): void | Promise<void>;
  /** Whether the coordinator asked this replica to stop (the run's signal aborted). */
  stopRequested(): boolean;
  /** The stop request comes as a message: the replica must let its event loop run now and then. */
  readonly stopArrivesByMessage: boolean;
  /** Whether replica r saw a stop request when it published `step`. */
  stopAsked(step: number, r: number): boolean;
  /** Replica r's gradients for `step`; valid from exchangeStep(step) until the next exchange. */
  gradients(step: number, r: number): Float32Array;
  lossSum(step: number, r: number): number;
  correct(step: number, r: number): number;
  /**
   * Publishes this replica's moving statistics (stateFloats values) and calls `use` with every
   * replica's, in rank order; returns once no replica needs this one's slot any more.
   */
  exchangeState(state: Float32Array, use: (slots: Float32Array[]) => void): void | Promise<void>;
  /** Tells the other replicas that this one failed, so none of them waits for it. */
  abort(error: unknown): void;
}

export interface ReplicaEpoch {
  loss: number;
  accuracy: number;
  seconds: number;
  /**
   * Batches trained: all of the epoch's, or fewer when a stop request ended it early (the
   * replicas agree on the step: each publishes the request it saw with its gradients, and all
   * stop after the first step any of them saw one).
   */
  batches: number;
  /** Sample-weighted loss sum and correct predictions over those batches (all shards). */
  lossSum: number;
  correct: number;
}

/** A message-transport replica yields to its event loop at least this often, so a stop arrives. */
const YIELD_EVERY_MS = 20;

/**
 * Lets the event loop deliver queued messages. A MessageChannel round trip, not setTimeout(0),
 * which browsers clamp to 4 ms once timers nest.
 */
function macrotask(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

export class Replica {
  readonly model: Model;
  readonly rank: number;
  readonly world: number;
  private readonly inputSize: number;
  private readonly samples: number;
  private readonly dataX: number;
  private readonly dataY: number;
  /** [paramFloats] staging area in kernel memory for another replica's gradients. */
  private readonly incoming: number;
  /** [stateFloats] this replica's moving statistics, packed for the exchange. */
  private readonly packedState: Float32Array;

  constructor(
    kernels: Kernels,
    spec: ModelSpec,
    options: ModelOptions,
    readonly transport: ReplicaTransport,
    readonly batchSize: number,
    /** The whole training set (every replica holds it; the permutation picks each shard's rows). */
    x: Float32Array,
    y: Int32Array,
  ) {
    const { rank, world } = transport;
    this.rank = rank;
    this.world = world;
    // Same seed on every replica: identical initial weights. Dropout differs per rank; replica 0
    // keeps the seed's own dropout stream, the one fit() draws, so one worker equals fit().
    this.model = new Model(kernels, spec, options);
    if (rank > 0) this.model.reseed(((options.seed ?? 0) + 0x9e3779b9 * rank) >>> 0);
    if (this.model.loss !== "sparseCategoricalCrossentropy")
      throw new Error(
        "data-parallel training supports integer class labels (sparse cross-entropy)",
      );
    if (
      paramFloats(this.model) !== transport.paramFloats ||
      stateFloats(this.model) !== transport.stateFloats
    )
      throw new Error("replica model does not match the transport's slot sizes");
    this.inputSize = this.model.inputSize;
    this.samples = y.length;
    if (x.length !== this.samples * this.inputSize)
      throw new Error(
        `replica data: ${x.length} input values for ${this.samples} labels of ${this.inputSize} values each`,
      );
    // Plan every shard size, then copy the data set above the largest plan, once.
    const B = batchSize;
    const N = this.samples;
    const shardSizes: number[] = [];
    for (const b of new Set([B, N % B || B]))
      for (let r = 0; r < world; r++) {
        const rows = shardOf(b, r, world).rows;
        if (rows > 0) shardSizes.push(rows);
      }
    const placed = this.model.placeData(shardSizes, x, y, transport.paramFloats * 4);
    this.dataX = placed.x;
    this.dataY = placed.y;
    this.incoming = placed.extra;
    this.packedState = new Float32Array(transport.stateFloats);
  }

  /**
   * Runs one epoch over `perm` (the coordinator's shuffle, the same on every replica); all replicas
   * call this together. A failure tells the others before it propagates, so none of them hangs.
   */
  async runEpoch(perm: Int32Array): Promise<ReplicaEpoch> {
    try {
      return await this.epochSteps(perm);
    } catch (e) {
      // A replica stopped by another one's failure has nothing new to tell.
      if (!(e instanceof ReplicaAbortedError)) this.transport.abort(e);
      throw e;
    }
  }

  private async epochSteps(perm: Int32Array): Promise<ReplicaEpoch> {
    const m = this.model;
    const k = m.kernels;
    const abi = k.abi;
    const t = this.transport;
    const { world, rank, inputSize, samples: N } = this;
    if (perm.length !== N)
      throw new Error(`permutation of ${perm.length} rows for a data set of ${N} rows`);
    const P = t.paramFloats;
    const B = this.batchSize;
    const batches = Math.ceil(N / B);
    const correct = new Int32Array(1);
    const gradStart = (m.block.ptr + m.block.gradDelta) >>> 2;
    // Kernel memory does not grow during an epoch, so this view stays valid.
    const myGrads = k.f32.subarray(gradStart, gradStart + P);
    const t0 = performance.now();
    let lossSum = 0;
    let right = 0;
    let done = batches;
    let lastYield = t0;
    for (let bi = 0; bi < batches; bi++) {
      const s = bi * B;
      const b = Math.min(B, N - s);
      const { offset, rows } = shardOf(b, rank, world);
      let exchanged: void | Promise<void>;
      if (rows > 0) {
        const p = m.plan(rows);
        const i32 = k.i32;
        for (let j = 0; j < rows; j++) i32[(p.idx >>> 2) + j] = perm[s + offset + j];
        abi.gather_rows_f32(rows, inputSize, this.dataX, p.idx, p.x);
        abi.gather_i32(rows, this.dataY, p.idx, p.labels);
        m.forwardTrain(p, rows);
        const loss = m.lossOf(p, rows, true, true, p.gradA, correct);
        m.backward(p, rows);
        // The stop request is read as late as possible: one that came during this step's compute
        // stops the run after this step.
        exchanged = t.exchangeStep(bi, myGrads, loss * rows, correct[0], t.stopRequested());
      } else {
        exchanged = t.exchangeStep(bi, null, 0, 0, t.stopRequested());
      }
      if (exchanged) {
        await exchanged; // a peer's message came through the event loop, which ran
        lastYield = performance.now();
      }
      // Every replica reads the same slots in the same order: identical sums, identical updates.
      let batchLoss = 0;
      let stopNow = false;
      for (let r = 0; r < world; r++) {
        batchLoss += t.lossSum(bi, r);
        right += t.correct(bi, r);
        stopNow ||= t.stopAsked(bi, r);
      }
      if (!Number.isFinite(batchLoss)) {
        throw new TrainingDivergedError(
          `training diverged: the loss became ${batchLoss / b} at epoch ${m.epoch + 1}, batch ${bi + 1} of ${batches}`,
          m.epoch,
          bi,
        );
      }
      lossSum += batchLoss;
      this.reduceGradients(bi, b, rows > 0);
      m.applyGradients();
      if (stopNow && bi < batches - 1) {
        done = bi + 1;
        break;
      }
      // Over shared memory the coordinator's stop request is a word in the shared buffer; over
      // messages it is a call, which needs the event loop (a replica that never waits would not
      // see it until the epoch ends).
      if (t.stopArrivesByMessage && performance.now() - lastYield > YIELD_EVERY_MS) {
        await macrotask();
        lastYield = performance.now();
      }
    }
    await this.averageMovingStatistics(done);
    if (done === batches) m.epoch++;
    const samples = Math.min(done * B, N);
    return {
      loss: lossSum / samples,
      accuracy: right / samples,
      seconds: (performance.now() - t0) / 1000,
      batches: done,
      lossSum,
      correct: right,
    };
  }

  /**
   * Leaves the batch's gradient, every shard's weighted by its share of the batch, in this replica's
   * gradient block: g0*s0 + g1*s1 + ... summed in rank order in WASM (SIMD), each product and sum
   * rounded on its own (memory.ts), so every replica gets the same bits. This replica's own
   * gradients are already in the block (when its shard was not empty) and are used in place; the
   * others' are staged into kernel memory from their slots.
   */
  private reduceGradients(step: number, b: number, ownComputed: boolean): void {
    const { model: m, transport: t, world, rank } = this;
    // One replica: its shard is the whole batch (share 1), its gradients are the sum already.
    if (world === 1) return;
    const k = m.kernels;
    const abi = k.abi;
    const P = t.paramFloats;
    const gradPtr = m.block.ptr + m.block.gradDelta;
    const f = k.f32;
    const share = (r: number) => shardOf(b, r, world).rows / b;
    // An empty shard's block holds an earlier step's gradients; its slot holds the zeros it sent.
    if (!ownComputed) f.fill(0, gradPtr >>> 2, (gradPtr >>> 2) + P);
    if (world === 2) {
      // One pass: mine*s_mine + other*s_other. IEEE addition commutes, so both replicas get the
      // bits of g0*s0 + g1*s1.
      const other = 1 - rank;
      f.set(t.gradients(step, other), this.incoming >>> 2);
      abi.lincomb2_f32(P, gradPtr, share(rank), this.incoming, share(other));
    } else {
      // acc = g0*s0, then acc += gr*sr for r = 1, 2, ... (the rank order every replica follows).
      if (rank !== 0) f.set(t.gradients(step, 0), gradPtr >>> 2);
      abi.scale_f32(P, gradPtr, share(0));
      for (let r = 1; r < world; r++) {
        f.set(t.gradients(step, r), this.incoming >>> 2);
        abi.axpy_f32(P, gradPtr, this.incoming, share(r));
      }
    }
  }

  /** Averages BN moving statistics across replicas so they all hold the same ones. */
  private async averageMovingStatistics(batchesDone: number): Promise<void> {
    if (this.transport.stateFloats === 0) return;
    const f = this.model.kernels.f32;
    let o = 0;
    for (const s of this.model.state) {
      this.packedState.set(f.subarray(s.ptr >>> 2, (s.ptr >>> 2) + s.size), o);
      o += s.size;
    }
    const world = this.world;
    // A replica updates its moving statistics only in steps where its shard has rows: with fewer
    // rows than replicas in a batch, some miss updates (or all of them: the stale statistics of a
    // replica that saw no sample must not count). Every replica derives the same counts.
    const B = this.batchSize;
    const N = this.samples;
    const updates = new Array<number>(world).fill(0);
    for (let s = 0; s < Math.min(N, batchesDone * B); s += B)
      for (let r = 0; r < world; r++)
        if (shardOf(Math.min(B, N - s), r, world).rows > 0) updates[r]++;
    const total = updates.reduce((a, b) => a + b, 0);
    const even = updates.every((u) => u === updates[0]);
    const done = this.transport.exchangeState(this.packedState, (slots) => {
      let at = 0;
      for (const s of this.model.state) {
        for (let i = 0; i < s.size; i++) {
          let sum = 0;
          if (even) {
            for (let r = 0; r < world; r++) sum += slots[r][at + i];
            f[(s.ptr >>> 2) + i] = sum / world;
          } else {
            for (let r = 0; r < world; r++) sum += updates[r] * slots[r][at + i];
            f[(s.ptr >>> 2) + i] = sum / total;
          }
        }
        at += s.size;
      }
    });
    if (done) await done;
  }
}
