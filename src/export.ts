// Export for inference: a trained model becomes a graph of inference ops with BatchNorm folded into
// weights, Dropout removed and activations fused into the Dense/Conv2D that feeds them, written as
// a .enn file (src/ennFormat.ts, docs/FORMAT.md).
//
// BatchNorm at inference is y = x * s + t per channel, s = gamma / sqrt(var + eps),
// t = beta - mean * s (gamma = 1 with scale off, beta = 0 with center off). Where it goes:
//   1. Backward, into the Dense/Conv2D whose un-activated output it normalises (directly, or across
//      Dropout, or across a Flatten that keeps channels): W' = W * s (per output channel),
//      b' = (b - mean) * s + beta, b = 0 when the layer had no bias (folding creates one).
//   2. Otherwise (first layer, after an activation or pooling) it becomes a scaleShift op, merged
//      with a scaleShift just before it, and then folds forward into the next Dense (across
//      Flatten: feature i is channel i % C) or the next Conv2D with no padding, where that is exact:
//      W' = diag(s) W, b' = b + t . W. A padded conv sees zeros at the border, not x*s+t of zeros,
//      so a forward fold into it would be wrong there: the scaleShift stays.
// Every fold is computed in float64 and rounded to f32 once at the end.
import {
  writeEnn,
  type ActivationName,
  type EnnContent,
  type EnnOp,
  type EnnTensor,
  type ExportReport,
  type InputNormalization,
  type Pad4,
  type ReportEntry,
} from "./ennFormat.js";
import { quantizePerChannel } from "./quantize.js";
import { padBefore, sizeOf, type ResolvedModel } from "./spec.js";

export const EDGENN_PRODUCER = "edgenn 0.1.0";

/**
 * A forward fold is refused when the BN's statistics put its input more than this many standard
 * deviations from zero (|mean - beta/s| / sqrt(var + eps)): the folded GEMM would lose that factor
 * of f32 precision against the unfolded model. Trained nets are far below (after ReLU about 1).
 */
export const FORWARD_FOLD_MAX_OFFSET = 8;

/** What export needs from a model: its resolved spec and its tensors (Model satisfies it). */
export interface ExportableModel {
  readonly resolved: ResolvedModel;
  getWeights(): Map<string, Float32Array>;
}

export interface ExportOptions {
  /** Store Dense/Conv2D kernels as symmetric per-output-channel int8 (about a quarter the bytes). */
  int8?: boolean;
  /**
   * Drop a final softmax: the model outputs logits. A model that does not end in softmax is
   * exported unchanged, and its report says `logits: false`.
   */
  logits?: boolean;
  /** Output labels (default: the model's). */
  labels?: string[];
  /** How raw inputs map to the model's input (default identity). Recorded for callers; see FORMAT.md. */
  inputNormalization?: InputNormalization;
  producer?: string;
}

export interface ExportResult {
  bytes: Uint8Array;
  report: ExportReport;
  content: EnnContent;
}

// ---- the float64 graph ---------------------------------------------------------------------------

interface GemmNode {
  op: "dense" | "conv2d";
  layer: number;
  /** dense: [In, Units]; conv2d: [KH, KW, C, F]. The last axis is the output channel. */
  kernel: Float64Array;
  kernelShape: number[];
  bias: Float64Array | null;
  activation: ActivationName;
  alpha?: number;
  kernelSize?: [number, number];
  strides?: [number, number];
  pad?: Pad4;
  inShape: number[];
  outShape: number[];
}
/** y = (x - center) * scale + shift per channel. */
interface ScaleShiftNode {
  op: "scaleShift";
  layer: number;
  center: Float64Array;
  scale: Float64Array;
  shift: Float64Array;
  /** sqrt(var + eps) of the first BN: the spread of the input the statistics describe. */
  sigma: Float64Array;
  /** Why a forward fold was refused, if it was. */
  refused?: string;
  /** Report entries of the BNs merged into it (updated if it later folds forward). */
  entries: ReportEntry[];
  inShape: number[];
  outShape: number[];
}
interface OtherNode {
  op: "relu" | "leakyRelu" | "elu" | "tanh" | "sigmoid" | "softmax";
  layer: number;
  alpha?: number;
  inShape: number[];
  outShape: number[];
}
interface PoolNode {
  op: "maxPool2d" | "avgPool2d";
  layer: number;
  poolSize: [number, number];
  strides: [number, number];
  pad: Pad4;
  inShape: number[];
  outShape: number[];
}
interface ShapeNode {
  op: "globalAvgPool2d" | "flatten";
  layer: number;
  inShape: number[];
  outShape: number[];
}
export type GraphNode = GemmNode | ScaleShiftNode | OtherNode | PoolNode | ShapeNode;

export interface FoldedGraph {
  inputShape: number[];
  outputShape: number[];
  nodes: GraphNode[];
  entries: ReportEntry[];
}

function explicitPad(
  inShape: number[],
  k: [number, number],
  s: [number, number],
  outShape: number[],
  padding: "same" | "valid",
): Pad4 {
  const t = padBefore(inShape[0], k[0], s[0], padding);
  const l = padBefore(inShape[1], k[1], s[1], padding);
  // Whatever the output size needs beyond the top/left pad goes after (TF puts the odd one there).
  const b = Math.max((outShape[0] - 1) * s[0] + k[0] - inShape[0] - t, 0);
  const r = Math.max((outShape[1] - 1) * s[1] + k[1] - inShape[1] - l, 0);
  return [t, l, b, r];
}

function describe(n: GraphNode | undefined): string {
  if (!n) return "the input";
  if (n.op === "dense" || n.op === "conv2d")
    return n.activation === "linear"
      ? `${n.op} (layer ${n.layer})`
      : `a ${n.activation} activation (layer ${n.layer}'s fused output)`;
  if (n.op === "scaleShift") return `another unfoldable batchNorm (layer ${n.layer})`;
  return `${n.op} (layer ${n.layer})`;
}

/**
 * Builds the inference graph: BN folded (backward where possible, else forward where exact, else
 * scaleShift), Dropout removed, activations fused, a final softmax dropped when `logits`.
 */
export function foldBatchNorm(
  model: ExportableModel,
  options: { logits?: boolean } = {},
): FoldedGraph {
  const r = model.resolved;
  const w = model.getWeights();
  const get = (layer: number, name: string): Float32Array | undefined =>
    w.get(`layers.${layer}.${name}`);
  const nodes: GraphNode[] = [];
  const entries: ReportEntry[] = [];
  let lastReal = r.layers.length - 1;
  while (lastReal > 0 && r.layers[lastReal].spec.type === "dropout") lastReal--;

  /** Last node, looking through Flatten nodes that keep the channel axis (width == channels). */
  const producer = (channels: number): { node: GraphNode | undefined; index: number } => {
    for (let i = nodes.length - 1; i >= 0; i--) {
      const n = nodes[i];
      if (n.op !== "flatten") return { node: n, index: i };
      if (n.inShape[n.inShape.length - 1] !== channels) return { node: n, index: i };
    }
    return { node: undefined, index: -1 };
  };

  for (const l of r.layers) {
    const s = l.spec;
    const i = l.index;
    switch (s.type) {
      case "dropout":
        entries.push({
          layer: i,
          type: "dropout",
          action: "removed",
          note: "identity at inference",
        });
        break;
      case "flatten":
        nodes.push({ op: "flatten", layer: i, inShape: l.inShape, outShape: l.outShape });
        break;
      case "dense":
      case "conv2d": {
        const k = get(i, "kernel")!;
        const b = get(i, "bias");
        const node: GemmNode =
          s.type === "dense"
            ? {
                op: "dense",
                layer: i,
                kernel: Float64Array.from(k),
                kernelShape: [l.inShape[0], s.units],
                bias: b ? Float64Array.from(b) : null,
                activation: "linear",
                inShape: l.inShape,
                outShape: l.outShape,
              }
            : {
                op: "conv2d",
                layer: i,
                kernel: Float64Array.from(k),
                kernelShape: [...s.kernelSize, l.inShape[2], s.filters],
                bias: b ? Float64Array.from(b) : null,
                activation: "linear",
                kernelSize: s.kernelSize,
                strides: s.strides,
                pad: explicitPad(l.inShape, s.kernelSize, s.strides, l.outShape, s.padding),
                inShape: l.inShape,
                outShape: l.outShape,
              };
        // Several scaleShifts separated only by Flatten may all fold (each exact).
        while (foldForward(nodes, node));
        nodes.push(node);
        break;
      }
      case "batchNorm": {
        const C = l.outShape[l.outShape.length - 1];
        const gamma = s.scale ? get(i, "gamma")! : undefined;
        const beta = s.center ? get(i, "beta")! : undefined;
        const mean = get(i, "movingMean")!;
        const variance = get(i, "movingVariance")!;
        const scale = new Float64Array(C);
        const shift = new Float64Array(C);
        for (let c = 0; c < C; c++) {
          scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + Math.fround(s.epsilon));
          shift[c] = (beta ? beta[c] : 0) - mean[c] * scale[c];
        }
        const { node: p } = producer(C);
        if (
          p &&
          (p.op === "dense" || p.op === "conv2d") &&
          p.activation === "linear" &&
          p.outShape[p.outShape.length - 1] === C
        ) {
          const F = C;
          for (let j = 0; j < p.kernel.length; j++) p.kernel[j] *= scale[j % F];
          const created = p.bias === null;
          const bias = p.bias ?? new Float64Array(F);
          for (let c = 0; c < F; c++)
            bias[c] = (bias[c] - mean[c]) * scale[c] + (beta ? beta[c] : 0);
          p.bias = bias;
          entries.push({
            layer: i,
            type: "batchNorm",
            action: "foldedBackward",
            into: p.layer,
            note: `into ${p.op} layer ${p.layer}'s weights and bias${created ? " (bias created)" : ""}`,
          });
        } else if (p && p.op === "scaleShift" && p.outShape[p.outShape.length - 1] === C) {
          // Two BNs in a row: ((x - m1)*s1 + b1 - m2)*s2 + b2.
          for (let c = 0; c < C; c++) {
            p.scale[c] *= scale[c];
            p.shift[c] = (p.shift[c] - mean[c]) * scale[c] + (beta ? beta[c] : 0);
          }
          const e: ReportEntry = {
            layer: i,
            type: "batchNorm",
            action: "scaleShift",
            note: `merged with layer ${p.layer}'s batchNorm into one scaleShift`,
          };
          p.entries.push(e);
          entries.push(e);
        } else {
          const e: ReportEntry = {
            layer: i,
            type: "batchNorm",
            action: "scaleShift",
            note: `cannot fold backward: it follows ${describe(p)}`,
          };
          entries.push(e);
          nodes.push({
            op: "scaleShift",
            layer: i,
            center: Float64Array.from(mean),
            scale,
            shift: beta ? Float64Array.from(beta) : new Float64Array(C),
            sigma: Float64Array.from(variance, (v) => Math.sqrt(v + Math.fround(s.epsilon))),
            entries: [e],
            inShape: l.inShape,
            outShape: l.outShape,
          });
        }
        break;
      }
      case "relu":
      case "leakyRelu":
      case "elu":
      case "tanh":
      case "sigmoid":
      case "softmax": {
        if (s.type === "softmax" && options.logits && i === lastReal) {
          entries.push({ layer: i, type: "softmax", action: "removed", note: "logits requested" });
          break;
        }
        const alpha = s.type === "leakyRelu" || s.type === "elu" ? s.alpha : undefined;
        const p = nodes[nodes.length - 1];
        if (p && (p.op === "dense" || p.op === "conv2d") && p.activation === "linear") {
          p.activation = s.type;
          if (alpha !== undefined) p.alpha = alpha;
          entries.push({
            layer: i,
            type: s.type,
            action: "fused",
            into: p.layer,
            note: `into ${p.op} layer ${p.layer}'s epilogue`,
          });
        } else
          nodes.push({
            op: s.type,
            layer: i,
            ...(alpha !== undefined ? { alpha } : {}),
            inShape: l.inShape,
            outShape: l.outShape,
          });
        break;
      }
      case "maxPool2d":
      case "avgPool2d":
        nodes.push({
          op: s.type,
          layer: i,
          poolSize: s.poolSize,
          strides: s.strides,
          pad: explicitPad(l.inShape, s.poolSize, s.strides, l.outShape, s.padding),
          inShape: l.inShape,
          outShape: l.outShape,
        });
        break;
      case "globalAvgPool2d":
        nodes.push({ op: "globalAvgPool2d", layer: i, inShape: l.inShape, outShape: l.outShape });
        break;
    }
  }
  // The reason a remaining scaleShift did not fold forward.
  nodes.forEach((n, k) => {
    if (n.op !== "scaleShift") return;
    let next = nodes[k + 1];
    for (let j = k + 1; next && next.op === "flatten"; j++) next = nodes[j + 1];
    const why = n.refused
      ? n.refused
      : !next
        ? "it is the last op"
        : next.op === "conv2d"
          ? `the next conv2d (layer ${next.layer}) pads its input, and a padded border would see the shift`
          : `the next op is ${next.op} (layer ${next.layer})`;
    for (const e of n.entries) e.note += `; cannot fold forward: ${why}`;
  });
  if (nodes.length === 0)
    // Every layer was removed (e.g. only dropout): keep a valid graph.
    nodes.push({
      op: "flatten",
      layer: 0,
      inShape: r.inputShape,
      outShape: [sizeOf(r.inputShape)],
    });
  return {
    inputShape: r.inputShape,
    outputShape: nodes[nodes.length - 1].outShape,
    nodes,
    entries,
  };
}

/** Folds a scaleShift just before `node` (across Flatten) into it when that is exact. */
function foldForward(nodes: GraphNode[], node: GemmNode): boolean {
  let k = nodes.length - 1;
  while (k >= 0 && nodes[k].op === "flatten") k--;
  const q = nodes[k];
  if (!q || q.op !== "scaleShift") return false;
  const C = q.scale.length;
  const F = node.outShape[node.outShape.length - 1];
  if (node.op === "conv2d" && (k !== nodes.length - 1 || node.pad!.some((p) => p !== 0)))
    return false;
  // y = x*s + t with t = shift - center*s. Folded, the GEMM adds x*s*W and t*W separately and
  // they cancel where the model subtracted the mean first: that loses about
  // |t| / (|s| * sigma) (input standard deviations from the mean to zero) in f32 precision.
  const t = new Float64Array(C);
  let worst = 0;
  for (let c = 0; c < C; c++) {
    t[c] = q.shift[c] - q.center[c] * q.scale[c];
    if (q.scale[c] !== 0)
      worst = Math.max(worst, Math.abs(t[c]) / (Math.abs(q.scale[c]) * q.sigma[c]));
  }
  if (worst > FORWARD_FOLD_MAX_OFFSET) {
    q.refused = `folding it into ${node.op} layer ${node.layer} would cost precision (its statistics put the input ${worst.toPrecision(3)} standard deviations from zero, over ${FORWARD_FOLD_MAX_OFFSET}), so it stays exact`;
    return false;
  }
  const bias = node.bias ?? new Float64Array(F);
  const W = node.kernel;
  if (node.op === "dense") {
    // Feature i of the (possibly flattened, NHWC) input is channel i % C.
    const In = node.kernelShape[0];
    for (let i = 0; i < In; i++) {
      const c = i % C;
      for (let j = 0; j < F; j++) {
        bias[j] += t[c] * W[i * F + j];
        W[i * F + j] *= q.scale[c];
      }
    }
  } else {
    const rows = W.length / F; // KH*KW*C, channel = row % C
    for (let r = 0; r < rows; r++) {
      const c = r % C;
      for (let j = 0; j < F; j++) {
        bias[j] += t[c] * W[r * F + j];
        W[r * F + j] *= q.scale[c];
      }
    }
  }
  node.bias = bias;
  nodes.splice(k, 1);
  for (const e of q.entries) {
    e.action = "foldedForward";
    e.into = node.layer;
    e.note = `into ${node.op} layer ${node.layer}'s weights and bias (exact: ${node.op === "dense" ? "a dense layer" : "an unpadded conv"}); ${e.note.replace(/^cannot fold backward: /, "backward was impossible: ")}`;
  }
  return true;
}

// ---- to the file ---------------------------------------------------------------------------------

/** Rounds the graph to f32 (int8 kernels when asked) and writes the .enn file. */
export function exportModel(model: ExportableModel, options: ExportOptions = {}): ExportResult {
  const g = foldBatchNorm(model, { logits: options.logits });
  const tensors: EnnTensor[] = [];
  const add = (
    name: string,
    dtype: EnnTensor["dtype"],
    shape: number[],
    data: Float32Array | Int8Array,
  ) => {
    tensors.push({ name, dtype, shape, data });
    return tensors.length - 1;
  };
  const ops: EnnOp[] = g.nodes.map((n, k): EnnOp => {
    const name = `ops.${k}`;
    switch (n.op) {
      case "dense":
      case "conv2d": {
        const F = n.kernelShape[n.kernelShape.length - 1];
        let kernel: number;
        let kernelScale: number | undefined;
        if (options.int8) {
          const q = quantizePerChannel(n.kernel, F);
          kernel = add(`${name}.kernel`, "i8", n.kernelShape, q.q);
          kernelScale = add(`${name}.kernelScale`, "f32", [F], q.scales);
        } else kernel = add(`${name}.kernel`, "f32", n.kernelShape, Float32Array.from(n.kernel));
        const bias = n.bias
          ? add(`${name}.bias`, "f32", [F], Float32Array.from(n.bias))
          : undefined;
        const common = {
          activation: n.activation,
          ...(n.alpha !== undefined ? { alpha: n.alpha } : {}),
          kernel,
          ...(kernelScale !== undefined ? { kernelScale } : {}),
          ...(bias !== undefined ? { bias } : {}),
          outShape: n.outShape,
        };
        return n.op === "dense"
          ? { op: "dense", units: F, ...common }
          : {
              op: "conv2d",
              filters: F,
              kernelSize: n.kernelSize!,
              strides: n.strides!,
              pad: n.pad!,
              ...common,
            };
      }
      case "scaleShift":
        for (const e of n.entries) e.op = k;
        return {
          op: "scaleShift",
          center: add(`${name}.center`, "f32", [n.center.length], Float32Array.from(n.center)),
          scale: add(`${name}.scale`, "f32", [n.scale.length], Float32Array.from(n.scale)),
          shift: add(`${name}.shift`, "f32", [n.shift.length], Float32Array.from(n.shift)),
          outShape: n.outShape,
        };
      case "maxPool2d":
      case "avgPool2d":
        return {
          op: n.op,
          poolSize: n.poolSize,
          strides: n.strides,
          pad: n.pad,
          outShape: n.outShape,
        };
      case "leakyRelu":
      case "elu":
        return { op: n.op, alpha: n.alpha!, outShape: n.outShape };
      default:
        return { op: n.op, outShape: n.outShape };
    }
  });
  // Fused activations: record the op index of the node they went into.
  const opOfLayer = new Map(g.nodes.map((n, k) => [n.layer, k]));
  for (const e of g.entries)
    if (e.action === "fused" && e.into !== undefined) e.op = opOfLayer.get(e.into);

  const weights = model.getWeights();
  let paramsBefore = 0;
  for (const v of weights.values()) paramsBefore += v.length;
  const paramsAfter = tensors.reduce((a, t) => a + t.data.length, 0);
  const bytesAfter = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  const report: ExportReport = {
    // Canonical key order (the reader's), so reading and re-writing a file gives the same bytes.
    entries: g.entries
      .slice()
      .sort((a, b) => a.layer - b.layer)
      .map((e) => ({
        layer: e.layer,
        type: e.type,
        action: e.action,
        ...(e.into !== undefined ? { into: e.into } : {}),
        ...(e.op !== undefined ? { op: e.op } : {}),
        note: e.note,
      })),
    paramsBefore,
    bytesBefore: paramsBefore * 4,
    paramsAfter,
    bytesAfter,
    weights: options.int8 ? "int8" : "f32",
    // True only when a softmax was removed: the outputs really are logits.
    logits: g.entries.some((e) => e.type === "softmax" && e.action === "removed"),
  };
  const labels = options.labels ?? model.resolved.labels;
  const content: EnnContent = {
    producer: options.producer ?? EDGENN_PRODUCER,
    inputShape: g.inputShape,
    outputShape: g.outputShape,
    ...(labels ? { labels } : {}),
    inputNormalization: options.inputNormalization ?? { scale: 1, offset: 0 },
    ops,
    tensors,
    report,
  };
  return { bytes: writeEnn(content), report, content };
}

/** The export report as text: where each BN went, what was removed or fused, sizes before/after. */
export function formatReport(report: ExportReport, fileBytes?: number): string {
  const lines: string[] = [];
  const verb: Record<ReportEntry["action"], string> = {
    foldedBackward: "folded",
    foldedForward: "folded forward",
    scaleShift: "kept as scaleShift",
    fused: "fused",
    removed: "removed",
  };
  for (const e of report.entries)
    lines.push(
      `  layer ${e.layer} ${e.type}: ${verb[e.action]}${e.op !== undefined && e.action === "scaleShift" ? ` (op ${e.op})` : ""} — ${e.note}`,
    );
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const ratio = report.bytesBefore > 0 ? (report.bytesAfter / report.bytesBefore) * 100 : 0;
  return [
    `export report (${report.weights} weights${report.logits ? ", logits output" : ""}):`,
    ...(lines.length ? lines : ["  nothing folded, fused or removed"]),
    `parameters: ${report.paramsBefore.toLocaleString("en-US")} before (incl. BN statistics), ${report.paramsAfter.toLocaleString("en-US")} after`,
    `bytes: ${kb(report.bytesBefore)} before, ${kb(report.bytesAfter)} after (${ratio.toFixed(1)}%)` +
      (fileBytes !== undefined ? `; file ${kb(fileBytes)}` : ""),
  ].join("\n");
}
