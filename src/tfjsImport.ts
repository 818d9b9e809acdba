// Import of TensorFlow.js / Keras *layers* models (model.json + binary weight shards) into an
// edgenn spec and weights. Platform-neutral: the caller reads the files (src/cliImport.ts in Node).
//
// What the importer must get right, and why:
// - Weights are matched by name, never by position: TF.js saves all trainable weights first and
//   the BatchNormalization moving statistics after them, so manifest order is not layer order.
// - Shards are one byte stream cut at arbitrary points (often inside a tensor): concatenate all
//   shards of all groups in manifest order, then walk the manifest computing each tensor's offset.
// - Only straight chains are accepted; a functional model's inbound_nodes are checked to form one
//   path from its one input to its one output. Everything else is an error naming the layer.
// - Any option that changes what a layer computes and that edgenn cannot reproduce (dilation,
//   channels_first, clipped ReLU, ...) is an error naming the layer and the field, never ignored.
import type { Kernels } from "./kernels.js";
import { layerTensors } from "./layers.js";
import { Model, type LossName, type ModelOptions } from "./model.js";
import {
  resolveSpec,
  SpecError,
  toSpec,
  type LayerSpec,
  type ModelSpec,
  type Padding,
  type ResolvedModel,
} from "./spec.js";

/** A model.json (or Keras topology) that edgenn cannot import. `layer`/`layerIndex` locate it. */
export class TfjsImportError extends Error {
  override name = "TfjsImportError";
  constructor(
    message: string,
    /** The TF.js/Keras layer name, when the problem is in one layer. */
    readonly layer?: string,
    /** Index of that layer in the topology's layer list. */
    readonly layerIndex?: number,
    /** The config field (or weight name) at fault. */
    readonly field?: string,
  ) {
    super(message);
  }
}

export type WeightData = ArrayBuffer | Uint8Array | (ArrayBuffer | Uint8Array)[];

export interface TfjsImport {
  spec: ModelSpec;
  /** Tensors keyed like Model.getWeights(): `layers.<i>.<kernel|bias|gamma|beta|movingMean|movingVariance>`. */
  weights: Map<string, Float32Array>;
  /** Human-readable lines: which TF.js layer became which edgenn layer, what was skipped. */
  report: string[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const MODEL_CLASSES = ["Sequential", "Model", "Functional"];

/** A layer of the topology, in chain order. `index` is its position in the topology's list. */
interface TopoLayer {
  className: string;
  name: string;
  index: number;
  config: Json;
}

/** Where an edgenn layer came from. */
interface Origin {
  layer: TopoLayer;
  /** Set for a layer that owns weights (Dense, Conv2D, BatchNormalization). */
  weights: boolean;
  /** A Dense kernel [in, units] stored as a 1x1 conv's [1, 1, in, units] (the same bytes). */
  denseAsConv?: boolean;
}

function where(l: TopoLayer): string {
  return `layer "${l.name}" (#${l.index}, ${l.className})`;
}

function layerError(l: TopoLayer, field: string | undefined, what: string): never {
  throw new TfjsImportError(
    `${where(l)}${field ? ` field "${field}"` : ""}: ${what}`,
    l.name,
    l.index,
    field,
  );
}

function modelError(what: string, field?: string): never {
  throw new TfjsImportError(what, undefined, undefined, field);
}

function parseMaybeString(v: unknown, what: string): unknown {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch (e) {
    return modelError(`${what} is a string but not valid JSON: ${(e as Error).message}`);
  }
}

/** Does this parsed JSON look like a TF.js model.json or a Keras model topology? */
export function isTfjsModelJson(obj: unknown): boolean {
  if (!isObject(obj)) return false;
  if ("modelTopology" in obj || "weightsManifest" in obj || "model_config" in obj) return true;
  return (
    typeof obj.class_name === "string" &&
    MODEL_CLASSES.includes(obj.class_name) &&
    (isObject(obj.config) || Array.isArray(obj.config))
  );
}

/** The {class_name, config} of the model inside a model.json, a Keras topology, or either wrapped. */
function modelTopology(modelJson: unknown): { className: string; config: unknown } {
  if (!isObject(modelJson))
    modelError(`a TF.js model.json must be a JSON object, got ${describe(modelJson)}`);
  if (modelJson.format === "graph-model")
    modelError(
      `this model.json is a TF.js graph model (converted from a SavedModel or frozen graph); edgenn imports layers models only: convert the Keras model with --output_format tfjs_layers_model`,
      "format",
    );
  let topo: unknown = modelJson;
  if ("modelTopology" in modelJson) {
    topo = parseMaybeString(modelJson.modelTopology, "modelTopology");
    if (!isObject(topo)) modelError(`"modelTopology" must be an object`, "modelTopology");
  }
  if (isObject(topo) && "model_config" in topo) {
    topo = parseMaybeString(topo.model_config, "model_config");
    if (!isObject(topo)) modelError(`"model_config" must be an object`, "model_config");
  }
  if (!isObject(topo) || typeof topo.class_name !== "string")
    modelError(
      `no model topology found: expected {"modelTopology": {"class_name": "Sequential" | "Model", "config": ...}, "weightsManifest": [...]} or a Keras {"class_name", "config"} object`,
      "modelTopology",
    );
  if (!MODEL_CLASSES.includes(topo.class_name))
    modelError(
      `the model's class_name is ${JSON.stringify(topo.class_name)}; edgenn imports Sequential and functional (Model/Functional) models`,
      "class_name",
    );
  return { className: topo.class_name, config: topo.config };
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? JSON.stringify(v) : typeof v;
}

function rawLayers(config: unknown, field: string): unknown[] {
  // Keras < 2.2 saved a Sequential's config as the layer list itself.
  const list = Array.isArray(config) ? config : isObject(config) ? config.layers : undefined;
  if (!Array.isArray(list) || list.length === 0)
    modelError(`the model config has no "layers" list`, field);
  return list;
}

function toTopoLayer(raw: unknown, index: number): TopoLayer {
  if (!isObject(raw) || typeof raw.class_name !== "string")
    modelError(`layer #${index} must be an object with a "class_name", got ${describe(raw)}`);
  const config = raw.config ?? {};
  if (!isObject(config))
    modelError(`layer #${index} (${raw.class_name}) has a "config" that is not an object`);
  const name =
    typeof raw.name === "string"
      ? raw.name
      : typeof config.name === "string"
        ? config.name
        : `${raw.class_name.toLowerCase()}_${index}`;
  return { className: raw.class_name, name, index, config };
}

/** A [layerName, nodeIndex, tensorIndex] reference to the tensor a layer reads. */
interface TensorRef {
  layer: string;
  node: number;
  tensor: number;
}

function refOf(v: unknown): TensorRef | undefined {
  if (Array.isArray(v) && typeof v[0] === "string")
    return { layer: v[0], node: Number(v[1] ?? 0), tensor: Number(v[2] ?? 0) };
  return undefined;
}

/** The tensors one inbound node reads: Keras 2 / TF.js lists, or Keras 3 `{args, kwargs}` nodes. */
function nodeInputs(node: unknown): TensorRef[] | undefined {
  if (Array.isArray(node)) {
    const refs = node.map(refOf);
    return refs.every((r) => r) ? (refs as TensorRef[]) : undefined;
  }
  if (isObject(node) && Array.isArray(node.args)) {
    const refs: TensorRef[] = [];
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(visit);
      else if (isObject(v)) {
        const cfg = v.config;
        if (v.class_name === "__keras_tensor__" && isObject(cfg)) {
          const r = refOf(cfg.keras_history);
          if (r) refs.push(r);
        }
      }
    };
    visit(node.args);
    // Keras 3 may pass the input tensor as a keyword argument (`inputs=x`).
    if (refs.length === 0) visit(Object.values(isObject(node.kwargs) ? node.kwargs : {}));
    return refs;
  }
  return undefined;
}

function refList(v: unknown, field: string): TensorRef[] {
  if (!Array.isArray(v)) modelError(`the functional model's "${field}" must be a list`, field);
  // Keras 3 writes a single input/output as a flat [name, node, tensor].
  if (typeof v[0] === "string") return [refOf(v)!];
  return v.map((e) => refOf(e) ?? modelError(`"${field}" has a malformed entry`, field));
}

/**
 * The layers of a functional model in chain order, after checking they form one straight path:
 * one input, one output, each layer called once on one tensor, each tensor read by one layer.
 */
function functionalChain(config: unknown): TopoLayer[] {
  const layers = rawLayers(config, "config.layers").map(toTopoLayer);
  const cfg = config as Json;
  const byName = new Map<string, TopoLayer>();
  for (const l of layers) {
    if (byName.has(l.name)) layerError(l, "name", `the name is used by two layers`);
    byName.set(l.name, l);
  }
  const inputs = refList(cfg.input_layers, "input_layers");
  const outputs = refList(cfg.output_layers, "output_layers");
  if (inputs.length !== 1)
    modelError(
      `the model has ${inputs.length} inputs (${inputs.map((r) => r.layer).join(", ")}); edgenn imports single-input straight chains`,
      "input_layers",
    );
  if (outputs.length !== 1)
    modelError(
      `the model has ${outputs.length} outputs (${outputs.map((r) => r.layer).join(", ")}); edgenn imports single-output straight chains`,
      "output_layers",
    );
  const rawList = rawLayers(config, "config.layers");
  const parent = new Map<string, string>();
  const consumers = new Map<string, string[]>();
  layers.forEach((l, i) => {
    const raw = rawList[i] as Json;
    const nodes = raw.inbound_nodes ?? [];
    if (!Array.isArray(nodes)) layerError(l, "inbound_nodes", "must be a list");
    if (l.className === "InputLayer") {
      if (nodes.length) layerError(l, "inbound_nodes", "an InputLayer cannot have inputs");
      return;
    }
    if (nodes.length === 0)
      layerError(l, "inbound_nodes", "the layer is not connected to any input");
    if (nodes.length > 1)
      layerError(
        l,
        "inbound_nodes",
        `the layer is called ${nodes.length} times (a shared layer); edgenn imports straight chains where each layer is used once`,
      );
    const refs = nodeInputs(nodes[0]);
    if (!refs) layerError(l, "inbound_nodes", "has an inbound node edgenn cannot read");
    if (refs.length !== 1)
      layerError(
        l,
        "inbound_nodes",
        `the layer merges ${refs.length} tensors (${refs.map((r) => r.layer).join(", ")}); edgenn imports straight chains only (no Add/Concatenate/multi-input layers)`,
      );
    const src = refs[0];
    if (!byName.has(src.layer))
      layerError(l, "inbound_nodes", `reads from unknown layer "${src.layer}"`);
    if (src.node !== 0 || src.tensor !== 0)
      layerError(
        l,
        "inbound_nodes",
        `reads output ${src.tensor} of call ${src.node} of layer "${src.layer}"; edgenn imports straight chains of single-output layers`,
      );
    parent.set(l.name, src.layer);
    consumers.set(src.layer, [...(consumers.get(src.layer) ?? []), l.name]);
  });
  for (const [name, cs] of consumers)
    if (cs.length > 1)
      layerError(
        byName.get(name)!,
        "inbound_nodes",
        `the layer's output feeds ${cs.length} layers (${cs.join(", ")}), a branch; edgenn imports straight chains only`,
      );
  const first = byName.get(inputs[0].layer);
  if (!first) modelError(`input_layers names unknown layer "${inputs[0].layer}"`, "input_layers");
  if (first.className !== "InputLayer")
    layerError(first, "class_name", "the model's input must be an InputLayer");
  const chain = [first];
  for (let cur = first; consumers.has(cur.name);) {
    cur = byName.get(consumers.get(cur.name)![0])!;
    chain.push(cur);
  }
  const last = chain[chain.length - 1];
  if (last.name !== outputs[0].layer)
    layerError(
      last,
      "output_layers",
      `the chain from the input ends at this layer, but the model's output is "${outputs[0].layer}"`,
    );
  if (outputs[0].node !== 0 || outputs[0].tensor !== 0)
    layerError(last, "output_layers", "the model output must be the layer's only output");
  if (chain.length !== layers.length) {
    const on = new Set(chain.map((l) => l.name));
    const off = layers.find((l) => !on.has(l.name))!;
    layerError(
      off,
      "inbound_nodes",
      "the layer is not on the path from the model's input to its output",
    );
  }
  return chain;
}

function sequentialLayers(config: unknown): TopoLayer[] {
  const layers = rawLayers(config, "config.layers").map(toTopoLayer);
  layers.forEach((l, i) => {
    if (l.className === "InputLayer" && i !== 0)
      layerError(
        l,
        "class_name",
        "an InputLayer can only be the first layer of a Sequential model",
      );
  });
  return layers;
}

// ---- config readers: snake_case as saved, camelCase as TF.js code writes it -------------------

function camel(snake: string): string {
  return snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function get(l: TopoLayer, field: string): unknown {
  if (field in l.config) return l.config[field];
  const c = camel(field);
  return c in l.config ? l.config[c] : undefined;
}

function has(l: TopoLayer, field: string): boolean {
  const v = get(l, field);
  return v !== undefined && v !== null;
}

function readBool(l: TopoLayer, field: string, dflt: boolean): boolean {
  const v = get(l, field);
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean")
    layerError(l, field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function readNumber(l: TopoLayer, field: string, dflt: number): number {
  const v = get(l, field);
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v))
    layerError(l, field, `must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

function readInt(l: TopoLayer, field: string): number {
  const v = get(l, field);
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
    layerError(l, field, `must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** An int or a 2-list of ints (kernel_size, strides, pool_size). */
function readPair(l: TopoLayer, field: string, dflt?: [number, number]): [number, number] {
  const v = get(l, field);
  if ((v === undefined || v === null) && dflt) return dflt;
  const ok = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 1;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 1 && ok(v[0])) return [v[0], v[0]];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  layerError(l, field, `must be a positive integer or a list of two, got ${JSON.stringify(v)}`);
}

function compactPair(p: [number, number]): number | [number, number] {
  return p[0] === p[1] ? p[0] : p;
}

function readPadding(l: TopoLayer): Padding {
  const v = get(l, "padding") ?? "valid";
  if (v !== "same" && v !== "valid")
    layerError(l, "padding", `${JSON.stringify(v)} is not supported; use "same" or "valid"`);
  return v;
}

function checkChannelsLast(l: TopoLayer): void {
  const v = get(l, "data_format");
  if (v !== undefined && v !== null && v !== "channels_last" && v !== "channelsLast")
    layerError(
      l,
      "data_format",
      `${JSON.stringify(v)} is not supported; edgenn runs channels_last (NHWC) models only`,
    );
}

function checkNull(l: TopoLayer, field: string, why: string): void {
  if (has(l, field))
    layerError(l, field, `${JSON.stringify(get(l, field))} is not supported: ${why}`);
}

function checkDtype(l: TopoLayer): void {
  let v = get(l, "dtype");
  // Keras 3 writes a dtype policy object.
  if (isObject(v) && isObject(v.config)) v = v.config.name;
  if (typeof v === "string" && v !== "float32")
    layerError(l, "dtype", `${JSON.stringify(v)} is not supported; edgenn computes in float32`);
}

const ACTIVATIONS: Record<string, LayerSpec[]> = {
  linear: [],
  relu: [{ type: "relu" }],
  elu: [{ type: "elu", alpha: 1 }],
  tanh: [{ type: "tanh" }],
  sigmoid: [{ type: "sigmoid" }],
  softmax: [{ type: "softmax" }],
};

function activationLayers(l: TopoLayer, field: string): LayerSpec[] {
  let v = get(l, field);
  if (v === undefined || v === null) return [];
  // Keras 3 serialises a built-in activation as {"class_name": "function", "config": "relu"}.
  if (isObject(v) && v.class_name === "function" && typeof v.config === "string") v = v.config;
  else if (isObject(v) && typeof v.class_name === "string") v = v.class_name;
  if (typeof v !== "string" || !Object.hasOwn(ACTIVATIONS, v))
    layerError(
      l,
      field,
      `activation ${JSON.stringify(v)} is not supported; supported: ${Object.keys(ACTIVATIONS).join(", ")}`,
    );
  return ACTIVATIONS[v].map((s) => ({ ...s }));
}

/** The per-sample input shape from batch_input_shape / batch_shape / input_shape, if present. */
function declaredInputShape(l: TopoLayer): number[] | undefined {
  let field = "";
  let shape: unknown;
  for (const f of ["batch_input_shape", "batch_shape"]) {
    if (has(l, f)) {
      field = f;
      const v = get(l, f);
      if (!Array.isArray(v) || v.length < 2)
        layerError(
          l,
          f,
          `must be [null, features] or [null, height, width, channels], got ${JSON.stringify(v)}`,
        );
      if (v[0] !== null && !(typeof v[0] === "number" && Number.isInteger(v[0]) && v[0] >= 1))
        layerError(l, f, `the batch dimension must be null (any), got ${JSON.stringify(v[0])}`);
      shape = v.slice(1);
      break;
    }
  }
  if (shape === undefined && has(l, "input_shape")) {
    field = "input_shape";
    shape = get(l, "input_shape");
  }
  if (shape === undefined) return undefined;
  if (
    !Array.isArray(shape) ||
    (shape.length !== 1 && shape.length !== 3) ||
    !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 1)
  )
    layerError(
      l,
      field,
      `the input must be [null, features] or [null, height, width, channels] with fixed sizes, got ${JSON.stringify(get(l, field))}`,
    );
  return shape as number[];
}

const SUPPORTED = new Set([
  "InputLayer",
  "Dense",
  "Conv2D",
  "Convolution2D",
  "BatchNormalization",
  "Activation",
  "ReLU",
  "LeakyReLU",
  "ELU",
  "Softmax",
  "Dropout",
  "MaxPooling2D",
  "MaxPool2D",
  "AveragePooling2D",
  "AvgPool2D",
  "GlobalAveragePooling2D",
  "GlobalAvgPool2D",
  "Flatten",
]);

const SUPPORTED_NAMES =
  "InputLayer, Dense, Conv2D, BatchNormalization, Activation, ReLU, LeakyReLU, ELU, Softmax, " +
  "Dropout, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D and Flatten";

interface Converted {
  spec: ModelSpec;
  /** One entry per edgenn layer. */
  origins: Origin[];
  report: string[];
}

function topologyChain(modelJson: unknown): { className: string; chain: TopoLayer[] } {
  const { className, config } = modelTopology(modelJson);
  const chain = className === "Sequential" ? sequentialLayers(config) : functionalChain(config);
  return { className, chain };
}

/** Converts the chain's layers to edgenn layer specs, tracking the per-sample rank for axis checks. */
function convertChain(className: string, chain: TopoLayer[]): Converted {
  const layers: LayerSpec[] = [];
  const origins: Origin[] = [];
  const report: string[] = [];
  let inputShape: number[] | undefined;
  let rank = 0;
  const push = (
    l: TopoLayer,
    specs: LayerSpec[],
    weights: boolean,
    note = "",
    denseAsConv = false,
  ): void => {
    const first = layers.length;
    specs.forEach((s, i) => {
      layers.push(s);
      origins.push({
        layer: l,
        weights: weights && i === 0,
        ...(denseAsConv ? { denseAsConv } : {}),
      });
    });
    const to = specs.length ? specs.map((s, i) => `${first + i} ${s.type}`).join(", ") : "nothing";
    // Predictions are the same; training is not: edgenn has no frozen layers.
    const frozen =
      weights && get(l, "trainable") === false
        ? " (frozen in Keras, trainable: false; edgenn trains it if you fit the model)"
        : "";
    report.push(
      `${l.className} "${l.name}" -> ${specs.length ? `layer ${to}` : to}${note}${frozen}`,
    );
  };
  for (const l of chain) {
    if (!SUPPORTED.has(l.className))
      layerError(
        l,
        "class_name",
        `${MODEL_CLASSES.includes(l.className) ? "nested models are" : `layer type ${l.className} is`} not supported; edgenn imports ${SUPPORTED_NAMES}`,
      );
    checkDtype(l);
    if (inputShape === undefined) {
      inputShape = declaredInputShape(l);
      if (inputShape === undefined)
        layerError(
          l,
          "batch_input_shape",
          "the model's input shape is unknown: give the first layer an inputShape (or start with an InputLayer)",
        );
      rank = inputShape.length;
    }
    switch (l.className) {
      case "InputLayer":
        if (readBool(l, "sparse", false))
          layerError(l, "sparse", "sparse inputs are not supported");
        if (readBool(l, "ragged", false))
          layerError(l, "ragged", "ragged inputs are not supported");
        report.push(`InputLayer "${l.name}" -> input shape [${inputShape.join(", ")}]`);
        break;
      case "Dense": {
        const act = activationLayers(l, "activation");
        const units = readInt(l, "units");
        const useBias = readBool(l, "use_bias", true);
        if (rank === 3) {
          // Keras applies a Dense on an image to the last axis, pixel by pixel: a 1x1 convolution.
          const conv: LayerSpec = {
            type: "conv2d",
            filters: units,
            kernelSize: 1,
            padding: "valid",
            useBias,
          };
          push(l, [conv, ...act], true, " (a Dense on [h, w, c] acts per pixel: a 1x1 conv)", true);
        } else if (rank === 1) push(l, [{ type: "dense", units, useBias }, ...act], true);
        else
          layerError(
            l,
            "class_name",
            `Dense on a rank-${rank} input is not supported (only flat or [height, width, channels])`,
          );
        break;
      }
      case "Conv2D":
      case "Convolution2D": {
        checkChannelsLast(l);
        const dil = readPair(l, "dilation_rate", [1, 1]);
        if (dil[0] !== 1 || dil[1] !== 1)
          layerError(
            l,
            "dilation_rate",
            `${JSON.stringify(get(l, "dilation_rate"))} is not supported; only 1`,
          );
        if (readNumber(l, "groups", 1) !== 1)
          layerError(l, "groups", `grouped convolutions are not supported (groups must be 1)`);
        if (rank !== 3)
          layerError(
            l,
            "class_name",
            `Conv2D needs a [height, width, channels] input, got rank ${rank}`,
          );
        const act = activationLayers(l, "activation");
        push(
          l,
          [
            {
              type: "conv2d",
              filters: readInt(l, "filters"),
              kernelSize: compactPair(readPair(l, "kernel_size")),
              strides: compactPair(readPair(l, "strides", [1, 1])),
              padding: readPadding(l),
              useBias: readBool(l, "use_bias", true),
            },
            ...act,
          ],
          true,
        );
        break;
      }
      case "BatchNormalization": {
        let axis = get(l, "axis") ?? -1;
        if (Array.isArray(axis) && axis.length === 1) axis = axis[0];
        if (axis !== -1 && axis !== rank)
          layerError(
            l,
            "axis",
            `${JSON.stringify(get(l, "axis"))} is not supported; edgenn normalises the last axis (-1 or ${rank} here)`,
          );
        if (readBool(l, "renorm", false))
          layerError(l, "renorm", "batch renormalization is not supported");
        checkNull(l, "virtual_batch_size", "ghost batch normalization is not supported");
        checkNull(l, "adjustment", "BN adjustment functions are not supported");
        push(
          l,
          [
            {
              type: "batchNorm",
              momentum: readNumber(l, "momentum", 0.99),
              epsilon: readNumber(l, "epsilon", 1e-3),
              center: readBool(l, "center", true),
              scale: readBool(l, "scale", true),
            },
          ],
          true,
        );
        break;
      }
      case "Activation": {
        const act = activationLayers(l, "activation");
        push(l, act, false, act.length ? "" : " (linear is the identity)");
        break;
      }
      case "ReLU": {
        checkNull(l, "max_value", "edgenn's ReLU is unclipped");
        if (readNumber(l, "threshold", 0) !== 0)
          layerError(l, "threshold", `${get(l, "threshold")} is not supported; only 0`);
        const slope = readNumber(l, "negative_slope", 0);
        push(l, [slope === 0 ? { type: "relu" } : { type: "leakyRelu", alpha: slope }], false);
        break;
      }
      case "LeakyReLU": {
        const field = has(l, "negative_slope") ? "negative_slope" : "alpha";
        push(l, [{ type: "leakyRelu", alpha: readNumber(l, field, 0.3) }], false);
        break;
      }
      case "ELU":
        push(l, [{ type: "elu", alpha: readNumber(l, "alpha", 1) }], false);
        break;
      case "Softmax": {
        let axis = get(l, "axis") ?? -1;
        if (Array.isArray(axis) && axis.length === 1) axis = axis[0];
        if (axis !== -1 && axis !== rank)
          layerError(
            l,
            "axis",
            `${JSON.stringify(get(l, "axis"))} is not supported; only the last axis`,
          );
        push(l, [{ type: "softmax" }], false);
        break;
      }
      case "Dropout":
        checkNull(l, "noise_shape", "edgenn drops elements independently");
        if (!has(l, "rate")) layerError(l, "rate", "is missing");
        push(l, [{ type: "dropout", rate: readNumber(l, "rate", 0) }], false);
        break;
      case "MaxPooling2D":
      case "MaxPool2D":
      case "AveragePooling2D":
      case "AvgPool2D": {
        checkChannelsLast(l);
        if (rank !== 3)
          layerError(
            l,
            "class_name",
            `pooling needs a [height, width, channels] input, got rank ${rank}`,
          );
        const poolSize = readPair(l, "pool_size", [2, 2]);
        push(
          l,
          [
            {
              type: l.className.startsWith("Max") ? "maxPool2d" : "avgPool2d",
              poolSize: compactPair(poolSize),
              strides: compactPair(readPair(l, "strides", poolSize)),
              padding: readPadding(l),
            },
          ],
          false,
        );
        break;
      }
      case "GlobalAveragePooling2D":
      case "GlobalAvgPool2D":
        checkChannelsLast(l);
        if (readBool(l, "keepdims", false))
          layerError(l, "keepdims", "keepdims=true is not supported (edgenn outputs [channels])");
        push(l, [{ type: "globalAvgPool2d" }], false);
        rank = 1;
        break;
      case "Flatten":
        checkChannelsLast(l);
        push(l, [{ type: "flatten" }], false);
        rank = 1;
        break;
      default:
        layerError(l, "class_name", `layer type ${l.className} is not supported`);
    }
  }
  if (layers.length === 0) modelError(`the ${className} model has no layers edgenn can run`);
  return { spec: { inputShape: inputShape!, layers }, origins, report };
}

/** Validates the converted spec, turning a SpecError into one that names the TF.js layer. */
function resolveConverted(c: Converted): ResolvedModel {
  try {
    return resolveSpec(c.spec);
  } catch (e) {
    if (!(e instanceof SpecError)) throw e;
    const o = c.origins[e.layer];
    if (!o) modelError(`the imported model is invalid: ${e.message}`, e.field);
    const msg = e.message.replace(/^layer \d+ /, "");
    layerError(o.layer, e.field, `becomes edgenn ${msg}`);
  }
}

/** The edgenn spec of a model.json's topology (weights not needed): what `edgenn lint` checks. */
export function tfjsTopologyToSpec(modelJson: unknown): ModelSpec {
  const { className, chain } = topologyChain(modelJson);
  return toSpec(resolveConverted(convertChain(className, chain)));
}

// ---- weights -----------------------------------------------------------------------------------

interface ManifestEntry {
  name: string;
  shape: number[];
  size: number;
  /** Stored bytes per element (after quantization). */
  width: number;
  decode: (view: DataView, offset: number, out: Float32Array) => void;
  offset: number;
  group: number;
}

function float16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const MAX_TENSOR = 1 << 28;

function manifestEntries(modelJson: unknown): { entries: ManifestEntry[]; total: number } {
  const mj = modelJson as Json;
  let groups: unknown = mj.weightsManifest;
  if (groups === undefined && Array.isArray(mj.weightSpecs)) groups = [{ weights: mj.weightSpecs }];
  if (!Array.isArray(groups))
    modelError(
      `model.json has no "weightsManifest" list; import needs the weights (edgenn lint needs only the topology)`,
      "weightsManifest",
    );
  const entries: ManifestEntry[] = [];
  let offset = 0;
  groups.forEach((g, gi) => {
    if (!isObject(g) || !Array.isArray(g.weights))
      modelError(
        `weightsManifest[${gi}] must be {"paths": [...], "weights": [...]}`,
        "weightsManifest",
      );
    g.weights.forEach((w, wi) => {
      const at = `weightsManifest[${gi}].weights[${wi}]`;
      if (!isObject(w) || typeof w.name !== "string")
        modelError(`${at} must be {"name", "shape", "dtype"}`, "weightsManifest");
      const name = w.name;
      const shape = w.shape;
      if (
        !Array.isArray(shape) ||
        !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0)
      )
        modelError(`weight "${name}" (${at}) has an invalid shape ${JSON.stringify(shape)}`, name);
      const size = (shape as number[]).reduce((a, b) => a * b, 1);
      if (size > MAX_TENSOR)
        modelError(`weight "${name}" has ${size} elements, more than ${MAX_TENSOR}`, name);
      const q = w.quantization;
      let width: number;
      let decode: ManifestEntry["decode"];
      if (q !== undefined && q !== null) {
        if (!isObject(q)) modelError(`weight "${name}" has a malformed "quantization"`, name);
        if (w.dtype !== undefined && w.dtype !== "float32")
          modelError(
            `weight "${name}" is quantized ${w.dtype}; only float32 weights can be imported`,
            name,
          );
        if (q.dtype === "float16") {
          width = 2;
          decode = (v, o, out) => {
            for (let i = 0; i < out.length; i++) out[i] = float16(v.getUint16(o + 2 * i, true));
          };
        } else if (q.dtype === "uint8" || q.dtype === "uint16") {
          const scale = q.scale;
          const min = q.min;
          if (typeof scale !== "number" || typeof min !== "number")
            modelError(
              `weight "${name}" is quantized ${q.dtype} without numeric "scale" and "min"`,
              name,
            );
          width = q.dtype === "uint8" ? 1 : 2;
          decode =
            q.dtype === "uint8"
              ? (v, o, out) => {
                  for (let i = 0; i < out.length; i++) out[i] = v.getUint8(o + i) * scale + min;
                }
              : (v, o, out) => {
                  for (let i = 0; i < out.length; i++)
                    out[i] = v.getUint16(o + 2 * i, true) * scale + min;
                };
        } else
          modelError(
            `weight "${name}" has quantization dtype ${JSON.stringify(q.dtype)}; supported: uint8, uint16, float16`,
            name,
          );
      } else {
        const widths: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
        const dtype = w.dtype ?? "float32";
        if (typeof dtype !== "string" || !Object.hasOwn(widths, dtype))
          modelError(
            `weight "${name}" has dtype ${JSON.stringify(dtype)} that edgenn cannot read`,
            name,
          );
        width = widths[dtype];
        decode =
          dtype === "float32"
            ? (v, o, out) => {
                for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(o + 4 * i, true);
              }
            : () =>
                modelError(
                  `weight "${name}" has dtype ${dtype}; edgenn layers take float32 weights`,
                  name,
                );
      }
      entries.push({ name, shape: shape as number[], size, width, decode, offset, group: gi });
      offset += size * width;
    });
  });
  return { entries, total: offset };
}

function joinShards(weightData: WeightData): Uint8Array {
  const parts = (Array.isArray(weightData) ? weightData : [weightData]).map((p) => {
    if (p instanceof Uint8Array) return p;
    if (p instanceof ArrayBuffer) return new Uint8Array(p);
    return modelError(`weight data must be ArrayBuffers or Uint8Arrays, got ${describe(p)}`);
  });
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

const WEIGHT_NAMES = {
  kernel: "kernel",
  bias: "bias",
  gamma: "gamma",
  beta: "beta",
  movingMean: "moving_mean",
  movingVariance: "moving_variance",
} as const;

/**
 * The manifest entry for `<layer>/<weight>`: exactly that name, or that name after a scope prefix
 * (`model/dense_1/kernel`), with an optional TF `:0` suffix. Exact matches win over prefixed ones.
 */
function findWeight(entries: ManifestEntry[], layer: string, weight: string): ManifestEntry[] {
  const want = `${layer}/${weight}`;
  const norm = (n: string) => n.replace(/:\d+$/, "");
  const exact = entries.filter((e) => norm(e.name) === want);
  if (exact.length) return exact;
  return entries.filter((e) => norm(e.name).endsWith(`/${want}`));
}

/** Reads the model's weights from the concatenated shards, by name. */
function readWeights(
  modelJson: unknown,
  weightData: WeightData,
  resolved: ResolvedModel,
  origins: Origin[],
  report: string[],
): Map<string, Float32Array> {
  const { entries, total } = manifestEntries(modelJson);
  const data = joinShards(weightData);
  if (data.length < total) {
    const cut = entries.find((e) => e.offset + e.size * e.width > data.length)!;
    modelError(
      `the weight data has ${data.length} bytes but the manifest needs ${total}: it ends inside weight "${cut.name}" (bytes ${cut.offset} to ${cut.offset + cut.size * cut.width}); a shard file is missing or truncated`,
      cut.name,
    );
  }
  if (data.length > total) {
    const last = entries[entries.length - 1];
    modelError(
      `the weight data has ${data.length} bytes, ${data.length - total} more than the manifest describes (it ends with weight "${last?.name ?? "(none)"}" at byte ${total}); the shards do not belong to this model.json or are out of order`,
      last?.name,
    );
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const weights = new Map<string, Float32Array>();
  const used = new Set<ManifestEntry>();
  for (const l of resolved.layers) {
    const o = origins[l.index];
    if (!o.weights) continue;
    const tensors = layerTensors(l);
    const all = [...tensors.params, ...tensors.state];
    const found = all.map((t) => findWeight(entries, o.layer.name, WEIGHT_NAMES[t.name]));
    if (all.length && found.every((f) => f.length === 0))
      layerError(
        o.layer,
        "weights",
        `the layer has no weights in the weights manifest (expected ${all.map((t) => `"${o.layer.name}/${WEIGHT_NAMES[t.name]}"`).join(", ")})`,
      );
    all.forEach((t, i) => {
      const w = `${o.layer.name}/${WEIGHT_NAMES[t.name]}`;
      const f = found[i];
      if (f.length === 0)
        layerError(o.layer, w, `weight "${w}" is missing from the weights manifest`);
      if (f.length > 1)
        layerError(
          o.layer,
          w,
          `weight "${w}" matches several manifest entries (${f.map((e) => e.name).join(", ")})`,
        );
      const e = f[0];
      // A Dense-as-1x1-conv kernel is [in, units] in the file, [1, 1, in, units] here.
      const want = o.denseAsConv && t.name === "kernel" ? t.shape.slice(2) : t.shape;
      if (e.shape.length !== want.length || e.shape.some((d, j) => d !== want[j]))
        layerError(
          o.layer,
          w,
          `weight "${e.name}" has shape [${e.shape.join(", ")}] but the layer needs [${want.join(", ")}]`,
        );
      const out = new Float32Array(e.size);
      e.decode(view, e.offset, out);
      const bad = out.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0)
        layerError(
          o.layer,
          w,
          `weight "${e.name}" holds a non-finite value (${out[bad]}) at index ${bad}`,
        );
      used.add(e);
      weights.set(`layers.${l.index}.${t.name}`, out);
    });
  }
  const parts = Array.isArray(weightData) ? weightData.length : 1;
  report.push(
    `weights: ${used.size} tensors matched by name from ${total} bytes in ${parts} shard${parts === 1 ? "" : "s"}`,
  );
  const unused = entries.filter((e) => !used.has(e));
  if (unused.length)
    report.push(`ignored manifest tensors: ${unused.map((e) => e.name).join(", ")}`);
  return weights;
}

/**
 * Converts a TF.js layers-model (parsed model.json and its weight shards, in manifest order) into
 * an edgenn spec and weights. Throws TfjsImportError naming the layer and field it cannot import.
 */
export function importTfjsLayersModel(modelJson: unknown, weightData: WeightData): TfjsImport {
  const { className, chain } = topologyChain(modelJson);
  const converted = convertChain(className, chain);
  const resolved = resolveConverted(converted);
  const report = [`${className} model, ${chain.length} layers`, ...converted.report];
  const weights = readWeights(modelJson, weightData, resolved, converted.origins, report);
  return { spec: toSpec(resolved), weights, report };
}

/** Imports a TF.js layers model as an ordinary trainable edgenn Model. */
export function importTfjsModel(
  modelJson: unknown,
  weightData: WeightData,
  kernels: Kernels,
  options: ModelOptions = {},
): Model {
  const { spec, weights } = importTfjsLayersModel(modelJson, weightData);
  const loss = options.loss ?? tfjsTrainingLoss(modelJson, spec);
  const model = new Model(kernels, spec, { ...options, ...(loss ? { loss } : {}) });
  model.setWeights(weights);
  return model;
}

const LOSSES: Record<string, LossName> = {
  sparse_categorical_crossentropy: "sparseCategoricalCrossentropy",
  categorical_crossentropy: "categoricalCrossentropy",
  mean_squared_error: "meanSquaredError",
  mse: "meanSquaredError",
};

/**
 * The loss to train an imported model with: the one it was compiled with (TF.js `trainingConfig`,
 * Keras 2 `training_config`, Keras 3 `compile_config`, a name or a loss object) when edgenn has it; else MSE for a sigmoid output, which edgenn's
 * class-wise cross-entropy default would refuse; else undefined (Model's default).
 */
export function tfjsTrainingLoss(modelJson: unknown, spec: ModelSpec): LossName | undefined {
  const mj = isObject(modelJson) ? modelJson : {};
  const topo = isObject(mj.modelTopology) ? mj.modelTopology : mj;
  const cfg =
    mj.trainingConfig ??
    mj.training_config ??
    topo.training_config ??
    topo.trainingConfig ??
    // Keras 3
    topo.compile_config ??
    mj.compile_config;
  let raw = isObject(cfg) ? cfg.loss : undefined;
  // A loss object ({"class_name": "SparseCategoricalCrossentropy", ...}) as Keras 3 writes it.
  if (isObject(raw) && typeof raw.class_name === "string") raw = raw.class_name;
  if (typeof raw === "string") {
    const key = raw.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/^_/, "");
    if (Object.hasOwn(LOSSES, key)) return LOSSES[key];
  }
  return spec.layers[spec.layers.length - 1].type === "sigmoid" ? "meanSquaredError" : undefined;
}

/** The shard file paths of a model.json's weightsManifest, in the order their bytes are joined. */
export function tfjsWeightPaths(modelJson: unknown): string[] {
  const groups = isObject(modelJson) ? modelJson.weightsManifest : undefined;
  if (!Array.isArray(groups))
    modelError(`model.json has no "weightsManifest" list`, "weightsManifest");
  return groups.flatMap((g, gi) => {
    if (!isObject(g) || !Array.isArray(g.paths) || !g.paths.every((p) => typeof p === "string"))
      modelError(`weightsManifest[${gi}].paths must be a list of file names`, "weightsManifest");
    return g.paths as string[];
  });
}
