// fit() and evaluate(). fit copies the data set into kernel memory once; each step then builds its
// batch with a gather kernel from shuffled row indices, runs forward, loss, backward and the
// optimizer — all in WASM on planned offsets, so a training step allocates nothing.
import { LintError, hasErrors, lintLayerOrder } from "./lint.js";
import { ModelError, type BatchPlan, type Model } from "./model.js";
import {
  recalibrateBatchNorm,
  type RecalibrateOptions,
  type RecalibrationReport,
} from "./recalibrate.js";

export type Labels = Int32Array | Uint8Array | Uint16Array | Float32Array | number[];

export interface BatchProgress {
  /** 0-based epoch index (counting epochs completed before this fit call too). */
  epoch: number;
  /** 0-based batch index within the epoch. */
  batch: number;
  batches: number;
  /** Running mean of the training loss and accuracy over this epoch so far. */
  loss: number;
  accuracy: number;
  /** Training samples per second of training time in this epoch so far. */
  samplesPerSecond: number;
  /** Seconds left in this epoch at the current speed. */
  etaSeconds: number;
}

export interface EpochLog {
  /** 0-based epoch index. */
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  /** Training time of the epoch in this fit call (without validation; a continued epoch counts its rest). */
  seconds: number;
  samplesPerSecond: number;
}

export interface FitOptions {
  /** Train until this many epochs are complete (a model resumed from a checkpoint continues from its epoch). Default 1. */
  epochs?: number;
  batchSize?: number;
  /** Reshuffle the rows every epoch (default true). */
  shuffle?: boolean;
  /** Reseed shuffling and dropout. Without it the model's own RNG state continues (exact resume). */
  seed?: number;
  validationData?: [Float32Array, Labels];
  /** Called after every batch. The progress object is reused between calls: copy what you keep. */
  onBatchEnd?: (progress: BatchProgress) => void;
  /** Called after every epoch; may be async (e.g. to write a checkpoint) and is awaited. */
  onEpochEnd?: (log: EpochLog) => void | Promise<void>;
  /**
   * Aborting stops training within one batch; the model stays usable. A cancel inside an epoch
   * leaves `model.epochProgress` (checkpoints keep it): the next fit with the same data, batch
   * size and shuffle flag continues that epoch from the next batch, in the same order, exactly as
   * an uninterrupted run; with other data (or a `seed`) the interrupted epoch starts over.
   */
  signal?: AbortSignal;
  /** Refuse to train a model whose layer order has lint warnings (they become errors). */
  strict?: boolean;
  /** Yield to the event loop at least this often so progress renders and aborts arrive (default 50 ms). */
  yieldEveryMs?: number;
  /**
   * After the last epoch (not after a cancel), replace BN moving statistics with the population
   * statistics of the training inputs measured in inference mode (src/recalibrate.ts). Default
   * false: the moving statistics stay Keras's exponential averages, and a checkpoint resumes
   * exactly. Fixes dropout's variance shift on a BN downstream of it.
   */
  recalibrateBatchNorm?: boolean | RecalibrateOptions;
}

export interface History {
  epochs: EpochLog[];
  cancelled: boolean;
  /** Present when fit recalibrated BatchNorm statistics at the end. */
  recalibration?: RecalibrationReport & { seconds: number };
}

/** The loss turned NaN or infinite. The weights from before the failing batch are kept. */
export class TrainingDivergedError extends Error {
  override name = "TrainingDivergedError";
  constructor(
    message: string,
    readonly epoch: number,
    readonly batch: number,
  ) {
    super(message);
  }
}

interface PreparedLabels {
  sparse: boolean;
  /** i32 labels (sparse) or f32 targets [N, outputs]. */
  data: Int32Array | Float32Array;
}

/** Checks labels against the model's outputs and loss; names the first bad one. */
export function prepareLabels(model: Model, y: Labels, N: number, what = "y"): PreparedLabels {
  const C = model.outputSize;
  const loss = model.loss;
  const len = y.length;
  const isFloat = y instanceof Float32Array || Array.isArray(y);
  if (loss === "sparseCategoricalCrossentropy" && len === N) {
    const out = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      const v = y[i];
      if (!Number.isInteger(v) || v < 0 || v >= C)
        throw new ModelError(
          `${what}[${i}] = ${v} is not a class label in [0, ${C - 1}] (the model has ${C} outputs)`,
        );
      out[i] = v;
    }
    return { sparse: true, data: out };
  }
  if (len === N * C && !isFloat && loss === "sparseCategoricalCrossentropy" && C > 1) {
    // Integers, as many as one-hot rows need: one-hot only if every value is 0 or 1 (anything else
    // is more likely class labels for another number of samples).
    for (let i = 0; i < len; i++)
      if (y[i] !== 0 && y[i] !== 1)
        throw new ModelError(
          `${what} has ${len} values: not ${N} class labels, and not one-hot rows for ${N} samples x ${C} classes either (${what}[${i}] = ${y[i]}, one-hot values are 0 or 1)`,
        );
  }
  if (len === N * C) {
    const out = Float32Array.from(y as ArrayLike<number>);
    for (let i = 0; i < out.length; i++)
      if (!Number.isFinite(out[i])) throw new ModelError(`${what}[${i}] = ${out[i]} is not finite`);
    return { sparse: false, data: out };
  }
  const want =
    loss === "sparseCategoricalCrossentropy"
      ? `${N} class labels (or ${N * C} one-hot values)`
      : `${N * C} target values (${N} samples x ${C} outputs)`;
  throw new ModelError(`${what} has ${len} values but ${N} samples need ${want}`);
}

const now = () => performance.now();
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Loss and accuracy in inference mode (BN moving statistics, dropout off). */
export function evaluate(
  model: Model,
  xIn: Float32Array | number[],
  y: Labels,
  options: { batchSize?: number } = {},
): { loss: number; accuracy: number } {
  const x = xIn instanceof Float32Array ? xIn : Float32Array.from(xIn);
  const N = model.checkInputs(x, "x");
  if (N === 0) throw new ModelError("evaluate needs at least one sample");
  const labels = prepareLabels(model, y, N);
  const B = Math.min(options.batchSize ?? 256, N);
  const k = model.kernels;
  const C = model.outputSize;
  const correct = new Int32Array(1);
  let lossSum = 0;
  let right = 0;
  for (let s = 0; s < N; s += B) {
    const b = Math.min(B, N - s);
    const p = model.plan(b);
    model.writeInputs(p, x, s, b);
    if (labels.sparse) k.i32.set(labels.data.subarray(s, s + b), p.labels >>> 2);
    else k.f32.set(labels.data.subarray(s * C, (s + b) * C), p.targets >>> 2);
    model.forwardInfer(p, b, model.fusedSoftmax);
    lossSum += model.lossOf(p, b, false, labels.sparse, 0, correct) * b;
    right += correct[0];
  }
  return { loss: lossSum / N, accuracy: right / N };
}

export async function fit(
  model: Model,
  x: Float32Array | number[],
  y: Labels,
  options: FitOptions = {},
): Promise<History> {
  // Two runs interleaving their steps at yields would corrupt each other's updates and data.
  if (model.training)
    throw new ModelError(
      "fit is already running on this model; await it (or cancel it with its signal) before starting another",
    );
  model.training = true;
  try {
    return await fitRun(model, x instanceof Float32Array ? x : Float32Array.from(x), y, options);
  } finally {
    model.training = false;
  }
}

async function fitRun(
  model: Model,
  x: Float32Array,
  y: Labels,
  options: FitOptions,
): Promise<History> {
  if (options.strict) {
    const findings = lintLayerOrder(model.resolved, { strict: true });
    if (hasErrors(findings)) throw new LintError(findings);
  }
  const N = model.checkInputs(x, "x");
  if (N === 0) throw new ModelError("fit needs at least one sample");
  const labels = prepareLabels(model, y, N);
  const epochs = options.epochs ?? 1;
  if (!Number.isInteger(epochs) || epochs < 0)
    throw new ModelError(`epochs must be a non-negative integer, got ${epochs}`);
  const B = Math.min(options.batchSize ?? 32, N);
  if (!Number.isInteger(B) || B < 1)
    throw new ModelError(`batchSize must be a positive integer, got ${options.batchSize}`);
  const shuffle = options.shuffle ?? true;
  const yieldEvery = options.yieldEveryMs ?? 50;
  if (options.seed !== undefined) {
    // A reseeded run starts afresh: an interrupted epoch is not continued.
    model.reseed(options.seed);
    model.epochProgress = undefined;
  }
  let val: [Float32Array, Labels] | undefined;
  if (options.validationData) {
    const [vx, vy] = options.validationData;
    const vn = model.checkInputs(vx, "validationData x");
    prepareLabels(model, vy, vn, "validationData y");
    val = [vx, vy];
  }

  // Plan every batch size this run needs, then put the data set above the largest plan.
  const sizes = new Set([B, N % B || B]);
  if (val) {
    const vn = val[0].length / model.inputSize;
    const vb = Math.min(256, vn);
    sizes.add(vb).add(vn % vb || vb);
  }
  const k = model.kernels;
  const C = model.outputSize;
  const inSize = model.inputSize;
  const { x: dataX, y: dataY } = model.placeData(sizes, x, labels.data);

  const abi = k.abi;
  const perm = new Int32Array(N);
  const correct = new Int32Array(1);
  const batches = Math.ceil(N / B);
  const progress: BatchProgress = {
    epoch: 0,
    batch: 0,
    batches,
    loss: 0,
    accuracy: 0,
    samplesPerSecond: 0,
    etaSeconds: 0,
  };
  const history: History = { epochs: [], cancelled: false };
  let lastYield = now();

  for (let epoch = model.epoch; epoch < epochs; epoch++) {
    // A cancel between epochs stops before the next permutation is drawn.
    if (options.signal?.aborted) {
      history.cancelled = true;
      return history;
    }
    // An epoch a cancel interrupted continues where it stopped when the data and batch size are
    // the run's; otherwise it starts over (its permutation drawn from the same RNG state).
    const resume = model.epochProgress;
    model.epochProgress = undefined;
    if (resume) model.shuffleRng.setState(resume.shuffleRng);
    const same =
      resume !== undefined &&
      resume.samples === N &&
      resume.batchSize === B &&
      resume.shuffle === shuffle;
    const epochRng = model.shuffleRng.getState();
    for (let i = 0; i < N; i++) perm[i] = i;
    if (shuffle) model.shuffleRng.shuffle(perm);
    const first = same ? resume.batch : 0;
    let lossSum = same ? resume.lossSum : 0;
    let right = same ? resume.correct : 0;
    let seen = first * B;
    let seenHere = 0;
    let trainMs = 0;
    for (let bi = first; bi < batches; bi++) {
      if (options.signal?.aborted) {
        if (bi > 0)
          model.epochProgress = {
            shuffleRng: epochRng,
            batch: bi,
            samples: N,
            batchSize: B,
            shuffle,
            lossSum,
            correct: right,
          };
        else model.shuffleRng.setState(epochRng);
        history.cancelled = true;
        return history;
      }
      const t0 = now();
      const s = bi * B;
      const b = Math.min(B, N - s);
      const p: BatchPlan = model.plan(b);
      const i32 = k.i32;
      const idx = p.idx >>> 2;
      for (let j = 0; j < b; j++) i32[idx + j] = perm[s + j];
      abi.gather_rows_f32(b, inSize, dataX, p.idx, p.x);
      if (labels.sparse) abi.gather_i32(b, dataY, p.idx, p.labels);
      else abi.gather_rows_f32(b, C, dataY, p.idx, p.targets);
      model.forwardTrain(p, b);
      const loss = model.lossOf(p, b, true, labels.sparse, p.gradA, correct);
      if (!Number.isFinite(loss))
        throw new TrainingDivergedError(
          `training diverged: the loss became ${loss} at epoch ${epoch + 1}, batch ${bi + 1} of ${batches} (step ${model.step + 1}); ` +
            `the update was not applied, and checkpoints written so far are intact — lower the learning rate or check the data for extreme values`,
          epoch,
          bi,
        );
      model.backward(p, b);
      model.applyGradients();
      const t1 = now();
      trainMs += t1 - t0;
      lossSum += loss * b;
      right += correct[0];
      seen += b;
      seenHere += b;
      if (options.onBatchEnd) {
        progress.epoch = epoch;
        progress.batch = bi;
        progress.loss = lossSum / seen;
        progress.accuracy = right / seen;
        progress.samplesPerSecond = (seenHere * 1000) / trainMs;
        progress.etaSeconds = (N - seen) / progress.samplesPerSecond;
        options.onBatchEnd(progress);
      }
      if (t1 - lastYield > yieldEvery) {
        await tick();
        lastYield = now();
      }
    }
    model.epoch = epoch + 1;
    const log: EpochLog = {
      epoch,
      loss: lossSum / N,
      accuracy: right / N,
      seconds: trainMs / 1000,
      samplesPerSecond: (seenHere * 1000) / trainMs,
    };
    if (val) {
      const r = evaluate(model, val[0], val[1]);
      log.valLoss = r.loss;
      log.valAccuracy = r.accuracy;
    }
    history.epochs.push(log);
    if (options.onEpochEnd) await options.onEpochEnd(log);
  }
  if (options.recalibrateBatchNorm && history.epochs.length > 0) {
    const t0 = now();
    const o = options.recalibrateBatchNorm === true ? {} : options.recalibrateBatchNorm;
    const report = recalibrateBatchNorm(model, x, o);
    history.recalibration = { ...report, seconds: (now() - t0) / 1000 };
  }
  return history;
}
