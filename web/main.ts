// The browser demo (`npm run web`): edit a model's layers with live layer-order lint, train it on
// the bundled Fashion-MNIST subset in a Web Worker (worker/webWorker.ts) with a progress bar and a
// live chart, cancel, export the .enn and run the exported file on this page with the inference
// engine. Plain DOM; the page thread only draws, so it stays responsive while the worker trains.
import { idxToDataset, type Dataset } from "../src/dataset.js";
import { InferenceEngine } from "../src/engine.js";
import { decodeIdx } from "../src/idx.js";
import { Kernels } from "../src/kernels.js";
import { lintLayerOrder, type LintFinding } from "../src/lint.js";
import { cnnSpec, FASHION_LABELS, mlpSpec } from "../src/referenceModels.js";
import { resolveSpec, SpecError, type ModelSpec } from "../src/spec.js";
import type { OptimizerConfig } from "../src/optimizer.js";
import { connectWebWorker, type RemoteHistory, type TrainEvent } from "../worker/client.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** Test images shown in the prediction grid. */
const GRID = 24;

const PRESETS: Record<string, () => ModelSpec> = {
  mlp: () => withoutLabels(mlpSpec()),
  cnn: () => withoutLabels(cnnSpec()),
  small: () => ({
    inputShape: [784],
    layers: [
      { type: "dense", units: 64 },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "dropout", rate: 0.2 },
      { type: "dense", units: 10 },
      { type: "softmax" },
    ],
  }),
};

function withoutLabels(spec: ModelSpec): ModelSpec {
  // The class names go into the export instead (ExportOptions.labels), keeping the editor short.
  return { inputShape: spec.inputShape, layers: spec.layers };
}

/** One layer per line: readable and easy to reorder by moving lines. */
function formatSpec(spec: ModelSpec): string {
  const layers = spec.layers.map((l) => `    ${JSON.stringify(l).replace(/([:,])/g, "$1 ")}`);
  return `{\n  "inputShape": ${JSON.stringify(spec.inputShape)},\n  "layers": [\n${layers.join(",\n")}\n  ]\n}`;
}

/** What tests (and curious users, from the console) can inspect. */
interface DemoState {
  ready: boolean;
  phase: "loading" | "idle" | "training" | "exporting" | "done" | "cancelled" | "error";
  progressEvents: number;
  history?: RemoteHistory;
  /** Batches the worker had finished when Cancel was pressed (from the shared counter). */
  batchesAtCancel?: number;
  enn?: Uint8Array;
  /** Outputs of the exported model for the whole test set, [1000, 10]. */
  testOutputs?: Float32Array;
  testAccuracy?: number;
  /** Longest gap between two animation frames of the page while the worker trained. */
  longestFrameWhileTrainingMs: number;
  error?: string;
}

const state: DemoState = {
  ready: false,
  phase: "loading",
  progressEvents: 0,
  longestFrameWhileTrainingMs: 0,
};

// ---- page-thread responsiveness meter --------------------------------------------------------

function startFpsMeter(): void {
  const chip = $("env-fps");
  let frames = 0;
  let worst = 0;
  let last = performance.now();
  let windowStart = last;
  const frame = (t: number) => {
    frames++;
    worst = Math.max(worst, t - last);
    if (state.phase === "training")
      state.longestFrameWhileTrainingMs = Math.max(state.longestFrameWhileTrainingMs, t - last);
    last = t;
    if (t - windowStart >= 1000) {
      chip.textContent = `page: ${Math.round((frames * 1000) / (t - windowStart))} fps, longest frame ${Math.round(worst)} ms`;
      chip.classList.toggle("ok", worst < 100);
      frames = 0;
      worst = 0;
      windowStart = t;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

// ---- live lint -----------------------------------------------------------------------------------

let currentSpec: ModelSpec | undefined;

function lintEditor(): void {
  const area = $<HTMLTextAreaElement>("spec");
  const status = $("spec-status");
  const list = $("findings");
  list.replaceChildren();
  currentSpec = undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(area.value);
  } catch (e) {
    area.classList.add("invalid");
    status.className = "status error";
    status.textContent = `JSON: ${(e as Error).message}`;
    updateButtons();
    return;
  }
  let findings: LintFinding[];
  try {
    const resolved = resolveSpec(parsed);
    findings = lintLayerOrder(resolved);
    status.className = "status";
    status.textContent = `input [${resolved.inputShape.join(", ")}] → output [${resolved.outputShape.join(", ")}], ${resolved.params.toLocaleString("en-US")} parameters, ${resolved.layers.length} layers`;
    currentSpec = parsed as ModelSpec;
    area.classList.remove("invalid");
  } catch (e) {
    area.classList.add("invalid");
    status.className = "status error";
    const where = e instanceof SpecError && e.layer >= 0 ? `layer ${e.layer}: ` : "";
    status.textContent = `${e instanceof SpecError ? "spec" : "error"}: ${where}${(e as Error).message}`;
    updateButtons();
    return;
  }
  if (findings.length === 0) {
    const li = document.createElement("li");
    li.className = "clean";
    li.textContent =
      "No layer-order findings: the canonical Dense/Conv → BatchNorm → activation → Dropout order.";
    list.append(li);
  }
  for (const f of findings) {
    const li = document.createElement("li");
    li.className = f.severity;
    li.dataset.code = f.code;
    const head = document.createElement("div");
    const sev = document.createElement("span");
    sev.className = "sev";
    sev.textContent = f.severity;
    const code = document.createElement("span");
    code.className = "code";
    code.textContent = `${f.code} · layer ${f.layer} (${f.layerType})`;
    head.append(sev, code);
    const msg = document.createElement("div");
    msg.textContent = f.message;
    const fix = document.createElement("div");
    fix.className = "fix";
    const b = document.createElement("b");
    b.textContent = "fix: ";
    fix.append(b, f.fix);
    li.append(head, msg, fix);
    list.append(li);
  }
  updateButtons();
}

// ---- chart -----------------------------------------------------------------------------------------

interface Point {
  /** Fractional epoch. */
  t: number;
  loss: number;
  acc: number;
}

const chart = {
  epochs: 1,
  points: [] as Point[],
  val: [] as { t: number; acc: number }[],
  pending: false,
  reset(epochs: number) {
    this.epochs = Math.max(1, epochs);
    this.points = [];
    this.val = [];
    this.request();
  },
  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      drawChart();
    });
  },
};

function drawChart(): void {
  const canvas = $<HTMLCanvasElement>("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d")!;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const color = (name: string) => css.getPropertyValue(name).trim();
  const pad = { l: 44, r: 44, t: 10, b: 26 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  // A round top for the loss axis, so its four gridlines get round labels.
  const top = Math.max(...chart.points.map((p) => p.loss), 0);
  const maxLoss = top <= 1 ? 1 : top <= 2 ? 2 : Math.ceil(top / 2) * 2;
  const X = (t: number) => pad.l + (t / chart.epochs) * pw;
  const YL = (v: number) => pad.t + ph - (Math.min(v, maxLoss) / maxLoss) * ph;
  const YA = (v: number) => pad.t + ph - v * ph;

  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  g.strokeStyle = color("--line");
  g.fillStyle = color("--muted");
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (ph * i) / 4;
    g.beginPath();
    g.moveTo(pad.l, y + 0.5);
    g.lineTo(pad.l + pw, y + 0.5);
    g.stroke();
    g.textAlign = "right";
    g.fillText((maxLoss * (1 - i / 4)).toFixed(2), pad.l - 6, y + 4);
    g.textAlign = "left";
    g.fillText(`${100 - i * 25}%`, pad.l + pw + 6, y + 4);
  }
  g.textAlign = "center";
  const step = Math.max(1, Math.ceil(chart.epochs / 10));
  for (let e = 0; e <= chart.epochs; e += step) g.fillText(e ? `epoch ${e}` : "0", X(e), h - 8);

  const line = (ys: (p: Point) => number, c: string) => {
    if (chart.points.length < 2) return;
    g.strokeStyle = c;
    g.lineWidth = 2;
    g.beginPath();
    chart.points.forEach((p, i) => (i ? g.lineTo(X(p.t), ys(p)) : g.moveTo(X(p.t), ys(p))));
    g.stroke();
  };
  line((p) => YL(p.loss), color("--loss"));
  line((p) => YA(p.acc), color("--acc"));
  g.fillStyle = color("--val");
  for (const v of chart.val) {
    g.beginPath();
    g.arc(X(v.t), YA(v.acc), 4, 0, Math.PI * 2);
    g.fill();
  }
}

// ---- data, kernels, worker -------------------------------------------------------------------------

async function fetchIdx(name: string) {
  const res = await fetch(`data/${name}.gz`);
  if (!res.ok) throw new Error(`fetching data/${name}.gz failed: HTTP ${res.status}`);
  return decodeIdx(new Uint8Array(await res.arrayBuffer()), name);
}

async function loadData(): Promise<{ train: Dataset; test: Dataset }> {
  const [ti, tl, vi, vl] = await Promise.all(
    [
      "train-images-idx3-ubyte",
      "train-labels-idx1-ubyte",
      "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte",
    ].map(fetchIdx),
  );
  return { train: idxToDataset(ti, tl, "train"), test: idxToDataset(vi, vl, "t10k") };
}

const kernelModule = Kernels.compileStreaming("edgenn.wasm");
/** A training worker of its own; it needs init() with the kernel module or its URL. */
const spawnTrainer = () =>
  connectWebWorker(
    new Worker(new URL("./webWorker.js", import.meta.url), {
      type: "module",
      name: "edgenn-train",
    }),
  );
const trainer = spawnTrainer();
const trainerReady = kernelModule.then((m) => trainer.init(m));
let data: { train: Dataset; test: Dataset } | undefined;

// ---- training --------------------------------------------------------------------------------------

function num(id: string): number {
  return Number($<HTMLInputElement>(id).value);
}

function log(line: string): void {
  const el = $("log");
  el.textContent = `${el.textContent ? `${el.textContent}\n` : ""}${line}`;
  el.scrollTop = el.scrollHeight;
}

function updateButtons(): void {
  const busy = state.phase === "training" || state.phase === "exporting";
  $<HTMLButtonElement>("train").disabled = !state.ready || busy || !currentSpec;
  $<HTMLButtonElement>("cancel").disabled = state.phase !== "training";
  $<HTMLButtonElement>("download").disabled = busy || !state.enn;
}

function setProgress(fraction: number, text: string, error = false): void {
  $("bar").style.width = `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%`;
  const p = $("progress-text");
  p.textContent = text;
  p.className = error ? "status error" : "status";
}

function optimizer(): OptimizerConfig {
  const type = $<HTMLSelectElement>("optimizer").value;
  const learningRate = num("lr");
  return type === "sgd"
    ? { type, learningRate, momentum: 0.9 }
    : { type: type as "adam" | "adamw", learningRate };
}

async function train(): Promise<void> {
  if (!data || !currentSpec) return;
  const spec = currentSpec;
  const epochs = num("epochs");
  const batchSize = num("batch");
  const samples = Math.min(num("samples"), data.train.count);
  const seed = num("seed");
  state.phase = "training";
  state.progressEvents = 0;
  state.history = undefined;
  state.batchesAtCancel = undefined;
  state.error = undefined;
  state.longestFrameWhileTrainingMs = 0;
  updateButtons();
  chart.reset(epochs);
  $("log").textContent = "";
  setProgress(0, "Creating the model in the worker…");
  cancelRequested = false;
  try {
    await trainerReady;
    const info = await trainer.create(spec, { seed, optimizer: optimizer() });
    log(
      `model: ${info.params.toLocaleString("en-US")} parameters, loss ${info.loss}, seed ${seed}`,
    );
    // Cancel clicked while the worker was still loading or creating the model: train nothing.
    if (cancelRequested) {
      state.phase = "cancelled";
      log("cancelled before training started");
      setProgress(0, "Cancelled before training started.");
      updateButtons();
      return;
    }
    const inputSize = data.train.x.length / data.train.count;
    const started = performance.now();
    // copy: the page keeps its data for the next run; the copies are transferred, not cloned.
    const history = await trainer.fit(
      data.train.x.subarray(0, samples * inputSize),
      data.train.y.subarray(0, samples),
      {
        epochs,
        batchSize,
        validationData: [data.test.x, data.test.y],
        // As `edgenn train` does: BN statistics measured in inference mode after the last epoch.
        recalibrateBatchNorm: true,
        copy: true,
        onProgress: (e: TrainEvent) => onProgress(e, epochs, batchSize, samples),
      },
    );
    state.history = history;
    const seconds = (performance.now() - started) / 1000;
    if (history.cancelled) {
      state.phase = "cancelled";
      log(
        `cancelled after ${history.batchesRun} batches (${seconds.toFixed(1)} s); the model is still usable`,
      );
      setProgress(
        parseFloat($("bar").style.width) / 100,
        `Cancelled after ${history.batchesRun} batches. Exporting the model as it is…`,
      );
    } else {
      log(`trained ${epochs} epoch${epochs === 1 ? "" : "s"} in ${seconds.toFixed(1)} s`);
      const r = history.recalibration;
      if (r && r.layers.length > 0)
        log(
          `BatchNorm recalibrated: ${r.layers.length} layer${r.layers.length === 1 ? "" : "s"}, ${r.samples.toLocaleString("en-US")} training samples in inference mode (${r.seconds.toFixed(1)} s)`,
        );
    }
    await exportAndPredict();
    state.phase = history.cancelled ? "cancelled" : "done";
  } catch (e) {
    state.phase = "error";
    state.error = (e as Error).message;
    setProgress(0, `${(e as Error).name}: ${(e as Error).message}`, true);
    log(`error: ${(e as Error).message}`);
  }
  updateButtons();
}

/** Exponential moving average of per-batch loss and accuracy: the curve the chart draws. */
const smooth = { loss: NaN, acc: NaN, prevLoss: 0, prevAcc: 0, prevSeen: 0 };
const SMOOTHING = 0.1;

function onProgress(e: TrainEvent, epochs: number, batchSize: number, samples: number): void {
  state.progressEvents++;
  if (e.type === "batch") {
    const t = e.epoch + (e.batch + 1) / e.batches;
    // fit reports running means over the epoch so far; the batch's own values fall out of two of them.
    if (e.batch === 0) Object.assign(smooth, { prevLoss: 0, prevAcc: 0, prevSeen: 0 });
    if (e.epoch === 0 && e.batch === 0) Object.assign(smooth, { loss: NaN, acc: NaN });
    const seen = Math.min((e.batch + 1) * batchSize, samples);
    const n = seen - smooth.prevSeen;
    const loss = (e.loss * seen - smooth.prevLoss * smooth.prevSeen) / n;
    const acc = (e.accuracy * seen - smooth.prevAcc * smooth.prevSeen) / n;
    Object.assign(smooth, { prevLoss: e.loss, prevAcc: e.accuracy, prevSeen: seen });
    smooth.loss = Number.isNaN(smooth.loss) ? loss : smooth.loss + SMOOTHING * (loss - smooth.loss);
    smooth.acc = Number.isNaN(smooth.acc) ? acc : smooth.acc + SMOOTHING * (acc - smooth.acc);
    chart.points.push({ t, loss: smooth.loss, acc: smooth.acc });
    setProgress(
      t / epochs,
      `epoch ${e.epoch + 1}/${epochs} · batch ${e.batch + 1}/${e.batches} · loss ${e.loss.toFixed(4)} · accuracy ${(e.accuracy * 100).toFixed(1)}% · ${Math.round(e.samplesPerSecond).toLocaleString("en-US")} samples/s · ${e.batch + 1 === e.batches ? "testing the epoch on the test images…" : `ETA ${e.etaSeconds.toFixed(1)} s`}`,
    );
  } else {
    if (e.valAccuracy !== undefined) chart.val.push({ t: e.epoch + 1, acc: e.valAccuracy });
    log(
      `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(4)}, accuracy ${(e.accuracy * 100).toFixed(2)}%, test accuracy ${((e.valAccuracy ?? 0) * 100).toFixed(2)}% (${e.seconds.toFixed(2)} s, ${Math.round(e.samplesPerSecond).toLocaleString("en-US")} samples/s)`,
    );
  }
  chart.request();
}

/** Cancel was clicked during this run (possibly before its fit call was made). */
let cancelRequested = false;

function cancel(): void {
  cancelRequested = true;
  state.batchesAtCancel = trainer.cancel();
  $<HTMLButtonElement>("cancel").disabled = true;
}

// ---- export and predictions ---------------------------------------------------------------------

async function exportAndPredict(): Promise<void> {
  if (!data) return;
  state.phase = "exporting";
  updateButtons();
  const { bytes, report } = await trainer.export({ labels: FASHION_LABELS });
  state.enn = bytes;
  const engine = await InferenceEngine.load(bytes, { kernels: await kernelModule, maxBatch: 100 });
  const { test } = data;
  const C = engine.outputSize;
  const outputs = new Float32Array(test.count * C);
  const n = engine.inputSize;
  for (let s = 0; s < test.count; s += 100) {
    const b = Math.min(100, test.count - s);
    outputs.set(engine.predict(test.x.subarray(s * n, (s + b) * n), b), s * C);
  }
  let right = 0;
  for (let i = 0; i < test.count; i++) if (argmax(outputs, i * C, C) === test.y[i]) right++;
  state.testOutputs = outputs;
  state.testAccuracy = right / test.count;
  log(
    `exported: ${(bytes.length / 1024).toFixed(1)} KiB .enn (${report.weights}, ${report.paramsAfter.toLocaleString("en-US")} stored values); test accuracy of the file: ${(state.testAccuracy * 100).toFixed(2)}%`,
  );
  setProgress(
    1,
    `${state.history?.cancelled ? "Cancelled" : "Done"} · exported .enn ${(bytes.length / 1024).toFixed(1)} KiB · test accuracy ${(state.testAccuracy * 100).toFixed(2)}% on ${test.count} images`,
  );
  $("predict-summary").textContent =
    `The exported file, loaded by the inference engine on this page: ${(state.testAccuracy * 100).toFixed(2)}% of ${test.count} test images right. The first ${GRID}:`;
  renderGrid(outputs, C);
}

function argmax(a: Float32Array, at: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[at + i] > a[at + best]) best = i;
  return best;
}

function renderGrid(outputs: Float32Array, C: number): void {
  if (!data) return;
  const { test } = data;
  const tiles: HTMLElement[] = [];
  for (let i = 0; i < Math.min(GRID, test.count); i++) {
    const probs = outputs.subarray(i * C, i * C + C);
    const pred = argmax(probs, 0, C);
    const tile = document.createElement("div");
    tile.className = `tile ${pred === test.y[i] ? "right" : "wrong"}`;
    const canvas = document.createElement("canvas");
    canvas.width = 28;
    canvas.height = 28;
    const g = canvas.getContext("2d")!;
    const img = g.createImageData(28, 28);
    for (let p = 0; p < 784; p++) {
      const v = Math.round(test.x[i * 784 + p] * 255);
      img.data.set([v, v, v, 255], p * 4);
    }
    g.putImageData(img, 0, 0);
    const text = document.createElement("div");
    const predEl = document.createElement("div");
    predEl.className = "pred";
    predEl.textContent = `${FASHION_LABELS[pred]} ${(probs[pred] * 100).toFixed(0)}%`;
    const truth = document.createElement("div");
    truth.className = "truth";
    truth.textContent = pred === test.y[i] ? "correct" : `is ${FASHION_LABELS[test.y[i]]}`;
    text.append(predEl, truth);
    const bars = document.createElement("div");
    bars.className = "bars";
    const top = [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, 3);
    for (const k of top) {
      const row = document.createElement("div");
      row.className = "bar-row";
      const name = document.createElement("span");
      name.textContent = FASHION_LABELS[k];
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(probs[k] * 100).toFixed(1)}%`;
      track.append(fill);
      const pct = document.createElement("span");
      pct.textContent = `${(probs[k] * 100).toFixed(1)}%`;
      row.append(name, track, pct);
      bars.append(row);
    }
    tile.append(canvas, text, bars);
    tiles.push(tile);
  }
  $("grid").replaceChildren(...tiles);
}

function download(): void {
  if (!state.enn) return;
  const url = URL.createObjectURL(
    new Blob([state.enn as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }),
  );
  const a = document.createElement("a");
  a.href = url;
  a.download = `edgenn-${$<HTMLSelectElement>("preset").value}.enn`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- wiring ------------------------------------------------------------------------------------------

function choosePreset(): void {
  const name = $<HTMLSelectElement>("preset").value;
  const make = PRESETS[name];
  if (make) $<HTMLTextAreaElement>("spec").value = formatSpec(make());
  lintEditor();
}

function main(): void {
  const isolated = globalThis.crossOriginIsolated === true;
  const chip = $("env-isolated");
  chip.textContent = isolated
    ? "cross-origin isolated: cancel stops within one batch"
    : "not cross-origin isolated: cancel stops when the worker yields";
  chip.classList.toggle("ok", isolated);
  startFpsMeter();
  $("preset").addEventListener("change", choosePreset);
  $("spec").addEventListener("input", () => {
    $<HTMLSelectElement>("preset").value = "custom";
    lintEditor();
  });
  $("train").addEventListener("click", () => void train());
  $("cancel").addEventListener("click", cancel);
  $("download").addEventListener("click", download);
  window.addEventListener("resize", () => chart.request());
  choosePreset();
  drawChart();
  Promise.all([loadData(), trainerReady])
    .then(([d]) => {
      data = d;
      state.ready = true;
      state.phase = "idle";
      setProgress(0, `Ready: ${d.train.count} training and ${d.test.count} test images loaded.`);
      updateButtons();
    })
    .catch((e: Error) => {
      state.phase = "error";
      state.error = e.message;
      setProgress(0, `Could not start: ${e.message}`, true);
    });
}

(window as unknown as { edgennDemo: unknown }).edgennDemo = { state, trainer, spawnTrainer };
main();
