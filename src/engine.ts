// The inference engine: runs a .enn model with the same kernels training uses. Platform-neutral
// (no Node built-ins): Cloudflare Workers hand it a compiled WebAssembly.Module, Node gets a default
// module registered by src/node/engine.ts.
//
// Memory is planned once per engine, for `maxBatch` samples (llama2.c style: nothing is allocated
// per call):
//   [ weights (f32; int8 kernels dequantised at load) | scaleShift constants (zeros, ones) ]
//   [ x: [maxBatch, ...inputShape] | ping: [maxBatch, widest] | pong: [maxBatch, widest] | scratch ]
// Dense/Conv2D/pooling write to the other ping-pong buffer; elementwise ops (activations,
// scaleShift) work in place; flatten is a reinterpretation. Memory never grows after load, so the
// typed views stay valid and `predict` returns a cached view of the output buffer.
import { ArenaPlanner } from "./arena.js";
import {
  readEnn,
  ModelFormatError,
  type ActivationName,
  type EnnLimits,
  type FileChecks,
  type EnnModel,
  type EnnOp,
  type InputNormalization,
} from "./ennFormat.js";
import type { KernelAbi } from "./kernelAbi.js";
import { Kernels } from "./kernels.js";
import { dequantizeInto } from "./quantize.js";

export interface EngineOptions {
  /** Largest batch `predict` accepts (default 64). Memory is planned for it at load. */
  maxBatch?: number;
  /** Refuse a model whose planned memory exceeds this (default 1 GiB). */
  maxMemoryBytes?: number;
  /** File limits (see EnnLimits). */
  limits?: Partial<EnnLimits>;
  /** The kernel module (or an existing Kernels instance, which the engine then owns). */
  kernels?: WebAssembly.Module | BufferSource | Kernels;
}

/** Model file bytes, or a kernel module with the bytes (Workers import the module statically). */
export type EngineSource =
  Uint8Array | ArrayBuffer | { module: WebAssembly.Module; bytes: Uint8Array | ArrayBuffer };

/** Bad arguments to predict (wrong input length, batch size out of range). */
export class InferenceError extends Error {
  override name = "InferenceError";
}

type Step = (B: number) => void;

let defaultKernelModule: (() => WebAssembly.Module) | undefined;
let hostCrc32: ((bytes: Uint8Array) => number | undefined) | undefined;

const DEFAULT_MAX_BATCH = 64;
const DEFAULT_MAX_MEMORY = 1024 * 1024 * 1024;

export class InferenceEngine {
  readonly kernels: Kernels;
  readonly maxBatch: number;
  readonly inputSize: number;
  readonly outputSize: number;
  /** Bytes of kernel memory the engine planned (weights + buffers at maxBatch). */
  readonly memoryBytes: number;
  private readonly steps: Step[];
  private readonly xPtr: number;
  private readonly outPtr: number;
  private outViews: (Float32Array | undefined)[];
  private f32: Float32Array;
  private viewedModel: EnnModel;
  private viewedBuffer: ArrayBufferLike | undefined;
  /** Where each tensor already in kernel memory sits (views of it are re-made after a grow). */
  private readonly placed: ({ at: number; length: number; bytes: number } | undefined)[];

  /**
   * The model as read. When the engine read the file itself (load/loadSync), its f32 tensors view
   * the given bytes (no copy); the engine computes from its own copy in kernel memory. After
   * loadEngineFile (Node), which reads the file straight into kernel memory, they view the bytes
   * the engine computes from (made anew if someone sharing its Kernels grows the memory).
   */
  get model(): EnnModel {
    if (this.kernels.memory.buffer !== this.viewedBuffer)
      this.viewedModel = this.viewModel(this.viewedModel);
    return this.viewedModel;
  }

  /** The model with views of the tensors in kernel memory over its current buffer. */
  private viewModel(model: EnnModel): EnnModel {
    const buffer = this.kernels.memory.buffer;
    this.viewedBuffer = buffer;
    if (!this.placed.some(Boolean)) return model;
    return {
      ...model,
      tensors: model.tensors.map((t, i) => {
        const p = this.placed[i];
        if (!p) return t;
        const View = t.data instanceof Float32Array ? Float32Array : Int8Array;
        return { ...t, data: new View(buffer, p.at, p.length) };
      }),
    };
  }

  /** Registers the kernel module used when none is given (src/node/engine.ts does this in Node). */
  static setDefaultKernelModule(provider: () => WebAssembly.Module): void {
    defaultKernelModule = provider;
  }

  /**
   * Registers a native CRC-32 for model files (src/node/engine.ts registers zlib's where Node has
   * one): on a cold start it checks a 1.7 MB file in 0.5 ms where the kernels' table loop, still
   * unoptimised, takes 2-3 ms. It returns the IEEE CRC-32 of the bytes it is given, or undefined
   * to leave the check to the kernels.
   */
  static setHostCrc32(crc32: ((bytes: Uint8Array) => number | undefined) | undefined): void {
    hostCrc32 = crc32;
  }

  static async load(source: EngineSource, options: EngineOptions = {}): Promise<InferenceEngine> {
    const { bytes, kernels } = splitSource(source, options);
    const k = kernels instanceof Kernels ? kernels : await Kernels.load(kernels);
    const model = readEnn(bytes, {
      limits: options.limits,
      checks: kernelFileChecks(k),
      copyTensors: false,
    });
    return new InferenceEngine(k, model, options);
  }

  static loadSync(source: EngineSource, options: EngineOptions = {}): InferenceEngine {
    const { bytes, kernels } = splitSource(source, options);
    const k = kernels instanceof Kernels ? kernels : Kernels.loadSync(kernels);
    const model = readEnn(bytes, {
      limits: options.limits,
      checks: kernelFileChecks(k),
      copyTensors: false,
    });
    return new InferenceEngine(k, model, options);
  }

  /** From an already-read model (e.g. after inspecting it). */
  constructor(kernels: Kernels, model: EnnModel, options: EngineOptions = {}) {
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 65536)
      throw new InferenceError(`maxBatch must be an integer from 1 to 65536, got ${maxBatch}`);
    this.kernels = kernels;
    this.maxBatch = maxBatch;
    const k = kernels.abi;
    const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
    this.inputSize = size(model.inputShape);
    this.outputSize = size(model.outputShape);
    const limit = options.maxMemoryBytes ?? DEFAULT_MAX_MEMORY;

    // Plan first (sizes only), check the total, then grow memory once and copy the weights in.
    // Tensors already in this engine's kernel memory (loadEngineFile reads the file there) are
    // used where they are: f32 ones need no slot and no copy, and the arena starts after them.
    // (Offsets are taken now: growing memory below detaches these views, which then read as empty.)
    const memory = kernels.memory.buffer;
    const placed = model.tensors.map((t) =>
      t.data.buffer === memory
        ? { at: t.data.byteOffset, length: t.data.length, bytes: t.data.byteLength }
        : undefined,
    );
    const inKernel = (i: number) => placed[i] !== undefined;
    let base = kernels.heapBase;
    for (const p of placed) if (p) base = Math.max(base, p.at + p.bytes);
    const a = new ArenaPlanner(base);
    // With batches over 2, dense kernels live in memory only pre-packed (gemm_pack_b_f32): every
    // batch then skips packing the weights, and batch 1 streams them sequentially. An engine for
    // batches of 1-2 keeps them row-major, read in place (no packing pass on a cold start); both
    // ways give the same bits. denseShape[i] = [in, units] of a packed kernel.
    const denseShape = new Map<number, [number, number]>();
    if (maxBatch > 2)
      model.ops.forEach((op, i) => {
        if (op.op === "dense") denseShape.set(op.kernel, [size(model.inShapes[i]), op.units]);
      });
    const weightPtr = model.tensors.map((t, i) => {
      // i8 kernels are dequantised to f32 in memory; their scale vectors need no memory slot.
      if (isScaleTensor(model, i)) return 0;
      const d = denseShape.get(i);
      if (d) return a.f32(`${t.name} (packed)`, k.gemm_packed_b_floats(d[0], d[1]));
      const p = placed[i];
      return t.data instanceof Float32Array && p ? p.at : a.f32(t.name, t.data.length);
    });
    // Convs on the Winograd path get their weights transformed and packed once
    // (conv2d_prepare_weights_f32), not on every call: prepared[op] is that slot, or 0. The
    // conv's step prepares them at its second call (see there), not here: a cold start's load
    // and first prediction do no more work than before.
    const prepared = model.ops.map((op, i) => {
      if (op.op !== "conv2d") return 0;
      const n = k.conv2d_prepared_weights_floats(
        model.inShapes[i][2],
        op.outShape[2],
        op.kernelSize[0],
        op.kernelSize[1],
        op.strides[0],
        op.strides[1],
      );
      return n > 0 ? a.f32(`${model.tensors[op.kernel].name} (prepared)`, n) : 0;
    });
    const weightsEnd = a.end;
    // A dense kernel not yet in kernel memory is staged row-major right after the weights (over the
    // activation buffers, unused while loading) and packed from there into its slot.
    let staging = 0;
    for (const [i] of denseShape)
      if (!inKernel(i)) staging = Math.max(staging, model.tensors[i].data.length);
    let maxChannels = 1;
    let widest = 1;
    for (const op of model.ops) {
      widest = Math.max(widest, size(op.outShape));
      if (op.op === "scaleShift")
        maxChannels = Math.max(maxChannels, op.outShape[op.outShape.length - 1]);
    }
    const zeros = a.f32("scaleShift zeros", maxChannels);
    const ones = a.f32("scaleShift ones", maxChannels);
    const B = maxBatch;
    const x = a.f32("x", B * this.inputSize);
    const ping = a.f32("ping", B * widest);
    const pong = a.f32("pong", B * widest);
    let scratchBytes = 0;
    for (let i = 0; i < model.ops.length; i++)
      for (const b of B > 1 ? [1, B] : [1])
        scratchBytes = Math.max(scratchBytes, opScratch(k, model.ops[i], model.inShapes[i], b));
    const scratch = a.take("scratch", scratchBytes);
    const end = Math.max(a.end, weightsEnd + staging * 4);
    if (end > limit || end > 0xffff0000)
      throw new ModelFormatError(
        `the model needs ${(end / 2 ** 20).toFixed(1)} MiB of memory at maxBatch ${B}, over the engine's limit of ${(limit / 2 ** 20).toFixed(1)} MiB; load it with a smaller maxBatch or a larger maxMemoryBytes`,
      );
    kernels.claim(this);
    kernels.ensure(end);
    this.memoryBytes = end;
    // Growing memory detached the views of tensors in kernel memory: the same bytes, new views.
    this.placed = placed;
    this.viewedModel = this.viewModel(model);
    const f32 = kernels.f32;
    this.f32 = f32;
    this.viewedModel.tensors.forEach((t, i) => {
      if (weightPtr[i] === 0) return;
      const d = denseShape.get(i);
      const p = placed[i];
      if (t.data instanceof Float32Array && p) {
        // In kernel memory already: used in place, or packed from where it is.
        if (d) k.gemm_pack_b_f32(d[0], d[1], p.at, d[1], 1, weightPtr[i]);
        return;
      }
      const dst = d ? weightsEnd : weightPtr[i];
      if (t.data instanceof Float32Array) f32.set(t.data, dst >>> 2);
      else {
        const op = model.ops.find(
          (o) => (o.op === "dense" || o.op === "conv2d") && o.kernel === i,
        ) as { kernelScale: number; outShape: number[] };
        const scales = this.viewedModel.tensors[op.kernelScale].data;
        dequantizeInto(t.data, scales, scales.length, f32, dst >>> 2);
      }
      if (d) k.gemm_pack_b_f32(d[0], d[1], weightsEnd, d[1], 1, weightPtr[i]);
    });
    f32.fill(0, zeros >>> 2, (zeros >>> 2) + maxChannels);
    f32.fill(1, ones >>> 2, (ones >>> 2) + maxChannels);

    // Compile the op list into closures over fixed pointers.
    const steps: Step[] = [];
    let cur = x;
    model.ops.forEach((op, i) => {
      const inShape = model.inShapes[i];
      const inSize = size(inShape);
      const outSize = size(op.outShape);
      const next = cur === ping ? pong : ping;
      const src = cur;
      switch (op.op) {
        case "dense": {
          const w = weightPtr[op.kernel];
          const bias = op.bias === undefined ? 0 : weightPtr[op.bias];
          const [lo, hi] = clampOf(op.activation);
          const units = op.units;
          if (denseShape.has(op.kernel))
            steps.push((b) =>
              k.gemm_f32_prepacked(
                b,
                units,
                inSize,
                src,
                inSize,
                1,
                w,
                next,
                units,
                bias,
                lo,
                hi,
                0,
                scratch,
              ),
            );
          else
            steps.push((b) =>
              k.dense_fwd_f32(b, inSize, units, src, w, bias, next, lo, hi, scratch),
            );
          pushActivation(steps, k, op.activation, op.alpha, next, units);
          cur = next;
          break;
        }
        case "conv2d": {
          const [H, W, C] = inShape;
          const [KH, KW] = op.kernelSize;
          const [SH, SW] = op.strides;
          const [padT, padL] = op.pad;
          const [OH, OW, F] = op.outShape;
          const w = weightPtr[op.kernel];
          const bias = op.bias === undefined ? 0 : weightPtr[op.bias];
          const [lo, hi] = clampOf(op.activation);
          const pw = prepared[i];
          const unprepared = (b: number) =>
            k.conv2d_nhwc_fwd_f32(
              b,
              H,
              W,
              C,
              KH,
              KW,
              SH,
              SW,
              padT,
              padL,
              OH,
              OW,
              F,
              src,
              w,
              bias,
              next,
              lo,
              hi,
              scratch,
            );
          // Prepared at the second call: the first runs as an unprepared conv, exactly as much work
          // as a cold start's one prediction needs; both paths give the same bits.
          let calls = 0;
          steps.push(
            pw === 0
              ? unprepared
              : (b) => {
                  if (calls < 2) {
                    if (calls++ === 0) return unprepared(b);
                    k.conv2d_prepare_weights_f32(C, F, w, pw, scratch);
                  }
                  k.conv2d_nhwc_fwd_prepared_f32(
                    b,
                    H,
                    W,
                    C,
                    padT,
                    padL,
                    OH,
                    OW,
                    F,
                    src,
                    pw,
                    bias,
                    next,
                    lo,
                    hi,
                    scratch,
                  );
                },
          );
          pushActivation(steps, k, op.activation, op.alpha, next, F, outSize);
          cur = next;
          break;
        }
        case "scaleShift": {
          // batchnorm_infer with variance 1 and eps 0 is exactly (x - center) * scale + shift.
          const C = op.outShape[op.outShape.length - 1];
          const s = weightPtr[op.scale];
          const t = weightPtr[op.shift];
          const m = op.center === undefined ? zeros : weightPtr[op.center];
          steps.push((b) =>
            k.batchnorm_infer_fwd_f32((b * outSize) / C, C, src, s, t, m, ones, 0, src),
          );
          break;
        }
        case "relu":
        case "leakyRelu":
        case "elu":
        case "tanh":
        case "sigmoid":
        case "softmax":
          pushActivation(
            steps,
            k,
            op.op,
            op.alpha,
            src,
            op.outShape[op.outShape.length - 1],
            outSize,
            true,
          );
          break;
        case "maxPool2d":
        case "avgPool2d": {
          const [H, W, C] = inShape;
          const [PH, PW] = op.poolSize;
          const [SH, SW] = op.strides;
          const [padT, padL] = op.pad;
          const [OH, OW] = op.outShape;
          if (op.op === "maxPool2d")
            steps.push((b) =>
              k.maxpool2d_fwd_f32(b, H, W, C, PH, PW, SH, SW, padT, padL, OH, OW, src, next, 0),
            );
          else
            steps.push((b) =>
              k.avgpool2d_fwd_f32(b, H, W, C, PH, PW, SH, SW, padT, padL, OH, OW, src, next),
            );
          cur = next;
          break;
        }
        case "globalAvgPool2d": {
          const [H, W, C] = inShape;
          steps.push((b) => k.global_avgpool2d_fwd_f32(b, H * W, C, src, next));
          cur = next;
          break;
        }
        case "flatten":
          break;
      }
    });
    this.steps = steps;
    this.xPtr = x;
    this.outPtr = cur;
    this.outViews = new Array(maxBatch + 1);
  }

  get inputShape(): number[] {
    return this.model.inputShape;
  }
  get outputShape(): number[] {
    return this.model.outputShape;
  }
  get labels(): string[] | undefined {
    return this.model.labels;
  }
  get inputNormalization(): InputNormalization {
    return this.model.inputNormalization;
  }

  /**
   * Runs `batchSize` samples (default: input.length / inputSize, at most maxBatch). Returns a view
   * of the engine's output buffer, [batchSize, ...outputShape]: the same object for the same batch
   * size, overwritten by the next call (copy it with .slice() to keep it). Allocates nothing when
   * input.length is exactly batchSize * inputSize.
   */
  predict(input: Float32Array, batchSize?: number): Float32Array;
  /** Convenience: samples as plain arrays (flat rows or nested to the input shape); any count. */
  predict(input: number[][] | number[][][][]): number[][];
  predict(input: Float32Array | unknown[], batchSize?: number): Float32Array | number[][] {
    if (!(input instanceof Float32Array)) return this.predictRows(input);
    const n = this.inputSize;
    const B = batchSize ?? input.length / n;
    if (!Number.isInteger(B) || B < 1 || B > this.maxBatch)
      throw new InferenceError(
        batchSize === undefined
          ? `input has ${input.length} values, not a whole number (1 to ${this.maxBatch}) of samples of ${n} values`
          : `batch size must be an integer from 1 to ${this.maxBatch} (maxBatch), got ${batchSize}`,
      );
    if (input.length < B * n)
      throw new InferenceError(`input has ${input.length} values; ${B} samples need ${B * n}`);
    this.kernels.checkOwner(this, "engine");
    // Only a caller sharing our Kernels instance can grow the memory; then re-make the views.
    if (this.f32.buffer !== this.kernels.memory.buffer) {
      this.f32 = this.kernels.f32;
      this.outViews = new Array(this.maxBatch + 1);
    }
    const f = this.f32;
    const o = this.xPtr >>> 2;
    if (input.length === B * n) f.set(input, o);
    else for (let i = 0; i < B * n; i++) f[o + i] = input[i];
    for (let i = 0; i < this.steps.length; i++) this.steps[i](B);
    let v = this.outViews[B];
    if (v === undefined) {
      v = f.subarray(this.outPtr >>> 2, (this.outPtr >>> 2) + B * this.outputSize);
      this.outViews[B] = v;
    }
    return v;
  }

  private predictRows(rows: unknown[]): number[][] {
    const n = this.inputSize;
    const flat = new Float32Array(rows.length * n);
    rows.forEach((r, i) => flattenSample(r, this.model.inputShape, flat, i * n, `sample ${i}`));
    const out: number[][] = [];
    for (let s = 0; s < rows.length; s += this.maxBatch) {
      const B = Math.min(this.maxBatch, rows.length - s);
      const y = this.predict(flat.subarray(s * n, (s + B) * n), B);
      for (let b = 0; b < B; b++)
        out.push(Array.from(y.subarray(b * this.outputSize, (b + 1) * this.outputSize)));
    }
    return out;
  }
}

function splitSource(
  source: EngineSource,
  options: EngineOptions,
): { bytes: Uint8Array | ArrayBuffer; kernels: WebAssembly.Module | BufferSource | Kernels } {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const kernels = options.kernels ?? defaultKernelModule?.();
    if (!kernels)
      throw new InferenceError(
        `no kernel module: pass {module, bytes} or options.kernels (in Node, import edgenn's node entry, which registers build/edgenn.infer.wasm)`,
      );
    return { bytes: source, kernels };
  }
  return { bytes: source.bytes, kernels: source.module };
}

function isScaleTensor(m: EnnModel, t: number): boolean {
  return m.ops.some((o) => (o.op === "dense" || o.op === "conv2d") && o.kernelScale === t);
}

/** ReLU is the GEMM's clamp epilogue; other activations run after it. */
function clampOf(a: ActivationName): [number, number] {
  return a === "relu" ? [0, Infinity] : [-Infinity, Infinity];
}

/** Appends an in-place activation over `total` floats per sample (softmax: rows of `channels`). */
function pushActivation(
  steps: Step[],
  k: KernelAbi,
  a: ActivationName,
  alpha: number | undefined,
  p: number,
  channels: number,
  total = channels,
  standalone = false,
): void {
  switch (a) {
    case "linear":
      return;
    case "relu":
      if (standalone) steps.push((b) => k.relu_fwd_f32(b * total, p, p));
      return;
    case "leakyRelu":
      steps.push((b) => k.leaky_relu_fwd_f32(b * total, p, p, alpha!));
      return;
    case "elu":
      steps.push((b) => k.elu_fwd_f32(b * total, p, p, alpha!));
      return;
    case "tanh":
      steps.push((b) => k.tanh_fwd_f32(b * total, p, p));
      return;
    case "sigmoid":
      steps.push((b) => k.sigmoid_fwd_f32(b * total, p, p));
      return;
    case "softmax":
      steps.push((b) => k.softmax_fwd_f32((b * total) / channels, channels, p, p));
      return;
  }
}

function opScratch(k: KernelAbi, op: EnnOp, inShape: number[], B: number): number {
  if (op.op === "dense") return k.gemm_scratch_bytes(B, op.units, inShape[0]);
  if (op.op === "conv2d") {
    const [H, W, C] = inShape;
    const [OH, OW, F] = op.outShape;
    const v = k.conv2d_scratch_bytes(
      B,
      H,
      W,
      C,
      op.kernelSize[0],
      op.kernelSize[1],
      op.strides[0],
      op.strides[1],
      op.pad[0],
      op.pad[1],
      OH,
      OW,
      F,
    );
    if (!(v > 0))
      throw new ModelFormatError(`conv2d is too large for the kernels' 32-bit sizes`, {});
    return v;
  }
  return 0;
}

const CRC_CHUNK = 65536;

/**
 * The model file's CRC and finite-value checks run by the kernels, in the memory the engine is
 * about to plan (its arena starts at heapBase and overwrites this scratch use afterwards). That
 * scratch is where a previous owner of k keeps its weights, so the checks take k from it.
 */
export function kernelFileChecks(k: Kernels): FileChecks {
  const checks: FileChecks = {
    crc32(bytes, start, end) {
      const host = hostCrc32?.(bytes.subarray(start, end));
      if (host !== undefined) return host >>> 0;
      // A file already in kernel memory (loadEngineFile) is checked where it is.
      if (bytes.buffer === k.memory.buffer)
        return k.abi.crc32_u8(0, bytes.byteOffset + start, end - start) >>> 0;
      // In 64 KiB chunks: kernel memory need not grow to the file's size, and after the first
      // chunks V8 has tiered crc32_u8 up, so a cold process runs most of the file optimised.
      const p = k.heapBase;
      k.ensure(p + CRC_CHUNK);
      let crc = 0;
      for (let at = start; at < end; at += CRC_CHUNK) {
        const n = Math.min(CRC_CHUNK, end - at);
        k.u8.set(bytes.subarray(at, at + n), p);
        crc = k.abi.crc32_u8(crc, p, n);
      }
      return crc >>> 0;
    },
    firstNonFinite(data) {
      if (data.buffer === k.memory.buffer)
        return k.abi.first_nonfinite_f32(data.byteOffset, data.length);
      const p = k.heapBase;
      k.ensure(p + data.length * 4);
      k.f32.set(data, p >>> 2);
      return k.abi.first_nonfinite_f32(p, data.length);
    },
  };
  k.claim(checks);
  return checks;
}

/**
 * Why `v` cannot be a float32 input ("must be a finite number, got ...", "is 1e+39, outside
 * float32's range ..."), or undefined when it can. Math.fround: a finite double beyond float32's
 * range would become Infinity.
 */
export function float32InputProblem(v: unknown): string | undefined {
  if (typeof v === "number" && Number.isFinite(Math.fround(v))) return undefined;
  if (typeof v === "number" && Number.isFinite(v))
    return `is ${v}, outside float32's range (±3.4028235e38)`;
  const shown = typeof v === "number" ? String(v) : JSON.stringify(v);
  return `must be a finite number, got ${shown ?? (v === null ? "null" : typeof v)}`;
}

/**
 * The message for an output row that is not finite (undefined when it is): JSON has no NaN or
 * Infinity and no class can be named from them. Finite inputs far outside what the model was
 * trained on can overflow float32 inside the network.
 */
export function nonFiniteOutputProblem(row: ArrayLike<number>, sample: number): string | undefined {
  for (let j = 0; j < row.length; j++)
    if (!Number.isFinite(row[j]))
      return `sample ${sample}: the model's output is not finite (${row[j]}); its inputs overflow float32 inside the network (are they scaled as in training?)`;
  return undefined;
}

/** Writes one sample (flat, or nested exactly to `shape`) into out at `at`; checks every value. */
export function flattenSample(
  sample: unknown,
  shape: readonly number[],
  out: Float32Array,
  at: number,
  what: string,
): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(sample))
    throw new InferenceError(`${what} must be an array of numbers, got ${typeof sample}`);
  let pos = at;
  const put = (v: unknown, path: string) => {
    const problem = float32InputProblem(v);
    if (problem) throw new InferenceError(`${what}${path} ${problem}`);
    out[pos++] = v as number;
  };
  if (sample.length === n && sample.every((v) => !Array.isArray(v))) {
    sample.forEach((v, i) => put(v, `[${i}]`));
    return;
  }
  const walk = (v: unknown, d: number, path: string): void => {
    if (d === shape.length) return put(v, path);
    if (!Array.isArray(v) || v.length !== shape[d])
      throw new InferenceError(
        `${what}${path} must be an array of ${shape[d]} (samples are ${n} numbers flat or nested as [${shape.join(", ")}])`,
      );
    v.forEach((e, i) => walk(e, d + 1, `${path}[${i}]`));
  };
  walk(sample, 0, "");
}

/** Fraction of samples whose argmax output equals the label (x: [N, ...inputShape]). */
export function engineAccuracy(
  engine: InferenceEngine,
  x: Float32Array,
  labels: ArrayLike<number>,
): number {
  const n = engine.inputSize;
  const C = engine.outputSize;
  const N = labels.length;
  if (x.length !== N * n)
    throw new InferenceError(`x has ${x.length} values; ${N} samples need ${N * n}`);
  let correct = 0;
  for (let s = 0; s < N; s += engine.maxBatch) {
    const B = Math.min(engine.maxBatch, N - s);
    const y = engine.predict(x.subarray(s * n, (s + B) * n), B);
    for (let r = 0; r < B; r++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (y[r * C + c] > y[r * C + best]) best = c;
      if (best === labels[s + r]) correct++;
    }
  }
  return N === 0 ? 0 : correct / N;
}
