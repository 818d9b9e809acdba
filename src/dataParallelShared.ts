// The "shared" transport of data-parallel training (src/dataParallel.ts): gradient slots in one
// SharedArrayBuffer that every replica sees, and a generation barrier on Atomics. No copies travel:
// a replica writes its slot, waits at the barrier, and reads the others' slots in place.
//
// Atomics.wait is not allowed on a browser's main thread, which is why every replica lives in a
// worker and the coordinator only starts epochs.
import { ReplicaAbortedError, type ReplicaTransport } from "./dataParallel.js";

/** Control words in the shared Int32Array. */
const COUNT = 0;
const GEN = 1;
/** 0 while all is well; rank + 1 of the replica that failed. */
const ABORT = 2;
/** Set by the coordinator when the run's signal aborts: replicas stop after the step in flight. */
const STOP = 3;
const CTL_WORDS = 16;
/** f64 words per replica and step in the stats buffer. */
const STAT_WORDS = 3;

export interface SharedLayout {
  world: number;
  /**
   * How long a replica busy-waits at a barrier before it sleeps in Atomics.wait, in ms. A sleeping
   * worker idles its core (on a VM the vCPU is descheduled; the wake costs more than a spin's
   * exit): the cnn on 2 vCPUs trained 3-5% faster spinning (docs/WORKERS.md). 0 when the replicas
   * outnumber the cores, where a spinning replica would take a core from one that still computes.
   */
  spinMs: number;
  samples: number;
  inputSize: number;
  paramFloats: number;
  stateFloats: number;
  ctl: SharedArrayBuffer;
  /** [samples] the epoch's permutation, written by the coordinator before every epoch. */
  perm: SharedArrayBuffer;
  /** [samples][inputSize] f32. */
  x: SharedArrayBuffer;
  /** [samples] i32 class indices. */
  y: SharedArrayBuffer;
  /** [2 parities][world][paramFloats] gradient slots. */
  grads: SharedArrayBuffer;
  /** [world][stateFloats] BN moving statistics, exchanged at epoch end. */
  state: SharedArrayBuffer;
  /** [2 parities][world][3] (loss * rows, correct, stop asked) per step. */
  stats: SharedArrayBuffer;
}

/** Allocates the shared buffers for a run (the coordinator calls this once). */
export function makeSharedLayout(
  world: number,
  spinMs: number,
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
    spinMs,
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
    stats: new SharedArrayBuffer(2 * world * STAT_WORDS * 8),
  };
}

/**
 * Marks the run failed from outside the replicas (the coordinator, when a worker died): replicas
 * waiting at the barrier stop within one wait interval.
 */
export function abortSharedRun(layout: SharedLayout, failedRank: number): void {
  const ctl = new Int32Array(layout.ctl);
  Atomics.compareExchange(ctl, ABORT, 0, failedRank + 1);
  Atomics.notify(ctl, GEN);
}

/**
 * Asks the replicas to stop after the step in flight (the run's signal aborted). Each replica
 * publishes what it saw with its step's gradients, so all stop after the same step.
 */
export function requestSharedStop(layout: SharedLayout): void {
  Atomics.store(new Int32Array(layout.ctl), STOP, 1);
}

export class SharedTransport implements ReplicaTransport {
  readonly world: number;
  readonly stopArrivesByMessage = false;
  readonly paramFloats: number;
  readonly stateFloats: number;
  private readonly ctl: Int32Array;
  private readonly stats: Float64Array;
  /** slots[parity][rank]: views of the shared gradient slots, made once. */
  private readonly slots: Float32Array[][];
  /** stateSlots[rank]: views of the shared moving-statistics slots. */
  private readonly stateSlots: Float32Array[];

  constructor(
    readonly layout: SharedLayout,
    readonly rank: number,
  ) {
    const { world, paramFloats: P, stateFloats: S } = layout;
    this.world = world;
    this.paramFloats = P;
    this.stateFloats = S;
    this.ctl = new Int32Array(layout.ctl);
    this.stats = new Float64Array(layout.stats);
    const grads = new Float32Array(layout.grads);
    this.slots = [0, 1].map((parity) =>
      Array.from({ length: world }, (_, r) =>
        grads.subarray((parity * world + r) * P, (parity * world + r + 1) * P),
      ),
    );
    const state = new Float32Array(layout.state);
    this.stateSlots = Array.from({ length: world }, (_, r) => state.subarray(r * S, (r + 1) * S));
  }

  /** A generation barrier over all replicas. */
  private barrier(): void {
    const ctl = this.ctl;
    const gen = Atomics.load(ctl, GEN);
    if (Atomics.add(ctl, COUNT, 1) === this.world - 1) {
      Atomics.store(ctl, COUNT, 0);
      Atomics.add(ctl, GEN, 1);
      Atomics.notify(ctl, GEN);
      return;
    }
    // Spin first (a few hundred microseconds even with spinMs 0: replicas usually arrive close
    // together), then sleep. The clock and the abort flag are read every 1024 loads.
    const deadline = performance.now() + this.layout.spinMs;
    for (let spin = 0; Atomics.load(ctl, GEN) === gen; spin++) {
      if ((spin & 1023) !== 1023) continue;
      this.throwIfAborted();
      if (spin >= 20000 && performance.now() >= deadline) break;
    }
    while (Atomics.load(ctl, GEN) === gen) {
      this.throwIfAborted();
      Atomics.wait(ctl, GEN, gen, 200);
    }
  }

  private throwIfAborted(): void {
    const failed = Atomics.load(this.ctl, ABORT);
    if (failed !== 0)
      throw new ReplicaAbortedError(
        `edgenn: data-parallel replica ${failed - 1} failed; replica ${this.rank} stopped`,
        failed - 1,
      );
  }

  stopRequested(): boolean {
    return Atomics.load(this.ctl, STOP) !== 0;
  }

  exchangeStep(
    step: number,
    grads: Float32Array | null,
    lossSum: number,
    correct: number,
    stop: boolean,
  ): void {
    const parity = step & 1;
    // One replica: nobody reads its slot (its gradients are the batch's already).
    if (this.world > 1) {
      const mine = this.slots[parity][this.rank];
      if (grads) mine.set(grads);
      else mine.fill(0);
    }
    const st = (parity * this.world + this.rank) * STAT_WORDS;
    this.stats[st] = lossSum;
    this.stats[st + 1] = correct;
    this.stats[st + 2] = stop ? 1 : 0;
    this.barrier();
    // Slots are double-buffered by step parity, so the next step may write while slower replicas
    // still read this one; step + 2 reuses these slots only after the barrier of step + 1.
  }

  gradients(step: number, r: number): Float32Array {
    return this.slots[step & 1][r];
  }

  lossSum(step: number, r: number): number {
    return this.stats[((step & 1) * this.world + r) * STAT_WORDS];
  }

  correct(step: number, r: number): number {
    return this.stats[((step & 1) * this.world + r) * STAT_WORDS + 1];
  }

  stopAsked(step: number, r: number): boolean {
    return this.stats[((step & 1) * this.world + r) * STAT_WORDS + 2] !== 0;
  }

  exchangeState(state: Float32Array, use: (slots: Float32Array[]) => void): void {
    this.stateSlots[this.rank].set(state);
    this.barrier();
    use(this.stateSlots);
    // Nobody may overwrite the state slots (next epoch) before all have read them.
    this.barrier();
  }

  abort(): void {
    Atomics.compareExchange(this.ctl, ABORT, 0, this.rank + 1);
    Atomics.notify(this.ctl, GEN);
  }
}
