// The `edgenn` command: train, lint, summary, export, inspect, predict, import, serve, demo,
// engine-cache.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import type { Dataset } from "./dataset.js";
import { formatFindings, hasErrors, lintLayerOrder } from "./lint.js";
import { Model } from "./model.js";
import { readFileBytes, writeFileAtomic } from "./node/checkpointFile.js";
import { loadKernels } from "./node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "./node/readDataset.js";
import type { OptimizerConfig } from "./optimizer.js";
import { recalibrateBatchNorm } from "./recalibrate.js";
import { referenceSpec } from "./referenceModels.js";
import { parseSpec, resolveSpec, toSpec, type ModelSpec } from "./spec.js";
import { evaluate, fit, type BatchProgress, type EpochLog } from "./train.js";
import { runImport } from "./cliImport.js";
import { isTfjsModelJson, tfjsTopologyToSpec } from "./tfjsImport.js";

export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = `usage:
  edgenn train --model mlp|cnn|SPEC.json [--data DIR] [--epochs N] [--batch-size B]
               [--optimizer adam|adamw|sgd] [--lr X] [--seed S] [--out CKPT] [--resume CKPT] [--json]
               [--no-recalibrate-bn]
  edgenn lint SPEC.json|model.json|mlp|cnn [--json] [--strict]
  edgenn summary SPEC.json|model.json|mlp|cnn
  edgenn export CKPT --out model.enn [--int8] [--logits] [--input-scale S] [--input-offset O] [--json]
  edgenn inspect model.enn [--json]
  edgenn predict model.enn --input FILE.json [--json] [--raw] [--top K]
  edgenn import model.json [--out model.enn] [--int8] [--logits]   (TensorFlow.js / Keras layers model)
  edgenn serve model.enn [--port P] [--max-batch N] [--max-body BYTES] [--cors ORIGINS]   (HTTP on 127.0.0.1)
  edgenn demo [--data DIR] [--epochs N]
  edgenn engine-cache [--dir DIR]   (remake edgenn/engine's V8 code cache, DIR/engine.v8cache beside
               DIR/engine.cjs, default this package's dist/, for this Node and its V8 flags: run it
               with the NODE_OPTIONS the deployment starts Node with)
Data: a folder of IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); default: the bundled Fashion-MNIST subset.
train recalibrates BatchNorm statistics after the last epoch (population statistics of 10,000
training samples in inference mode; see README); --no-recalibrate-bn keeps Keras's moving averages.
train --resume continues a checkpoint's optimizer and random state (--optimizer/--lr/--seed refused).`;

type Out = {
  log: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
  write: (s: string) => void;
};

const defaultOut: Out = {
  log: (s) => console.log(s),
  err: (s) => console.error(s),
  isTTY: Boolean(process.stdout.isTTY),
  write: (s) => process.stdout.write(s),
};

function readSpec(arg: string): ModelSpec {
  const ref = referenceSpec(arg);
  if (ref) return ref;
  if (!existsSync(arg))
    throw new UsageError(`no model "${arg}": use mlp, cnn or the path of a spec JSON file`);
  const text = readFileSync(arg, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined; // parseSpec reports the JSON error with its position
  }
  if (isTfjsModelJson(json)) return tfjsTopologyToSpec(json);
  return toSpec(parseSpec(text));
}

function int(v: string | undefined, name: string, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

function float(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`--${name} must be a positive number, got "${v}"`);
  return n;
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return "--";
  if (s < 60) return `${s.toFixed(0)}s`;
  return `${Math.floor(s / 60)}m${Math.round(s % 60)
    .toString()
    .padStart(2, "0")}s`;
}

function progressBar(p: BatchProgress, epochs: number, width = 24): string {
  const done = (p.batch + 1) / p.batches;
  const filled = Math.round(done * width);
  const bar =
    "=".repeat(Math.max(filled - 1, 0)) + (filled > 0 ? ">" : "") + " ".repeat(width - filled);
  return (
    `epoch ${p.epoch + 1}/${epochs} [${bar}] ${p.batch + 1}/${p.batches}` +
    ` loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(4)}` +
    ` ${Math.round(p.samplesPerSecond).toLocaleString("en-US")} samples/s ETA ${fmtSeconds(p.etaSeconds)}`
  );
}

function epochLine(l: EpochLog, epochs: number): string {
  let s = `epoch ${l.epoch + 1}/${epochs} loss ${l.loss.toFixed(4)} acc ${l.accuracy.toFixed(4)}`;
  if (l.valLoss !== undefined)
    s += ` val_loss ${l.valLoss.toFixed(4)} val_acc ${l.valAccuracy!.toFixed(4)}`;
  return `${s} ${l.seconds.toFixed(2)}s ${Math.round(l.samplesPerSecond).toLocaleString("en-US")} samples/s`;
}

export interface TrainResult {
  model: Model;
  testAccuracy: number;
  testLoss: number;
  /** Test accuracy with the moving averages, before BN recalibration (when it ran). */
  testAccuracyMovingStats?: number;
  samplesPerSecond: number;
  epochSeconds: number[];
}

export interface TrainArgs {
  model: string;
  data?: string;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerConfig["type"];
  lr?: number;
  seed: number;
  out?: string;
  resume?: string;
  json: boolean;
  /** Recalibrate BN statistics after the last epoch (default true). */
  recalibrateBn?: boolean;
}

async function loadData(dir: string | undefined): Promise<{ train: Dataset; test: Dataset }> {
  return readIdxDataset(dir ?? defaultDataDir());
}

export async function runTrain(a: TrainArgs, out: Out = defaultOut): Promise<TrainResult> {
  const spec = readSpec(a.model);
  const data = await loadData(a.data);
  const kernels = loadKernels();
  const optimizer = {
    type: a.optimizer,
    ...(a.lr !== undefined ? { learningRate: a.lr } : {}),
  } as OptimizerConfig;
  let model: Model;
  if (a.resume) {
    model = loadCheckpoint(readFileBytes(a.resume), kernels);
    if (JSON.stringify(model.spec.layers) !== JSON.stringify(toSpec(resolveSpec(spec)).layers))
      throw new UsageError(
        `checkpoint ${a.resume} was trained with another model than --model ${a.model}`,
      );
  } else model = new Model(kernels, spec, { seed: a.seed, optimizer });
  const inSize = model.inputSize;
  const sample = data.train.shape.reduce((x, y) => x * y, 1);
  if (sample !== inSize)
    throw new UsageError(
      `the data's samples have shape [${data.train.shape.join(", ")}] (${sample} values) but the model's input is [${model.resolved.inputShape.join(", ")}] (${inSize} values)`,
    );
  if (!a.json) {
    const findings = lintLayerOrder(model.resolved);
    out.log(`layer-order lint: ${findings.length ? `\n${formatFindings(findings)}` : "clean"}`);
  }
  const epochSeconds: number[] = [];
  let trainedSamples = 0;
  let trainedSeconds = 0;
  let lastDraw = 0;
  await fit(model, data.train.x, data.train.y, {
    epochs: a.epochs,
    batchSize: a.batchSize,
    onBatchEnd:
      out.isTTY && !a.json
        ? (p) => {
            const t = performance.now();
            if (t - lastDraw > 100 || p.batch + 1 === p.batches) {
              lastDraw = t;
              out.write(`\r${progressBar(p, a.epochs)}\x1b[K`);
            }
          }
        : undefined,
    onEpochEnd: (l) => {
      epochSeconds.push(l.seconds);
      trainedSamples += data.train.count;
      trainedSeconds += l.seconds;
      if (a.out) writeFileAtomic(a.out, saveCheckpoint(model));
      if (a.json)
        out.log(
          JSON.stringify({ event: "epoch", ...l, epoch: l.epoch + 1, checkpoint: a.out ?? null }),
        );
      else {
        if (out.isTTY) out.write("\r\x1b[K");
        out.log(epochLine(l, a.epochs));
      }
    },
  });
  // BN recalibration after a run that trained: measured on training data only; the test set is
  // evaluated before it too, so the effect is visible (and never used to decide anything).
  let movingStats: { loss: number; accuracy: number } | undefined;
  let recal: { layers: number[]; samples: number; seconds: number } | undefined;
  if ((a.recalibrateBn ?? true) && epochSeconds.length > 0 && hasBatchNorm(model)) {
    movingStats = evaluate(model, data.test.x, data.test.y);
    const t0 = performance.now();
    const r = recalibrateBatchNorm(model, data.train.x);
    recal = { ...r, seconds: (performance.now() - t0) / 1000 };
    if (a.out) writeFileAtomic(a.out, saveCheckpoint(model));
  }
  const test = evaluate(model, data.test.x, data.test.y);
  const samplesPerSecond = trainedSeconds > 0 ? trainedSamples / trainedSeconds : 0;
  if (a.json)
    out.log(
      JSON.stringify({
        event: "done",
        testAccuracy: test.accuracy,
        testLoss: test.loss,
        samplesPerSecond,
        epochSeconds,
        ...(recal
          ? {
              batchNormRecalibration: { ...recal, testAccuracyBefore: movingStats!.accuracy },
            }
          : {}),
      }),
    );
  else {
    if (recal)
      out.log(
        `BatchNorm recalibrated (${recal.layers.length} layers, ${recal.samples.toLocaleString("en-US")} training samples, inference mode, ${recal.seconds.toFixed(1)}s): ` +
          `test accuracy ${movingStats!.accuracy.toFixed(4)} with the moving averages -> ${test.accuracy.toFixed(4)}`,
      );
    out.log(
      `test accuracy ${test.accuracy.toFixed(4)} test loss ${test.loss.toFixed(4)} (${data.test.count} samples); ` +
        `training ${Math.round(samplesPerSecond).toLocaleString("en-US")} samples/s` +
        (a.out ? `; checkpoint ${a.out}` : ""),
    );
  }
  return {
    model,
    testAccuracy: test.accuracy,
    testLoss: test.loss,
    ...(movingStats ? { testAccuracyMovingStats: movingStats.accuracy } : {}),
    samplesPerSecond,
    epochSeconds,
  };
}

function hasBatchNorm(model: Model): boolean {
  return model.layers.some((rt) => rt.l.spec.type === "batchNorm");
}

function runLint(args: string[], out: Out): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: "boolean" }, strict: { type: "boolean" } },
  });
  if (positionals.length !== 1) throw new UsageError("lint takes one SPEC.json (or mlp/cnn)");
  const spec = readSpec(positionals[0]);
  const findings = lintLayerOrder(spec, { strict: values.strict === true });
  if (values.json) out.log(JSON.stringify(findings, null, 2));
  else
    out.log(findings.length ? formatFindings(findings) : "no findings: the layer order is clean");
  return hasErrors(findings) ? 1 : 0;
}

export async function main(argv: string[], out: Out = defaultOut): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "train": {
        const { values } = parseArgs({
          args: rest,
          options: {
            model: { type: "string", default: "mlp" },
            data: { type: "string" },
            epochs: { type: "string" },
            "batch-size": { type: "string" },
            optimizer: { type: "string" },
            lr: { type: "string" },
            seed: { type: "string" },
            out: { type: "string" },
            resume: { type: "string" },
            json: { type: "boolean", default: false },
            "no-recalibrate-bn": { type: "boolean", default: false },
          },
        });
        const opt = values.optimizer ?? "adam";
        if (values.resume !== undefined) {
          const given = (["optimizer", "lr", "seed"] as const).filter(
            (k) => values[k] !== undefined,
          );
          if (given.length)
            throw new UsageError(
              `${given.map((k) => `--${k}`).join(", ")} cannot be combined with --resume: a resumed run continues the checkpoint's optimizer (its learning rate and state) and its random-number state`,
            );
        }
        if (opt !== "adam" && opt !== "adamw" && opt !== "sgd")
          throw new UsageError(`--optimizer must be adam, adamw or sgd, got "${opt}"`);
        await runTrain(
          {
            model: values.model!,
            data: values.data,
            epochs: int(values.epochs, "epochs", 5),
            batchSize: int(values["batch-size"], "batch-size", 64),
            optimizer: opt,
            lr: float(values.lr, "lr"),
            seed: int(values.seed, "seed", 0, 0),
            out: values.out,
            resume: values.resume,
            json: values.json!,
            recalibrateBn: !values["no-recalibrate-bn"],
          },
          out,
        );
        return 0;
      }
      case "lint":
        return runLint(rest, out);
      case "import":
        return await runImport(rest, out);
      case "export":
        return (await import("./cliModel.js")).runExport(rest, out);
      case "inspect":
        return (await import("./cliModel.js")).runInspect(rest, out);
      case "predict":
        return (await import("./cliModel.js")).runPredict(rest, out);
      case "summary": {
        if (rest.length !== 1) throw new UsageError("summary takes one SPEC.json (or mlp/cnn)");
        out.log(new Model(loadKernels(), readSpec(rest[0])).summary());
        return 0;
      }
      case "demo": {
        const { values } = parseArgs({
          args: rest,
          options: { data: { type: "string" }, epochs: { type: "string" } },
        });
        const { runDemo } = await import("./demo.js");
        await runDemo({ data: values.data, epochs: int(values.epochs, "epochs", 5) }, out);
        return 0;
      }
      case "serve": {
        const { runServe } = await import("./node/serve.js");
        return await runServe(rest, out);
      }
      case "engine-cache": {
        const { values } = parseArgs({ args: rest, options: { dir: { type: "string" } } });
        const { writeEngineCodeCache } = await import("./node/engineCacheWrite.js");
        const { packageRoot } = await import("./node/readDataset.js");
        const { path, bytes } = writeEngineCodeCache(values.dir ?? join(packageRoot(), "dist"));
        const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ").trim();
        out.log(
          `wrote ${path} (${bytes} bytes) for Node ${process.version}, V8 flags: ${flags || "none"}`,
        );
        return 0;
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        out.log(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    const err = e as Error;
    if (
      err instanceof UsageError ||
      (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      out.err(`edgenn: ${err.message}\n${USAGE}`);
      return 2;
    }
    out.err(`edgenn: ${err.name && err.name !== "Error" ? `${err.name}: ` : ""}${err.message}`);
    return 1;
  }
}
