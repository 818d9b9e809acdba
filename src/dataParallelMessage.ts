// The "message" transport of data-parallel training (src/dataParallel.ts), for where there is no
// SharedArrayBuffer (a browser page without COOP/COEP headers): every replica posts its gradients
// to every other replica over a direct MessageChannel, transferring the ArrayBuffers (no shared
// memory, no Atomics), and waits until it holds every replica's slot for the step. Replica then
// sums the slots exactly as it does over shared memory, so both transports give the same bits.
//
// Why a mesh of worker-to-worker channels and not an all-gather through the coordinator: the
// coordinator route costs two hops per step and needs the page's main thread, which may be busy
// drawing, to forward every gradient. A quick measurement on this project's 2-vCPU machine (Node
// 20, two worker_threads exchanging a 100,000-float slot 300 times, transfer only) gave 0.11-0.13
// ms per exchange through the main thread and 0.04-0.05 ms direct. For the small worker counts of
// a browser (2-8) the N(N-1) channels are cheap; each one is a pair of ports.
//
// Buffers are recycled: a replica receives N-1 slots and sends N-1 per step, so the slots it
// received last step become the ones it sends next, and a run allocates nothing after its first
// steps.
import { ReplicaAbortedError, type ReplicaTransport } from "./dataParallel.js";

/** The part of a MessagePort this transport uses (the DOM's and Node's worker_threads' alike). */
export interface PeerPort {
  postMessage(message: unknown, transfer: Transferable[]): void;
  onmessage: ((event: MessageEvent) => void) | null;
  close(): void;
}

type PeerMessage =
  | {
      kind: "step";
      step: number;
      grads: Float32Array | null;
      lossSum: number;
      correct: number;
      stop: boolean;
    }
  | { kind: "state"; state: Float32Array }
  | { kind: "abort"; rank: number; message: string };

type StepMessage = Extract<PeerMessage, { kind: "step" }>;

/**
 * The channels of a run: ports[rank][peer] is replica `rank`'s end of its channel to `peer` (null
 * at rank === peer). The coordinator makes them and transfers each replica's row to it.
 */
export function makeMessageMesh(world: number): (MessagePort | null)[][] {
  const ports: (MessagePort | null)[][] = Array.from({ length: world }, () =>
    new Array<MessagePort | null>(world).fill(null),
  );
  for (let i = 0; i < world; i++)
    for (let j = i + 1; j < world; j++) {
      const channel = new MessageChannel();
      ports[i][j] = channel.port1;
      ports[j][i] = channel.port2;
    }
  return ports;
}

export class MessageTransport implements ReplicaTransport {
  readonly world: number;
  readonly stopArrivesByMessage = true;
  /** inbox[peer]: messages from that peer not consumed yet, in the order it sent them. */
  private readonly inbox: PeerMessage[][];
  /** This step's message from every replica (this one's own too). */
  private readonly current: (StepMessage | undefined)[];
  /** Buffers received last step, sent on as next step's slots. */
  private readonly spare: Float32Array[] = [];
  /** This replica's own gradients for the current step (it reads them back like any other slot). */
  private readonly own: Float32Array;
  private zeros: Float32Array | undefined;
  private waiting: {
    ready: () => boolean;
    resolve: () => void;
    reject: (e: Error) => void;
  } | null = null;
  private failure: ReplicaAbortedError | undefined;
  /** Set by requestStop (the coordinator's call when the run's signal aborts). */
  private stopFlag = false;

  constructor(
    readonly rank: number,
    readonly paramFloats: number,
    readonly stateFloats: number,
    private readonly ports: (PeerPort | null)[],
  ) {
    this.world = ports.length;
    if (ports[rank] !== null || ports.some((p, r) => r !== rank && !p))
      throw new Error(`replica ${rank} needs a port to every other replica and none to itself`);
    this.inbox = ports.map(() => []);
    this.current = ports.map(() => undefined);
    this.own = new Float32Array(paramFloats);
    ports.forEach((port, peer) => {
      if (port) port.onmessage = (event) => this.receive(peer, event.data as PeerMessage);
    });
  }

  private receive(peer: number, message: PeerMessage): void {
    if (message.kind === "abort") {
      // Fail now rather than after the messages still queued: the run is over either way.
      this.failure ??= new ReplicaAbortedError(
        `edgenn: data-parallel replica ${message.rank} failed (${message.message}); replica ${this.rank} stopped`,
        message.rank,
      );
      this.waiting?.reject(this.failure);
      this.waiting = null;
      return;
    }
    this.inbox[peer].push(message);
    if (this.waiting?.ready()) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve();
    }
  }

  private peersHaveSent = (): boolean =>
    this.inbox.every((queue, peer) => peer === this.rank || queue.length > 0);

  /** Resolves once every peer's next message has arrived. */
  private gather(): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (this.peersHaveSent()) return undefined;
    return new Promise((resolve, reject) => {
      this.waiting = { ready: this.peersHaveSent, resolve, reject };
    });
  }

  /** Every peer's next message, which must be of `kind` (the replicas run the same schedule). */
  private take<K extends PeerMessage["kind"]>(
    kind: K,
    peer: number,
  ): Extract<PeerMessage, { kind: K }> {
    const message = this.inbox[peer].shift()!;
    if (message.kind !== kind)
      throw new Error(
        `edgenn: replica ${this.rank} expected a "${kind}" message from replica ${peer}, got "${message.kind}"`,
      );
    return message as Extract<PeerMessage, { kind: K }>;
  }

  /** The coordinator asks the replicas to stop after the step in flight. */
  requestStop(): void {
    this.stopFlag = true;
  }

  stopRequested(): boolean {
    return this.stopFlag;
  }

  exchangeStep(
    step: number,
    grads: Float32Array | null,
    lossSum: number,
    correct: number,
    stop: boolean,
  ): void | Promise<void> {
    if (this.failure) throw this.failure;
    for (let r = 0; r < this.world; r++) {
      const previous = this.current[r];
      if (r !== this.rank && previous?.grads) this.spare.push(previous.grads);
    }
    // One replica: nobody reads its gradients (they are the batch's already).
    if (grads && this.world > 1) this.own.set(grads);
    this.current[this.rank] = {
      kind: "step",
      step,
      grads: grads ? this.own : null,
      lossSum,
      correct,
      stop,
    };
    this.ports.forEach((port, peer) => {
      if (!port) return;
      let slot: Float32Array | null = null;
      if (grads) {
        slot = this.spare.pop() ?? new Float32Array(this.paramFloats);
        slot.set(grads);
      }
      const message: PeerMessage = { kind: "step", step, grads: slot, lossSum, correct, stop };
      port.postMessage(message, slot ? [slot.buffer as ArrayBuffer] : []);
    });
    const arrived = this.gather();
    if (!arrived) return this.collectStep(step);
    return arrived.then(() => this.collectStep(step));
  }

  private collectStep(step: number): void {
    for (let peer = 0; peer < this.world; peer++) {
      if (peer === this.rank) continue;
      const message = this.take("step", peer);
      if (message.step !== step)
        throw new Error(
          `edgenn: replica ${this.rank} at step ${step} got step ${message.step} from replica ${peer}`,
        );
      if (message.grads && message.grads.length !== this.paramFloats)
        throw new Error(
          `edgenn: replica ${peer} sent ${message.grads.length} gradient values, expected ${this.paramFloats}`,
        );
      this.current[peer] = message;
    }
  }

  gradients(_step: number, r: number): Float32Array {
    return this.current[r]!.grads ?? (this.zeros ??= new Float32Array(this.paramFloats));
  }

  lossSum(_step: number, r: number): number {
    return this.current[r]!.lossSum;
  }

  correct(_step: number, r: number): number {
    return this.current[r]!.correct;
  }

  stopAsked(_step: number, r: number): boolean {
    return this.current[r]!.stop;
  }

  async exchangeState(state: Float32Array, use: (slots: Float32Array[]) => void): Promise<void> {
    if (this.failure) throw this.failure;
    // Structured clone copies the (small) statistics for every peer; `state` stays this replica's.
    for (const port of this.ports) port?.postMessage({ kind: "state", state }, []);
    await this.gather();
    const slots = this.ports.map((_, peer) =>
      peer === this.rank ? state : this.take("state", peer).state,
    );
    for (const [peer, slot] of slots.entries())
      if (slot.length !== this.stateFloats)
        throw new Error(
          `edgenn: replica ${peer} sent ${slot.length} moving-statistics values, expected ${this.stateFloats}`,
        );
    use(slots);
  }

  abort(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    for (const port of this.ports) {
      try {
        port?.postMessage({ kind: "abort", rank: this.rank, message }, []);
      } catch {
        // A port whose other end is gone: that replica is not waiting for anything.
      }
    }
  }

  /** Closes every channel (the replica is done). */
  close(): void {
    for (const port of this.ports) port?.close();
  }
}
