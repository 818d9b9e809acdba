// The model-file commands of `edgenn`: export (checkpoint -> .enn), inspect, predict. Each returns
// its exit code: 0 done, 1 the file or the data is wrong, 2 the command line is wrong.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CheckpointError, loadCheckpoint } from "./checkpoint.js";
import {
  InferenceError,
  flattenSample,
  nonFiniteOutputProblem,
  type InferenceEngine,
} from "./engine.js";
import { ModelFormatError, readEnn, type EnnModel, type EnnOp } from "./ennFormat.js";
import { exportModel, formatReport } from "./export.js";
import { readFileBytes, writeFileAtomic } from "./node/checkpointFile.js";
import { loadEngineFile, readModelFile } from "./node/engine.js";
import { loadKernels } from "./node/loadKernels.js";

export interface CliOut {
  log: (s: string) => void;
  err: (s: string) => void;
}

const USAGE = {
  export:
    "usage: edgenn export CKPT --out model.enn [--int8] [--logits] [--input-scale S] [--input-offset O] [--json]",
  inspect: "usage: edgenn inspect model.enn [--json]",
  predict: "usage: edgenn predict model.enn --input FILE.json [--json] [--raw] [--top K]",
};

class Usage extends Error {}

/** Runs a command body, mapping errors to messages and exit codes. */
function run(cmd: keyof typeof USAGE, out: CliOut, body: () => number): number {
  try {
    return body();
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err instanceof Usage || err.code?.startsWith("ERR_PARSE_ARGS")) {
      out.err(`edgenn ${cmd}: ${err.message}\n${USAGE[cmd]}`);
      return 2;
    }
    if (err.code === "ENOENT" || err.code === "EISDIR" || err.code === "EACCES") {
      out.err(`edgenn ${cmd}: ${err.message}`);
      return 1;
    }
    const known = [ModelFormatError, CheckpointError, InferenceError].some((t) => err instanceof t);
    out.err(
      `edgenn ${cmd}: ${known || !err.name || err.name === "Error" ? "" : `${err.name}: `}${err.message}`,
    );
    return 1;
  }
}

// ---- export ----------------------------------------------------------------------------------------

export function runExport(args: string[], out: CliOut): number {
  return run("export", out, () => {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        int8: { type: "boolean", default: false },
        logits: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        "input-scale": { type: "string" },
        "input-offset": { type: "string" },
      },
    });
    if (positionals.length !== 1) throw new Usage("give one checkpoint file");
    if (!values.out) throw new Usage("--out model.enn is required");
    const finite = (v: string | undefined, name: string, dflt: number) => {
      if (v === undefined) return dflt;
      const x = Number(v);
      if (v.trim() === "" || !Number.isFinite(x))
        throw new Usage(`--${name} must be a number, got "${v}"`);
      return x;
    };
    const inputNormalization = {
      scale: finite(values["input-scale"], "input-scale", 1),
      offset: finite(values["input-offset"], "input-offset", 0),
    };
    const model = loadCheckpoint(readFileBytes(positionals[0]), loadKernels());
    const { bytes, report } = exportModel(model, {
      int8: values.int8,
      logits: values.logits,
      inputNormalization,
    });
    writeFileAtomic(values.out, bytes);
    if (values.logits && !report.logits)
      out.err(
        "note: --logits changed nothing: the model does not end in softmax, so its outputs are exported as they are",
      );
    if (values.json) out.log(JSON.stringify({ out: values.out, fileBytes: bytes.length, report }));
    else {
      out.log(formatReport(report, bytes.length));
      out.log(`wrote ${values.out} (${bytes.length.toLocaleString("en-US")} bytes)`);
    }
    return 0;
  });
}

// ---- inspect ---------------------------------------------------------------------------------------

const shape = (s: readonly number[]) => `[${s.join(", ")}]`;

function opDetails(op: EnnOp): string {
  const act =
    "activation" in op && op.activation !== "linear"
      ? ` +${op.activation}${op.alpha !== undefined ? `(${op.alpha})` : ""}`
      : "";
  switch (op.op) {
    case "dense":
      return `${op.units} units${op.bias === undefined ? ", no bias" : ""}${act}`;
    case "conv2d":
      return `${op.filters} filters ${op.kernelSize.join("x")}, stride ${op.strides.join("x")}, pad ${op.pad.join("/")}${op.bias === undefined ? ", no bias" : ""}${act}`;
    case "maxPool2d":
    case "avgPool2d":
      return `${op.poolSize.join("x")}, stride ${op.strides.join("x")}, pad ${op.pad.join("/")}`;
    case "leakyRelu":
    case "elu":
      return `alpha ${op.alpha}`;
    case "scaleShift":
      return `per-channel (x - center) * scale + shift`;
    default:
      return "";
  }
}

/** Tensor indices an op owns. */
function opTensors(op: EnnOp): number[] {
  const o = op as unknown as Record<string, unknown>;
  return ["kernel", "kernelScale", "bias", "center", "scale", "shift"]
    .map((k) => o[k])
    .filter((v): v is number => typeof v === "number");
}

export function describeModel(m: EnnModel, file: string): Record<string, unknown> {
  const ops = m.ops.map((op, i) => {
    const ts = opTensors(op).map((t) => m.tensors[t]);
    return {
      index: i,
      op: op.op,
      details: opDetails(op),
      inShape: m.inShapes[i],
      outShape: op.outShape,
      params: ts.reduce((a, t) => a + t.data.length, 0),
      bytes: ts.reduce((a, t) => a + t.data.byteLength, 0),
      dtypes: [...new Set(ts.map((t) => t.dtype))],
    };
  });
  return {
    file,
    fileBytes: m.fileBytes,
    version: `${m.version.major}.${m.version.minor}`,
    producer: m.producer,
    checksum: { crc32: m.checksum.toString(16).padStart(8, "0"), ok: m.checksumOk },
    inputShape: m.inputShape,
    inputNormalization: m.inputNormalization,
    outputShape: m.outputShape,
    labels: m.labels ?? null,
    params: ops.reduce((a, o) => a + o.params, 0),
    weightBytes: ops.reduce((a, o) => a + o.bytes, 0),
    ops,
    report: m.report ?? null,
  };
}

export function runInspect(args: string[], out: CliOut): number {
  return run("inspect", out, () => {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { json: { type: "boolean", default: false } },
    });
    if (positionals.length !== 1) throw new Usage("give one model file");
    const file = positionals[0];
    const bytes = readModelFile(file);
    let m: EnnModel;
    let checksumError: ModelFormatError | undefined;
    try {
      m = readEnn(bytes);
    } catch (e) {
      if (!(e instanceof ModelFormatError) || !/checksum mismatch/.test(e.message)) throw e;
      // Show what the damaged file claims, flagged, and fail.
      checksumError = e;
      m = readEnn(bytes, { verifyChecksum: false });
    }
    const d = describeModel(m, file) as ReturnType<typeof describeModel> & {
      ops: {
        index: number;
        op: string;
        details: string;
        outShape: number[];
        params: number;
        bytes: number;
        dtypes: string[];
      }[];
    };
    if (values.json) out.log(JSON.stringify(d, null, 2));
    else {
      out.log(
        `${file}: edgenn model format ${d.version}, ${m.fileBytes.toLocaleString("en-US")} bytes, made by ${m.producer}`,
      );
      out.log(
        `checksum: ${checksumError ? `MISMATCH — ${checksumError.message}` : `ok (CRC-32 ${(d.checksum as { crc32: string }).crc32})`}`,
      );
      const norm = m.inputNormalization;
      out.log(
        `input ${shape(m.inputShape)}${norm.scale !== 1 || norm.offset !== 0 ? ` (raw inputs are mapped by x * ${norm.scale} + ${norm.offset})` : ""}; output ${shape(m.outputShape)}${m.labels ? `: ${m.labels.join(", ")}` : ""}`,
      );
      const rows = d.ops.map((o) => [
        `${o.index}`,
        o.op,
        o.details,
        shape(o.outShape),
        o.params ? o.params.toLocaleString("en-US") : "",
        o.bytes ? `${o.bytes.toLocaleString("en-US")} ${o.dtypes.join("+")}` : "",
      ]);
      const head = ["#", "op", "details", "output", "params", "bytes"];
      const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
      const line = (r: string[]) =>
        r
          .map((v, c) => (c >= 4 ? v.padStart(widths[c]) : v.padEnd(widths[c])))
          .join("  ")
          .trimEnd();
      out.log(line(head));
      for (const r of rows) out.log(line(r));
      out.log(
        `${(d.params as number).toLocaleString("en-US")} parameters, ${(d.weightBytes as number).toLocaleString("en-US")} bytes of weights`,
      );
      if (m.report) out.log(formatReport(m.report, m.fileBytes));
    }
    return checksumError ? 1 : 0;
  });
}

// ---- predict ---------------------------------------------------------------------------------------

/** Nesting depth along first elements (0 for a number). */
function depth(v: unknown): number {
  let d = 0;
  while (Array.isArray(v)) {
    if (v.length === 0) throw new InferenceError(`the input holds an empty array`);
    v = v[0];
    d++;
  }
  return d;
}

/**
 * Samples in an input JSON value: one sample (flat, or nested to the input shape) or an array of
 * them. For a [h, w, c] model: depth 1 = one flat sample, 2 = flat samples, 3 = one nested sample,
 * 4 = nested samples; for a [features] model: depth 1 = one sample, 2 = samples.
 */
export function parseSamples(value: unknown, inputShape: readonly number[]): unknown[] {
  const rank = inputShape.length;
  const d = depth(value);
  const list = value as unknown[];
  if (d === 1 || (rank > 1 && d === rank)) return [value];
  if (d === 2 || d === rank + 1) return list;
  throw new InferenceError(
    `the input must be one sample (${inputShape.reduce((a, b) => a * b, 1)} numbers, flat or nested as ${shape(inputShape)}) or an array of samples; it is nested ${d} deep`,
  );
}

/** Runs samples through the engine in chunks of maxBatch; returns one output row per sample. */
export function predictSamples(
  engine: InferenceEngine,
  samples: unknown[],
  raw = false,
): number[][] {
  const n = engine.inputSize;
  const x = new Float32Array(samples.length * n);
  samples.forEach((s, i) => flattenSample(s, engine.inputShape, x, i * n, `sample ${i}`));
  if (raw) {
    const { scale, offset } = engine.inputNormalization;
    for (let i = 0; i < x.length; i++) x[i] = x[i] * scale + offset;
  }
  const rows: number[][] = [];
  for (let s = 0; s < samples.length; s += engine.maxBatch) {
    const B = Math.min(engine.maxBatch, samples.length - s);
    const y = engine.predict(x.subarray(s * n, (s + B) * n), B);
    for (let b = 0; b < B; b++) {
      const row = Array.from(y.subarray(b * engine.outputSize, (b + 1) * engine.outputSize));
      // As the server answers 422.
      const overflow = nonFiniteOutputProblem(row, s + b);
      if (overflow) throw new InferenceError(overflow);
      rows.push(row);
    }
  }
  return rows;
}

/** "label 0.912  label 0.051 ..." for the top k outputs of a row. */
export function topClasses(row: number[], labels: string[] | undefined, k: number): string {
  return row
    .map((v, i) => ({ v, i }))
    .sort((a, b) => b.v - a.v || a.i - b.i)
    .slice(0, k)
    .map(({ v, i }) => `${labels ? labels[i] : `class ${i}`} ${v.toFixed(4)}`)
    .join("  ");
}

export function runPredict(args: string[], out: CliOut): number {
  return run("predict", out, () => {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        input: { type: "string" },
        json: { type: "boolean", default: false },
        raw: { type: "boolean", default: false },
        top: { type: "string" },
      },
    });
    if (positionals.length !== 1) throw new Usage("give one model file");
    if (!values.input) throw new Usage("--input FILE.json is required");
    const top = values.top === undefined ? 3 : Number(values.top);
    if (!Number.isInteger(top) || top < 1)
      throw new Usage(`--top must be a positive integer, got "${values.top}"`);
    const engine = loadEngineFile(positionals[0]);
    let value: unknown;
    try {
      value = JSON.parse(readFileSync(values.input, "utf8"));
    } catch (e) {
      if ((e as { code?: string }).code) throw e;
      throw new InferenceError(`${values.input} is not valid JSON: ${(e as Error).message}`);
    }
    const rows = predictSamples(engine, parseSamples(value, engine.inputShape), values.raw);
    if (values.json) out.log(JSON.stringify({ outputs: rows }));
    else {
      const single = engine.outputSize === 1;
      out.log(
        `${rows.length} sample${rows.length === 1 ? "" : "s"} through ${positionals[0]}${single ? "" : ` (top ${Math.min(top, engine.outputSize)} outputs)`}:`,
      );
      const w = `${rows.length - 1}`.length;
      rows.forEach((r, i) =>
        out.log(
          `  #${`${i}`.padStart(w)}  ${single ? r[0].toFixed(6) : topClasses(r, engine.labels, top)}`,
        ),
      );
    }
    return 0;
  });
}

// ---- the demo's export step ------------------------------------------------------------------------

/**
 * What `npm run demo` shows after training: export the checkpoint, inspect the file, and predict a
 * few test images with it next to the trained model's inference-mode predictions. Returns the
 * largest |exported - model| probability difference.
 */
export function demoExport(
  opts: {
    model: { predict(x: Float32Array): Float32Array; outputSize: number };
    checkpoint: string;
    out: string;
    test: { x: Float32Array; y: Int32Array; count: number };
    samples?: number;
  },
  out: CliOut,
): number {
  // The inspect listing below prints the export report (it is stored in the file): export's own
  // copy of it would say the same twice, so only its "wrote ..." line is shown.
  const exported: string[] = [];
  if (
    runExport([opts.checkpoint, "--out", opts.out], { ...out, log: (l) => exported.push(l) }) !== 0
  )
    throw new Error(`exporting ${opts.checkpoint} failed`);
  const wrote = exported.at(-1);
  if (wrote) out.log(wrote);
  if (runInspect([opts.out], out) !== 0) throw new Error(`inspecting ${opts.out} failed`);
  const engine = loadEngineFile(opts.out);
  const n = Math.min(opts.samples ?? 8, opts.test.count);
  const per = engine.inputSize;
  const x = opts.test.x.subarray(0, n * per);
  const want = opts.model.predict(x);
  const got = predictSamples(
    engine,
    Array.from({ length: n }, (_, s) => Array.from(x.subarray(s * per, (s + 1) * per))),
  );
  const C = opts.model.outputSize;
  const name = (i: number) => engine.labels?.[i] ?? `class ${i}`;
  const argmax = (r: ArrayLike<number>) => {
    let best = 0;
    for (let c = 1; c < r.length; c++) if (r[c] > r[best]) best = c;
    return best;
  };
  let worst = 0;
  out.log(`${n} test images, trained model (inference mode) vs ${opts.out}:`);
  for (let s = 0; s < n; s++) {
    const m = want.subarray(s * C, (s + 1) * C);
    const e = got[s];
    for (let c = 0; c < C; c++) worst = Math.max(worst, Math.abs(m[c] - e[c]));
    const a = argmax(m);
    const b = argmax(e);
    out.log(
      `  #${s} true ${name(opts.test.y[s])}: model ${name(a)} ${m[a].toFixed(4)}, exported ${name(b)} ${e[b].toFixed(4)}`,
    );
  }
  out.log(`largest difference between model and exported probabilities: ${worst.toExponential(2)}`);
  return worst;
}
