// Cold start: wall time from spawning a new Node process to its first prediction on stdout, for
// edgenn, ONNX Runtime Web and TensorFlow.js, beside a bare Node process that reads the test image
// and prints. Each runtime's child (bench/cold/*.mjs) imports the runtime, loads the model file,
// predicts the test image and prints its argmax; the parent checks the argmaxes agree. All of them
// get Node's built-in modules the same cheap way (process.getBuiltinModule, no ES import of
// node:fs: bench/cold/edgenn.mjs). Spawns are interleaved
// (bare, edgenn, ORT, TF.js, bare, ...) so load changes on a shared machine hit all alike; we
// report the median of each.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { defaultDataDir, packageRoot, readIdxDataset } from "../src/node/readDataset.js";
import { benchModel, tfjsFoldedModel } from "./inference.js";
import { useTfjsWasm } from "./tfjsBaseline.js";
import { median, ratioVerdict } from "./stats.js";

export type ColdRuntime = "bare" | "edgenn" | "ort" | "tfjs";

export interface ColdRow {
  runtime: ColdRuntime;
  model: string;
  /** spawn to the child's stdout line, ms */
  medianMs: number;
  minMs: number;
  maxMs: number;
  spawns: number;
  /** median / the bare-Node median */
  vsBare: number;
}

export interface ColdResult {
  /** rounds of spawns: bare Node and edgenn spawn in each, ORT and TF.js in some (ColdRow.spawns) */
  spawns: number;
  rows: ColdRow[];
}

/** Wall ms from spawn to the first stdout line; rejects on a non-zero exit before it. */
function timeSpawn(args: string[]): Promise<{ ms: number; line: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let done = false;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (!done && nl >= 0) {
        done = true;
        resolve({ ms: performance.now() - t0, line: out.slice(0, nl) });
      }
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => {
      if (!done) reject(new Error(`cold-start child ${args.join(" ")} exited ${code}: ${err}`));
    });
  });
}

/** Writes each runtime's model file for `name` and one test image into dir. */
async function writeModelFiles(
  dir: string,
  name: "mlp" | "cnn",
  image: Float32Array,
): Promise<Record<Exclude<ColdRuntime, "bare">, string[]>> {
  const bm = benchModel(name);
  writeFileSync(join(dir, `${name}.enn`), bm.bytes);
  writeFileSync(join(dir, `${name}.onnx`), bm.onnx);
  writeFileSync(join(dir, `${name}.input.f32`), new Uint8Array(image.buffer.slice(0)));
  await useTfjsWasm();
  const m = tfjsFoldedModel(bm.content);
  await m.save(
    tf.io.withSaveHandler(async (a) => {
      const w = a.weightData!;
      const bytes = Array.isArray(w) ? tf.io.concatenateArrayBuffers(w) : w;
      writeFileSync(
        join(dir, `${name}.json`),
        JSON.stringify({ modelTopology: a.modelTopology, weightSpecs: a.weightSpecs }),
      );
      writeFileSync(join(dir, `${name}.bin`), new Uint8Array(bytes));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
    }),
  );
  m.dispose();
  const input = join(dir, `${name}.input.f32`);
  return {
    edgenn: [join(dir, `${name}.enn`), input],
    ort: [join(dir, `${name}.onnx`), input, bm.spec.inputShape.join(",")],
    tfjs: [join(dir, `${name}.json`), input],
  };
}

export async function runColdStartBench(
  options: { quick?: boolean; spawns?: number; models?: ("mlp" | "cnn")[] } = {},
): Promise<ColdResult> {
  // 61 spawns of bare Node and of edgenn: on this shared VM one runtime's spawns spread over +-25%
  // of their median, and the cnn's median over bare Node's moved by 0.1x between runs of 15 spawns
  // of the same code and over 1.13-1.26x in four runs of 31. ORT and TF.js take 4-5x bare Node's
  // time, far from edgenn's, and are spawned in every fourth round only (16 spawns).
  const spawns = options.spawns ?? (options.quick ? 3 : 61);
  const baselineEvery = options.quick ? 1 : 4;
  const models = options.models ?? (options.quick ? ["mlp"] : ["mlp", "cnn"]);
  const { test } = await readIdxDataset(defaultDataDir());
  const cold = join(packageRoot(), "bench", "cold");
  mkdirSync(tmpdir(), { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "edgenn-cold-"));
  try {
    const jobs: { runtime: ColdRuntime; model: string; args: string[] }[] = [];
    let image = ""; // the test image file (the same image for every model): bare Node reads it too
    for (const name of models) {
      const n = test.x.length / test.count;
      const files = await writeModelFiles(dir, name, test.x.slice(0, n));
      image = files.edgenn[1];
      for (const rt of ["edgenn", "ort", "tfjs"] as const)
        jobs.push({ runtime: rt, model: name, args: [join(cold, `${rt}.mjs`), ...files[rt]] });
    }
    jobs.unshift({ runtime: "bare", model: "-", args: [join(cold, "bare.mjs"), image] });
    const times = jobs.map(() => [] as number[]);
    for (let s = 0; s < spawns + 1; s++) {
      const lines = new Map<string, Set<string>>();
      for (let j = 0; j < jobs.length; j++) {
        const baseline = jobs[j].runtime === "ort" || jobs[j].runtime === "tfjs";
        // Round 0 (untimed) warms every runtime's files; then rounds 1, 1 + every, ...
        if (baseline && s > 0 && (s - 1) % baselineEvery !== 0) continue;
        const { ms, line } = await timeSpawn(jobs[j].args);
        // The first round warms the OS file cache (node_modules, the .wasm files): not timed.
        if (s > 0) times[j].push(ms);
        if (jobs[j].runtime !== "bare") {
          const set = lines.get(jobs[j].model) ?? new Set();
          set.add(line);
          lines.set(jobs[j].model, set);
        }
      }
      for (const [model, set] of lines)
        if (set.size !== 1)
          throw new Error(
            `cold start: the runtimes predict different classes for ${model}: ${[...set].join(" / ")}`,
          );
    }
    const bare = median(times[0]);
    const rows = jobs.map((j, i): ColdRow => {
      const m = median(times[i]);
      return {
        runtime: j.runtime,
        model: j.model,
        medianMs: m,
        minMs: Math.min(...times[i]),
        maxMs: Math.max(...times[i]),
        spawns: times[i].length,
        vsBare: m / bare,
      };
    });
    return { spawns, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const COLD_TARGET_VS_BARE = 1.2;

export function printColdStartTable(r: ColdResult): void {
  console.log(
    `\ncold start: new Node process to its first prediction on stdout, median of each runtime's spawns`,
  );
  console.log(
    "model | runtime | spawns | median ms | min ms | max ms | / bare Node | edgenn / this",
  );
  const byModel = new Map<string, ColdRow>();
  for (const row of r.rows) if (row.runtime === "edgenn") byModel.set(row.model, row);
  for (const row of r.rows) {
    const e = byModel.get(row.model);
    const ours = e && row.runtime !== "edgenn" ? `${(e.medianMs / row.medianMs).toFixed(2)}x` : "";
    console.log(
      `${row.model} | ${row.runtime === "bare" ? "bare Node" : row.runtime} | ${row.spawns} | ${row.medianMs.toFixed(0)} | ${row.minMs.toFixed(0)} | ${row.maxMs.toFixed(0)} | ${row.vsBare.toFixed(2)}x | ${ours}`,
    );
  }
  for (const e of byModel.values())
    console.log(
      `${e.model} target: cold start <= ${COLD_TARGET_VS_BARE}x bare Node: ${ratioVerdict(e.vsBare, COLD_TARGET_VS_BARE, false)}`,
    );
}
