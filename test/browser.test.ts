// The demo page and its training Web Worker in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core): live lint, training with progress events, cancel mid-run, export,
// predictions of the exported file on the page — and the same numbers as Node for the same seed.
// Builds the page itself (esbuild) and serves it from 127.0.0.1 with the COOP/COEP headers.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from "./chromium.js";
import { buildWeb, ROOT } from "../scripts/build-web.mjs";
import { startWebServer } from "../scripts/serve-web.mjs";
import { flattenShape, subsetDataset, type Dataset } from "../src/dataset.js";
import { exportModel } from "../src/export.js";
import { lintLayerOrder } from "../src/lint.js";
import { Model } from "../src/model.js";
import { InferenceEngine } from "../src/node/engine.js";
import { loadKernels } from "../src/node/loadKernels.js";

// The page loads the baseline SIMD build; Node must use the same one for bit-identical results
// (Node >= 22 would otherwise pick the relaxed-SIMD build by itself).
process.env.EDGENN_ISA ??= "baseline";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { FASHION_LABELS } from "../src/referenceModels.js";
import type { ModelSpec } from "../src/spec.js";
import { fit } from "../src/train.js";

const SCREENSHOT = join(ROOT, "test-results", "demo.png");

// What the page's state object holds (web/main.ts, window.edgennDemo.state).
interface PageState {
  ready: boolean;
  phase: string;
  progressEvents: number;
  history?: {
    cancelled: boolean;
    batchesRun: number;
    epochs: { loss: number }[];
    recalibration?: { layers: number[]; samples: number };
  };
  batchesAtCancel?: number;
  testAccuracy?: number;
  longestFrameWhileTrainingMs: number;
  error?: string;
}

let server: Server;
let url: string;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
let train: Dataset;
let test: Dataset;
const pageErrors: string[] = [];

beforeAll(async () => {
  requireChromium();
  const [root, data] = await Promise.all([
    buildWeb({ outdir: join(ROOT, "dist-test", "web") }),
    readIdxDataset(defaultDataDir()),
  ]);
  train = flattenShape(data.train);
  test = flattenShape(data.test);
  ({ server, url } = await startWebServer({ root }));
  userDataDir = mkdtempSync(join(tmpdir(), "edgenn-chromium-"));
  // A fresh profile per run; on this closed network Chromium must not try to phone home.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: CHROMIUM_ARGS,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await page.waitForFunction(() => (window as any).edgennDemo?.state.ready === true, null, {
    timeout: 30_000,
  });
}, 90_000);

afterAll(async () => {
  await context?.close();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

const state = (): Promise<PageState> =>
  page.evaluate(() => {
    const s = (window as any).edgennDemo.state;
    return { ...s, enn: undefined, testOutputs: undefined };
  });

async function waitForPhase(phases: string[], timeout = 60_000): Promise<PageState> {
  await page.waitForFunction(
    (want) => want.includes((window as any).edgennDemo.state.phase),
    phases,
    { timeout, polling: 50 },
  );
  return state();
}

async function setSpec(spec: string | ModelSpec): Promise<void> {
  // One layer per line, as the page's presets are written.
  const text =
    typeof spec === "string"
      ? spec
      : `{\n  "inputShape": ${JSON.stringify(spec.inputShape)},\n  "layers": [\n${spec.layers.map((l) => `    ${JSON.stringify(l)}`).join(",\n")}\n  ]\n}`;
  await page.fill("#spec", text);
}

async function setOptions(o: {
  epochs: number;
  batch: number;
  lr: number;
  seed: number;
  samples: number;
}): Promise<void> {
  await page.selectOption("#optimizer", "adam");
  for (const [id, v] of Object.entries(o)) await page.fill(`#${id}`, String(v));
}

describe("demo page in headless Chromium", () => {
  it("is cross-origin isolated and shows lint findings live as the layers are edited", async () => {
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    // The mlp preset: the canonical order, infos only.
    expect(await page.locator("#findings li.warning").count()).toBe(0);

    // Move Dropout before BatchNorm: the variance-shift warning appears with its fix.
    const reordered: ModelSpec = {
      inputShape: [784],
      layers: [
        { type: "dense", units: 64 },
        { type: "dropout", rate: 0.3 },
        { type: "batchNorm" },
        { type: "relu" },
        { type: "dense", units: 10 },
        { type: "softmax" },
      ],
    };
    await setSpec(reordered);
    const expected = lintLayerOrder(reordered).find((f) => f.code === "dropout-before-batchnorm")!;
    expect(expected.severity).toBe("warning");
    const item = page.locator('#findings li[data-code="dropout-before-batchnorm"]');
    await expect.poll(() => item.count()).toBe(1);
    expect(await item.getAttribute("class")).toBe("warning");
    const text = (await item.textContent())!;
    expect(text).toContain(expected.message);
    expect(text).toContain(`fix: ${expected.fix}`);
    expect(await page.inputValue("#preset")).toBe("custom");

    await setSpec('{"inputShape": [784], "layers": [');
    expect(await page.textContent("#spec-status")).toMatch(/^JSON: /);
    expect(await page.isDisabled("#train")).toBe(true);
    await setSpec({ inputShape: [784], layers: [{ type: "dense", units: 0 }] } as ModelSpec);
    expect(await page.textContent("#spec-status")).toMatch(/^spec: layer 0: .*units/);
  });

  it("a crash inside the worker reaches the page as a rejected promise with its message", async () => {
    const err = await page.evaluate(() =>
      (window as any).edgennDemo.trainer
        .create({ inputShape: [784], layers: [{ type: "dense", units: 0 }] })
        .then(
          () => null,
          (e: any) => ({ name: e.name, message: e.message, layer: e.layer }),
        ),
    );
    expect(err).toMatchObject({ name: "SpecError", layer: 0 });
    expect(err.message).toMatch(/units/);
  });

  it("a second worker loads the kernels from their URL (streaming) and predicts as Node does", async () => {
    const spec: ModelSpec = {
      inputShape: [28, 28, 1],
      layers: [
        { type: "conv2d", filters: 4, kernelSize: 3, padding: "same" },
        { type: "batchNorm" },
        { type: "relu" },
        { type: "maxPool2d", poolSize: 2 },
        { type: "flatten" },
        { type: "dense", units: 10 },
        { type: "softmax" },
      ],
    };
    const n = 240;
    const x = Array.from(train.x.subarray(0, n * 784));
    const y = Array.from(train.y.subarray(0, n));
    const probe = Array.from(test.x.subarray(0, 20 * 784));
    const r = await page.evaluate(
      async ({ spec, x, y, probe }) => {
        const t = (window as any).edgennDemo.spawnTrainer();
        try {
          await t.init(new URL("edgenn.wasm", location.href).href);
          await t.create(spec, { seed: 3 });
          const xs = new Float32Array(x);
          const history = await t.fit(xs, new Int32Array(y), { epochs: 1, batchSize: 30 });
          const out = await t.predict(new Float32Array(probe));
          return {
            detached: xs.buffer.byteLength === 0,
            batchesRun: history.batchesRun as number,
            out: Array.from(out as Float32Array),
          };
        } finally {
          await t.terminate();
        }
      },
      { spec, x, y, probe },
    );
    expect(r.detached).toBe(true); // transferred to the worker, not copied
    expect(r.batchesRun).toBe(8);
    const direct = new Model(loadKernels(), spec, { seed: 3 });
    await fit(direct, train.x.subarray(0, n * 784), train.y.subarray(0, n), {
      epochs: 1,
      batchSize: 30,
    });
    expect(new Float32Array(r.out)).toEqual(direct.predict(test.x.subarray(0, 20 * 784)));
  });

  it("cancels a run mid-way within one batch; the cancelled model still exports and predicts", async () => {
    await page.selectOption("#preset", "mlp");
    await setOptions({ epochs: 50, batch: 32, lr: 0.001, seed: 1, samples: 6000 });
    await page.click("#train");
    await page.waitForFunction(() => (window as any).edgennDemo.state.progressEvents >= 20, null, {
      timeout: 30_000,
      polling: 20,
    });
    await page.click("#cancel");
    const s = await waitForPhase(["cancelled", "error"]);
    expect(s.error).toBeUndefined();
    expect(s.history!.cancelled).toBe(true);
    expect(s.batchesAtCancel).toBeGreaterThanOrEqual(20);
    // The shared flag is read after every batch: the batch in flight finishes, no other starts.
    expect(s.history!.batchesRun).toBeLessThanOrEqual(s.batchesAtCancel! + 1);
    expect(s.history!.batchesRun).toBeLessThan(50 * 188);
    // The model as it was at the cancel: exported and run on the page.
    expect(s.testAccuracy).toBeGreaterThan(0.3);
    expect(await page.locator("#grid .tile").count()).toBe(24);
    expect(await page.isEnabled("#train")).toBe(true);
    expect(await page.isEnabled("#download")).toBe(true);
  });

  it("trains in the worker with progress events; the exported model equals Node's, byte for byte", async () => {
    const spec: ModelSpec = {
      inputShape: [784],
      layers: [
        { type: "dense", units: 64 },
        { type: "batchNorm" },
        { type: "relu" },
        { type: "dropout", rate: 0.2 },
        { type: "dense", units: 10 },
        { type: "softmax" },
      ],
    };
    const opts = { epochs: 3, batch: 64, lr: 0.002, seed: 7, samples: 4000 };
    await setSpec(spec);
    await setOptions(opts);
    await page.click("#train");
    const s = await waitForPhase(["done", "cancelled", "error"]);
    expect(s.error).toBeUndefined();
    expect(s.phase).toBe("done");
    const batches = 3 * Math.ceil(4000 / 64);
    expect(s.history!.batchesRun).toBe(batches);
    expect(s.progressEvents).toBe(batches + 3); // every batch, every epoch
    // The page kept drawing while the worker trained.
    expect(s.longestFrameWhileTrainingMs).toBeLessThan(1000);

    // Node: the same spec, seed, optimizer, data and export options.
    const direct = new Model(loadKernels(), spec, {
      seed: opts.seed,
      optimizer: { type: "adam", learningRate: opts.lr },
    });
    const sub = subsetDataset(train, opts.samples);
    const history = await fit(direct, sub.x, sub.y, {
      epochs: opts.epochs,
      batchSize: opts.batch,
      recalibrateBatchNorm: true,
    });
    // The page recalibrated BN too (the same statistics, or the files below would differ).
    expect(s.history!.recalibration).toMatchObject({ layers: [1], samples: opts.samples });
    expect(history.recalibration).toMatchObject({ layers: [1], samples: opts.samples });
    expect(s.history!.epochs.map((e) => e.loss)).toEqual(history.epochs.map((e) => e.loss));
    const nodeEnn = exportModel(direct, { labels: FASHION_LABELS }).bytes;
    const pageEnn = new Uint8Array(
      await page.evaluate(() => Array.from((window as any).edgennDemo.state.enn as Uint8Array)),
    );
    expect(pageEnn.length).toBe(nodeEnn.length);
    expect(Buffer.compare(Buffer.from(pageEnn), Buffer.from(nodeEnn))).toBe(0);

    // Predictions of the exported file: the page's engine against Node's, on all 1000 test images.
    const pageOut = await page.evaluate(() =>
      Array.from((window as any).edgennDemo.state.testOutputs as Float32Array),
    );
    const engine = InferenceEngine.loadSync(nodeEnn, { maxBatch: 100 });
    let maxDiff = 0;
    let right = 0;
    for (let s0 = 0; s0 < test.count; s0 += 100) {
      const out = engine.predict(test.x.subarray(s0 * 784, (s0 + 100) * 784), 100);
      for (let i = 0; i < out.length; i++)
        maxDiff = Math.max(maxDiff, Math.abs(out[i] - pageOut[s0 * 10 + i]));
      for (let r = 0; r < 100; r++) {
        const row = out.subarray(r * 10, r * 10 + 10);
        if (row.indexOf(Math.max(...row)) === test.y[s0 + r]) right++;
      }
    }
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
    expect(s.testAccuracy).toBe(right / test.count);
    expect(s.testAccuracy).toBeGreaterThan(0.7);
    expect(await page.locator("#grid .tile").count()).toBe(24);

    // The download button hands over the same bytes.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    expect(download.suggestedFilename()).toMatch(/\.enn$/);
    expect(Buffer.compare(readFileSync((await download.path())!), Buffer.from(nodeEnn))).toBe(0);

    mkdirSync(join(ROOT, "test-results"), { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
