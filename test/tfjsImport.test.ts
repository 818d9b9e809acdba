// TF.js / Keras layers-model import, with TensorFlow.js itself as the oracle: each model is built
// in TF.js (cpu backend), given non-trivial weights and BN statistics, saved through the standard
// save handler, re-cut into several shards whose cuts fall inside tensors and split over two
// manifest groups, imported, and predicted by both sides. Tolerance: 1e-4 * max(1, |y|).
import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { runImport } from "../src/cliImport.js";
import { exportModel } from "../src/export.js";
import { InferenceEngine, loadEngineFile } from "../src/node/engine.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { Rng } from "../src/random.js";
import type { ModelSpec } from "../src/spec.js";
import {
  importTfjsLayersModel,
  importTfjsModel,
  isTfjsModelJson,
  TfjsImportError,
  tfjsTopologyToSpec,
  tfjsTrainingLoss,
} from "../src/tfjsImport.js";
import { evaluate, fit } from "../src/train.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

type Json = Record<string, unknown>;
type WeightSpec = { name: string; shape: number[]; dtype: string; quantization?: Json };

interface Saved {
  modelJson: Json;
  shards: Uint8Array[];
  paths: string[];
}

function joinBuffers(parts: ArrayBuffer | ArrayBuffer[]): Uint8Array {
  const list = Array.isArray(parts) ? parts : [parts];
  const out = new Uint8Array(list.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of list) {
    out.set(new Uint8Array(p), o);
    o += p.byteLength;
  }
  return out;
}

const bytesOf = (s: WeightSpec) => s.shape.reduce((a, b) => a * b, 1) * 4;

/** Cuts [0, len) into n pieces at odd offsets: inside float32 tensors, never on their edges. */
function cutPoints(len: number, n: number): number[] {
  const cuts = [0];
  for (let j = 1; j < n; j++) cuts.push(Math.floor((len * j) / n) | 1);
  cuts.push(len);
  return cuts;
}

/** Saves a TF.js model the standard way and lays it out as model.json + 2 groups x 2 shards. */
async function saveTfjs(model: tf.LayersModel): Promise<Saved> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
    }),
  );
  const specs = artifacts!.weightSpecs as WeightSpec[];
  const data = joinBuffers(artifacts!.weightData as ArrayBuffer | ArrayBuffer[]);
  expect(data.length).toBe(specs.reduce((a, s) => a + bytesOf(s), 0));
  const k = Math.max(1, Math.floor(specs.length / 2));
  const groupSpecs = [specs.slice(0, k), specs.slice(k)].filter((g) => g.length);
  const manifest: Json[] = [];
  const shards: Uint8Array[] = [];
  const paths: string[] = [];
  let start = 0;
  groupSpecs.forEach((g, gi) => {
    const len = g.reduce((a, s) => a + bytesOf(s), 0);
    const cuts = len >= 16 ? cutPoints(len, 2) : [0, len];
    const groupPaths: string[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      shards.push(data.slice(start + cuts[i], start + cuts[i + 1]));
      groupPaths.push(`group${gi + 1}-shard${i + 1}of${cuts.length - 1}.bin`);
    }
    paths.push(...groupPaths);
    manifest.push({ paths: groupPaths, weights: g });
    start += len;
  });
  // Through JSON, as a real model.json file would be.
  const modelJson = JSON.parse(
    JSON.stringify({
      format: "layers-model",
      generatedBy: "TensorFlow.js tfjs-layers v4.22.0",
      modelTopology: artifacts!.modelTopology,
      weightsManifest: manifest,
    }),
  ) as Json;
  return { modelJson, shards, paths };
}

interface RandomOptions {
  movingVariance?: (rng: Rng) => number;
}

/** Non-trivial weights and BN statistics (negative gammas included), set through TF.js. */
function randomizeWeights(model: tf.LayersModel, seed: number, o: RandomOptions = {}): void {
  const rng = new Rng(seed);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const values = model.weights.map((w) => {
    const n = w.shape.reduce((a, b) => a! * b!, 1)!;
    const leaf = w.name.split("/").pop()!;
    const gen =
      leaf === "kernel"
        ? () => u(-0.6, 0.6)
        : leaf === "gamma"
          ? () => (rng.next() < 0.2 ? u(-1.2, -0.4) : u(0.4, 1.6))
          : leaf === "moving_variance"
            ? () => (o.movingVariance ? o.movingVariance(rng) : u(0.2, 2))
            : () => u(-0.5, 0.5);
    return tf.tensor(Float32Array.from({ length: n }, gen), w.shape as number[]);
  });
  model.setWeights(values);
}

function inputShapeOf(model: tf.LayersModel): number[] {
  return model.inputs[0].shape.slice(1) as number[];
}

function randomInputs(shape: number[], n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from(
    { length: n * shape.reduce((a, b) => a * b, 1) },
    () => rng.next() * 4 - 2,
  );
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let e = 0;
  for (let i = 0; i < got.length; i++)
    e = Math.max(e, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return e;
}

async function expectSamePredictions(tfm: tf.LayersModel, seed = 1): Promise<ModelSpec> {
  const saved = await saveTfjs(tfm);
  const model = importTfjsModel(saved.modelJson, saved.shards, loadKernels());
  const shape = inputShapeOf(tfm);
  const N = 5;
  const x = randomInputs(shape, N, seed);
  const want = tf.tidy(() => (tfm.predict(tf.tensor(x, [N, ...shape])) as tf.Tensor).dataSync());
  const got = model.predict(x);
  expect(relErr(got, want)).toBeLessThan(1e-4);
  return model.spec;
}

const dense = (c: Parameters<typeof tf.layers.dense>[0]) => tf.layers.dense(c);

describe("parsing (no kernels needed)", () => {
  it("maps a Sequential model to a spec and matches weights by name, not position", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 6, inputShape: [5], activation: "relu" }),
        tf.layers.batchNormalization({ epsilon: 0.02, momentum: 0.9 }),
        tf.layers.dropout({ rate: 0.25 }),
        dense({ units: 3, activation: "softmax", useBias: false }),
      ],
    });
    randomizeWeights(tfm, 3);
    const saved = await saveTfjs(tfm);
    expect(saved.shards.length).toBe(4);
    const { spec, weights, report } = importTfjsLayersModel(saved.modelJson, saved.shards);
    expect(spec).toEqual({
      inputShape: [5],
      layers: [
        { type: "dense", units: 6, useBias: true },
        { type: "relu" },
        { type: "batchNorm", momentum: 0.9, epsilon: 0.02, center: true, scale: true },
        { type: "dropout", rate: 0.25 },
        { type: "dense", units: 3, useBias: false },
        { type: "softmax" },
      ],
    });
    // TF.js saves the BN moving statistics after every trainable weight.
    const names = tfm.weights.map((w) => w.name);
    expect(names.indexOf(`${tfm.layers[1].name}/moving_mean`)).toBeGreaterThan(
      names.indexOf(`${tfm.layers[3].name}/kernel`),
    );
    const byName = new Map(tfm.weights.map((w) => [w.name, w.read().dataSync()]));
    const expected: [string, string][] = [
      ["layers.0.kernel", `${tfm.layers[0].name}/kernel`],
      ["layers.0.bias", `${tfm.layers[0].name}/bias`],
      ["layers.2.gamma", `${tfm.layers[1].name}/gamma`],
      ["layers.2.beta", `${tfm.layers[1].name}/beta`],
      ["layers.2.movingMean", `${tfm.layers[1].name}/moving_mean`],
      ["layers.2.movingVariance", `${tfm.layers[1].name}/moving_variance`],
      ["layers.4.kernel", `${tfm.layers[3].name}/kernel`],
    ];
    expect([...weights.keys()].sort()).toEqual(expected.map((e) => e[0]).sort());
    for (const [ours, theirs] of expected)
      expect(Array.from(weights.get(ours)!)).toEqual(Array.from(byName.get(theirs)!));
    expect(report.join("\n")).toMatch(/BatchNormalization ".*" -> layer 2 batchNorm/);
  });

  it("reads a single shard, ArrayBuffers, and the weights of a Keras-converted model.json", async () => {
    const tfm = tf.sequential({
      layers: [dense({ units: 2, inputShape: [3] }), tf.layers.batchNormalization()],
    });
    randomizeWeights(tfm, 4);
    const saved = await saveTfjs(tfm);
    const one = joinBuffers(saved.shards.map((s) => s.slice().buffer as ArrayBuffer));
    const a = importTfjsLayersModel(saved.modelJson, one);
    const b = importTfjsLayersModel(
      saved.modelJson,
      saved.shards.map((s) => s.slice().buffer as ArrayBuffer),
    );
    expect([...a.weights]).toEqual([...b.weights]);
    // tensorflowjs_converter output: topology under model_config, names scoped by the model.
    const topo = saved.modelJson.modelTopology as Json;
    const keras = {
      format: "layers-model",
      modelTopology: { keras_version: "2.15.0", backend: "tensorflow", model_config: topo },
      weightsManifest: (saved.modelJson.weightsManifest as Json[]).map((g) => ({
        ...g,
        weights: (g.weights as WeightSpec[]).map((w) => ({ ...w, name: `sequential/${w.name}` })),
      })),
    };
    const c = importTfjsLayersModel(keras, saved.shards);
    expect([...c.weights]).toEqual([...a.weights]);
  });

  it("dequantizes uint8, uint16 and float16 weights per the TF.js manifest spec", async () => {
    const tfm = tf.sequential({ layers: [dense({ units: 4, inputShape: [6] })] });
    randomizeWeights(tfm, 5);
    const [kernel, bias] = tfm.getWeights().map((t) => t.dataSync() as Float32Array);
    const name = tfm.layers[0].name;
    const quantize = (v: Float32Array, dtype: "uint8" | "uint16") => {
      const min = Math.min(...v);
      const levels = dtype === "uint8" ? 255 : 65535;
      const scale = (Math.max(...v) - min) / levels;
      const q = Array.from(v, (x) => Math.round((x - min) / scale));
      const bytes = new Uint8Array(q.length * (dtype === "uint8" ? 1 : 2));
      const view = new DataView(bytes.buffer);
      q.forEach((x, i) =>
        dtype === "uint8" ? view.setUint8(i, x) : view.setUint16(2 * i, x, true),
      );
      return { bytes, quantization: { dtype, min, scale } };
    };
    const half = (v: Float32Array) => {
      // Exactly representable halves: multiples of 1/1024 in (-1, 1).
      const r = Float32Array.from(v, (x) => Math.round(x * 1024) / 1024);
      const bytes = new Uint8Array(r.length * 2);
      const view = new DataView(bytes.buffer);
      r.forEach((x, i) => {
        const s = x < 0 ? 0x8000 : 0;
        const a = Math.abs(x);
        if (a === 0) return view.setUint16(2 * i, s, true);
        const e = Math.floor(Math.log2(a));
        const f = Math.round((a / 2 ** e - 1) * 1024);
        view.setUint16(2 * i, s | ((e + 15) << 10) | f, true);
      });
      return { bytes, values: r };
    };
    for (const dtype of ["uint8", "uint16"] as const) {
      const k = quantize(kernel, dtype);
      const h = half(bias);
      const modelJson = {
        modelTopology: tfm.toJSON(null, false),
        weightsManifest: [
          {
            paths: ["w.bin"],
            weights: [
              {
                name: `${name}/kernel`,
                shape: [6, 4],
                dtype: "float32",
                quantization: k.quantization,
              },
              {
                name: `${name}/bias`,
                shape: [4],
                dtype: "float32",
                quantization: { dtype: "float16" },
              },
            ],
          },
        ],
      };
      const { weights } = importTfjsLayersModel(modelJson, [k.bytes, h.bytes]);
      expect(relErr(weights.get("layers.0.kernel")!, kernel)).toBeLessThanOrEqual(
        k.quantization.scale / 2 + 1e-7,
      );
      expect(Array.from(weights.get("layers.0.bias")!)).toEqual(Array.from(h.values));
    }
  });

  it("detects model.json files and converts a topology without weights (for lint)", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({ filters: 2, kernelSize: 3, inputShape: [6, 6, 1], activation: "relu" }),
        tf.layers.flatten(),
        dense({ units: 2 }),
      ],
    });
    const topo = tfm.toJSON(null, false) as Json;
    expect(isTfjsModelJson({ modelTopology: topo })).toBe(true);
    expect(isTfjsModelJson(topo)).toBe(true);
    expect(isTfjsModelJson({ inputShape: [3], layers: [] })).toBe(false);
    expect(tfjsTopologyToSpec({ modelTopology: topo })).toEqual({
      inputShape: [6, 6, 1],
      layers: [
        {
          type: "conv2d",
          filters: 2,
          kernelSize: [3, 3],
          strides: [1, 1],
          padding: "valid",
          useBias: true,
        },
        { type: "relu" },
        { type: "flatten" },
        { type: "dense", units: 2, useBias: true },
      ],
    });
  });

  it("accepts a Keras 2 converter topology (InputLayer first, BN axis as a list)", () => {
    const layer = (class_name: string, config: Json) => ({ class_name, config });
    const modelJson = {
      format: "layers-model",
      convertedBy: "TensorFlow.js Converter v4.22.0",
      modelTopology: {
        keras_version: "2.15.0",
        backend: "tensorflow",
        model_config: {
          class_name: "Sequential",
          config: {
            name: "sequential",
            layers: [
              layer("InputLayer", { batch_input_shape: [null, 5, 5, 2], dtype: "float32" }),
              layer("Conv2D", {
                name: "conv2d",
                filters: 3,
                kernel_size: [3, 3],
                strides: [1, 1],
                padding: "valid",
                data_format: "channels_last",
                dilation_rate: [1, 1],
                groups: 1,
                activation: "linear",
                use_bias: false,
              }),
              layer("BatchNormalization", { name: "bn", axis: [3], epsilon: 0.001 }),
              layer("ReLU", { name: "re_lu", max_value: null, negative_slope: 0, threshold: 0 }),
              layer("GlobalAveragePooling2D", {
                name: "gap",
                data_format: "channels_last",
                keepdims: false,
              }),
            ],
          },
        },
        training_config: { loss: "mean_squared_error" },
      },
    };
    expect(tfjsTopologyToSpec(modelJson)).toEqual({
      inputShape: [5, 5, 2],
      layers: [
        {
          type: "conv2d",
          filters: 3,
          kernelSize: [3, 3],
          strides: [1, 1],
          padding: "valid",
          useBias: false,
        },
        { type: "batchNorm", momentum: 0.99, epsilon: 0.001, center: true, scale: true },
        { type: "relu" },
        { type: "globalAvgPool2d" },
      ],
    });
    const spec = tfjsTopologyToSpec(modelJson);
    expect(tfjsTrainingLoss(modelJson, spec)).toBe("meanSquaredError");
    // Keras 3 keeps the loss in compile_config, as a name or as a loss object.
    const keras3 = (loss: unknown) => ({
      modelTopology: {
        ...modelJson.modelTopology,
        training_config: undefined,
        compile_config: { loss },
      },
    });
    expect(tfjsTrainingLoss(keras3("mean_squared_error"), spec)).toBe("meanSquaredError");
    expect(
      tfjsTrainingLoss(
        keras3({ class_name: "SparseCategoricalCrossentropy", config: { from_logits: false } }),
        spec,
      ),
    ).toBe("sparseCategoricalCrossentropy");
    const cfg = (modelJson.modelTopology.model_config.config.layers[2] as { config: Json }).config;
    cfg.axis = [1];
    expect(() => tfjsTopologyToSpec(modelJson)).toThrow(
      /layer "bn" \(#2, BatchNormalization\) field "axis"/,
    );
  });

  it("rejects malformed and hostile JSON with TfjsImportError, never a crash", () => {
    const base = () =>
      ({
        modelTopology: {
          class_name: "Sequential",
          config: {
            layers: [
              {
                class_name: "Dense",
                config: { name: "d", units: 2, batch_input_shape: [null, 3] },
              },
            ],
          },
        },
        weightsManifest: [
          { paths: ["w"], weights: [{ name: "d/kernel", shape: [3, 2], dtype: "float32" }] },
        ],
      }) as unknown as Json & { modelTopology: { config: { layers: { config: Json }[] } } };
    const bad: [string, (m: ReturnType<typeof base>) => unknown][] = [
      ["not an object", () => 42],
      ["no topology", () => ({ weightsManifest: [] })],
      [
        "activation from the prototype",
        (m) => ((m.modelTopology.config.layers[0].config.activation = "constructor"), m),
      ],
      ["a string units", (m) => ((m.modelTopology.config.layers[0].config.units = "2"), m)],
      [
        "no input shape",
        (m) => (delete m.modelTopology.config.layers[0].config.batch_input_shape, m),
      ],
      [
        "a variable-size input",
        (m) => ((m.modelTopology.config.layers[0].config.batch_input_shape = [null, null]), m),
      ],
      [
        "a huge tensor",
        (m) => ((((m.weightsManifest as Json[])[0].weights as Json[])[0].shape = [1e6, 1e6]), m),
      ],
      [
        "dtype from the prototype",
        (m) => ((((m.weightsManifest as Json[])[0].weights as Json[])[0].dtype = "toString"), m),
      ],
      ["no manifest", (m) => (delete m.weightsManifest, m)],
    ];
    for (const [what, make] of bad) {
      let err: unknown;
      try {
        importTfjsLayersModel(make(base()), new Uint8Array(24));
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(TfjsImportError);
    }
  });

  it("accepts Keras 3 functional topologies (batch_shape, {args, kwargs} inbound nodes)", () => {
    const t = (name: string) => ({
      class_name: "__keras_tensor__",
      config: { shape: [null, 4], dtype: "float32", keras_history: [name, 0, 0] },
    });
    const topo = {
      class_name: "Functional",
      config: {
        name: "functional",
        layers: [
          {
            class_name: "InputLayer",
            name: "input_layer",
            config: { batch_shape: [null, 4], dtype: "float32", name: "input_layer" },
            inbound_nodes: [],
          },
          {
            class_name: "Dense",
            name: "dense",
            config: { name: "dense", units: 3, activation: "linear", use_bias: true },
            inbound_nodes: [{ args: [t("input_layer")], kwargs: {} }],
          },
          {
            class_name: "LeakyReLU",
            name: "leaky",
            config: { name: "leaky", negative_slope: 0.1 },
            inbound_nodes: [{ args: [t("dense")], kwargs: {} }],
          },
        ],
        input_layers: [["input_layer", 0, 0]],
        output_layers: ["leaky", 0, 0],
      },
    };
    expect(tfjsTopologyToSpec(topo)).toEqual({
      inputShape: [4],
      layers: [
        { type: "dense", units: 3, useBias: true },
        { type: "leakyRelu", alpha: 0.1 },
      ],
    });
    // The tensor passed as a keyword argument, and an activation serialised as an object.
    const dl = topo.config.layers[1] as { config: Json; inbound_nodes: unknown[] };
    dl.inbound_nodes = [{ args: [], kwargs: { inputs: t("input_layer") } }];
    dl.config.activation = { module: "keras.activations", class_name: "function", config: "tanh" };
    expect(tfjsTopologyToSpec(topo).layers).toEqual([
      { type: "dense", units: 3, useBias: true },
      { type: "tanh" },
      { type: "leakyRelu", alpha: 0.1 },
    ]);
  });
});

describe("predictions match TensorFlow.js", () => {
  it("MLP: Dense with activation field, BN, Dropout, softmax", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 16, inputShape: [8], activation: "relu" }),
        tf.layers.batchNormalization(),
        tf.layers.dropout({ rate: 0.3 }),
        dense({ units: 4, activation: "softmax" }),
      ],
    });
    randomizeWeights(tfm, 11);
    await expectSamePredictions(tfm);
  });

  it("BN after an activation; Dense activation tanh and sigmoid; ELU layer", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 12, inputShape: [7] }),
        tf.layers.activation({ activation: "relu" }),
        tf.layers.batchNormalization({ epsilon: 0.005 }),
        dense({ units: 9, activation: "tanh" }),
        tf.layers.elu(),
        dense({ units: 3, activation: "sigmoid" }),
      ],
    });
    randomizeWeights(tfm, 12);
    await expectSamePredictions(tfm);
  });

  it("BN with center and scale off and a non-default epsilon", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 6, inputShape: [5] }),
        tf.layers.batchNormalization({ center: false, scale: false, epsilon: 0.1 }),
        tf.layers.activation({ activation: "tanh" }),
        dense({ units: 4 }),
        tf.layers.batchNormalization({ center: false, epsilon: 0.03 }),
        dense({ units: 2 }),
        tf.layers.batchNormalization({ scale: false }),
      ],
    });
    randomizeWeights(tfm, 13);
    const spec = await expectSamePredictions(tfm);
    expect(spec.layers[1]).toEqual({
      type: "batchNorm",
      momentum: 0.99,
      epsilon: 0.1,
      center: false,
      scale: false,
    });
  });

  it("a tiny moving variance where epsilon dominates", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({ filters: 3, kernelSize: 3, inputShape: [6, 6, 2], padding: "same" }),
        tf.layers.batchNormalization({ epsilon: 1e-2 }),
        tf.layers.flatten(),
        dense({ units: 5 }),
        tf.layers.batchNormalization({ epsilon: 1e-3 }),
      ],
    });
    randomizeWeights(tfm, 14, { movingVariance: (rng) => rng.next() * 1e-7 });
    await expectSamePredictions(tfm);
  });

  it("CNN: BN on a bias-less conv, same/valid padding, strides, max/avg pools, LeakyReLU", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({
          filters: 4,
          kernelSize: 3,
          padding: "same",
          useBias: false,
          inputShape: [10, 10, 2],
        }),
        tf.layers.batchNormalization({ epsilon: 0.01 }),
        tf.layers.reLU(),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 5, kernelSize: [3, 2], strides: 2, padding: "valid" }),
        tf.layers.leakyReLU({ alpha: 0.2 }),
        tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: "same" }),
        tf.layers.flatten(),
        tf.layers.dropout({ rate: 0.5 }),
        dense({ units: 3, activation: "softmax" }),
      ],
    });
    randomizeWeights(tfm, 15);
    const spec = await expectSamePredictions(tfm);
    expect(spec.layers.map((l) => l.type)).toEqual([
      "conv2d",
      "batchNorm",
      "relu",
      "maxPool2d",
      "conv2d",
      "leakyRelu",
      "avgPool2d",
      "flatten",
      "dropout",
      "dense",
      "softmax",
    ]);
  });

  it("odd sizes: strided same-padding conv (asymmetric padding), same max pool, GAP", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({
          filters: 6,
          kernelSize: 3,
          strides: 2,
          padding: "same",
          activation: "elu",
          inputShape: [7, 9, 3],
        }),
        tf.layers.batchNormalization(),
        tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: "same" }),
        tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: "sigmoid" }),
        tf.layers.globalAveragePooling2d({}),
        dense({ units: 2 }),
      ],
    });
    randomizeWeights(tfm, 16);
    await expectSamePredictions(tfm);
  });

  it("a functional model (tf.model over a tf.input chain)", async () => {
    const input = tf.input({ shape: [6, 6, 3] });
    let y = tf.layers
      .conv2d({ filters: 4, kernelSize: 3, padding: "same", activation: "relu" })
      .apply(input) as tf.SymbolicTensor;
    y = tf.layers.batchNormalization({ epsilon: 0.004 }).apply(y) as tf.SymbolicTensor;
    y = tf.layers.globalAveragePooling2d({}).apply(y) as tf.SymbolicTensor;
    y = dense({ units: 5 }).apply(y) as tf.SymbolicTensor;
    y = tf.layers.activation({ activation: "elu" }).apply(y) as tf.SymbolicTensor;
    y = tf.layers.dropout({ rate: 0.1 }).apply(y) as tf.SymbolicTensor;
    y = dense({ units: 2, activation: "softmax" }).apply(y) as tf.SymbolicTensor;
    const tfm = tf.model({ inputs: input, outputs: y });
    randomizeWeights(tfm, 17);
    const saved = await saveTfjs(tfm);
    expect((saved.modelJson.modelTopology as Json).class_name).toBe("Model");
    await expectSamePredictions(tfm);
  });

  it("BN statistics from real TF.js training steps", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({ filters: 3, kernelSize: 3, inputShape: [5, 5, 1], useBias: false }),
        tf.layers.batchNormalization({ momentum: 0.5 }),
        tf.layers.activation({ activation: "relu" }),
        tf.layers.flatten(),
        dense({ units: 2 }),
      ],
    });
    tfm.compile({ optimizer: tf.train.sgd(0.05), loss: "meanSquaredError" });
    const x = randomInputs([5, 5, 1], 16, 21);
    const xs = tf.tensor(
      Float32Array.from(x, (v) => v * 3 + 1),
      [16, 5, 5, 1],
    );
    const ys = tf.randomNormal([16, 2], 0, 1, "float32", 22);
    await tfm.fit(xs, ys, { epochs: 2, batchSize: 8, verbose: 0 });
    const stats = tfm.weights
      .filter((w) => w.name.endsWith("moving_mean"))
      .map((w) => Array.from(w.read().dataSync()));
    expect(stats[0].some((v) => Math.abs(v) > 0.05)).toBe(true);
    await expectSamePredictions(tfm);
  });
});

describe("unsupported models give errors naming the layer and field", () => {
  async function importError(
    tfm: tf.LayersModel,
    edit?: (s: Saved) => void,
  ): Promise<TfjsImportError> {
    const saved = await saveTfjs(tfm);
    edit?.(saved);
    try {
      importTfjsLayersModel(saved.modelJson, saved.shards);
    } catch (e) {
      expect(e).toBeInstanceOf(TfjsImportError);
      return e as TfjsImportError;
    }
    throw new Error("import did not fail");
  }

  it("a branch merged by Add in a functional model", async () => {
    const input = tf.input({ shape: [4] });
    const a = dense({ units: 3 }).apply(input) as tf.SymbolicTensor;
    const b = dense({ units: 3 }).apply(input) as tf.SymbolicTensor;
    const add = tf.layers.add();
    const tfm = tf.model({ inputs: input, outputs: add.apply([a, b]) as tf.SymbolicTensor });
    const e = await importError(tfm);
    expect(e.layer).toBe(add.name);
    expect(e.message).toMatch(/merges 2 tensors/);
    expect(e.message).toContain(`"${add.name}" (#3, Add)`);
  });

  it("a branch without a merge, and a shared layer", async () => {
    const input = tf.input({ shape: [4] });
    const trunk = dense({ units: 3 });
    const t = trunk.apply(input) as tf.SymbolicTensor;
    const heads = [
      dense({ units: 2 }).apply(t),
      dense({ units: 1 }).apply(t),
    ] as tf.SymbolicTensor[];
    const two = await importError(tf.model({ inputs: input, outputs: heads }));
    expect(two.message).toMatch(/2 outputs/);
    const shared = dense({ units: 4 });
    const i2 = tf.input({ shape: [4] });
    const s = await importError(
      tf.model({ inputs: i2, outputs: shared.apply(shared.apply(i2)) as tf.SymbolicTensor }),
    );
    expect(s.layer).toBe(shared.name);
    expect(s.message).toMatch(/called 2 times/);
  });

  it("an LSTM layer", async () => {
    const lstm = tf.layers.lstm({ units: 4, inputShape: [5, 3] });
    const e = await importError(tf.sequential({ layers: [lstm, dense({ units: 2 })] }));
    expect(e.layer).toBe(lstm.name);
    expect(e.field).toBe("class_name");
    expect(e.message).toMatch(/layer type LSTM is not supported/);
  });

  it("Conv2D with dilation 2, channels_first, a clipped ReLU", async () => {
    const dil = tf.layers.conv2d({
      filters: 2,
      kernelSize: 3,
      dilationRate: 2,
      inputShape: [9, 9, 1],
    });
    const e1 = await importError(tf.sequential({ layers: [dil] }));
    expect([e1.layer, e1.field, e1.layerIndex]).toEqual([dil.name, "dilation_rate", 0]);
    const cf = tf.layers.conv2d({
      filters: 2,
      kernelSize: 3,
      dataFormat: "channelsFirst",
      inputShape: [1, 8, 8],
    });
    const e2 = await importError(tf.sequential({ layers: [cf] }));
    expect([e2.layer, e2.field]).toEqual([cf.name, "data_format"]);
    expect(e2.message).toMatch(/channels_first/);
    const relu6 = tf.layers.reLU({ maxValue: 6 });
    const e3 = await importError(
      tf.sequential({ layers: [dense({ units: 2, inputShape: [3] }), relu6] }),
    );
    expect([e3.layer, e3.field, e3.layerIndex]).toEqual([relu6.name, "max_value", 1]);
  });

  it("missing weights, short and long shard data, a graph model", async () => {
    const d = dense({ units: 3, inputShape: [4] });
    const bn = tf.layers.batchNormalization();
    const tfm = tf.sequential({ layers: [d, bn] });
    const groups = (s: Saved) =>
      (s.modelJson.weightsManifest as Json[]).flatMap((g) => g.weights as WeightSpec[]);
    const missing = await importError(tfm, (s) => {
      const w = groups(s).find((w) => w.name.endsWith("moving_variance"))!;
      w.name = "elsewhere/moving_variance";
    });
    expect([missing.layer, missing.field]).toEqual([bn.name, `${bn.name}/moving_variance`]);
    expect(missing.message).toMatch(/missing from the weights manifest/);
    const none = await importError(tfm, (s) => {
      for (const w of groups(s)) w.name = w.name.replace(d.name, "renamed");
    });
    expect(none.layer).toBe(d.name);
    expect(none.message).toMatch(/has no weights in the weights manifest/);
    const short = await importError(tfm, (s) => {
      s.shards[s.shards.length - 1] = s.shards[s.shards.length - 1].slice(0, -3);
    });
    expect(short.field).toBe(`${bn.name}/moving_variance`);
    expect(short.message).toMatch(/ends inside weight ".*moving_variance"/);
    const dropped = await importError(tfm, (s) => s.shards.splice(1, 1));
    expect(dropped.message).toMatch(/missing or truncated/);
    const long = await importError(tfm, (s) => s.shards.push(new Uint8Array(8)));
    expect(long.message).toMatch(/8 more than the manifest describes/);
    expect(() =>
      importTfjsLayersModel({ format: "graph-model", modelTopology: {} }, new Uint8Array(0)),
    ).toThrow(/graph model/);
    expect(() =>
      tfjsTopologyToSpec({ modelTopology: { class_name: "Sequential", config: { layers: [] } } }),
    ).toThrow(TfjsImportError);
  });

  it("Dense on an image input acts per pixel, as in Keras: imported as a 1x1 conv", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({ filters: 3, kernelSize: 3, inputShape: [5, 6, 2], padding: "same" }),
        dense({ units: 4, activation: "relu" }),
        dense({ units: 2, useBias: false }),
        tf.layers.flatten(),
        dense({ units: 3, activation: "softmax" }),
      ],
    });
    tfm.layers[1].trainable = false; // frozen in Keras: the import says so
    const spec = await expectSamePredictions(tfm, 4);
    const saved = await saveTfjs(tfm);
    const { report } = importTfjsLayersModel(saved.modelJson, saved.shards);
    expect(report.filter((r) => /frozen in Keras/.test(r))).toEqual([
      expect.stringMatching(
        /^Dense "\w+" -> layer 1 conv2d, 2 relu \(a Dense on \[h, w, c\] acts per pixel: a 1x1 conv\) \(frozen/,
      ),
    ]);
    expect(spec.layers.slice(1, 4)).toMatchObject([
      { type: "conv2d", filters: 4, padding: "valid", useBias: true },
      { type: "relu" },
      { type: "conv2d", filters: 2, padding: "valid", useBias: false },
    ]);
  });
});

describe("an imported model is an ordinary model", () => {
  it("trains further (loss decreases) and exports", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 16, inputShape: [8], activation: "relu" }),
        tf.layers.batchNormalization(),
        dense({ units: 3, activation: "softmax" }),
      ],
    });
    randomizeWeights(tfm, 31);
    const saved = await saveTfjs(tfm);
    const model = importTfjsModel(saved.modelJson, saved.shards, loadKernels(), {
      seed: 1,
      optimizer: { type: "adam", learningRate: 0.01 },
    });
    const N = 96;
    const x = randomInputs([8], N, 32);
    const y = Int32Array.from({ length: N }, (_, i) => {
      const r = x.subarray(i * 8, i * 8 + 8);
      return r[0] + r[1] > 0.5 ? 0 : r[2] - r[3] > 0 ? 1 : 2;
    });
    const before = evaluate(model, x, y).loss;
    await fit(model, x, y, { epochs: 15, batchSize: 16, seed: 2 });
    const after = evaluate(model, x, y).loss;
    expect(after).toBeLessThan(before * 0.8);
    // ... and exports like any trained model: the .enn file predicts what the model predicts.
    const { bytes } = exportModel(model);
    const engine = InferenceEngine.loadSync(bytes, { maxBatch: N });
    expect(relErr(engine.predict(x, N), model.predict(x))).toBeLessThan(1e-5);
  });
});

describe("edgenn import / edgenn lint on model.json", () => {
  async function writeModel(tfm: tf.LayersModel): Promise<string> {
    const saved = await saveTfjs(tfm);
    const dir = mkdtempSync(join(tmpdir(), "edgenn-tfjs-"));
    writeFileSync(join(dir, "model.json"), JSON.stringify(saved.modelJson));
    saved.paths.forEach((p, i) => writeFileSync(join(dir, p), saved.shards[i]));
    return dir;
  }

  function capture() {
    const lines: string[] = [];
    const errs: string[] = [];
    return {
      out: { log: (s: string) => lines.push(s), err: (s: string) => errs.push(s) },
      lines,
      errs,
    };
  }

  it("imports a model.json with its shards and exports it to .enn (float32 and int8)", async () => {
    const tfm = tf.sequential({
      layers: [
        tf.layers.conv2d({ filters: 4, kernelSize: 3, inputShape: [6, 6, 2], useBias: false }),
        tf.layers.batchNormalization({ epsilon: 0.01 }),
        tf.layers.activation({ activation: "relu" }),
        tf.layers.flatten(),
        tf.layers.dropout({ rate: 0.2 }),
        dense({ units: 3, activation: "softmax" }),
      ],
    });
    randomizeWeights(tfm, 41);
    const dir = await writeModel(tfm);
    const c = capture();
    const enn = join(dir, "model.enn");
    expect(await runImport([join(dir, "model.json"), "--out", enn], c.out)).toBe(0);
    expect(c.errs).toEqual([]);
    expect(c.lines.join("\n")).toMatch(/Dense ".*" -> layer 5 dense, 6 softmax/);
    expect(c.lines.join("\n")).toContain(`wrote ${enn}`);
    const x = randomInputs([6, 6, 2], 4, 42);
    const want = tf.tidy(() => (tfm.predict(tf.tensor(x, [4, 6, 6, 2])) as tf.Tensor).dataSync());
    expect(relErr(loadEngineFile(enn).predict(x, 4), want)).toBeLessThan(1e-4);

    const int8 = join(dir, "model-int8.enn");
    expect(await runImport([join(dir, "model.json"), "--out", int8, "--int8"], capture().out)).toBe(
      0,
    );
    expect(readFileSync(int8).length).toBeLessThan(readFileSync(enn).length);
    expect(relErr(loadEngineFile(int8).predict(x, 4), want)).toBeLessThan(0.05);
  });

  it("reports an unsupported option and a missing shard file", async () => {
    const tfm = tf.sequential({
      layers: [dense({ units: 4, inputShape: [3], activation: "relu" }), dense({ units: 2 })],
    });
    const dir = await writeModel(tfm);
    const path = join(dir, "model.json");
    const ok = capture();
    expect(await runImport([path], ok.out)).toBe(0);
    expect(ok.lines.join("\n")).toMatch(/Dense ".*" -> layer 0 dense, 1 relu/);
    const text = readFileSync(path, "utf8");
    writeFileSync(path, text.replace('"relu"', '"selu"'));
    const bad = capture();
    expect(await runImport([path], bad.out)).toBe(1);
    expect(bad.errs.join("\n")).toMatch(
      /TfjsImportError: layer ".*" \(#0, Dense\) field "activation"/,
    );
    writeFileSync(path, text.replace("group2-shard2of2.bin", "gone.bin"));
    const missing = capture();
    expect(await runImport([path], missing.out)).toBe(1);
    expect(missing.errs.join("\n")).toMatch(/weight shard "gone.bin" .* is missing/);
    expect(await runImport([], capture().out)).toBe(2);
  });

  it("edgenn lint reads a TF.js model.json (topology only)", async () => {
    const tfm = tf.sequential({
      layers: [
        dense({ units: 4, inputShape: [3] }),
        tf.layers.activation({ activation: "relu" }),
        tf.layers.batchNormalization(),
        dense({ units: 2 }),
      ],
    });
    const dir = await writeModel(tfm);
    const lines: string[] = [];
    const errs: string[] = [];
    const code = await main(["lint", join(dir, "model.json"), "--json"], {
      log: (s) => lines.push(s),
      err: (s) => errs.push(s),
      isTTY: false,
      write: () => {},
    });
    expect(errs).toEqual([]);
    expect(code).toBe(0);
    expect(Array.isArray(JSON.parse(lines.join("\n")))).toBe(true);
  });
});
