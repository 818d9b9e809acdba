// Inference side by side: the exported reference models on edgenn's InferenceEngine, ONNX Runtime
// Web (wasm EP, SIMD, 1 thread) and TensorFlow.js (tfjs-backend-wasm, SIMD, 1 thread), all three
// running the same folded graph (BN folded, dropout removed) with the same f32 weights on the same
// Fashion-MNIST test images. Outputs are checked equal (max abs diff <= 1e-4) before any timing.
//
// Weights: the reference spec's seeded Glorot init (seed 0) with non-trivial BatchNorm statistics
// (gamma, beta, moving mean and variance drawn from a seeded RNG), so the fold is exercised.
//
// Timing, per runtime, as a user calls it:
//   edgenn  engine.predict(x, B) (returns a view of the engine's output buffer);
//   ORT     new ort.Tensor per call, await session.run(), read .data (session.run is async: its
//           promise overhead is part of every call, as it is for a user);
//   TF.js   tf.tidy(() => model.predict(tf.tensor(x)).dataSync()), a tf.Sequential built from the
//           folded ops (the same graph, not the unfolded training model).
// Batch-1 latency: per-call median and p90 after a warm-up of a few hundred calls (the first calls
// run in V8's baseline tier). Batch-64 throughput: median of several timed windows. The runtimes
// take turns (rounds of calls, windows round-robin) so load changes on a shared machine hit all.
import * as tf from "@tensorflow/tfjs";
import type { EnnContent } from "../src/ennFormat.js";
import { InferenceEngine } from "../src/engine.js";
import { exportModel } from "../src/export.js";
import { Model } from "../src/model.js";
import { kernelModule, loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { Rng } from "../src/random.js";
import { cnnSpec, mlpSpec } from "../src/referenceModels.js";
import type { ModelSpec } from "../src/spec.js";
import { buildOnnxModel, ortPredict, ortSession } from "./onnxGraph.js";
import { useTfjsWasm } from "./tfjsBaseline.js";
import { ratioVerdict } from "./stats.js";

export const MAX_ABS_DIFF = 1e-4;

export interface BenchModel {
  name: "mlp" | "cnn";
  spec: ModelSpec;
  /** The .enn file. */
  bytes: Uint8Array;
  content: EnnContent;
  /** The same folded graph as ONNX. */
  onnx: Uint8Array;
}

/** The reference model with seeded weights and non-trivial BN statistics, exported. */
export function benchModel(name: "mlp" | "cnn"): BenchModel {
  const spec = name === "mlp" ? mlpSpec() : cnnSpec();
  const model = new Model(loadKernels(), spec, { seed: 0 });
  const rng = new Rng(1234);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const stats = new Map<string, Float32Array>();
  for (const [key, v] of model.getWeights()) {
    const kind = key.slice(key.lastIndexOf(".") + 1);
    const range: Record<string, [number, number]> = {
      gamma: [0.5, 1.5],
      beta: [-0.5, 0.5],
      movingMean: [-0.3, 0.3],
      movingVariance: [0.3, 2],
    };
    if (range[kind])
      stats.set(
        key,
        Float32Array.from(v, () => u(...range[kind])),
      );
  }
  model.setWeights(stats);
  const { bytes, content } = exportModel(model);
  return { name, spec, bytes, content, onnx: buildOnnxModel(content) };
}

// ---- TensorFlow.js -----------------------------------------------------------------------------

/** TF's "same" padding [top, left, bottom, right] for one spatial layout. */
function samePad(H: number, W: number, k: [number, number], s: [number, number]): number[] {
  const tot = (n: number, kk: number, ss: number) =>
    Math.max((Math.ceil(n / ss) - 1) * ss + kk - n, 0);
  const th = tot(H, k[0], s[0]);
  const tw = tot(W, k[1], s[1]);
  return [th >> 1, tw >> 1, th - (th >> 1), tw - (tw >> 1)];
}

function paddingOf(
  pad: number[],
  inShape: number[],
  k: [number, number],
  s: [number, number],
): "same" | "valid" {
  if (pad.every((p) => p === 0)) return "valid";
  if (samePad(inShape[0], inShape[1], k, s).every((p, i) => p === pad[i])) return "same";
  throw new Error(`tfjs baseline: padding [${pad.join(", ")}] is neither "same" nor "valid"`);
}

const TF_ACTIVATION: Record<string, string> = {
  linear: "linear",
  relu: "relu",
  tanh: "tanh",
  sigmoid: "sigmoid",
  softmax: "softmax",
  elu: "elu",
};

/** A tf.Sequential of the folded op list with the exported weights set. */
export function tfjsFoldedModel(content: EnnContent): tf.Sequential {
  const m = tf.sequential();
  const t = (i: number) => content.tensors[i];
  const f32 = (i: number) => {
    const d = t(i).data;
    if (!(d instanceof Float32Array)) throw new Error("tfjs baseline: f32 weights only");
    return d;
  };
  let inShape = content.inputShape;
  content.ops.forEach((op, k) => {
    const first = k === 0 ? { inputShape: content.inputShape } : {};
    const act = (a: string, alpha?: number) => {
      if (a === "leakyRelu") m.add(tf.layers.leakyReLU({ alpha }));
      else if (a === "elu" && alpha !== 1) m.add(tf.layers.elu({ alpha }));
    };
    const fusable = (a: string, alpha?: number) =>
      a !== "leakyRelu" && !(a === "elu" && alpha !== 1) ? (TF_ACTIVATION[a] as "relu") : "linear";
    switch (op.op) {
      case "dense": {
        const l = tf.layers.dense({
          units: op.units,
          activation: fusable(op.activation, op.alpha),
          useBias: op.bias !== undefined,
          ...first,
        });
        m.add(l);
        const w = [tf.tensor(f32(op.kernel), t(op.kernel).shape)];
        if (op.bias !== undefined) w.push(tf.tensor(f32(op.bias), t(op.bias).shape));
        l.setWeights(w);
        act(op.activation, op.alpha);
        break;
      }
      case "conv2d": {
        const l = tf.layers.conv2d({
          filters: op.filters,
          kernelSize: op.kernelSize,
          strides: op.strides,
          padding: paddingOf(op.pad, inShape, op.kernelSize, op.strides),
          activation: fusable(op.activation, op.alpha),
          useBias: op.bias !== undefined,
          ...first,
        });
        m.add(l);
        const w = [tf.tensor(f32(op.kernel), t(op.kernel).shape)];
        if (op.bias !== undefined) w.push(tf.tensor(f32(op.bias), t(op.bias).shape));
        l.setWeights(w);
        act(op.activation, op.alpha);
        break;
      }
      case "scaleShift": {
        // (x - center) * scale + shift as inference BN: variance 1 - eps so sqrt(var + eps) = 1.
        const C = op.outShape[op.outShape.length - 1];
        const eps = 1e-3;
        const l = tf.layers.batchNormalization({ epsilon: eps, ...first });
        m.add(l);
        l.setWeights([
          tf.tensor1d(f32(op.scale)),
          tf.tensor1d(f32(op.shift)),
          op.center === undefined ? tf.zeros([C]) : tf.tensor1d(f32(op.center)),
          tf.fill([C], 1 - eps),
        ]);
        break;
      }
      case "relu":
      case "tanh":
      case "sigmoid":
      case "softmax":
        m.add(tf.layers.activation({ activation: op.op, ...first }));
        break;
      case "leakyRelu":
        m.add(tf.layers.leakyReLU({ alpha: op.alpha, ...first }));
        break;
      case "elu":
        m.add(tf.layers.elu({ alpha: op.alpha, ...first }));
        break;
      case "maxPool2d":
      case "avgPool2d": {
        const cfg = {
          poolSize: op.poolSize,
          strides: op.strides,
          padding: paddingOf(op.pad, inShape, op.poolSize, op.strides),
          ...first,
        };
        m.add(
          op.op === "maxPool2d" ? tf.layers.maxPooling2d(cfg) : tf.layers.averagePooling2d(cfg),
        );
        break;
      }
      case "globalAvgPool2d":
        m.add(tf.layers.globalAveragePooling2d(first));
        break;
      case "flatten":
        m.add(tf.layers.flatten(first));
        break;
    }
    inShape = op.outShape;
  });
  return m;
}

export function tfjsPredict(m: tf.Sequential, x: Float32Array, shape: number[]): Float32Array {
  return tf.tidy(() => (m.predict(tf.tensor(x, shape)) as tf.Tensor).dataSync() as Float32Array);
}

// ---- timing ------------------------------------------------------------------------------------

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

export interface LatencyStats {
  /** microseconds per call */
  medianUs: number;
  p90Us: number;
  runs: number;
}

export interface ThroughputStats {
  /** median over the windows */
  samplesPerSecond: number;
  bestSamplesPerSecond: number;
  windows: number;
  callsPerWindow: number;
}

/** One runtime's two calls: batch-1 on sample i, and the batch-64 call. */
interface Caller {
  one: (i: number) => unknown;
  batch: () => unknown;
}

/**
 * Batch-1 latency of every caller, interleaved: `rounds` rounds, each runtime timing runs/rounds
 * calls per round, so a change in the machine's load (it is shared) hits all runtimes alike.
 */
async function latencies(
  callers: Caller[],
  runs: number,
  warmup: number,
  rounds = 10,
): Promise<LatencyStats[]> {
  for (const c of callers) for (let i = 0; i < warmup; i++) await c.one(i);
  const us = callers.map(() => [] as number[]);
  const per = Math.ceil(runs / rounds);
  for (let r = 0; r < rounds; r++)
    for (let k = 0; k < callers.length; k++)
      for (let i = 0; i < per; i++) {
        const t0 = performance.now();
        await callers[k].one(r * per + i);
        us[k].push((performance.now() - t0) * 1000);
      }
  return us.map((u) => ({ medianUs: quantile(u, 0.5), p90Us: quantile(u, 0.9), runs: u.length }));
}

/**
 * Batch throughput of every caller: timed windows (>= ~30 ms each) taken round-robin. Many short
 * windows rather than a few long ones: a noisy stretch of the shared machine then spans several
 * windows of every runtime instead of landing on one runtime's window.
 */
async function throughputs(
  callers: Caller[],
  batch: number,
  windows: number,
  warmup: number,
): Promise<ThroughputStats[]> {
  const calls: number[] = [];
  for (const c of callers) {
    for (let i = 0; i < warmup; i++) await c.batch();
    let n = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await c.batch();
      if (performance.now() - t0 >= 30 || n >= 1 << 14) break;
      n *= 2;
    }
    calls.push(n);
  }
  const rates = callers.map(() => [] as number[]);
  for (let w = 0; w < windows; w++)
    for (let k = 0; k < callers.length; k++) {
      const t0 = performance.now();
      for (let i = 0; i < calls[k]; i++) await callers[k].batch();
      rates[k].push((calls[k] * batch * 1000) / (performance.now() - t0));
    }
  return rates.map((r, k) => ({
    samplesPerSecond: quantile(r, 0.5),
    bestSamplesPerSecond: Math.max(...r),
    windows,
    callsPerWindow: calls[k],
  }));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Thrown when a baseline does not compute the same outputs as the engine. */
export class BaselineMismatchError extends Error {
  override name = "BaselineMismatchError";
}

export interface RuntimeRow {
  runtime: "edgenn" | "ort" | "tfjs";
  batch1: LatencyStats;
  batch64: ThroughputStats;
}

export interface InferenceResult {
  model: string;
  /** max |output - edgenn output| over 64 test images, per baseline */
  maxAbsDiff: { ort: number; tfjs: number };
  rows: RuntimeRow[];
  /** ours / theirs: latency (lower is better) and throughput (higher is better) */
  ratios: {
    latencyVsOrt: number;
    latencyVsTfjs: number;
    throughputVsOrt: number;
    throughputVsTfjs: number;
    throughputVsBest: number;
  };
}

export async function runInferenceBench(
  options: { quick?: boolean; models?: ("mlp" | "cnn")[] } = {},
): Promise<InferenceResult[]> {
  const quick = options.quick ?? false;
  const { test } = await readIdxDataset(defaultDataDir());
  const tfEnv = await useTfjsWasm();
  console.log(
    `  TF.js wasm: SIMD ${tfEnv.simd}, threads ${tfEnv.threads}; ORT: numThreads 1, SIMD on (ort-wasm-simd-threaded.wasm)`,
  );
  const out: InferenceResult[] = [];
  for (const name of options.models ?? ["mlp", "cnn"]) {
    const bm = benchModel(name);
    const n = bm.spec.inputShape.reduce((a, b) => a * b, 1);
    const B = 64;
    const x64 = test.x.slice(0, B * n);
    const samples = Array.from({ length: B }, (_, i) => x64.subarray(i * n, (i + 1) * n));
    const shape1 = [1, ...bm.spec.inputShape];
    const shape64 = [B, ...bm.spec.inputShape];

    const engine = InferenceEngine.loadSync(bm.bytes, { kernels: kernelModule(), maxBatch: B });
    const session = await ortSession(bm.onnx);
    const tfm = tfjsFoldedModel(bm.content);

    const ours = engine.predict(x64, B).slice();
    const diff = {
      ort: maxAbsDiff(ours, await ortPredict(session, x64, shape64)),
      tfjs: maxAbsDiff(ours, tfjsPredict(tfm, x64, shape64)),
    };
    // Batch 1 through each path too (ORT and TF.js pick other kernels for M = 1).
    for (let i = 0; i < 4; i++) {
      const one = engine.predict(samples[i], 1).slice();
      diff.ort = Math.max(diff.ort, maxAbsDiff(one, await ortPredict(session, samples[i], shape1)));
      diff.tfjs = Math.max(diff.tfjs, maxAbsDiff(one, tfjsPredict(tfm, samples[i], shape1)));
    }
    console.log(
      `  ${name}: outputs vs edgenn over ${B} test images: ORT max abs diff ${diff.ort.toExponential(2)}, TF.js ${diff.tfjs.toExponential(2)} (limit ${MAX_ABS_DIFF})`,
    );
    if (!(diff.ort <= MAX_ABS_DIFF && diff.tfjs <= MAX_ABS_DIFF))
      throw new BaselineMismatchError(
        `${name}: a baseline computes different outputs from the engine (ORT ${diff.ort}, TF.js ${diff.tfjs}; limit ${MAX_ABS_DIFF}); fix bench/onnxGraph.ts or tfjsFoldedModel before timing`,
      );

    const runs = quick ? (name === "mlp" ? 200 : 50) : name === "mlp" ? 2000 : 500;
    const warm = quick ? 50 : name === "mlp" ? 500 : 200;
    const windows = quick ? 3 : 21;
    const w64 = quick ? 3 : 20;
    const runtimes: RuntimeRow["runtime"][] = ["edgenn", "ort", "tfjs"];
    const callers: Caller[] = [
      { one: (i) => engine.predict(samples[i & 63], 1), batch: () => engine.predict(x64, B) },
      {
        one: (i) => ortPredict(session, samples[i & 63], shape1),
        batch: () => ortPredict(session, x64, shape64),
      },
      {
        one: (i) => tfjsPredict(tfm, samples[i & 63], shape1),
        batch: () => tfjsPredict(tfm, x64, shape64),
      },
    ];
    const lat = await latencies(callers, runs, warm);
    const thr = await throughputs(callers, B, windows, w64);
    const rows: RuntimeRow[] = runtimes.map((runtime, k) => ({
      runtime,
      batch1: lat[k],
      batch64: thr[k],
    }));
    for (const { runtime, batch1, batch64 } of rows)
      console.log(
        `  ${name} ${runtime}: batch 1 median ${batch1.medianUs.toFixed(1)} us, p90 ${batch1.p90Us.toFixed(1)} us; batch 64 ${Math.round(batch64.samplesPerSecond)} samples/s (best window ${Math.round(batch64.bestSamplesPerSecond)})`,
      );
    const [e, o, t] = rows;
    out.push({
      model: name,
      maxAbsDiff: diff,
      rows,
      ratios: {
        latencyVsOrt: e.batch1.medianUs / o.batch1.medianUs,
        latencyVsTfjs: e.batch1.medianUs / t.batch1.medianUs,
        throughputVsOrt: e.batch64.samplesPerSecond / o.batch64.samplesPerSecond,
        throughputVsTfjs: e.batch64.samplesPerSecond / t.batch64.samplesPerSecond,
        throughputVsBest:
          e.batch64.samplesPerSecond /
          Math.max(o.batch64.samplesPerSecond, t.batch64.samplesPerSecond),
      },
    });
    await session.release();
    tfm.dispose();
  }
  return out;
}

/** Section 2 targets for these rows. */
export const INFERENCE_TARGETS = {
  mlp: { latencyVsOrt: 0.5, throughputVsBest: 1.5 },
  cnn: { latencyVsOrt: 0.6, throughputVsBest: 1.5 },
} as const;

export function printInferenceTable(results: InferenceResult[]): void {
  console.log(
    "\ninference, exported model, one thread (ORT: onnxruntime-web wasm EP; TF.js: tfjs-backend-wasm; both SIMD)",
  );
  console.log(
    "model | runtime | batch 1 median us | batch 1 p90 us | batch 64 samples/s | ours/theirs latency | ours/theirs throughput",
  );
  for (const r of results) {
    const e = r.rows[0];
    for (const row of r.rows) {
      const mine = row.runtime === "edgenn";
      console.log(
        `${r.model} | ${row.runtime} | ${row.batch1.medianUs.toFixed(1)} | ${row.batch1.p90Us.toFixed(1)} | ${Math.round(row.batch64.samplesPerSecond)} | ${mine ? "" : `${(e.batch1.medianUs / row.batch1.medianUs).toFixed(2)}x`} | ${mine ? "" : `${(e.batch64.samplesPerSecond / row.batch64.samplesPerSecond).toFixed(2)}x`}`,
      );
    }
    const t = INFERENCE_TARGETS[r.model as "mlp" | "cnn"];
    console.log(
      `${r.model} targets: batch-1 latency <= ${t.latencyVsOrt}x ORT: ${ratioVerdict(r.ratios.latencyVsOrt, t.latencyVsOrt, false)}; batch-64 >= ${t.throughputVsBest}x the better baseline: ${ratioVerdict(r.ratios.throughputVsBest, t.throughputVsBest, true)}`,
    );
  }
}
