#!/usr/bin/env node
// Builds the model the Cloudflare Worker bundles (worker/edge.ts imports it as a Data module):
// the reference mlp trained for one epoch on the bundled Fashion-MNIST subset from a fixed seed,
// exported with exportModel. Deterministic: the same kernels and seed give the same bytes, so
// `npm run edge:dev`, `npm run edge:build` and the workerd tests all serve the same file.
// Needs the compiled package (npm run build); writes dist-edge-model/model.enn (gitignored).
//
//   node scripts/build-edge-model.mjs [--out FILE] [--epochs N] [--quiet]
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => join(root, "dist", "src", p);

const { values } = parseArgs({
  options: {
    out: { type: "string", default: join(root, "dist-edge-model", "model.enn") },
    epochs: { type: "string", default: "1" },
    quiet: { type: "boolean", default: false },
  },
});

let mods;
try {
  mods = await Promise.all(
    ["node/index.js", "node/readDataset.js", "export.js", "referenceModels.js", "train.js"].map(
      (p) => import(dist(p)),
    ),
  );
} catch (e) {
  console.error(
    `build-edge-model: the compiled package is missing (${e.message}); run "npm run build" first`,
  );
  process.exit(1);
}
const [
  { createModel },
  { readIdxDataset, defaultDataDir },
  { exportModel },
  { mlpSpec },
  { fit, evaluate },
] = mods;

const started = performance.now();
const data = await readIdxDataset(defaultDataDir());
const model = createModel(mlpSpec(), { seed: 7 });
await fit(model, data.train.x, data.train.y, {
  epochs: Number(values.epochs),
  batchSize: 64,
  seed: 7,
  yieldEveryMs: 1e9,
});
const test = evaluate(model, data.test.x, data.test.y);
const { bytes } = exportModel(model);

// Rewrite only when the bytes change, so a running `wrangler dev` does not reload for nothing.
let same = false;
try {
  same = Buffer.compare(readFileSync(values.out), Buffer.from(bytes)) === 0;
} catch {}
if (!same) {
  mkdirSync(dirname(values.out), { recursive: true });
  const tmp = `${values.out}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, values.out);
}
if (!values.quiet)
  console.log(
    `build-edge-model: ${values.out} (${bytes.length.toLocaleString("en-US")} bytes, test accuracy ${(test.accuracy * 100).toFixed(2)}%, ${same ? "unchanged" : "written"}) in ${((performance.now() - started) / 1000).toFixed(1)}s`,
  );
