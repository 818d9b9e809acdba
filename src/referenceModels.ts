// The reference models of the README, the demo and the benchmarks.
import type { ModelSpec } from "./spec.js";

export const FASHION_LABELS = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** 784 -> Dense(256) -> BN -> ReLU -> Dropout(0.3) -> Dense(128) -> BN -> ReLU -> Dropout(0.3) -> Dense(10) -> softmax */
export function mlpSpec(): ModelSpec {
  return {
    inputShape: [784],
    labels: FASHION_LABELS,
    layers: [
      { type: "dense", units: 256 },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "dropout", rate: 0.3 },
      { type: "dense", units: 128 },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "dropout", rate: 0.3 },
      { type: "dense", units: 10 },
      { type: "softmax" },
    ],
  };
}

/** 28x28x1 -> Conv(32,3,same) -> BN -> ReLU -> MaxPool(2) -> Conv(64,3,same) -> BN -> ReLU -> MaxPool(2) -> Flatten -> Dense(128) -> BN -> ReLU -> Dropout(0.5) -> Dense(10) -> softmax */
export function cnnSpec(): ModelSpec {
  return {
    inputShape: [28, 28, 1],
    labels: FASHION_LABELS,
    layers: [
      { type: "conv2d", filters: 32, kernelSize: 3, padding: "same" },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "maxPool2d", poolSize: 2 },
      { type: "conv2d", filters: 64, kernelSize: 3, padding: "same" },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "maxPool2d", poolSize: 2 },
      { type: "flatten" },
      { type: "dense", units: 128 },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "dropout", rate: 0.5 },
      { type: "dense", units: 10 },
      { type: "softmax" },
    ],
  };
}

export function referenceSpec(name: string): ModelSpec | undefined {
  return name === "mlp" ? mlpSpec() : name === "cnn" ? cnnSpec() : undefined;
}
