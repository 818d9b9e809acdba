// Shared fixtures for the export/format/engine tests: models with random weights and hostile BN
// statistics (negative gamma, variances at or near epsilon), with or without a kernel instance.
import { crc32 } from "../src/crc32.js";
import { exportModel, type ExportableModel } from "../src/export.js";
import { layerTensors } from "../src/layers.js";
import { Rng } from "../src/random.js";
import { cnnSpec, mlpSpec } from "../src/referenceModels.js";
import {
  SpecError,
  padBefore,
  resolveSpec,
  type LayerSpec,
  type ModelSpec,
  type ResolvedModel,
} from "../src/spec.js";

export function gaussian(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** Random tensors for every parameter and BN statistic of a model, keyed like Model.getWeights(). */
export function randomWeights(r: ResolvedModel, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const m = new Map<string, Float32Array>();
  for (const l of r.layers) {
    const t = layerTensors(l);
    const eps = l.spec.type === "batchNorm" ? l.spec.epsilon : 0;
    for (const p of [...t.params, ...t.state]) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      const fanIn = p.shape.length > 1 ? n / p.shape[p.shape.length - 1] : 1;
      for (let i = 0; i < n; i++) {
        switch (p.name) {
          case "kernel":
            v[i] = gaussian(rng) / Math.sqrt(fanIn);
            break;
          case "bias":
          case "beta":
            v[i] = gaussian(rng) * 0.5;
            break;
          case "gamma":
            // Negative gammas flip channels (a max-pool after them must not be folded across).
            v[i] = (rng.next() < 0.3 ? -1 : 1) * (0.2 + rng.next() * 1.5);
            break;
          case "movingMean":
            v[i] = gaussian(rng) * 0.5;
            break;
          case "movingVariance": {
            // A third of the channels have (near-)zero variance: epsilon dominates.
            const u = rng.next();
            v[i] = u < 0.15 ? 0 : u < 0.33 ? eps * rng.next() * 2 : 0.05 + rng.next() * 2;
            break;
          }
        }
      }
      m.set(`layers.${l.index}.${p.name}`, v);
    }
  }
  return m;
}

/** A model for export without kernels (export only needs the spec and the weights). */
export function fakeModel(spec: ModelSpec, seed = 1): ExportableModel {
  const resolved = resolveSpec(spec);
  const w = randomWeights(resolved, seed);
  return { resolved, getWeights: () => new Map([...w].map(([k, v]) => [k, v.slice()])) };
}

export function randomInputs(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.next();
  return x;
}

/** Small models covering every op: an mlp, a cnn, a model that keeps a scaleShift. */
export const smallMlp: ModelSpec = {
  inputShape: [20],
  labels: ["a", "b", "c", "d"],
  layers: [
    { type: "dense", units: 16 },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "dropout", rate: 0.3 },
    { type: "dense", units: 12, useBias: false },
    { type: "batchNorm", center: false },
    { type: "leakyRelu", alpha: 0.2 },
    { type: "dense", units: 4 },
    { type: "softmax" },
  ],
};

export const smallCnn: ModelSpec = {
  inputShape: [10, 9, 2],
  layers: [
    { type: "conv2d", filters: 5, kernelSize: 3, padding: "same" },
    { type: "batchNorm" },
    { type: "relu" },
    { type: "maxPool2d", poolSize: 2 },
    { type: "conv2d", filters: 6, kernelSize: [2, 3], strides: [1, 2], useBias: false },
    { type: "batchNorm", scale: false },
    { type: "elu", alpha: 0.7 },
    { type: "avgPool2d", poolSize: 2, padding: "same" },
    { type: "flatten" },
    { type: "dense", units: 7 },
    { type: "tanh" },
    { type: "dense", units: 3 },
    { type: "softmax" },
  ],
};

/** BN after an activation, before a padded conv: it must stay a scaleShift op. */
export const scaleShiftModel: ModelSpec = {
  inputShape: [8, 8, 3],
  layers: [
    { type: "conv2d", filters: 4, kernelSize: 3, padding: "same" },
    { type: "relu" },
    { type: "batchNorm" },
    { type: "conv2d", filters: 4, kernelSize: 3, padding: "same" },
    { type: "sigmoid" },
    { type: "globalAvgPool2d" },
    { type: "batchNorm" },
    { type: "dense", units: 2 },
  ],
};

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/** Recomputes the trailing CRC-32 (so a test reaches the checks after the checksum). */
export function fixCrc(bytes: Uint8Array): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 4) v.setUint32(bytes.length - 4, crc32(bytes, 0, bytes.length - 4), true);
  return bytes;
}

/** The header JSON of a valid file. */
export function headerOf(bytes: Uint8Array): Record<string, unknown> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = v.getUint32(12, true);
  return JSON.parse(new TextDecoder().decode(bytes.subarray(24, 24 + h)));
}

/**
 * Rebuilds a valid file with another header (an object, edited in place by `edit`, or raw JSON
 * text it returns), keeping the tensor data, the preamble lengths and the CRC consistent.
 */
export function withHeader(
  bytes: Uint8Array,
  edit: (h: Record<string, any>) => void | string,
): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = v.getUint32(12, true);
  const data = bytes.subarray(align16(24 + hlen), bytes.length - 4);
  const h = headerOf(bytes);
  const text = edit(h) ?? JSON.stringify(h);
  const json = new TextEncoder().encode(text);
  const start = align16(24 + json.length);
  const out = new Uint8Array(start + data.length + 4);
  out.set(bytes.subarray(0, 24));
  const o = new DataView(out.buffer);
  o.setUint32(12, json.length, true);
  o.setUint32(16, out.length, true);
  out.set(json, 24);
  out.set(data, start);
  return fixCrc(out);
}

/** Byte offset of tensor i's data in a valid file. */
export function tensorDataOffset(bytes: Uint8Array, i: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = v.getUint32(12, true);
  const h = headerOf(bytes) as { tensors: { offset: number }[] };
  return align16(24 + hlen) + h.tensors[i].offset;
}

/**
 * Float64 forward pass of a model spec in inference mode, written from the layer definitions alone
 * (an oracle independent of both the kernels and the export): [N, ...outputShape].
 */
export function forward64(
  r: ResolvedModel,
  w: Map<string, Float32Array>,
  x: Float32Array,
  N: number,
  skipFinalSoftmax = false,
): Float64Array {
  let cur = Float64Array.from(x);
  r.layers.forEach((l, li) => {
    const s = l.spec;
    const inSize = l.inShape.reduce((a, b) => a * b, 1);
    const outSize = l.outShape.reduce((a, b) => a * b, 1);
    const get = (n: string) => w.get(`layers.${li}.${n}`);
    const out = new Float64Array(N * outSize);
    const C = l.outShape[l.outShape.length - 1];
    const map = (f: (v: number) => number) => cur.map(f);
    switch (s.type) {
      case "dense": {
        const k = get("kernel")!;
        const b = get("bias");
        for (let n = 0; n < N; n++)
          for (let j = 0; j < s.units; j++) {
            let acc = b ? b[j] : 0;
            for (let i = 0; i < inSize; i++) acc += cur[n * inSize + i] * k[i * s.units + j];
            out[n * s.units + j] = acc;
          }
        cur = out;
        return;
      }
      case "conv2d":
      case "maxPool2d":
      case "avgPool2d": {
        const [H, W, Cin] = l.inShape;
        const [OH, OW, F] = l.outShape;
        const [KH, KW] = s.type === "conv2d" ? s.kernelSize : s.poolSize;
        const [SH, SW] = s.strides;
        const pt = padBefore(H, KH, SH, s.padding);
        const pl = padBefore(W, KW, SW, s.padding);
        const k = get("kernel");
        const b = get("bias");
        for (let n = 0; n < N; n++)
          for (let oh = 0; oh < OH; oh++)
            for (let ow = 0; ow < OW; ow++)
              for (let f = 0; f < F; f++) {
                let acc =
                  s.type === "conv2d" ? (b ? b[f] : 0) : s.type === "maxPool2d" ? -Infinity : 0;
                let count = 0;
                for (let kh = 0; kh < KH; kh++)
                  for (let kw = 0; kw < KW; kw++) {
                    const ih = oh * SH - pt + kh;
                    const iw = ow * SW - pl + kw;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    const base = ((n * H + ih) * W + iw) * Cin;
                    count++;
                    if (s.type === "conv2d")
                      for (let c = 0; c < Cin; c++)
                        acc += cur[base + c] * k![((kh * KW + kw) * Cin + c) * F + f];
                    else if (s.type === "maxPool2d") acc = Math.max(acc, cur[base + f]);
                    else acc += cur[base + f];
                  }
                out[((n * OH + oh) * OW + ow) * F + f] = s.type === "avgPool2d" ? acc / count : acc;
              }
        cur = out;
        return;
      }
      case "batchNorm": {
        const g = get("gamma");
        const be = get("beta");
        const m = get("movingMean")!;
        const v = get("movingVariance")!;
        cur = cur.map((val, i) => {
          const c = i % C;
          return (
            ((g ? g[c] : 1) * (val - m[c])) / Math.sqrt(v[c] + Math.fround(s.epsilon)) +
            (be ? be[c] : 0)
          );
        });
        return;
      }
      case "relu":
        cur = map((v) => Math.max(v, 0));
        return;
      case "leakyRelu":
        cur = map((v) => (v > 0 ? v : s.alpha * v));
        return;
      case "elu":
        cur = map((v) => (v > 0 ? v : s.alpha * Math.expm1(v)));
        return;
      case "tanh":
        cur = map(Math.tanh);
        return;
      case "sigmoid":
        cur = map((v) => 1 / (1 + Math.exp(-v)));
        return;
      case "softmax": {
        if (skipFinalSoftmax && li === r.layers.length - 1) return;
        for (let row = 0; row < cur.length / C; row++) {
          let mx = -Infinity;
          for (let c = 0; c < C; c++) mx = Math.max(mx, cur[row * C + c]);
          let sum = 0;
          for (let c = 0; c < C; c++) sum += Math.exp(cur[row * C + c] - mx);
          for (let c = 0; c < C; c++) out[row * C + c] = Math.exp(cur[row * C + c] - mx) / sum;
        }
        cur = out;
        return;
      }
      case "globalAvgPool2d": {
        const [H, W, Cin] = l.inShape;
        for (let n = 0; n < N; n++)
          for (let c = 0; c < Cin; c++) {
            let acc = 0;
            for (let p = 0; p < H * W; p++) acc += cur[(n * H * W + p) * Cin + c];
            out[n * Cin + c] = acc / (H * W);
          }
        cur = out;
        return;
      }
      default:
        return; // dropout (identity at inference), flatten (same memory order)
    }
  });
  return cur;
}

/**
 * A random layer stack over every layer type and export path (BN folded backward and forward, kept
 * as scaleShift, activations fused, dropout removed), for equivalence tests.
 */
export function randomStack(rng: Rng): ModelSpec {
  const layers: LayerSpec[] = [];
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];
  const maybe = (p: number, f: () => LayerSpec) => {
    if (rng.next() < p) layers.push(f());
  };
  const bn = (): LayerSpec => ({
    type: "batchNorm",
    epsilon: pick([1e-3, 1e-3, 3e-4, 0.01]),
    center: rng.next() < 0.8,
    scale: rng.next() < 0.8,
  });
  const act = (): LayerSpec =>
    pick<LayerSpec>([
      { type: "relu" },
      { type: "relu" },
      { type: "leakyRelu", alpha: 0.1 + rng.next() * 0.3 },
      { type: "elu", alpha: 0.5 + rng.next() },
      { type: "tanh" },
      { type: "sigmoid" },
    ]);
  const dropout = (): LayerSpec => ({ type: "dropout", rate: 0.1 + 0.4 * rng.next() });
  const image = rng.next() < 0.6;
  const inputShape = image ? [4 + rng.int(6), 4 + rng.int(6), 1 + rng.int(3)] : [3 + rng.int(20)];
  maybe(0.3, bn);
  maybe(0.1, dropout);
  if (image) {
    const blocks = 1 + rng.int(2);
    for (let b = 0; b < blocks; b++) {
      layers.push({
        type: "conv2d",
        filters: 2 + rng.int(5),
        kernelSize: pick([1, 2, 3, [3, 2]]) as number | [number, number],
        strides: rng.next() < 0.25 ? 2 : 1,
        padding: rng.next() < 0.5 ? "same" : "valid",
        useBias: rng.next() < 0.6,
      });
      maybe(0.2, dropout);
      maybe(0.6, bn);
      maybe(0.7, act);
      maybe(0.3, bn);
      maybe(0.2, dropout);
      maybe(0.4, () => ({
        type: pick(["maxPool2d", "avgPool2d"] as const),
        poolSize: 2,
        padding: rng.next() < 0.5 ? "same" : "valid",
      }));
      maybe(0.25, bn);
    }
    layers.push(rng.next() < 0.7 ? { type: "flatten" } : { type: "globalAvgPool2d" });
    maybe(0.3, bn);
    maybe(0.2, dropout);
  }
  const dense = rng.int(3);
  for (let d = 0; d < dense; d++) {
    layers.push({ type: "dense", units: 2 + rng.int(12), useBias: rng.next() < 0.6 });
    maybe(0.2, dropout);
    maybe(0.6, bn);
    maybe(0.8, act);
    maybe(0.3, bn);
    maybe(0.3, dropout);
  }
  layers.push({ type: "dense", units: 2 + rng.int(5), useBias: rng.next() < 0.8 });
  maybe(0.3, bn);
  maybe(0.5, () => ({ type: "softmax" }));
  maybe(0.1, dropout);
  return { inputShape, layers };
}

/**
 * Model files over every op and export path: the reference mlp and cnn (f32 and int8) and `stacks`
 * random stacks (every fourth int8), with random weights. For comparing kernel builds.
 */
export function engineTestFiles(stacks: number, seed = 2024): [string, Uint8Array][] {
  const files: [string, Uint8Array][] = [];
  for (const [name, spec] of [
    ["mlp", mlpSpec],
    ["cnn", cnnSpec],
  ] as const) {
    const m = fakeModel(spec(), 7);
    files.push(
      [name, exportModel(m).bytes],
      [`${name} int8`, exportModel(m, { int8: true }).bytes],
    );
  }
  const rng = new Rng(seed);
  for (let i = 0, attempt = 0; i < stacks && attempt < 20 * stacks; attempt++) {
    const spec = randomStack(rng);
    try {
      resolveSpec(spec);
    } catch (e) {
      if (e instanceof SpecError) continue; // the generator can stack windows past the image
      throw e;
    }
    const m = fakeModel(spec, 100 + i);
    files.push([`stack ${i}`, exportModel(m, { int8: i % 4 === 3 }).bytes]);
    i++;
  }
  if (files.length !== stacks + 4)
    throw new Error(`engineTestFiles: built ${files.length - 4} stacks`);
  return files;
}

/** An engine's outputs for x as raw bits (NaN-safe, -0 apart from 0): for bit-identity checks. */
export function predictBits(
  engine: { predict(x: Float32Array, batch: number): Float32Array },
  x: Float32Array,
  batch: number,
): Uint32Array {
  return new Uint32Array(engine.predict(x, batch).slice().buffer);
}
