// A trainable model: its layers, the memory plan (parameters once; activations once per batch
// size), the forward pass in training or inference mode, backward, and one optimizer step.
//
// Kernel memory, low to high:
//   [ parameters | gradients | optimizer slot 0 | slot 1 | BN moving stats | dropout RNG state ]
//   [ per-batch-size plan: input, labels, layer outputs, saved tensors, two gradient buffers, scratch ]
//   [ dataset copied in by fit() ]
import { ArenaPlanner, alignUp } from "./arena.js";
import type { Kernels } from "./kernels.js";
import {
  backwardLayer,
  forwardLayer,
  isAlias,
  layerTensors,
  makeRuntime,
  scratchBytes,
  type LayerBuffers,
  type LayerRuntime,
  type ParamTensor,
  type StateTensor,
} from "./layers.js";
import {
  applyOptimizer,
  optimizerSlots,
  resolveOptimizer,
  type OptimizerConfig,
  type ParamBlock,
  type ResolvedOptimizer,
} from "./optimizer.js";
import { firstNonFinite } from "./finite.js";
import { LintError, hasErrors, lintLayerOrder } from "./lint.js";
import { Rng } from "./random.js";
import { resolveSpec, sizeOf, toSpec, type ModelSpec, type ResolvedModel } from "./spec.js";

export type LossName =
  "sparseCategoricalCrossentropy" | "categoricalCrossentropy" | "meanSquaredError";

export interface ModelOptions {
  /** Seeds weight initialisation, shuffling and dropout masks (default 0). */
  seed?: number;
  optimizer?: OptimizerConfig;
  /** Default: cross-entropy when the model ends in softmax (or has several outputs), else MSE. */
  loss?: LossName;
  /** Layer-order lint warnings become errors that stop model creation (LintError). */
  strict?: boolean;
}

/** Per-batch-size memory plan. */
/** Where a cancelled fit() stopped inside an epoch (Model.epochProgress; kept in checkpoints). */
export interface EpochProgress {
  /** The shuffle RNG's state before the epoch drew its permutation (it is drawn again). */
  shuffleRng: number[];
  /** Batches of the epoch already trained. */
  batch: number;
  /** The run's sample count, batch size and shuffle flag: only a fit with the same continues. */
  samples: number;
  batchSize: number;
  shuffle: boolean;
  /** The epoch's sums so far (sample-weighted loss, correct predictions), for its log. */
  lossSum: number;
  correct: number;
}

export interface BatchPlan {
  batch: number;
  /** [B, ...inputShape] */
  x: number;
  /** i32 [B] class labels */
  labels: number;
  /** [B, outputs] one-hot/soft targets or regression targets */
  targets: number;
  /** i32 [B] rows of the dataset that make this batch */
  idx: number;
  /** Buffers in training mode (dropout writes its own output). */
  train: LayerBuffers[];
  /** Buffers in inference mode (dropout and flatten alias their input). */
  infer: LayerBuffers[];
  /** [B, outputs] probabilities when a cross-entropy loss is computed on logits (no softmax layer) */
  probs: number;
  /** Two [B, max layer width] gradient buffers, used alternately going backward. */
  gradA: number;
  gradB: number;
  scratch: number;
  end: number;
}

export class ModelError extends Error {
  override name = "ModelError";
}

function glorotLimit(shape: number[]): number {
  // Keras glorot_uniform: fans of a conv kernel [kh, kw, in, out] include the receptive field.
  const receptive = shape.length > 2 ? shape.slice(0, -2).reduce((a, b) => a * b, 1) : 1;
  const fanIn = shape[shape.length - 2] * receptive;
  const fanOut = shape[shape.length - 1] * receptive;
  return Math.sqrt(6 / (fanIn + fanOut));
}

export class Model {
  readonly resolved: ResolvedModel;
  readonly layers: LayerRuntime[];
  readonly params: ParamTensor[] = [];
  readonly state: StateTensor[] = [];
  readonly block: ParamBlock;
  readonly optimizer: ResolvedOptimizer;
  readonly loss: LossName;
  /** Dropout PRNG state (in kernel memory, advanced by the dropout kernel). */
  readonly rngState: number;
  /** End of the fixed region; batch plans start here. */
  readonly fixedEnd: number;
  /** Completed epochs and optimizer steps (restored from checkpoints). */
  epoch = 0;
  step = 0;
  /** Host RNG for shuffling. */
  readonly shuffleRng: Rng;
  /**
   * Where a cancelled `fit` stopped inside an epoch (saved in checkpoints): the next `fit` with the
   * same data and batch size continues that epoch, in the same order, from the next batch.
   */
  epochProgress: EpochProgress | undefined = undefined;
  /** Set while a fit() runs on this model (a second one at the same time is refused). */
  training = false;
  private readonly plans = new Map<number, BatchPlan>();
  /** End of the data set placeData copied in; plans made while it is live go above it. */
  private dataEnd = 0;
  private readonly stateBlock: { ptr: number; bytes: number };

  constructor(
    readonly kernels: Kernels,
    spec: ModelSpec | ResolvedModel,
    options: ModelOptions = {},
  ) {
    if (kernels.inferenceOnly)
      throw new Error(
        `edgenn: these kernels are the inference-only build (edgenn.infer.wasm), which InferenceEngine runs; a Model trains and needs the full build (edgenn.wasm)`,
      );
    this.resolved = "outputShape" in spec ? spec : resolveSpec(spec);
    if (options.strict) {
      const findings = lintLayerOrder(this.resolved, { strict: true });
      if (hasErrors(findings)) throw new LintError(findings);
    }
    this.layers = this.resolved.layers.map(makeRuntime);
    this.optimizer = resolveOptimizer(options.optimizer);
    this.loss = options.loss ?? this.defaultLoss();
    this.checkLoss();
    const k = kernels.abi;

    // Parameters: decayed tensors (kernels) first, then the rest, so one optimizer call covers each.
    const arena = new ArenaPlanner(kernels.heapBase);
    const entries = this.resolved.layers.flatMap((l) =>
      layerTensors(l).params.map((p) => ({ l, ...p })),
    );
    const ordered = [...entries.filter((e) => e.decay), ...entries.filter((e) => !e.decay)];
    const paramStart = arena.end;
    let decayEnd = paramStart;
    for (const e of ordered) {
      const size = sizeOf(e.shape);
      const ptr = arena.f32(`layer${e.l.index}.${e.name}`, size);
      if (e.decay) decayEnd = arena.end;
      this.params.push({
        layer: e.l.index,
        name: e.name,
        shape: e.shape,
        size,
        ptr,
        decay: e.decay,
      });
      (this.layers[e.l.index] as unknown as Record<string, number>)[e.name] = ptr;
    }
    const paramBytes = arena.end - paramStart;
    const grads = arena.take("gradients", paramBytes);
    const slots = optimizerSlots(this.optimizer);
    const slot0 = slots > 0 ? arena.take("optimizer slot 0", paramBytes) : paramStart;
    const slot1 = slots > 1 ? arena.take("optimizer slot 1", paramBytes) : paramStart;
    this.block = {
      ptr: paramStart,
      bytes: paramBytes,
      decayBytes: decayEnd - paramStart,
      gradDelta: grads - paramStart,
      slotDelta: [slot0 - paramStart, slot1 - paramStart],
    };
    const stateStart = arena.end;
    for (const l of this.resolved.layers) {
      for (const s of layerTensors(l).state) {
        const size = sizeOf(s.shape);
        const ptr = arena.f32(`layer${l.index}.${s.name}`, size);
        this.state.push({ layer: l.index, name: s.name, shape: s.shape, size, ptr });
        (this.layers[l.index] as unknown as Record<string, number>)[s.name] = ptr;
      }
    }
    this.stateBlock = { ptr: stateStart, bytes: arena.end - stateStart };
    this.rngState = arena.take("dropout rng", k.rng_state_bytes());
    this.fixedEnd = arena.end;
    kernels.claim(this);
    kernels.ensure(this.fixedEnd);

    const seed = options.seed ?? 0;
    this.shuffleRng = new Rng();
    this.reseed(seed);
    this.initWeights(new Rng(seed));
  }

  get spec(): ModelSpec {
    return toSpec(this.resolved);
  }

  get inputSize(): number {
    return sizeOf(this.resolved.inputShape);
  }

  get outputSize(): number {
    return sizeOf(this.resolved.outputShape);
  }

  private lastType(): string {
    return this.resolved.layers[this.resolved.layers.length - 1].spec.type;
  }

  private defaultLoss(): LossName {
    return this.lastType() === "softmax"
      ? "sparseCategoricalCrossentropy"
      : this.outputSize > 1
        ? "sparseCategoricalCrossentropy"
        : "meanSquaredError";
  }

  private checkLoss(): void {
    const known: LossName[] = [
      "sparseCategoricalCrossentropy",
      "categoricalCrossentropy",
      "meanSquaredError",
    ];
    if (!known.includes(this.loss))
      throw new ModelError(
        `unknown loss ${JSON.stringify(this.loss)}; use one of ${known.join(", ")}`,
      );
    if (this.loss !== "meanSquaredError" && this.lastType() === "sigmoid")
      throw new ModelError(
        `cross-entropy over classes needs a softmax output (or raw logits), but the last layer is sigmoid; use loss "meanSquaredError" or end with softmax`,
      );
  }

  /** Is the loss cross-entropy fused with a final softmax layer (computed from its logits)? */
  get fusedSoftmax(): boolean {
    return this.loss !== "meanSquaredError" && this.lastType() === "softmax";
  }

  /** Keras defaults: Glorot-uniform kernels, zero biases, gamma 1, beta 0, moving mean 0, variance 1. */
  initWeights(rng: Rng): void {
    const f = this.kernels.f32;
    for (const p of this.params) {
      const o = p.ptr >>> 2;
      if (p.name === "kernel") {
        const lim = glorotLimit(p.shape);
        for (let i = 0; i < p.size; i++) f[o + i] = (rng.next() * 2 - 1) * lim;
      } else f.fill(p.name === "gamma" ? 1 : 0, o, o + p.size);
    }
    for (const s of this.state)
      f.fill(s.name === "movingVariance" ? 1 : 0, s.ptr >>> 2, (s.ptr >>> 2) + s.size);
    const blockEnd = this.block.ptr + this.block.bytes;
    // Gradients and optimizer slots start at zero (gaps between aligned tensors stay zero forever).
    f.fill(0, blockEnd >>> 2, this.stateBlock.ptr >>> 2);
  }

  /** The memory plan for a batch size; planned once and cached. */
  plan(batch: number): BatchPlan {
    if (!Number.isInteger(batch) || batch < 1)
      throw new ModelError(`batch size must be a positive integer, got ${batch}`);
    const cached = this.plans.get(batch);
    if (cached) return cached;
    const k = this.kernels.abi;
    // A plan never overlaps a placed data set: a predict() or evaluate() with a new batch size in
    // the middle of fit() (from a callback) must not overwrite the training data.
    const a = new ArenaPlanner(Math.max(this.fixedEnd, this.dataEnd));
    const B = batch;
    const x = a.f32("x", B * this.inputSize);
    const labels = a.i32("labels", B);
    const targets = a.f32("targets", B * this.outputSize);
    const idx = a.i32("idx", B);
    const train: LayerBuffers[] = [];
    const infer: LayerBuffers[] = [];
    let curTrain = x;
    let curInfer = x;
    let widest = this.inputSize;
    let scratch = 0;
    for (const rt of this.layers) {
      const t = rt.l.spec.type;
      const n = B * rt.outSize;
      widest = Math.max(widest, rt.outSize);
      scratch = Math.max(scratch, scratchBytes(k, rt, B));
      const outTrain = isAlias(rt.l, true) ? curTrain : a.f32(`layer${rt.l.index}.out`, n);
      const saved = {
        batchMean: t === "batchNorm" ? a.f32("bn mean", rt.channels) : 0,
        batchVar: t === "batchNorm" ? a.f32("bn var", rt.channels) : 0,
        batchInvStd: t === "batchNorm" ? a.f32("bn invstd", rt.channels) : 0,
        mask: t === "dropout" ? a.f32("dropout mask", n) : 0,
        argmax: t === "maxPool2d" ? a.i32("maxpool argmax", n) : 0,
      };
      train.push({ in: curTrain, out: outTrain, ...saved });
      // Inference never needs a dropout output: it is the identity. Other layers reuse the
      // training buffers (a plan runs in one mode at a time).
      const outInfer = isAlias(rt.l, false) ? curInfer : outTrain;
      infer.push({ in: curInfer, out: outInfer, ...saved });
      curTrain = outTrain;
      curInfer = outInfer;
    }
    const probs = a.f32("probs", B * this.outputSize);
    const gradA = a.f32("grad A", B * widest);
    const gradB = a.f32("grad B", B * widest);
    const scratchPtr = a.take("scratch", scratch);
    const plan: BatchPlan = {
      batch,
      x,
      labels,
      targets,
      idx,
      train,
      infer,
      probs,
      gradA,
      gradB,
      scratch: scratchPtr,
      end: a.end,
    };
    this.kernels.ensure(plan.end);
    this.plans.set(batch, plan);
    return plan;
  }

  /** Inference-mode forward of the batch already in plan.x; returns the output pointer. */
  forwardInfer(p: BatchPlan, B = p.batch, skipFinalSoftmax = false): number {
    this.kernels.checkOwner(this, "model");
    const k = this.kernels.abi;
    const L = this.layers.length;
    for (let i = 0; i < L; i++) {
      const rt = this.layers[i];
      if (isAlias(rt.l, false)) continue;
      if (skipFinalSoftmax && i === L - 1) break;
      forwardLayer(k, rt, p.infer[i], B, false, p.scratch, this.rngState);
    }
    return p.infer[L - 1].out;
  }

  /** Inference-mode forward of layers [0, end) only: leaves layer end's input in plan.infer[end].in. */
  forwardInferUntil(p: BatchPlan, B: number, end: number): void {
    this.kernels.checkOwner(this, "model");
    const k = this.kernels.abi;
    for (let i = 0; i < end; i++) {
      const rt = this.layers[i];
      if (isAlias(rt.l, false)) continue;
      forwardLayer(k, rt, p.infer[i], B, false, p.scratch, this.rngState);
    }
  }

  /** Training-mode forward of plan.x (BN batch statistics, moving stats updated, dropout on). */
  forwardTrain(p: BatchPlan, B = p.batch): void {
    this.kernels.checkOwner(this, "model");
    const k = this.kernels.abi;
    const L = this.layers.length - (this.fusedSoftmax ? 1 : 0);
    for (let i = 0; i < L; i++) {
      const rt = this.layers[i];
      if (isAlias(rt.l, true)) continue;
      forwardLayer(k, rt, p.train[i], B, true, p.scratch, this.rngState);
    }
  }

  /**
   * Loss of the batch whose forward pass just ran, with `sparse` i32 labels in plan.labels or
   * targets in plan.targets. When `grad` is non-zero, d(loss)/d(output) goes there. Also returns
   * the number of correct argmax predictions through `correctOut[0]`.
   */
  lossOf(
    p: BatchPlan,
    B: number,
    training: boolean,
    sparse: boolean,
    grad: number,
    correctOut: Int32Array,
  ): number {
    const k = this.kernels.abi;
    const bufs = training ? p.train : p.infer;
    const last = bufs[bufs.length - 1];
    const C = this.outputSize;
    let loss: number;
    let scores: number;
    if (this.loss === "meanSquaredError") {
      loss = k.mse_f32(B, C, last.out, p.targets, grad);
      scores = last.out;
    } else {
      const logits = this.fusedSoftmax ? last.in : last.out;
      scores = this.fusedSoftmax ? last.out : p.probs;
      loss = sparse
        ? k.softmax_xent_sparse_f32(B, C, logits, p.labels, scores, grad)
        : k.softmax_xent_dense_f32(B, C, logits, p.targets, scores, grad);
    }
    correctOut[0] = sparse
      ? k.count_correct_sparse(B, C, scores, p.labels)
      : C > 1
        ? k.count_correct_dense(B, C, scores, p.targets)
        : 0;
    return loss;
  }

  /** Backward through every layer from the loss gradient in plan.gradA; fills the gradients. */
  backward(p: BatchPlan, B = p.batch): void {
    const k = this.kernels.abi;
    let g = p.gradA;
    let other = p.gradB;
    const start = this.layers.length - 1 - (this.fusedSoftmax ? 1 : 0);
    for (let i = start; i >= 0; i--) {
      const rt = this.layers[i];
      const t = rt.l.spec.type;
      if (isAlias(rt.l, true)) continue;
      const hasParams = t === "dense" || t === "conv2d" || t === "batchNorm";
      if (i === 0 && !hasParams) break;
      const dx = i === 0 && t !== "batchNorm" ? 0 : other;
      backwardLayer(k, rt, p.train[i], B, g, dx, this.block.gradDelta, p.scratch);
      other = g;
      g = dx;
    }
  }

  /** One optimizer update from the gradients (increments the step count). */
  applyGradients(): void {
    this.step++;
    applyOptimizer(this.kernels.abi, this.optimizer, this.block, this.step);
  }

  /** Copies a batch of inputs (B rows starting at row `start` of x) into plan.x. */
  writeInputs(p: BatchPlan, x: Float32Array, start: number, B: number): void {
    const n = this.inputSize;
    this.kernels.f32.set(x.subarray(start * n, (start + B) * n), p.x >>> 2);
  }

  /** Inference-mode predictions for every row of x (BN moving statistics, no dropout). */
  predict(x: Float32Array | number[], options: { batchSize?: number } = {}): Float32Array {
    const xs = x instanceof Float32Array ? x : Float32Array.from(x);
    const N = this.checkInputs(xs, "x");
    const B = Math.min(options.batchSize ?? 256, Math.max(N, 1));
    const out = new Float32Array(N * this.outputSize);
    for (let s = 0; s < N; s += B) {
      const b = Math.min(B, N - s);
      const p = this.plan(b);
      this.writeInputs(p, xs, s, b);
      const y = this.forwardInfer(p, b);
      out.set(
        this.kernels.f32.subarray(y >>> 2, (y >>> 2) + b * this.outputSize),
        s * this.outputSize,
      );
    }
    return out;
  }

  /** Checks x holds whole samples; returns the sample count. */
  checkInputs(x: Float32Array, what: string): number {
    const n = this.inputSize;
    if (x.length % n !== 0)
      throw new ModelError(
        `${what} has ${x.length} values, not a whole number of samples of shape [${this.resolved.inputShape.join(", ")}] (${n} values each)`,
      );
    const i = firstNonFinite(x);
    if (i >= 0)
      throw new ModelError(
        `${what} holds a non-finite value (${x[i]}) at index ${i} (sample ${Math.floor(i / n)})`,
      );
    return x.length / n;
  }

  /** Parameter count and a table of layers, output shapes and parameters. */
  summary(): string {
    const rows = this.resolved.layers.map((l) => [
      `${l.index}`,
      l.spec.type,
      `[${l.outShape.join(", ")}]`,
      `${l.params}`,
    ]);
    const head = ["#", "layer", "output shape", "params"];
    const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
    const line = (r: string[]) =>
      r.map((v, c) => (c === 3 ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join("  ");
    const nonTrainable = this.state.reduce((a, s) => a + s.size, 0);
    return [
      `input [${this.resolved.inputShape.join(", ")}]`,
      line(head),
      ...rows.map(line),
      `trainable parameters: ${this.resolved.params}; non-trainable (BN moving statistics): ${nonTrainable}`,
    ].join("\n");
  }

  /** A copy of every parameter and state tensor, keyed `layers.<i>.<name>`. */
  getWeights(): Map<string, Float32Array> {
    this.kernels.checkOwner(this, "model");
    const m = new Map<string, Float32Array>();
    for (const t of [...this.params, ...this.state])
      m.set(`layers.${t.layer}.${t.name}`, this.kernels.readF32(t.ptr, t.size));
    return m;
  }

  /** Sets tensors by name (a subset is fine); sizes must match. */
  setWeights(weights: Map<string, Float32Array | number[]>): void {
    this.kernels.checkOwner(this, "model");
    const all = new Map(
      [...this.params, ...this.state].map((t) => [`layers.${t.layer}.${t.name}`, t]),
    );
    for (const [name, v] of weights) {
      const t = all.get(name);
      if (!t)
        throw new ModelError(
          `no tensor named ${name} in this model (tensors: ${[...all.keys()].join(", ")})`,
        );
      if (v.length !== t.size)
        throw new ModelError(
          `tensor ${name} needs ${t.size} values [${t.shape.join(", ")}], got ${v.length}`,
        );
      this.kernels.writeF32(t.ptr, v);
    }
  }

  /** Raw optimizer slot contents, for checkpoints. */
  optimizerSlotsBytes(): { slot: number; data: Float32Array }[] {
    this.kernels.checkOwner(this, "model");
    const out: { slot: number; data: Float32Array }[] = [];
    for (let s = 0; s < optimizerSlots(this.optimizer); s++)
      out.push({
        slot: s,
        data: this.kernels.readF32(this.block.ptr + this.block.slotDelta[s], this.block.bytes >> 2),
      });
    return out;
  }

  setOptimizerSlot(slot: number, data: Float32Array): void {
    this.kernels.checkOwner(this, "model");
    if (slot >= optimizerSlots(this.optimizer) || data.length !== this.block.bytes >> 2)
      throw new ModelError(`optimizer slot ${slot} does not fit this model/optimizer`);
    this.kernels.writeF32(this.block.ptr + this.block.slotDelta[slot], data);
  }

  getDropoutRngState(): Uint8Array {
    this.kernels.checkOwner(this, "model");
    const n = this.kernels.abi.rng_state_bytes();
    return this.kernels.u8.slice(this.rngState, this.rngState + n);
  }

  setDropoutRngState(bytes: Uint8Array): void {
    this.kernels.checkOwner(this, "model");
    const n = this.kernels.abi.rng_state_bytes();
    if (bytes.length !== n)
      throw new ModelError(`dropout RNG state must be ${n} bytes, got ${bytes.length}`);
    this.kernels.u8.set(bytes, this.rngState);
  }

  /** Reseeds shuffling and dropout (fit's `seed` option). */
  reseed(seed: number): void {
    this.shuffleRng.seed(seed ^ 0x5eed5eed);
    this.kernels.abi.rng_seed(this.rngState, (seed ^ 0x0d0d0d0d) >>> 0);
  }

  /**
   * Plans every batch size in `batchSizes`, then copies a data set (rows of x, and i32 labels or
   * f32 targets) above every plan made so far, once, so training steps can gather batches in
   * WASM. `extraBytes` more are reserved after the data. Plans made later (any batch size) go above
   * the data, so the data stays intact until the next placeData. Returns the byte offsets.
   */
  placeData(
    batchSizes: Iterable<number>,
    x: Float32Array,
    y: Int32Array | Float32Array,
    extraBytes = 0,
  ): { x: number; y: number; extra: number } {
    this.kernels.checkOwner(this, "model");
    this.dataEnd = 0;
    for (const b of batchSizes) this.plan(b);
    let top = this.fixedEnd;
    for (const p of this.plans.values()) top = Math.max(top, p.end);
    const k = this.kernels;
    const dataX = alignUp(top);
    const dataY = alignUp(dataX + x.length * 4);
    const extra = alignUp(dataY + y.length * 4);
    this.dataEnd = alignUp(extra + extraBytes);
    k.ensure(this.dataEnd);
    k.f32.set(x, dataX >>> 2);
    if (y instanceof Int32Array) k.i32.set(y, dataY >>> 2);
    else k.f32.set(y, dataY >>> 2);
    return { x: dataX, y: dataY, extra };
  }
}
