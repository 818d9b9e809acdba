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
  return fitParallel(r.spec ?? SMALL_MLP, data.x.slice(0, n * 784), data.y.slice(0, n), {
    workers: r.workers,
    epochs: r.epochs,
    batchSize: r.batchSize ?? 64,
    seed: r.seed ?? 0,
    optimizer: r.optimizer ?? { type: "adam", learningRate: 0.002 },
    transport: r.transport,
    kernels: module,
    spawnWorker: () =>
      new Worker(new URL("./parallelWebWorker.js", import.meta.url), {
        type: "module",
        name: "edgenn-replica",
      }),
    onEpochEnd: (e) =>
      log(
        `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(4)}, accuracy ${e.accuracy.toFixed(4)}, ${Math.round(e.samplesPerSecond)} samples/s`,
      ),
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
button.addEventListener("click", async () => {
  button.disabled = true;
  const workers = Number($<HTMLInputElement>("workers").value);
  try {
    const r = await run({
      samples: Number($<HTMLInputElement>("samples").value),
      workers,
      epochs: Number($<HTMLInputElement>("epochs").value),
    });
    log(
      `done on ${workers} workers over ${r.transport === "shared" ? "shared memory" : "messages"}; replicas identical: ${r.replicasIdentical}`,
    );
  } catch (e) {
    log(`failed: ${(e as Error).message}`);
  } finally {
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
