// The training API a worker exposes through comlink: one model per worker (a worker is a training
// session), created from a spec, trained with progress events and cancellation, evaluated,
// exported and run. Platform-neutral (no Node built-ins): worker/webWorker.ts exposes it on a
// browser Web Worker, worker/nodeWorker.ts on Node's worker_threads; worker/client.ts is the caller's
// side.
//
// Buffers: inputs arrive as transferred ArrayBuffers (the caller gives them up, nothing is copied
// across threads), and every large result (predictions, weights, .enn bytes) is transferred back.
//
// Cancellation has two paths. cancel() is a message, so it only arrives when fit yields to the
// event loop (every yieldEveryMs). When the caller shares a cancel flag (a SharedArrayBuffer: always
// in Node, in browsers only on a cross-origin-isolated page), the flag is read after every batch,
// so a cancelled run stops after the batch in flight: within one batch.
import * as Comlink from "comlink";
import type { ExportReport } from "../src/ennFormat.js";
import { exportModel, type ExportOptions } from "../src/export.js";
import { Kernels } from "../src/kernels.js";
import { lintLayerOrder, type LintFinding } from "../src/lint.js";
import { Model, ModelError, type LossName } from "../src/model.js";
import type { OptimizerConfig } from "../src/optimizer.js";
import type { ModelSpec } from "../src/spec.js";
import {
  evaluate,
  fit,
  type BatchProgress,
  type EpochLog,
  type FitOptions,
  type History,
  type Labels,
} from "../src/train.js";

/** Where the kernel module comes from: a compiled module, its bytes, or (browsers) its URL. */
export type KernelSource = WebAssembly.Module | ArrayBuffer | Uint8Array | string;

export interface CreateOptions {
  seed?: number;
  optimizer?: OptimizerConfig;
  loss?: LossName;
  /** Layer-order lint warnings refuse the model (LintError). */
  strict?: boolean;
}

export interface ModelInfo {
  inputShape: number[];
  outputShape: number[];
  /** Trainable parameters. */
  params: number;
  loss: LossName;
  /** The layer table of Model.summary(). */
  summary: string;
  /** Layer-order lint findings of the spec. */
  findings: LintFinding[];
}

/** fit's options as they cross the thread boundary (no callbacks, no AbortSignal). */
export type RemoteFitOptions = Omit<FitOptions, "onBatchEnd" | "onEpochEnd" | "signal">;

/** One progress event: after every batch, and after every epoch (with validation results). */
export type TrainEvent = ({ type: "batch" } & BatchProgress) | ({ type: "epoch" } & EpochLog);

export interface RemoteHistory extends History {
  /** Batches trained by this fit call (a cancelled run stops one batch after the cancel at most). */
  batchesRun: number;
}

export interface ExportedModel {
  /** The .enn file. */
  bytes: Uint8Array;
  report: ExportReport;
}

/** Cancel-flag layout (Int32Array over a SharedArrayBuffer of at least 8 bytes). */
export const CANCEL_FLAG = 0;
/** The worker's count of batches trained in the current fit call, for the caller to read. */
export const BATCH_COUNTER = 1;

export interface TrainWorkerApiOptions {
  /** The kernel module used when init() was never called (Node: build/edgenn.wasm from disk). */
  defaultKernels?: () => WebAssembly.Module;
}

type ProgressCallback = (event: TrainEvent) => unknown;

/** How often a running fit lets messages in (a cancel() call, other calls) by default. */
const DEFAULT_YIELD_MS = 20;
/** How long fit waits for the caller to acknowledge progress events (a caller that went away never does). */
const DELIVERY_TIMEOUT_MS = 2000;

export function createTrainWorkerApi(options: TrainWorkerApiOptions = {}) {
  let kernelModule: WebAssembly.Module | undefined;
  let model: Model | undefined;
  let running: AbortController | undefined;
  let shared: Int32Array | undefined;

  const kernels = async (): Promise<Kernels> => {
    kernelModule ??= options.defaultKernels?.();
    if (!kernelModule)
      throw new Error(
        "edgenn worker: no kernel module; call init() with the URL, bytes or compiled module of edgenn.wasm first",
      );
    // Every model gets its own instance: its own linear memory, planned from the heap base.
    return Kernels.load(kernelModule);
  };

  const current = (what: string): Model => {
    if (!model) throw new ModelError(`${what} needs a model: call create(spec) first`);
    return model;
  };

  const idle = (what: string): void => {
    if (running)
      throw new ModelError(
        `${what} is not possible while fit is running; cancel() it or wait for it to finish`,
      );
  };

  return {
    /** Loads the kernel module: a URL (compiled while it streams in), the bytes, or a compiled module. */
    async init(source: KernelSource): Promise<void> {
      kernelModule =
        source instanceof WebAssembly.Module
          ? source
          : typeof source === "string"
            ? await Kernels.compileStreaming(source)
            : await WebAssembly.compile(source as BufferSource);
    },

    /** Shares a cancel flag and batch counter with the caller (see CANCEL_FLAG, BATCH_COUNTER). */
    attachCancelFlag(buffer: SharedArrayBuffer): void {
      if (buffer.byteLength < 8)
        throw new RangeError("the cancel flag needs a SharedArrayBuffer of at least 8 bytes");
      shared = new Int32Array(buffer, 0, 2);
    },

    /** Creates the worker's model (replacing the previous one); a bad spec rejects with its SpecError. */
    async create(spec: ModelSpec, opts: CreateOptions = {}): Promise<ModelInfo> {
      idle("create");
      const m = new Model(await kernels(), spec, opts);
      model = m;
      return {
        inputShape: [...m.resolved.inputShape],
        outputShape: [...m.resolved.outputShape],
        params: m.resolved.params,
        loss: m.loss,
        summary: m.summary(),
        findings: lintLayerOrder(m.resolved),
      };
    },

    /**
     * Trains the model. onProgress (pass it through Comlink.proxy) gets a copy of every batch's
     * progress and every epoch's log; it is not awaited, so a slow caller never stalls training.
     */
    async fit(
      x: Float32Array,
      y: Labels,
      opts: RemoteFitOptions = {},
      onProgress?: ProgressCallback,
    ): Promise<RemoteHistory> {
      // Closes the callback's message port (in Node an open port keeps the caller's process alive).
      const release = () => {
        if (onProgress && Comlink.releaseProxy in onProgress)
          (onProgress as unknown as Comlink.Remote<ProgressCallback>)[Comlink.releaseProxy]();
      };
      let m: Model;
      try {
        m = current("fit");
        idle("fit");
      } catch (e) {
        release(); // a refused call must not leave its port open either
        throw e;
      }
      const controller = new AbortController();
      running = controller;
      let batchesRun = 0;
      if (shared) Atomics.store(shared, BATCH_COUNTER, 0);
      const flagged = () => shared !== undefined && Atomics.load(shared, CANCEL_FLAG) !== 0;
      // Batch events are fire-and-forget, so a slow caller never stalls training; a failing one
      // (the caller went away) must not surface as an unhandled rejection in the worker. Calls on
      // one port arrive in order, so awaiting the latest call's reply means every earlier event
      // was delivered: that happens at each epoch's end and before fit resolves, so the caller has
      // seen all progress by the time its promise settles.
      let last: Promise<unknown> = Promise.resolve();
      const report = (event: TrainEvent) => {
        if (onProgress) last = Promise.resolve(onProgress(event)).catch(() => undefined);
      };
      const delivered = () =>
        Promise.race([last, new Promise((resolve) => setTimeout(resolve, DELIVERY_TIMEOUT_MS))]);
      try {
        if (flagged()) controller.abort();
        const history = await fit(m, x, y, {
          ...opts,
          yieldEveryMs: opts.yieldEveryMs ?? DEFAULT_YIELD_MS,
          signal: controller.signal,
          onBatchEnd: (p) => {
            batchesRun++;
            if (shared) Atomics.store(shared, BATCH_COUNTER, batchesRun);
            report({ type: "batch", ...p });
            if (flagged()) controller.abort();
          },
          onEpochEnd: async (log) => {
            report({ type: "epoch", ...log });
            await delivered();
          },
        });
        return { ...history, batchesRun };
      } finally {
        running = undefined;
        await delivered();
        release();
      }
    },

    /** Stops a running fit (after the batch in flight when the message arrives). */
    cancel(): boolean {
      if (!running) return false;
      running.abort();
      return true;
    },

    /** Loss and accuracy in inference mode. */
    evaluate(x: Float32Array, y: Labels, opts: { batchSize?: number } = {}) {
      const m = current("evaluate");
      idle("evaluate");
      return evaluate(m, x, y, opts);
    },

    /** Inference-mode outputs of the training model, [N, ...outputShape], transferred back. */
    predict(x: Float32Array, opts: { batchSize?: number } = {}): Float32Array {
      const m = current("predict");
      idle("predict");
      const out = m.predict(x, opts);
      return Comlink.transfer(out, [out.buffer]);
    },

    /** The .enn file of the model (BN folded, optionally int8), transferred back. */
    export(opts: ExportOptions = {}): ExportedModel {
      const m = current("export");
      idle("export");
      const { bytes, report } = exportModel(m, opts);
      return Comlink.transfer({ bytes, report }, [bytes.buffer]);
    },

    /**
     * Every parameter and state tensor by name, transferred back. Allowed while fit runs (a live
     * view of training): the weights as of the last finished batch, never a half-applied update.
     */
    getWeights(): Record<string, Float32Array> {
      const m = current("getWeights");
      const weights = Object.fromEntries(m.getWeights());
      return Comlink.transfer(
        weights,
        Object.values(weights).map((w) => w.buffer),
      );
    },
  };
}

export type TrainWorkerApi = ReturnType<typeof createTrainWorkerApi>;

/**
 * Errors cross the thread boundary with their own fields too (SpecError.layer and .field,
 * LintError.findings, TrainingDivergedError.epoch/.batch), not only message, name and stack.
 */
export function installErrorSerializer(): void {
  const base = Comlink.transferHandlers.get("throw")!;
  Comlink.transferHandlers.set("throw", {
    canHandle: base.canHandle,
    deserialize: base.deserialize,
    serialize(thrown: unknown) {
      const { value } = thrown as { value: unknown };
      if (!(value instanceof Error)) return base.serialize(thrown);
      const fields: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(value)) {
        try {
          fields[key] = structuredClone(v);
        } catch {
          // A field that cannot be cloned stays behind; the message still says what went wrong.
        }
      }
      return [
        {
          isError: true,
          value: { ...fields, message: value.message, name: value.name, stack: value.stack },
        },
        [],
      ];
    },
  });
}

/** Exposes the API on an endpoint (a worker's global scope, a MessagePort, a node adapter). */
export function exposeTrainWorker(
  endpoint: Comlink.Endpoint,
  options: TrainWorkerApiOptions = {},
): TrainWorkerApi {
  installErrorSerializer();
  const api = createTrainWorkerApi(options);
  Comlink.expose(api, endpoint);
  return api;
}
