// The caller's side of the training worker (worker/trainWorker.ts), the same for a browser Web
// Worker and a Node worker_threads Worker. Platform-neutral: the Node Worker is passed in (see
// worker/nodeClient.ts for spawning one), so a browser bundle pulls in no Node built-ins.
//
// What it adds over a bare Comlink.wrap:
// - inputs are transferred, not copied (the caller's buffer is detached afterwards); a view into a
//   larger buffer is copied first so unrelated data is never detached, and `copy: true` keeps the
//   caller's array;
// - a shared cancel flag, when SharedArrayBuffer exists, so cancel() stops fit within one batch;
// - a worker that dies (an uncaught error, a failed module load, process.exit) rejects every
//   pending and later call with the reason, instead of leaving promises that never settle.
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import type { ExportOptions } from "../src/export.js";
import type { ModelSpec } from "../src/spec.js";
import type { Labels } from "../src/train.js";
import {
  BATCH_COUNTER,
  CANCEL_FLAG,
  type CreateOptions,
  type ExportedModel,
  type KernelSource,
  type ModelInfo,
  type RemoteFitOptions,
  type RemoteHistory,
  type TrainEvent,
  type TrainWorkerApi,
} from "./trainWorker.js";

export type {
  CreateOptions,
  ExportedModel,
  KernelSource,
  ModelInfo,
  RemoteFitOptions,
  RemoteHistory,
  TrainEvent,
} from "./trainWorker.js";

export interface TransferOptions {
  /** Keep the caller's arrays usable: send copies instead of transferring their buffers. */
  copy?: boolean;
}

export interface ClientFitOptions extends RemoteFitOptions, TransferOptions {
  /** Every batch's progress and every epoch's log. */
  onProgress?: (event: TrainEvent) => void;
}

/** What the client needs from a worker of either platform. */
export interface WorkerConnection {
  endpoint: Comlink.Endpoint;
  /** Calls back once if the worker dies. */
  onDeath(callback: (error: Error) => void): void;
  terminate(): unknown;
}

/** The worker stopped running; every call from then on rejects with this. */
export class WorkerDiedError extends Error {
  override name = "WorkerDiedError";
}

type Numeric = Float32Array | Int32Array | Uint8Array | Uint16Array;

/** The array to send and the buffers to transfer with it. */
function outgoing<T extends Numeric | number[]>(
  a: T,
  copy: boolean | undefined,
  what: string,
): { value: T; transfer: Transferable[] } {
  if (Array.isArray(a)) return { value: a, transfer: [] };
  const typed = a as Numeric;
  // A transferred buffer is detached (zero bytes) on this side. Node's postMessage silently drops
  // a message whose transfer list holds one, so the call would never settle: refuse it here.
  if (typed.buffer.byteLength === 0)
    throw new TypeError(
      `${what} is empty, or its buffer was already transferred to the worker by an earlier call (its data is gone from this side); pass { copy: true } to keep your arrays usable`,
    );
  // A shared buffer is already visible to the worker: nothing to copy or transfer.
  if (typeof SharedArrayBuffer !== "undefined" && typed.buffer instanceof SharedArrayBuffer)
    return { value: a, transfer: [] };
  const whole = typed.byteOffset === 0 && typed.byteLength === typed.buffer.byteLength;
  const sent = (copy || !whole ? typed.slice() : typed) as T & Numeric;
  return { value: sent, transfer: [sent.buffer as ArrayBuffer] };
}

export class Trainer {
  private readonly remote: Comlink.Remote<TrainWorkerApi>;
  private readonly flag: Int32Array | undefined;
  private readonly flagReady: Promise<void>;
  private readonly died: Promise<never>;
  private readonly die: (e: Error) => void;
  private deathReason: Error | undefined;
  /** cancel() was called while a fit call was on its way to the worker. */
  private cancelRequested = false;

  constructor(private readonly connection: WorkerConnection) {
    this.remote = Comlink.wrap<TrainWorkerApi>(connection.endpoint);
    let reject!: (e: Error) => void;
    this.died = new Promise<never>((_, r) => (reject = r));
    this.died.catch(() => undefined); // observed through race() only
    this.die = (e) => {
      this.deathReason ??= e instanceof WorkerDiedError ? e : new WorkerDiedError(e.message);
      reject(this.deathReason);
    };
    connection.onDeath(this.die);
    // SharedArrayBuffer exists in Node and on cross-origin-isolated pages (COOP + COEP headers).
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
    if (typeof SharedArrayBuffer !== "undefined" && isolated !== false) {
      this.flag = new Int32Array(new SharedArrayBuffer(8));
      this.flagReady = this.race(
        this.remote.attachCancelFlag(this.flag.buffer as SharedArrayBuffer),
      );
      this.flagReady.catch(() => undefined); // a dead worker rejects the next call instead
    } else {
      this.flagReady = Promise.resolve();
    }
  }

  /** Whether cancel() is checked after every batch (a shared flag) rather than when fit yields. */
  get sharedCancel(): boolean {
    return this.flag !== undefined;
  }

  private race<T>(call: Promise<T>): Promise<T> {
    if (this.deathReason) return Promise.reject(this.deathReason);
    return Promise.race([call, this.died]);
  }

  /** Loads the kernel module in the worker (Node workers default to build/edgenn.wasm). */
  init(source: KernelSource): Promise<void> {
    return this.race(this.remote.init(source));
  }

  /** Creates the worker's model; a bad spec rejects with the SpecError's message, name and layer. */
  create(spec: ModelSpec, options: CreateOptions = {}): Promise<ModelInfo> {
    return this.race(this.remote.create(spec, options));
  }

  /**
   * Trains on x and y, transferring their buffers to the worker (pass copy: true to keep them).
   * Resolves with { cancelled: true } when cancel() stopped it; the model stays usable.
   */
  async fit(x: Float32Array, y: Labels, options: ClientFitOptions = {}): Promise<RemoteHistory> {
    // From here on, a cancel() is this call's, even before the fit message is posted: the shared
    // flag is reset now (not after the await below, which would wipe such a cancel).
    this.cancelRequested = false;
    if (this.flag) Atomics.store(this.flag, CANCEL_FLAG, 0);
    const { onProgress, copy, ...rest } = options;
    const xs = outgoing(x, copy, "x");
    const ys = outgoing(y, copy, "y");
    const transfer = [...xs.transfer, ...ys.transfer];
    if (rest.validationData) {
      const vx = outgoing(rest.validationData[0], copy, "validationData x");
      const vy = outgoing(rest.validationData[1], copy, "validationData y");
      rest.validationData = [vx.value, vy.value];
      transfer.push(...vx.transfer, ...vy.transfer);
    }
    await this.flagReady;
    const call = this.race(
      this.remote.fit(
        // The same array passed twice (validating on the training data) is transferred once.
        Comlink.transfer(xs.value, [...new Set(transfer)]),
        ys.value,
        rest,
        onProgress ? Comlink.proxy(onProgress) : undefined,
      ),
    );
    // Without a shared flag, a cancel made while this call was on its way went to a worker with
    // no fit running; messages arrive in order, so sent again now it reaches this fit.
    if (this.cancelRequested && !this.flag) this.race(this.remote.cancel()).catch(() => undefined);
    return call;
  }

  /**
   * Stops a running fit. With a shared flag it stops after the batch in flight; returns how many
   * batches the run had finished at this moment (undefined without a shared flag).
   */
  cancel(): number | undefined {
    this.cancelRequested = true;
    let done: number | undefined;
    if (this.flag) {
      Atomics.store(this.flag, CANCEL_FLAG, 1);
      done = Atomics.load(this.flag, BATCH_COUNTER);
    }
    // The message path too: it is all there is without shared memory.
    this.race(this.remote.cancel()).catch(() => undefined);
    return done;
  }

  async evaluate(
    x: Float32Array,
    y: Labels,
    options: { batchSize?: number } & TransferOptions = {},
  ): Promise<{ loss: number; accuracy: number }> {
    const xs = outgoing(x, options.copy, "x");
    const ys = outgoing(y, options.copy, "y");
    return this.race(
      this.remote.evaluate(
        Comlink.transfer(xs.value, [...new Set([...xs.transfer, ...ys.transfer])]),
        ys.value,
        {
          batchSize: options.batchSize,
        },
      ),
    );
  }

  /** Inference-mode outputs of the training model, [N, ...outputShape]. */
  async predict(
    x: Float32Array,
    options: { batchSize?: number } & TransferOptions = {},
  ): Promise<Float32Array> {
    const xs = outgoing(x, options.copy, "x");
    return this.race(
      this.remote.predict(Comlink.transfer(xs.value, xs.transfer), {
        batchSize: options.batchSize,
      }),
    );
  }

  /** The .enn file of the model, transferred out of the worker. */
  export(options: ExportOptions = {}): Promise<ExportedModel> {
    return this.race(this.remote.export(options));
  }

  /** Every parameter and state tensor by name (layers.<i>.<name>). */
  getWeights(): Promise<Record<string, Float32Array>> {
    return this.race(this.remote.getWeights());
  }

  /** Stops the worker; pending calls reject. */
  async terminate(): Promise<void> {
    // A browser Worker fires no event when terminated: reject the pending calls here.
    this.die(new WorkerDiedError("the training worker was terminated"));
    await this.connection.terminate();
  }
}

/** A browser (or Deno) module Web Worker running worker/webWorker.ts. */
export function connectWebWorker(worker: Worker): Trainer {
  return new Trainer({
    endpoint: worker,
    onDeath(callback) {
      worker.addEventListener("error", (ev) => {
        ev.preventDefault();
        callback(new WorkerDiedError(`the training worker failed: ${ev.message || "error event"}`));
      });
      worker.addEventListener("messageerror", () =>
        callback(new WorkerDiedError("the training worker sent a message that could not be read")),
      );
    },
    terminate: () => worker.terminate(),
  });
}

/** The part of node:worker_threads' Worker the client uses (typed here to avoid importing Node). */
export interface NodeWorkerLike {
  postMessage(message: unknown, transfer?: readonly unknown[]): void;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  terminate(): Promise<number>;
}

/** A Node worker_threads Worker running worker/nodeWorker.ts. */
export function connectNodeWorker(worker: NodeWorkerLike): Trainer {
  return new Trainer({
    endpoint: nodeEndpoint(worker as unknown as Parameters<typeof nodeEndpoint>[0]),
    onDeath(callback) {
      worker.on("error", (e: Error) =>
        callback(new WorkerDiedError(`the training worker failed: ${e.message}`)),
      );
      worker.on("exit", (code: number) =>
        callback(new WorkerDiedError(`the training worker exited (code ${code})`)),
      );
    },
    terminate: () => worker.terminate(),
  });
}
