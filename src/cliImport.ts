// `edgenn import model.json [--out model.enn] [--int8]`: reads a TF.js layers model.json and its
// weight shards (paths in the manifest are relative to the model.json's folder), imports it, and
// exports it to the .enn inference format with the same exportModel as `edgenn export`.
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { exportModel, formatReport } from "./export.js";
import { Model } from "./model.js";
import { writeFileAtomic } from "./node/checkpointFile.js";
import { loadKernels } from "./node/loadKernels.js";
import {
  importTfjsLayersModel,
  isTfjsModelJson,
  tfjsTrainingLoss,
  tfjsWeightPaths,
} from "./tfjsImport.js";

const IMPORT_USAGE = `usage: edgenn import model.json [--out model.enn [--int8] [--logits]]
  model.json: a TensorFlow.js layers model (tfjs model.save or tensorflowjs_converter
  --output_format tfjs_layers_model); its weight shards are read from the same folder.
  Prints what each layer became; with --out, exports it like edgenn export (BN folded, Dropout
  removed; --int8 per-channel int8 kernels; --logits drops a final softmax).`;

export interface ImportOut {
  log: (s: string) => void;
  err: (s: string) => void;
}

class ImportFileError extends Error {
  override name = "ImportFileError";
}

function readJson(path: string): unknown {
  if (!existsSync(path)) throw new ImportFileError(`no file "${path}"`);
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ImportFileError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The shard files of a model.json, read in manifest order. */
function readShards(modelJson: unknown, modelPath: string): Uint8Array[] {
  const dir = dirname(modelPath);
  return tfjsWeightPaths(modelJson).map((p) => {
    const file = resolve(dir, p);
    if (!existsSync(file))
      throw new ImportFileError(
        `weight shard "${p}" listed in ${modelPath} is missing (looked for ${file})`,
      );
    return new Uint8Array(readFileSync(file));
  });
}

export async function runImport(args: string[], out: ImportOut): Promise<number> {
  let values: { out?: string; int8?: boolean; logits?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        int8: { type: "boolean" },
        logits: { type: "boolean" },
      },
    }));
  } catch (e) {
    out.err(`edgenn: ${(e as Error).message}\n${IMPORT_USAGE}`);
    return 2;
  }
  if (positionals.length !== 1) {
    out.err(`edgenn: import takes one model.json\n${IMPORT_USAGE}`);
    return 2;
  }
  const modelPath = positionals[0];
  try {
    const modelJson = readJson(modelPath);
    if (!isTfjsModelJson(modelJson))
      throw new ImportFileError(
        `${modelPath} is not a TF.js model.json (no "modelTopology"); for an edgenn spec use edgenn train/summary`,
      );
    const imported = importTfjsLayersModel(modelJson, readShards(modelJson, modelPath));
    const model = new Model(loadKernels(), imported.spec, {
      loss: tfjsTrainingLoss(modelJson, imported.spec),
    });
    model.setWeights(imported.weights);
    out.log(`imported ${modelPath}:`);
    for (const line of imported.report) out.log(`  ${line}`);
    out.log(model.summary());
    if (values.out !== undefined) {
      const { bytes, report } = exportModel(model, {
        int8: values.int8 === true,
        logits: values.logits === true,
      });
      writeFileAtomic(values.out, bytes);
      out.log(formatReport(report, bytes.length));
      out.log(`wrote ${values.out} (${bytes.length.toLocaleString("en-US")} bytes)`);
    } else if (values.int8 || values.logits)
      out.err(`edgenn: --int8 and --logits apply to --out; nothing was written`);
    return 0;
  } catch (e) {
    const err = e as Error;
    out.err(`edgenn: ${err.name && err.name !== "Error" ? `${err.name}: ` : ""}${err.message}`);
    return 1;
  }
}
