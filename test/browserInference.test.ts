// The inference-only kernel build in headless Chromium: a predict-only page (test/pages/
// inferencePage.ts) streams build/edgenn.infer.wasm and gives Node's bits for the same model and
// inputs, and the minimal bundle the size benchmark measures (bench/bundles/edgenn.ts, built as
// bench/bundleSize.ts builds it) runs and predicts. Served from 127.0.0.1.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../scripts/build-web.mjs";
import { startWebServer } from "../scripts/serve-web.mjs";
import { exportModel } from "../src/export.js";
import { InferenceEngine } from "../src/node/engine.js";
import { kernelWasmPath } from "../src/node/loadKernels.js";
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from "./chromium.js";
import { fakeModel, randomInputs, smallCnn } from "./exportFixtures.js";

// The pages load the baseline inference build; Node must too for bit-identical outputs.
process.env.EDGENN_ISA ??= "baseline";

const DIR = join(ROOT, "dist-test", "inference-page");
const BATCH = 8;
let server: Server;
let url: string;
let browser: Browser;
let want: Float32Array;

beforeAll(async () => {
  requireChromium();
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const options = {
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    logLevel: "warning",
  } as const;
  await Promise.all([
    build({
      ...options,
      entryPoints: [join(ROOT, "test", "pages", "inferencePage.ts")],
      outfile: join(DIR, "page.js"),
    }),
    build({
      ...options,
      entryPoints: [join(ROOT, "bench", "bundles", "edgenn.ts")],
      outfile: join(DIR, "bundle.js"),
    }),
  ]);
  copyFileSync(kernelWasmPath("edgenn.infer.wasm"), join(DIR, "edgenn.infer.wasm"));
  const model = exportModel(fakeModel(smallCnn, 21)).bytes;
  writeFileSync(join(DIR, "model.enn"), model);
  const engine = InferenceEngine.loadSync(model, { maxBatch: BATCH });
  const x = randomInputs(BATCH * engine.inputSize, 5);
  writeFileSync(join(DIR, "input.f32"), new Uint8Array(x.buffer));
  want = engine.predict(x, BATCH).slice();
  for (const name of ["page", "bundle"])
    writeFileSync(
      join(DIR, `${name}.html`),
      `<!doctype html><meta charset="utf-8"><script type="module" src="${name}.js"></script>`,
    );
  ({ server, url } = await startWebServer({ root: DIR }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

describe("inference-only kernels in headless Chromium", () => {
  it("a predict-only page streams edgenn.infer.wasm and gives Node's bits", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(new URL("page.html", url).href);
    await page.waitForFunction(() => "inferenceResult" in window, null, { timeout: 30_000 });
    const r = (await page.evaluate(() => (window as any).inferenceResult)) as {
      isa: string;
      inferenceOnly: boolean;
      y: number[];
    };
    expect(errors).toEqual([]);
    expect(r.isa).toBe("baseline");
    expect(r.inferenceOnly).toBe(true);
    expect(r.y).toHaveLength(want.length);
    // Float32 values travel as doubles exactly: equal numbers are equal bits (no NaN here).
    expect(r.y).toEqual(Array.from(want));
    await page.close();
  });

  it("the bundle the size benchmark measures runs and predicts", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    const logs: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => (m.type() === "error" ? errors : logs).push(m.text()));
    await page.goto(new URL("bundle.html", url).href);
    await expect.poll(() => logs.length + errors.length, { timeout: 30_000 }).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    expect(logs[0]).toMatch(/Float32Array\(3\)/);
    await page.close();
  });
});
