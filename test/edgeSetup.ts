// globalSetup of the workers project (vitest.workers.config.ts), run in Node before workerd starts:
// builds the model worker/edge.ts bundles (dist-edge-model/model.enn, deterministic) and computes
// Node's InferenceEngine outputs for the test inputs, which the workerd tests compare against.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { TestProject } from "vitest/node";
import { InferenceEngine } from "../src/node/engine.js";
import {
  EDGE_SAMPLES,
  KV_INPUT_SIZE,
  edgeInput,
  kvModelBytes,
  type EdgeExpected,
} from "./edgeFixtures.js";

function outputs(engine: InferenceEngine, inputs: Float32Array[]): number[][] {
  return inputs.map((x) => Array.from(engine.predict(x, 1)));
}

export default function setup(project: TestProject): void {
  execFileSync(process.execPath, ["scripts/build-edge-model.mjs", "--quiet"], { stdio: "inherit" });
  const bundled = InferenceEngine.loadSync(
    new Uint8Array(readFileSync("dist-edge-model/model.enn")),
  );
  const kv = InferenceEngine.loadSync(kvModelBytes());
  const expected: EdgeExpected = {
    bundled: outputs(
      bundled,
      Array.from({ length: EDGE_SAMPLES }, (_, i) => edgeInput(i)),
    ),
    kv: outputs(
      kv,
      Array.from({ length: 8 }, (_, i) => edgeInput(i, KV_INPUT_SIZE)),
    ),
  };
  project.provide("edgeExpected", expected);
}
