// The layer table: for each layer kind, the parameters it owns, the buffers it saves for backward,
// and which kernels run its forward and backward passes. Adding a layer touches this file on the
// host side and one file in assembly/.
import type { KernelAbi } from "./kernelAbi.js";
import type { ResolvedLayer } from "./spec.js";
import { padBefore, sizeOf } from "./spec.js";

/** Names of a layer's parameter tensors, in the order they are laid out and checkpointed. */
export type ParamName = "kernel" | "bias" | "gamma" | "beta";
export type StateName = "movingMean" | "movingVariance";

export interface ParamTensor {
  layer: number;
  name: ParamName;
  shape: number[];
  size: number;
  /** Byte offset in kernel memory (the gradient lives at ptr + gradDelta). */
  ptr: number;
  /** Weight decay (AdamW) applies only to Dense/Conv kernels, not to biases or BN parameters. */
  decay: boolean;
}

export interface StateTensor {
  layer: number;
  name: StateName;
  shape: number[];
  size: number;
  ptr: number;
}

/** Geometry of a Conv2D or pooling window sweep (TF "same"/"valid" conventions resolved). */
export interface WindowGeom {
  H: number;
  W: number;
  C: number;
  KH: number;
  KW: number;
  SH: number;
  SW: number;
  padT: number;
  padL: number;
  OH: number;
  OW: number;
  F: number;
}

/** A layer as the runtime sees it: spec, sizes and where its parameters live. */
export interface LayerRuntime {
  l: ResolvedLayer;
  inSize: number;
  outSize: number;
  /** Last-axis width (features or channels) of the output. */
  channels: number;
  kernel: number;
  bias: number;
  gamma: number;
  beta: number;
  movingMean: number;
  movingVariance: number;
  geom?: WindowGeom;
}

/** Per-batch-size buffers of one layer. `out` aliases `in` for flatten. */
export interface LayerBuffers {
  in: number;
  out: number;
  batchMean: number;
  batchVar: number;
  batchInvStd: number;
  mask: number;
  argmax: number;
}

export function windowGeom(l: ResolvedLayer): WindowGeom | undefined {
  const s = l.spec;
  if (s.type !== "conv2d" && s.type !== "maxPool2d" && s.type !== "avgPool2d") return undefined;
  const [H, W, C] = l.inShape;
  const [KH, KW] = s.type === "conv2d" ? s.kernelSize : s.poolSize;
  const [SH, SW] = s.strides;
  return {
    H,
    W,
    C,
    KH,
    KW,
    SH,
    SW,
    padT: padBefore(H, KH, SH, s.padding),
    padL: padBefore(W, KW, SW, s.padding),
    OH: l.outShape[0],
    OW: l.outShape[1],
    F: l.outShape[2],
  };
}

/** Parameter and state tensors a layer owns (shapes per Keras/TF.js layout). */
export function layerTensors(l: ResolvedLayer): {
  params: { name: ParamName; shape: number[]; decay: boolean }[];
  state: { name: StateName; shape: number[] }[];
} {
  const s = l.spec;
  switch (s.type) {
    case "dense":
      return {
        params: [
          { name: "kernel", shape: [l.inShape[0], s.units], decay: true },
          ...(s.useBias ? [{ name: "bias" as const, shape: [s.units], decay: false }] : []),
        ],
        state: [],
      };
    case "conv2d": {
      const c = l.inShape[2];
      return {
        params: [
          { name: "kernel", shape: [s.kernelSize[0], s.kernelSize[1], c, s.filters], decay: true },
          ...(s.useBias ? [{ name: "bias" as const, shape: [s.filters], decay: false }] : []),
        ],
        state: [],
      };
    }
    case "batchNorm": {
      const c = l.outShape[l.outShape.length - 1];
      return {
        params: [
          ...(s.scale ? [{ name: "gamma" as const, shape: [c], decay: false }] : []),
          ...(s.center ? [{ name: "beta" as const, shape: [c], decay: false }] : []),
        ],
        state: [
          { name: "movingMean", shape: [c] },
          { name: "movingVariance", shape: [c] },
        ],
      };
    }
    default:
      return { params: [], state: [] };
  }
}

export function makeRuntime(l: ResolvedLayer): LayerRuntime {
  return {
    l,
    inSize: sizeOf(l.inShape),
    outSize: sizeOf(l.outShape),
    channels: l.outShape[l.outShape.length - 1],
    kernel: 0,
    bias: 0,
    gamma: 0,
    beta: 0,
    movingMean: 0,
    movingVariance: 0,
    geom: windowGeom(l),
  };
}

/** Does the layer leave memory untouched (its output is its input, reinterpreted)? */
export function isAlias(l: ResolvedLayer, training: boolean): boolean {
  return l.spec.type === "flatten" || (!training && l.spec.type === "dropout");
}

/** Scratch bytes a layer's kernels need at this batch size. */
export function scratchBytes(k: KernelAbi, rt: LayerRuntime, B: number): number {
  const s = rt.l.spec;
  if (s.type === "dense") return k.dense_scratch_bytes(B, rt.inSize, s.units);
  if (s.type === "conv2d" && rt.geom) {
    const g = rt.geom;
    return k.conv2d_scratch_bytes(
      B,
      g.H,
      g.W,
      g.C,
      g.KH,
      g.KW,
      g.SH,
      g.SW,
      g.padT,
      g.padL,
      g.OH,
      g.OW,
      g.F,
    );
  }
  return 0;
}

const NO_CLAMP_LO = -Infinity;
const NO_CLAMP_HI = Infinity;

/**
 * Forward pass of one layer over a batch of B samples: reads buf.in, writes buf.out.
 * Training mode uses batch statistics for BN (and updates the moving ones) and masks dropout.
 */
export function forwardLayer(
  k: KernelAbi,
  rt: LayerRuntime,
  buf: LayerBuffers,
  B: number,
  training: boolean,
  scratch: number,
  rngState: number,
): void {
  const s = rt.l.spec;
  const n = B * rt.outSize;
  const x = buf.in;
  const y = buf.out;
  switch (s.type) {
    case "dense":
      k.dense_fwd_f32(
        B,
        rt.inSize,
        s.units,
        x,
        rt.kernel,
        rt.bias,
        y,
        NO_CLAMP_LO,
        NO_CLAMP_HI,
        scratch,
      );
      return;
    case "conv2d": {
      const g = rt.geom!;
      k.conv2d_nhwc_fwd_f32(
        B,
        g.H,
        g.W,
        g.C,
        g.KH,
        g.KW,
        g.SH,
        g.SW,
        g.padT,
        g.padL,
        g.OH,
        g.OW,
        g.F,
        x,
        rt.kernel,
        rt.bias,
        y,
        NO_CLAMP_LO,
        NO_CLAMP_HI,
        scratch,
      );
      return;
    }
    case "batchNorm": {
      const R = n / rt.channels;
      if (training) {
        k.batchnorm_train_fwd_f32(
          R,
          rt.channels,
          x,
          rt.gamma,
          rt.beta,
          s.epsilon,
          y,
          buf.batchMean,
          buf.batchVar,
          buf.batchInvStd,
        );
        k.batchnorm_update_running_f32(
          rt.channels,
          rt.movingMean,
          rt.movingVariance,
          buf.batchMean,
          buf.batchVar,
          s.momentum,
        );
      } else {
        k.batchnorm_infer_fwd_f32(
          R,
          rt.channels,
          x,
          rt.gamma,
          rt.beta,
          rt.movingMean,
          rt.movingVariance,
          s.epsilon,
          y,
        );
      }
      return;
    }
    case "relu":
      k.relu_fwd_f32(n, x, y);
      return;
    case "leakyRelu":
      k.leaky_relu_fwd_f32(n, x, y, s.alpha);
      return;
    case "elu":
      k.elu_fwd_f32(n, x, y, s.alpha);
      return;
    case "tanh":
      k.tanh_fwd_f32(n, x, y);
      return;
    case "sigmoid":
      k.sigmoid_fwd_f32(n, x, y);
      return;
    case "softmax":
      k.softmax_fwd_f32(n / rt.channels, rt.channels, x, y);
      return;
    case "dropout":
      // Inference: identity (the caller aliases out to in and never calls us).
      if (training) k.dropout_fwd_train_f32(n, x, y, buf.mask, s.rate, rngState);
      else if (x !== y) k.copy_f32(y, x, n);
      return;
    case "maxPool2d": {
      const g = rt.geom!;
      k.maxpool2d_fwd_f32(
        B,
        g.H,
        g.W,
        g.C,
        g.KH,
        g.KW,
        g.SH,
        g.SW,
        g.padT,
        g.padL,
        g.OH,
        g.OW,
        x,
        y,
        training ? buf.argmax : 0,
      );
      return;
    }
    case "avgPool2d": {
      const g = rt.geom!;
      k.avgpool2d_fwd_f32(
        B,
        g.H,
        g.W,
        g.C,
        g.KH,
        g.KW,
        g.SH,
        g.SW,
        g.padT,
        g.padL,
        g.OH,
        g.OW,
        x,
        y,
      );
      return;
    }
    case "globalAvgPool2d": {
      const [H, W, C] = rt.l.inShape;
      k.global_avgpool2d_fwd_f32(B, H * W, C, x, y);
      return;
    }
    case "flatten":
      if (x !== y) k.copy_f32(y, x, n);
      return;
  }
}

/**
 * Backward pass of one layer: dy is the gradient at buf.out; writes the gradient at buf.in into dx
 * (dx == 0: not needed, first layer) and this layer's parameter gradients at ptr + gradDelta.
 */
export function backwardLayer(
  k: KernelAbi,
  rt: LayerRuntime,
  buf: LayerBuffers,
  B: number,
  dy: number,
  dx: number,
  gradDelta: number,
  scratch: number,
): void {
  const s = rt.l.spec;
  const n = B * rt.outSize;
  const g0 = (p: number) => (p === 0 ? 0 : p + gradDelta);
  switch (s.type) {
    case "dense":
      k.dense_bwd_f32(
        B,
        rt.inSize,
        s.units,
        buf.in,
        rt.kernel,
        dy,
        dx,
        g0(rt.kernel),
        g0(rt.bias),
        scratch,
      );
      return;
    case "conv2d": {
      const g = rt.geom!;
      k.conv2d_nhwc_bwd_filter_f32(
        B,
        g.H,
        g.W,
        g.C,
        g.KH,
        g.KW,
        g.SH,
        g.SW,
        g.padT,
        g.padL,
        g.OH,
        g.OW,
        g.F,
        buf.in,
        dy,
        g0(rt.kernel),
        g0(rt.bias),
        scratch,
      );
      if (dx !== 0)
        k.conv2d_nhwc_bwd_data_f32(
          B,
          g.H,
          g.W,
          g.C,
          g.KH,
          g.KW,
          g.SH,
          g.SW,
          g.padT,
          g.padL,
          g.OH,
          g.OW,
          g.F,
          dy,
          rt.kernel,
          dx,
          scratch,
        );
      return;
    }
    case "batchNorm": {
      // The model always passes a real dx here: BN's kernel computes dx alongside dgamma/dbeta.
      const R = n / rt.channels;
      k.batchnorm_bwd_f32(
        R,
        rt.channels,
        buf.in,
        dy,
        rt.gamma,
        buf.batchMean,
        buf.batchInvStd,
        dx,
        g0(rt.gamma),
        g0(rt.beta),
      );
      return;
    }
  }
  if (dx === 0) return;
  switch (s.type) {
    case "relu":
      k.relu_bwd_f32(n, buf.out, dy, dx);
      return;
    case "leakyRelu":
      k.leaky_relu_bwd_f32(n, buf.in, dy, dx, s.alpha);
      return;
    case "elu":
      k.elu_bwd_f32(n, buf.in, buf.out, dy, dx, s.alpha);
      return;
    case "tanh":
      k.tanh_bwd_f32(n, buf.out, dy, dx);
      return;
    case "sigmoid":
      k.sigmoid_bwd_f32(n, buf.out, dy, dx);
      return;
    case "softmax":
      k.softmax_bwd_f32(n / rt.channels, rt.channels, buf.out, dy, dx);
      return;
    case "dropout":
      k.dropout_bwd_f32(n, dy, buf.mask, dx);
      return;
    case "maxPool2d": {
      const g = rt.geom!;
      k.maxpool2d_bwd_f32(B, g.H, g.W, g.C, g.OH, g.OW, dy, buf.argmax, dx);
      return;
    }
    case "avgPool2d": {
      const g = rt.geom!;
      k.avgpool2d_bwd_f32(
        B,
        g.H,
        g.W,
        g.C,
        g.KH,
        g.KW,
        g.SH,
        g.SW,
        g.padT,
        g.padL,
        g.OH,
        g.OW,
        dy,
        dx,
      );
      return;
    }
    case "globalAvgPool2d": {
      const [H, W, C] = rt.l.inShape;
      k.global_avgpool2d_bwd_f32(B, H * W, C, dy, dx);
      return;
    }
    case "flatten":
      if (dx !== dy) k.copy_f32(dx, dy, n);
      return;
  }
}
