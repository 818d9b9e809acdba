// TensorFlow.js baseline for the training benchmark: the same reference models on
// @tensorflow/tfjs-backend-wasm (SIMD, one thread), same data, batch size and optimizer.
//
// tfjs-backend-wasm has no Conv2DBackpropFilter kernel, so it cannot train a Conv2D out of the box.
// We register one built from kernels it does have (documented in the README): for filter
// gradients, dW[kh,kw,c,f] = sum over n,oh,ow of x[n, oh*s+kh-p, ow*s+kw-p, c] * dy[n,oh,ow,f],
// which for stride 1 is itself a convolution of x (channels as batch, batch as channels) with dy
// as the filter.
import * as tf from "@tensorflow/tfjs";
import * as wasm from "@tensorflow/tfjs-backend-wasm";
import type { ModelSpec } from "../src/spec.js";
import { median } from "./stats.js";

let ready = false;

export async function useTfjsWasm(): Promise<{ simd: boolean; threads: boolean }> {
  if (!ready) {
    wasm.setThreadsCount(1);
    await tf.setBackend("wasm");
    await tf.ready();
    registerConv2DBackpropFilter();
    ready = true;
  }
  return {
    simd: tf.env().getBool("WASM_HAS_SIMD_SUPPORT") as boolean,
    threads: tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT") as boolean,
  };
}

function registerConv2DBackpropFilter(): void {
  if (tf.getKernel("Conv2DBackpropFilter", "wasm")) return;
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "wasm",
    kernelFunc: ({ inputs, attrs }) => {
      const { x, dy } = inputs as { x: tf.Tensor4D; dy: tf.Tensor4D };
      const { strides, pad, filterShape } = attrs as unknown as {
        strides: number | [number, number];
        pad: "same" | "valid";
        filterShape: [number, number, number, number];
      };
      const s = Array.isArray(strides) ? strides : [strides, strides];
      if (s[0] !== 1 || s[1] !== 1) throw new Error("baseline Conv2DBackpropFilter: stride 1 only");
      const [kh, kw] = filterShape;
      const padT = pad === "same" ? Math.floor((kh - 1) / 2) : 0;
      const padL = pad === "same" ? Math.floor((kw - 1) / 2) : 0;
      const out = tf.tidy(() => {
        const xt = tf.transpose(x, [3, 1, 2, 0]); // [C, H, W, N]
        const dyt = tf.transpose(dy, [1, 2, 0, 3]); // [OH, OW, N, F] used as a filter
        const padding: [[number, number], [number, number], [number, number], [number, number]] = [
          [0, 0],
          [padT, kh - 1 - padT],
          [padL, kw - 1 - padL],
          [0, 0],
        ];
        const r = tf.conv2d(xt as tf.Tensor4D, dyt as tf.Tensor4D, 1, padding); // [C, KH, KW, F]
        return tf.transpose(r, [1, 2, 0, 3]); // [KH, KW, C, F]
      });
      return out as unknown as tf.TensorInfo;
    },
  });
}

/** The same layer list as a tf.Sequential (Keras layer defaults match ours). */
export function tfjsModel(spec: ModelSpec): tf.Sequential {
  const layers: tf.layers.Layer[] = [];
  spec.layers.forEach((l, i) => {
    const first = i === 0 ? { inputShape: spec.inputShape } : {};
    switch (l.type) {
      case "dense":
        layers.push(tf.layers.dense({ units: l.units, useBias: l.useBias ?? true, ...first }));
        break;
      case "conv2d":
        layers.push(
          tf.layers.conv2d({
            filters: l.filters,
            kernelSize: l.kernelSize,
            strides: l.strides ?? 1,
            padding: l.padding ?? "valid",
            useBias: l.useBias ?? true,
            ...first,
          }),
        );
        break;
      case "batchNorm":
        layers.push(
          tf.layers.batchNormalization({ momentum: l.momentum, epsilon: l.epsilon, ...first }),
        );
        break;
      case "relu":
      case "tanh":
      case "sigmoid":
      case "softmax":
        layers.push(tf.layers.activation({ activation: l.type, ...first }));
        break;
      case "dropout":
        layers.push(tf.layers.dropout({ rate: l.rate, ...first }));
        break;
      case "maxPool2d":
        layers.push(
          tf.layers.maxPooling2d({ poolSize: l.poolSize ?? 2, strides: l.strides, ...first }),
        );
        break;
      case "flatten":
        layers.push(tf.layers.flatten(first));
        break;
      default:
        throw new Error(`baseline: layer ${l.type} not mapped`);
    }
  });
  return tf.sequential({ layers });
}

export interface BaselineResult {
  /** The median window's samples/s. */
  samplesPerSecond: number;
  /** Every window's samples/s, in the order run. */
  windowsSamplesPerSecond: number[];
  batches: number;
  seconds: number;
}

/**
 * Trains `batches` steps of batch size B (after `warmup` untimed steps), timed in `windows` equal
 * windows; returns the median window's throughput (a noisy stretch of the shared machine moves one
 * window, not the result).
 */
export async function tfjsTrainThroughput(
  spec: ModelSpec,
  x: Float32Array,
  y: Int32Array,
  B: number,
  batches: number,
  warmup = 5,
  windows = 5,
): Promise<BaselineResult> {
  await useTfjsWasm();
  const model = tfjsModel(spec);
  model.compile({ optimizer: tf.train.adam(1e-3), loss: "sparseCategoricalCrossentropy" });
  const per = x.length / y.length;
  const shape = [B, ...spec.inputShape];
  const step = async (i: number) => {
    const s = (i * B) % (y.length - B);
    const xb = tf.tensor(x.subarray(s * per, (s + B) * per), shape);
    const yb = tf.tensor2d(Array.from(y.subarray(s, s + B)), [B, 1]);
    await model.trainOnBatch(xb, yb);
    xb.dispose();
    yb.dispose();
  };
  for (let i = 0; i < warmup; i++) await step(i);
  const perWindow = Math.max(1, Math.floor(batches / windows));
  const rates: number[] = [];
  let seconds = 0;
  let i = warmup;
  for (let w = 0; w < windows; w++) {
    const t0 = performance.now();
    for (let k = 0; k < perWindow; k++) await step(i++);
    const s = (performance.now() - t0) / 1000;
    seconds += s;
    rates.push((perWindow * B) / s);
  }
  model.dispose();
  return {
    samplesPerSecond: median(rates),
    windowsSamplesPerSecond: rates,
    batches: perWindow * windows,
    seconds,
  };
}
