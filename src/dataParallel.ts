// Data-parallel training: N replicas of one model, each in its own worker with its own kernel
// memory, train on disjoint shards of every batch. After each backward pass the replicas exchange
// gradients through a SharedArrayBuffer and every replica sums them in the same fixed order, so all
// replicas apply the identical update and their weights stay bit-identical.
//
// BatchNorm: each replica normalises with its own shard's batch statistics (as multi-GPU
// frameworks do without SyncBatchNorm), so N-worker training is not the same function as 1-worker
// training when the model has BN; gradients are averaged exactly (weighted by shard size). The
// moving statistics are averaged across replicas at the end of every epoch, so every replica (and
// the exported model) holds the same ones. Dropout masks differ per replica (seeded by rank).
// Without BN and dropout, N workers compute the same gradients as one up to float rounding.
//
// Platform-neutral (Atomics + SharedArrayBuffer): runs in Node worker_threads and in Web Workers of
// a cross-origin-isolated page. Atomics.wait is not allowed on a browser's main thread, which is
// why every replica lives in a worker and the coordinator only starts epochs.
import type { Kernels } from "./kernels.js";
import { Model, type ModelOptions } from "./model.js";
import type { ModelSpec } from "./spec.js";
import { TrainingDivergedError } from "./train.js";

/** Control words in the shared Int32Array. */
const COUNT = 0;
const GEN = 1;
const ABORT = 2;
const CTL_WORDS = 16;

export interface SharedLayout {
  world: number;
  samples: number;
  inputSize: number;
  /** Labels are i32 class indices. */
  paramFloats: number;
  stateFloats: number;
  ctl: SharedArrayBuffer;
  perm: SharedArrayBuffer;
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  /** [2 parities][world][paramFloats] gradient slots. */
  grads: SharedArrayBuffer;
  /** [world][stateFloats] BN moving statistics, exchanged at epoch end. */
  state: SharedArrayBuffer;
  /** [2 parities][world][2] (loss * rows, correct) per step. */
  stats: SharedArrayBuffer;
}

export function paramFloats(model: Model): number {
  return model.block.bytes >> 2;
}

export function stateFloats(model: Model): number {
  return model.state.reduce((a, s) => a + s.size, 0);
}

/** Allocates the shared buffers for a run (the coordinator calls this once). */
export function makeSharedLayout(
  world: number,
  x: Float32Array,
  y: Int32Array,
  inputSize: number,
  pFloats: number,
  sFloats: number,
): SharedLayout {
  const samples = y.length;
  const sx = new SharedArrayBuffer(x.length * 4);
  new Float32Array(sx).set(x);
  const sy = new SharedArrayBuffer(y.length * 4);
  new Int32Array(sy).set(y);
  return {
    world,
    samples,
    inputSize,
    paramFloats: pFloats,
    stateFloats: sFloats,
    ctl: new SharedArrayBuffer(CTL_WORDS * 4),
    perm: new SharedArrayBuffer(samples * 4),
    x: sx,
    y: sy,
    grads: new SharedArrayBuffer(2 * world * pFloats * 4),
    state: new SharedArrayBuffer(Math.max(world * sFloats, 1) * 4),
    stats: new SharedArrayBuffer(2 * world * 2 * 8),
  };
}

/** A generation barrier over `world` participants. */
function barrier(ctl: Int32Array, world: number): void {
  const gen = Atomics.load(ctl, GEN);
  if (Atomics.add(ctl, COUNT, 1) === world - 1) {
    Atomics.store(ctl, COUNT, 0);
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
  } else {
    // Spin briefly before sleeping: replicas usually arrive within a fraction of a millisecond of
    // each other, and a sleeping thread (a descheduled vCPU) takes far longer to wake.
    for (let spin = 0; spin < 20000 && Atomics.load(ctl, GEN) === gen; spin++);
    while (Atomics.load(ctl, GEN) === gen) {
      if (Atomics.load(ctl, ABORT) !== 0)
        throw new Error("edgenn: another replica failed; stopping");
      Atomics.wait(ctl, GEN, gen, 200);
    }
  }
}

export interface ReplicaEpoch {
  loss: number;
  accuracy: number;
  seconds: number;
}

/** Rows of batch row-range [0, b) that replica `rank` takes: a contiguous slice. */
export function shardOf(b: number, rank: number, world: number): { offset: number; rows: number } {
  const base = Math.floor(b / world);
  const extra = b % world;
  return { offset: rank * base + Math.min(rank, extra), rows: base + (rank < extra ? 1 : 0) };
}

export class Replica {
  readonly model: Model;
  private readonly ctl: Int32Array;
  private readonly perm: Int32Array;
  private readonly grads: Float32Array;
  private readonly state: Float32Array;
  private readonly stats: Float64Array;
  private readonly dataX: number;
  private readonly dataY: number;
  /** [paramFloats] staging area in kernel memory for another replica's gradients. */
  private readonly incoming: number;
  /** slotViews[parity][rank]: views of the shared gradient slots, made once. */
  private readonly slotViews: Float32Array[][];

  constructor(
    kernels: Kernels,
    spec: ModelSpec,
    options: ModelOptions,
    readonly rank: number,
    readonly shared: SharedLayout,
    readonly batchSize: number,
  ) {
    // Same seed on every replica: identical initial weights. Dropout differs per rank.
    this.model = new Model(kernels, spec, options);
    this.model.reseed(((options.seed ?? 0) + 0x9e3779b9 * (rank + 1)) >>> 0);
    if (this.model.loss !== "sparseCategoricalCrossentropy")
      throw new Error(
        "data-parallel training supports integer class labels (sparse cross-entropy)",
      );
    if (
      paramFloats(this.model) !== shared.paramFloats ||
      stateFloats(this.model) !== shared.stateFloats
    )
      throw new Error("replica model does not match the shared layout");
    this.ctl = new Int32Array(shared.ctl);
    this.perm = new Int32Array(shared.perm);
    this.grads = new Float32Array(shared.grads);
    this.state = new Float32Array(shared.state);
    this.stats = new Float64Array(shared.stats);
    // Plan every shard size, then copy the data set above the largest plan, once.
    const B = batchSize;
    const N = shared.samples;
    const shardSizes: number[] = [];
    for (const b of new Set([B, N % B || B]))
      for (let r = 0; r < shared.world; r++) {
        const rows = shardOf(b, r, shared.world).rows;
        if (rows > 0) shardSizes.push(rows);
      }
    const placed = this.model.placeData(
      shardSizes,
      new Float32Array(shared.x),
      new Int32Array(shared.y),
      shared.paramFloats * 4,
    );
    this.dataX = placed.x;
    this.dataY = placed.y;
    this.incoming = placed.extra;
    const P = shared.paramFloats;
    this.slotViews = [0, 1].map((parity) =>
      Array.from({ length: shared.world }, (_, r) =>
        this.grads.subarray((parity * shared.world + r) * P, (parity * shared.world + r + 1) * P),
      ),
    );
  }

  /** Runs one epoch over the permutation the coordinator wrote; all replicas call this together. */
  runEpoch(): ReplicaEpoch {
    try {
      return this.epochSteps();
    } catch (e) {
      Atomics.store(this.ctl, ABORT, 1);
      Atomics.notify(this.ctl, GEN);
      throw e;
    }
  }

  private epochSteps(): ReplicaEpoch {
    const m = this.model;
    const k = m.kernels;
    const abi = k.abi;
    const { world, samples: N, inputSize, paramFloats: P } = this.shared;
    const B = this.batchSize;
    const batches = Math.ceil(N / B);
    const correct = new Int32Array(1);
    const gradStart = (m.block.ptr + m.block.gradDelta) >>> 2;
    // Kernel memory does not grow during an epoch, so this view stays valid.
    const myGrads = k.f32.subarray(gradStart, gradStart + P);
    const t0 = performance.now();
    let lossSum = 0;
    let right = 0;
    for (let bi = 0; bi < batches; bi++) {
      const s = bi * B;
      const b = Math.min(B, N - s);
      const { offset, rows } = shardOf(b, this.rank, world);
      const parity = bi & 1;
      const st = parity * world * 2;
      if (rows > 0) {
        const p = m.plan(rows);
        const i32 = k.i32;
        for (let j = 0; j < rows; j++) i32[(p.idx >>> 2) + j] = this.perm[s + offset + j];
        abi.gather_rows_f32(rows, inputSize, this.dataX, p.idx, p.x);
        abi.gather_i32(rows, this.dataY, p.idx, p.labels);
        m.forwardTrain(p, rows);
        const loss = m.lossOf(p, rows, true, true, p.gradA, correct);
        m.backward(p, rows);
        this.slotViews[parity][this.rank].set(myGrads);
        this.stats[st + this.rank * 2] = loss * rows;
        this.stats[st + this.rank * 2 + 1] = correct[0];
      } else {
        this.slotViews[parity][this.rank].fill(0);
        this.stats[st + this.rank * 2] = 0;
        this.stats[st + this.rank * 2 + 1] = 0;
      }
      barrier(this.ctl, world);
      // Every replica reads the same slots in the same order: identical sums, identical updates.
      let batchLoss = 0;
      for (let r = 0; r < world; r++) {
        batchLoss += this.stats[st + r * 2];
        right += this.stats[st + r * 2 + 1];
      }
      if (!Number.isFinite(batchLoss)) {
        throw new TrainingDivergedError(
          `training diverged: the loss became ${batchLoss / b} at epoch ${m.epoch + 1}, batch ${bi + 1} of ${batches}`,
          m.epoch,
          bi,
        );
      }
      lossSum += batchLoss;
      // The sum runs in WASM (SIMD): slot r is staged into kernel memory, scaled by its share of
      // the batch and added, always in rank order.
      const gradPtr = gradStart << 2;
      const f = k.f32;
      f.set(this.slotViews[parity][0], gradStart);
      abi.scale_f32(P, gradPtr, shardOf(b, 0, world).rows / b);
      for (let r = 1; r < world; r++) {
        f.set(this.slotViews[parity][r], this.incoming >>> 2);
        abi.scale_f32(P, this.incoming, shardOf(b, r, world).rows / b);
        abi.add_f32(P, gradPtr, this.incoming);
      }
      m.applyGradients();
      // Slots are double-buffered by batch parity, so the next batch may write while slower
      // replicas still read this one; batch bi+2 reuses these slots only after barrier bi+1.
    }
    this.averageMovingStatistics();
    m.epoch++;
    return { loss: lossSum / N, accuracy: right / N, seconds: (performance.now() - t0) / 1000 };
  }

  /** Averages BN moving statistics across replicas so they all hold the same ones. */
  private averageMovingStatistics(): void {
    const { world, stateFloats: S } = this.shared;
    if (S === 0) return;
    const f = this.model.kernels.f32;
    let o = this.rank * S;
    for (const t of this.model.state) {
      this.state.set(f.subarray(t.ptr >>> 2, (t.ptr >>> 2) + t.size), o);
      o += t.size;
    }
    barrier(this.ctl, world);
    o = 0;
    for (const t of this.model.state) {
      for (let i = 0; i < t.size; i++) {
        let sum = 0;
        for (let r = 0; r < world; r++) sum += this.state[r * S + o + i];
        f[(t.ptr >>> 2) + i] = sum / world;
      }
      o += t.size;
    }
    // Nobody may overwrite the state slots (next epoch) before all have read them.
    barrier(this.ctl, world);
  }
}
