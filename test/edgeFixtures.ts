// Shared by the workerd tests (test/edge.workers.test.ts) and their Node-side setup
// (test/edgeSetup.ts): deterministic inputs and the second model the KV test serves, so workerd's
// answers can be checked against Node's InferenceEngine without shipping inputs between them.
// Platform-neutral: runs in both.
import { exportModel } from "../src/export.js";
import { Rng } from "../src/random.js";
import { fakeModel, smallCnn } from "./exportFixtures.js";

/** The bundled model (scripts/build-edge-model.mjs): the reference mlp, input [784]. */
export const EDGE_INPUT_SIZE = 784;
/** Distinct inputs for the concurrency test: one per request. */
export const EDGE_SAMPLES = 200;

/** Input sample i: 784 pixels in [0, 1), from its own seed. */
export function edgeInput(i: number, size = EDGE_INPUT_SIZE): Float32Array {
  const rng = new Rng(1000 + i);
  const x = new Float32Array(size);
  for (let j = 0; j < size; j++) x[j] = rng.next();
  return x;
}

/** A small cnn (input [10, 9, 2], nested inputs) with random weights, as the KV test serves. */
export function kvModelBytes(): Uint8Array {
  return exportModel(fakeModel(smallCnn, 6), { labels: ["x", "y", "z"] }).bytes;
}
export const KV_INPUT_SIZE = 10 * 9 * 2;

export interface EdgeExpected {
  /** Node's outputs of the bundled model for edgeInput(0 .. EDGE_SAMPLES-1). */
  bundled: number[][];
  /** Node's outputs of kvModelBytes() for edgeInput(i, KV_INPUT_SIZE), i < 8. */
  kv: number[][];
}

declare module "vitest" {
  export interface ProvidedContext {
    edgeExpected: EdgeExpected;
  }
}
