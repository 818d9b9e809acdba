// `npm run demo`: the main job on the bundled data. Trains the reference mlp on the embedded
// Fashion-MNIST subset with progress, prints the layer-order lint findings and the test accuracy,
// and saves a checkpoint.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { runTrain } from "./cli.js";
import { defaultDataDir, readIdxDataset } from "./node/readDataset.js";

type Out = {
  log: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
  write: (s: string) => void;
};

export async function runDemo(
  opts: { data?: string; epochs: number; outDir?: string },
  out: Out,
): Promise<void> {
  const dir = opts.outDir ?? "demo-out";
  mkdirSync(dir, { recursive: true });
  const ckpt = join(dir, "mlp.ckpt");
  out.log(
    `edgenn demo: reference mlp on ${opts.data ?? `the bundled Fashion-MNIST subset (${defaultDataDir()})`}`,
  );
  const r = await runTrain(
    {
      model: "mlp",
      data: opts.data,
      epochs: opts.epochs,
      batchSize: 64,
      optimizer: "adam",
      seed: 0,
      out: ckpt,
      json: false,
    },
    out,
  );
  out.log(r.model.summary());
  // Deploy: fold BN into the weights, drop dropout, write the .enn, inspect it and predict a few
  // test images with the exported file next to the model's inference-mode predictions.
  const { test } = await readIdxDataset(opts.data ?? defaultDataDir());
  const enn = join(dir, "mlp.enn");
  const { demoExport } = await import("./cliModel.js");
  demoExport({ model: r.model, checkpoint: ckpt, out: enn, test, samples: 8 }, out);
  out.log(
    `demo done: test accuracy ${(r.testAccuracy * 100).toFixed(2)}%, checkpoint ${ckpt}, exported model ${enn}`,
  );
}
