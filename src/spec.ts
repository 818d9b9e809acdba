// Model specifications: the layer list users write in code or JSON (one schema both ways), its
// validation with errors that name the layer index and field, and shape inference.

export type Padding = "same" | "valid";

export interface DenseSpec {
  type: "dense";
  units: number;
  useBias?: boolean; // default true
}
export interface Conv2dSpec {
  type: "conv2d";
  filters: number;
  kernelSize: number | [number, number];
  strides?: number | [number, number]; // default 1
  padding?: Padding; // default "valid" (Keras)
  useBias?: boolean; // default true
}
export interface BatchNormSpec {
  type: "batchNorm";
  momentum?: number; // default 0.99
  epsilon?: number; // default 1e-3
  center?: boolean; // default true (beta)
  scale?: boolean; // default true (gamma)
}
export interface LeakyReluSpec {
  type: "leakyRelu";
  alpha?: number; // default 0.3 (Keras/TF.js)
}
export interface EluSpec {
  type: "elu";
  alpha?: number; // default 1
}
export interface PlainActivationSpec {
  type: "relu" | "tanh" | "sigmoid" | "softmax";
}
export interface DropoutSpec {
  type: "dropout";
  rate: number;
}
export interface Pool2dSpec {
  type: "maxPool2d" | "avgPool2d";
  poolSize?: number | [number, number]; // default 2
  strides?: number | [number, number]; // default poolSize
  padding?: Padding; // default "valid"
}
export interface ShapeOnlySpec {
  type: "globalAvgPool2d" | "flatten";
}

export type LayerSpec =
  | DenseSpec
  | Conv2dSpec
  | BatchNormSpec
  | LeakyReluSpec
  | EluSpec
  | PlainActivationSpec
  | DropoutSpec
  | Pool2dSpec
  | ShapeOnlySpec;

export type LayerType = LayerSpec["type"];

export interface ModelSpec {
  /** Shape of one sample, without the batch axis: [features] or [height, width, channels]. */
  inputShape: number[];
  layers: LayerSpec[];
  /** Optional class names for the output units (carried into exported models). */
  labels?: string[];
}

export const LAYER_TYPES: readonly LayerType[] = [
  "dense",
  "conv2d",
  "batchNorm",
  "relu",
  "leakyRelu",
  "elu",
  "tanh",
  "sigmoid",
  "softmax",
  "dropout",
  "maxPool2d",
  "avgPool2d",
  "globalAvgPool2d",
  "flatten",
];

/** Layers whose forward pass is elementwise (shape-preserving, no parameters). */
export const ACTIVATION_TYPES: ReadonlySet<LayerType> = new Set([
  "relu",
  "leakyRelu",
  "elu",
  "tanh",
  "sigmoid",
  "softmax",
]);

/** Layers that only move or reduce values spatially; they carry no parameters. */
export const SHAPE_ONLY_TYPES: ReadonlySet<LayerType> = new Set([
  "flatten",
  "maxPool2d",
  "avgPool2d",
  "globalAvgPool2d",
]);

/** A spec that cannot be built. `layer` is the index in the layer list (-1 for the model itself). */
export class SpecError extends Error {
  constructor(
    message: string,
    readonly layer: number,
    readonly field?: string,
  ) {
    super(message);
    this.name = "SpecError";
  }
}

const KNOWN_FIELDS: Record<LayerType, readonly string[]> = {
  dense: ["units", "useBias"],
  conv2d: ["filters", "kernelSize", "strides", "padding", "useBias"],
  batchNorm: ["momentum", "epsilon", "center", "scale"],
  relu: [],
  leakyRelu: ["alpha"],
  elu: ["alpha"],
  tanh: [],
  sigmoid: [],
  softmax: [],
  dropout: ["rate"],
  maxPool2d: ["poolSize", "strides", "padding"],
  avgPool2d: ["poolSize", "strides", "padding"],
  globalAvgPool2d: [],
  flatten: [],
};

/** Limits that keep a hostile or mistyped spec from asking for absurd memory. */
const MAX_DIM = 1 << 20;
const MAX_ELEMENTS = 1 << 28;

/** A layer with every default filled in and its input/output shapes (per sample). */
export interface ResolvedLayer {
  index: number;
  spec: Required<LayerSpecResolved>;
  inShape: number[];
  outShape: number[];
  /** Trainable parameter count. */
  params: number;
  /** Non-trainable state (BN moving statistics). */
  stateSize: number;
}

/** Fully-defaulted layer fields (union of all, only the relevant ones are meaningful). */
export type LayerSpecResolved =
  | { type: "dense"; units: number; useBias: boolean }
  | {
      type: "conv2d";
      filters: number;
      kernelSize: [number, number];
      strides: [number, number];
      padding: Padding;
      useBias: boolean;
    }
  | { type: "batchNorm"; momentum: number; epsilon: number; center: boolean; scale: boolean }
  | { type: "leakyRelu"; alpha: number }
  | { type: "elu"; alpha: number }
  | { type: "relu" | "tanh" | "sigmoid" | "softmax" }
  | { type: "dropout"; rate: number }
  | {
      type: "maxPool2d" | "avgPool2d";
      poolSize: [number, number];
      strides: [number, number];
      padding: Padding;
    }
  | { type: "globalAvgPool2d" | "flatten" };

export interface ResolvedModel {
  inputShape: number[];
  layers: ResolvedLayer[];
  outputShape: number[];
  labels?: string[];
  params: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail(index: number, field: string | undefined, what: string): never {
  const where = index < 0 ? "model" : `layer ${index}`;
  throw new SpecError(`${where}${field ? ` field "${field}"` : ""}: ${what}`, index, field);
}

function positiveInt(index: number, field: string, v: unknown, max = MAX_DIM): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > max)
    fail(index, field, `must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function pair(index: number, field: string, v: unknown, dflt?: [number, number]): [number, number] {
  if (v === undefined && dflt) return dflt;
  if (Array.isArray(v)) {
    if (v.length !== 2)
      fail(index, field, `must be a number or [height, width], got ${JSON.stringify(v)}`);
    return [positiveInt(index, field, v[0], 4096), positiveInt(index, field, v[1], 4096)];
  }
  const n = positiveInt(index, field, v, 4096);
  return [n, n];
}

function bool(index: number, field: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") fail(index, field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function num(
  index: number,
  field: string,
  v: unknown,
  dflt: number | undefined,
  lo: number,
  hi: number,
  loOpen = false,
  hiOpen = false,
): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v))
    fail(index, field, `must be a finite number, got ${JSON.stringify(v)}`);
  const okLo = loOpen ? v > lo : v >= lo;
  const okHi = hiOpen ? v < hi : v <= hi;
  if (!okLo || !okHi)
    fail(
      index,
      field,
      `must be in ${loOpen ? "(" : "["}${lo}, ${hi}${hiOpen ? ")" : "]"}, got ${v}`,
    );
  return v;
}

function padding(index: number, v: unknown): Padding {
  if (v === undefined) return "valid";
  if (v !== "same" && v !== "valid")
    fail(index, "padding", `must be "same" or "valid", got ${JSON.stringify(v)}`);
  return v;
}

/** Output length of a window sweep, TF conventions. */
export function windowOut(size: number, k: number, s: number, pad: Padding): number {
  return pad === "same" ? Math.ceil(size / s) : Math.floor((size - k) / s) + 1;
}

/** Zero rows/cols TF adds before the input for "same" padding (the rest goes after). */
export function padBefore(size: number, k: number, s: number, pad: Padding): number {
  if (pad === "valid") return 0;
  const out = Math.ceil(size / s);
  const total = Math.max((out - 1) * s + k - size, 0);
  return Math.floor(total / 2);
}

function resolveLayer(index: number, raw: unknown): LayerSpecResolved {
  if (!isObject(raw)) fail(index, undefined, `must be an object like {"type": "dense", ...}`);
  const type = raw.type;
  if (typeof type !== "string" || !(LAYER_TYPES as readonly string[]).includes(type))
    fail(
      index,
      "type",
      `unknown layer type ${JSON.stringify(type)}; known types: ${LAYER_TYPES.join(", ")}`,
    );
  const t = type as LayerType;
  for (const key of Object.keys(raw)) {
    if (key !== "type" && !KNOWN_FIELDS[t].includes(key))
      fail(
        index,
        key,
        `is not a field of ${t}${KNOWN_FIELDS[t].length ? ` (fields: ${KNOWN_FIELDS[t].join(", ")})` : " (it takes none)"}`,
      );
  }
  switch (t) {
    case "dense":
      return {
        type: t,
        units: positiveInt(index, "units", raw.units),
        useBias: bool(index, "useBias", raw.useBias, true),
      };
    case "conv2d":
      return {
        type: t,
        filters: positiveInt(index, "filters", raw.filters, 65536),
        kernelSize: pair(index, "kernelSize", raw.kernelSize),
        strides: pair(index, "strides", raw.strides, [1, 1]),
        padding: padding(index, raw.padding),
        useBias: bool(index, "useBias", raw.useBias, true),
      };
    case "batchNorm":
      return {
        type: t,
        momentum: num(index, "momentum", raw.momentum, 0.99, 0, 1, false, true),
        epsilon: num(index, "epsilon", raw.epsilon, 1e-3, 0, 1, true, false),
        center: bool(index, "center", raw.center, true),
        scale: bool(index, "scale", raw.scale, true),
      };
    case "leakyRelu":
      return { type: t, alpha: num(index, "alpha", raw.alpha, 0.3, 0, 1e6) };
    case "elu":
      return { type: t, alpha: num(index, "alpha", raw.alpha, 1, 0, 1e6) };
    case "dropout":
      return { type: t, rate: num(index, "rate", raw.rate, undefined, 0, 1, false, true) };
    case "maxPool2d":
    case "avgPool2d": {
      const poolSize = pair(index, "poolSize", raw.poolSize, [2, 2]);
      return {
        type: t,
        poolSize,
        strides: pair(index, "strides", raw.strides, poolSize),
        padding: padding(index, raw.padding),
      };
    }
    default:
      return { type: t } as LayerSpecResolved;
  }
}

function elements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Validates a spec (from code or parsed JSON) and infers every layer's shapes. */
export function resolveSpec(spec: unknown): ResolvedModel {
  if (!isObject(spec))
    fail(-1, undefined, `a model spec must be an object {"inputShape": [...], "layers": [...]}`);
  for (const key of Object.keys(spec))
    if (!["inputShape", "layers", "labels"].includes(key))
      fail(-1, key, `is not a model field (fields: inputShape, layers, labels)`);
  const inputShape = spec.inputShape;
  if (!Array.isArray(inputShape) || (inputShape.length !== 1 && inputShape.length !== 3))
    fail(
      -1,
      "inputShape",
      `must be [features] or [height, width, channels], got ${JSON.stringify(inputShape)}`,
    );
  const input = inputShape.map((d) => positiveInt(-1, "inputShape", d));
  if (elements(input) > MAX_ELEMENTS)
    fail(-1, "inputShape", `has more than ${MAX_ELEMENTS} elements`);
  if (!Array.isArray(spec.layers) || spec.layers.length === 0)
    fail(-1, "layers", `must be a non-empty array of layers`);
  let labels: string[] | undefined;
  if (spec.labels !== undefined) {
    if (!Array.isArray(spec.labels) || !spec.labels.every((l) => typeof l === "string"))
      fail(-1, "labels", "must be an array of strings");
    labels = spec.labels as string[];
  }

  const layers: ResolvedLayer[] = [];
  let shape = input;
  let total = 0;
  spec.layers.forEach((raw, index) => {
    const r = resolveLayer(index, raw);
    const inShape = shape;
    let outShape: number[];
    let params = 0;
    let stateSize = 0;
    const need3d = (what: string) => {
      if (inShape.length !== 3)
        fail(
          index,
          "type",
          `${r.type} needs an input of shape [height, width, channels], got [${inShape.join(", ")}]${what}`,
        );
    };
    switch (r.type) {
      case "dense": {
        if (inShape.length !== 1)
          fail(
            index,
            "type",
            `dense needs a flat input, got [${inShape.join(", ")}]; add {"type": "flatten"} before it`,
          );
        outShape = [r.units];
        params = inShape[0] * r.units + (r.useBias ? r.units : 0);
        break;
      }
      case "conv2d": {
        need3d("");
        const [h, w, c] = inShape;
        const [kh, kw] = r.kernelSize;
        const [sh, sw] = r.strides;
        if (r.padding === "valid" && (kh > h || kw > w))
          fail(
            index,
            "kernelSize",
            `${kh}x${kw} is larger than the ${h}x${w} input with "valid" padding`,
          );
        outShape = [windowOut(h, kh, sh, r.padding), windowOut(w, kw, sw, r.padding), r.filters];
        params = kh * kw * c * r.filters + (r.useBias ? r.filters : 0);
        break;
      }
      case "batchNorm": {
        const ch = inShape[inShape.length - 1];
        outShape = inShape;
        params = (r.scale ? ch : 0) + (r.center ? ch : 0);
        stateSize = 2 * ch;
        break;
      }
      case "maxPool2d":
      case "avgPool2d": {
        need3d("");
        const [h, w, c] = inShape;
        const [ph, pw] = r.poolSize;
        if (r.padding === "valid" && (ph > h || pw > w))
          fail(index, "poolSize", `${ph}x${pw} is larger than the ${h}x${w} input`);
        outShape = [
          windowOut(h, ph, r.strides[0], r.padding),
          windowOut(w, pw, r.strides[1], r.padding),
          c,
        ];
        break;
      }
      case "globalAvgPool2d":
        need3d("");
        outShape = [inShape[2]];
        break;
      case "flatten":
        outShape = [elements(inShape)];
        break;
      default:
        outShape = inShape;
    }
    if (outShape.some((d) => d < 1))
      fail(index, "type", `output shape [${outShape.join(", ")}] is empty`);
    if (elements(outShape) > MAX_ELEMENTS || params > MAX_ELEMENTS)
      fail(index, "type", `is too large (more than ${MAX_ELEMENTS} elements per sample)`);
    layers.push({
      index,
      spec: r as Required<LayerSpecResolved>,
      inShape,
      outShape,
      params,
      stateSize,
    });
    total += params;
    shape = outShape;
  });
  if (labels && labels.length !== elements(shape))
    fail(-1, "labels", `has ${labels.length} names but the model has ${elements(shape)} outputs`);
  return { inputShape: input, layers, outputShape: shape, labels, params: total };
}

/** Parses JSON text into a resolved model, with the JSON error's position on failure. */
export function parseSpec(text: string): ResolvedModel {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SpecError(`model spec is not valid JSON: ${(e as Error).message}`, -1);
  }
  return resolveSpec(raw);
}

export function sizeOf(shape: readonly number[]): number {
  return elements(shape as number[]);
}

/** The canonical spec (defaults filled in) of a resolved model: what checkpoints store. */
export function toSpec(m: ResolvedModel): ModelSpec {
  return {
    inputShape: [...m.inputShape],
    layers: m.layers.map((l) => ({ ...l.spec }) as LayerSpec),
    ...(m.labels ? { labels: [...m.labels] } : {}),
  };
}
