// The multi-core page (dist-web/parallel.html): data-parallel training of the small mlp on
// several Web Workers with worker/parallelClient.ts's fitParallel, over a SharedArrayBuffer when
// the page is cross-origin isolated and by postMessage otherwise. test/browserParallel.test.ts
// drives it through window.edgennParallel.
import { idxToDataset, type Dataset } from "../src/dataset.js";
import { decodeIdx } from "../src/idx.js";
import { Kernels } from "../src/kernels.js";
import type { OptimizerConfig } from "../src/optimizer.js";
import type { ModelSpec } from "../src/spec.js";
import {
  defaultTransport,
  fitParallel,
  type DataParallelResult,
  type ParallelTransport,
} from "../worker/parallelClient.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const SMALL_MLP: ModelSpec = {
  inputShape: [784],
  layers: [
    { type: "dense", units: 64 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.2 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};

export interface ParallelRun {
  spec?: ModelSpec;
  samples: number;
  workers: number;
  epochs: number;
  batchSize?: number;
  seed?: number;
  optimizer?: OptimizerConfig;
  transport?: ParallelTransport;
  /** Aborts the run just after this epoch ends (so the stop lands inside the next one). */
  cancelAfterEpoch?: number;
  signal?: AbortSignal;
}

async function fetchIdx(name: string) {
  const res = await fetch(`data/${name}.gz`);
  if (!res.ok) throw new Error(`fetching data/${name}.gz failed: HTTP ${res.status}`);
  return decodeIdx(new Uint8Array(await res.arrayBuffer()), name);
}

const kernels = Kernels.compileStreaming("edgenn.wasm");
const train: Promise<Dataset> = Promise.all([
  fetchIdx("train-images-idx3-ubyte"),
  fetchIdx("train-labels-idx1-ubyte"),
]).then(([images, labels]) => idxToDataset(images, labels, "train"));

/** Trains on the first `samples` training images; resolves with fitParallel's result. */
async function run(r: ParallelRun): Promise<DataParallelResult> {
  const [data, module] = await Promise.all([train, kernels]);
  const n = Math.min(r.samples, data.count);
  const stopper = new AbortController();
  r.signal?.addEventListener("abort", () => stopper.abort());
  if (r.signal?.aborted) stopper.abort();
  return fitParallel(r.spec ?? SMALL_MLP, data.x.slice(0, n * 784), data.y.slice(0, n), {
    workers: r.workers,
    epochs: r.epochs,
    batchSize: r.batchSize ?? 64,
    seed: r.seed ?? 0,
    optimizer: r.optimizer ?? { type: "adam", learningRate: 0.002 },
    transport: r.transport,
    signal: stopper.signal,
    kernels: module,
    spawnWorker: () =>
      new Worker(new URL("./parallelWebWorker.js", import.meta.url), {
        type: "module",
        name: "edgenn-replica",
      }),
    onEpochEnd: (e) => {
      log(
        `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(4)}, accuracy ${e.accuracy.toFixed(4)}, ${Math.round(e.samplesPerSecond)} samples/s`,
      );
      if (e.epoch === r.cancelAfterEpoch) setTimeout(() => stopper.abort(), 0);
    },
  });
}

function log(line: string): void {
  const el = $("log");
  el.textContent = `${el.textContent ? `${el.textContent}\n` : ""}${line}`;
}

const transport = defaultTransport();
$("env-transport").textContent =
  transport === "shared"
    ? "cross-origin isolated: gradients meet in a SharedArrayBuffer"
    : "not cross-origin isolated: gradients travel by postMessage";
$("env-transport").classList.toggle("ok", transport === "shared");

const button = $<HTMLButtonElement>("train");
const cancel = $<HTMLButtonElement>("cancel");
let running: AbortController | undefined;
cancel.addEventListener("click", () => running?.abort());
button.addEventListener("click", async () => {
  button.disabled = true;
  running = new AbortController();
  cancel.disabled = false;
  const workers = Number($<HTMLInputElement>("workers").value);
  try {
    const r = await run({
      samples: Number($<HTMLInputElement>("samples").value),
      workers,
      epochs: Number($<HTMLInputElement>("epochs").value),
      signal: running.signal,
    });
    const over = r.transport === "shared" ? "shared memory" : "messages";
    const progress = r.model.epochProgress;
    log(
      r.cancelled
        ? `cancelled on ${workers} workers over ${over} after ${r.history.length} epoch(s)${progress ? ` and ${progress.batch} batch(es) of the next` : ""}; replicas identical: ${r.replicasIdentical}`
        : `done on ${workers} workers over ${over}; replicas identical: ${r.replicasIdentical}`,
    );
  } catch (e) {
    log(`failed: ${(e as Error).message}`);
  } finally {
    running = undefined;
    cancel.disabled = true;
    button.disabled = false;
  }
});
Promise.all([train, kernels]).then(
  () => (button.disabled = false),
  (e) => log(`loading failed: ${(e as Error).message}`),
);

(window as unknown as { edgennParallel: unknown }).edgennParallel = {
  run,
  transport,
  ready: Promise.all([train, kernels]).then(() => true),
};
