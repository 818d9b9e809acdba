import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadCheckpoint } from "../src/checkpoint.js";
import { main } from "../src/cli.js";
import { readFileBytes } from "../src/node/checkpointFile.js";
import { loadKernels } from "../src/node/loadKernels.js";

function capture(isTTY = false) {
  const lines: string[] = [];
  const errs: string[] = [];
  const writes: string[] = [];
  return {
    lines,
    errs,
    writes,
    out: {
      log: (s: string) => lines.push(s),
      err: (s: string) => errs.push(s),
      isTTY,
      write: (s: string) => writes.push(s),
    },
  };
}

describe("edgenn CLI", () => {
  it("train --json prints one JSON object per epoch and a final done event; writes the checkpoint", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-cli-"));
    const ckpt = join(dir, "m.ckpt");
    const c = capture();
    const code = await main(
      [
        "train",
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--seed",
        "3",
        "--out",
        ckpt,
        "--json",
      ],
      c.out,
    );
    expect(code).toBe(0);
    const events = c.lines.map((l) => JSON.parse(l));
    expect(events.map((e) => e.event)).toEqual(["epoch", "epoch", "done"]);
    const done = events[2];
    expect(done.testAccuracy).toBeGreaterThan(0.7);
    expect(done.testLoss).toBeGreaterThan(0);
    expect(done.samplesPerSecond).toBeGreaterThan(0);
    expect(done.epochSeconds).toHaveLength(2);
    // BN statistics recalibrated on the training set after the last epoch (default on).
    expect(done.batchNormRecalibration).toMatchObject({ layers: [1, 5], samples: 6000 });
    expect(done.batchNormRecalibration.testAccuracyBefore).toBeGreaterThan(0.7);
    expect(existsSync(ckpt)).toBe(true);
    const m = loadCheckpoint(readFileBytes(ckpt), loadKernels());
    expect(m.epoch).toBe(2);
    // Resume to 3 epochs: one more epoch line.
    const r = capture();
    expect(
      await main(
        [
          "train",
          "--model",
          "mlp",
          "--epochs",
          "3",
          "--batch-size",
          "128",
          "--resume",
          ckpt,
          "--out",
          ckpt,
          "--json",
        ],
        r.out,
      ),
    ).toBe(0);
    expect(r.lines.map((l) => JSON.parse(l).event)).toEqual(["epoch", "done"]);
    expect(JSON.parse(r.lines[0]).epoch).toBe(3);
    // A resumed run keeps the checkpoint's optimizer and RNG state: new ones are refused, not ignored.
    const z = capture();
    expect(
      await main(["train", "--epochs", "4", "--resume", ckpt, "--lr", "5", "--seed", "9"], z.out),
    ).toBe(2);
    expect(z.errs.join("\n")).toMatch(/--lr, --seed cannot be combined with --resume/);
  });

  it("draws a progress bar on a terminal and a line per epoch otherwise", async () => {
    const tty = capture(true);
    expect(
      await main(["train", "--model", "mlp", "--epochs", "1", "--batch-size", "256"], tty.out),
    ).toBe(0);
    const bar = tty.writes.find((w) => w.includes("["))!;
    expect(bar).toMatch(
      /epoch 1\/1 \[[= >]+\] \d+\/\d+ loss \d\.\d{4} acc \d\.\d{4} [\d,]+ samples\/s ETA/,
    );
    const plain = capture(false);
    expect(
      await main(["train", "--model", "mlp", "--epochs", "1", "--batch-size", "256"], plain.out),
    ).toBe(0);
    expect(plain.writes).toHaveLength(0);
    expect(plain.lines.some((l) => /^epoch 1\/1 loss/.test(l))).toBe(true);
    expect(plain.lines.some((l) => /^BatchNorm recalibrated \(2 layers, 6,000/.test(l))).toBe(true);
    expect(plain.lines.at(-1)).toMatch(/test accuracy 0\.\d{4}/);
    // --no-recalibrate-bn keeps the moving averages: no recalibration line or JSON field.
    const keep = capture(false);
    const args = ["train", "--epochs", "1", "--batch-size", "256", "--no-recalibrate-bn"];
    expect(await main([...args, "--json"], keep.out)).toBe(0);
    expect(JSON.parse(keep.lines.at(-1)!).batchNormRecalibration).toBeUndefined();
  });

  it("lint exits 0 on the canonical order and 1 when a finding is an error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-cli-"));
    const bad = join(dir, "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({
        inputShape: [8],
        layers: [
          { type: "dense", units: 4 },
          { type: "dropout", rate: 0.5 },
          { type: "batchNorm" },
          { type: "relu" },
          { type: "dense", units: 2 },
          { type: "softmax" },
        ],
      }),
    );
    const c = capture();
    expect(await main(["lint", bad, "--json"], c.out)).toBe(0); // a warning, not an error
    const findings = JSON.parse(c.lines.join("\n"));
    expect(
      findings.find((f: { code: string }) => f.code === "dropout-before-batchnorm"),
    ).toMatchObject({ severity: "warning", layer: 1 });
    const s = capture();
    expect(await main(["lint", bad, "--strict"], s.out)).toBe(1);
    expect(s.lines.join("\n")).toMatch(/error dropout-before-batchnorm/);
    const good = capture();
    expect(await main(["lint", "cnn"], good.out)).toBe(0);
  });

  it("reports bad arguments and bad specs clearly", async () => {
    const c = capture();
    expect(await main(["train", "--model", "nope.json"], c.out)).toBe(2);
    expect(c.errs.join("\n")).toMatch(/no model "nope.json"/);
    const dir = mkdtempSync(join(tmpdir(), "edgenn-cli-"));
    const spec = join(dir, "s.json");
    writeFileSync(
      spec,
      JSON.stringify({
        inputShape: [784],
        layers: [{ type: "dense", units: 10 }, { type: "sofmax" }],
      }),
    );
    const d = capture();
    expect(await main(["train", "--model", spec], d.out)).toBe(1);
    expect(d.errs.join("\n")).toMatch(/layer 1 field "type": unknown layer type "sofmax"/);
    const e = capture();
    expect(await main(["train", "--epochs", "zero"], e.out)).toBe(2);
    expect(e.errs.join("\n")).toMatch(/--epochs must be an integer/);
    const f = capture();
    expect(await main(["train", "--data", dir], f.out)).toBe(1);
    expect(f.errs.join("\n")).toMatch(/train-images-idx3-ubyte/);
  });
});
