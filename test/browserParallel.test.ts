// Multi-core training in real headless Chromium (Debian's /usr/bin/chromium via playwright-core):
// the multi-core page (web/parallel.ts) trains on 2 Web Workers over a SharedArrayBuffer when it
// is cross-origin isolated and by postMessage when it is served without COOP/COEP, and both runs
// end with the checkpoint Node's 2-worker run writes for the same seed, byte for byte.
// A cancel stops the workers after the same step inside an epoch over either transport.
import type { Server } from "node:http";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from "./chromium.js";
import { buildNodeWorker, buildWeb, ROOT } from "../scripts/build-web.mjs";
import { startWebServer } from "../scripts/serve-web.mjs";
import { subsetDataset, type Dataset } from "../src/dataset.js";
import { fitParallel } from "../src/node/fitParallel.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import type { ModelSpec } from "../src/spec.js";
import type { ParallelRun } from "../web/parallel.js";

// The page loads the baseline SIMD build; Node (and its worker threads, which inherit the
// environment) must use the same one for bit-identical results.
process.env.EDGENN_ISA ??= "baseline";

// BN (per-shard statistics, moving statistics averaged each epoch) and dropout (a stream per
// replica): equal checkpoints mean all of it happened identically.
const SPEC: ModelSpec = {
  inputShape: [784],
  layers: [
    { type: "dense", units: 32 },
    { type: "batchNorm", momentum: 0.9 },
    { type: "relu" },
    { type: "dropout", rate: 0.25 },
    { type: "dense", units: 10 },
    { type: "softmax" },
  ],
};
// 12 batches of 50 and one of 7 rows (shards of 4 and 3).
const RUN: ParallelRun = {
  spec: SPEC,
  samples: 607,
  workers: 2,
  epochs: 2,
  batchSize: 50,
  seed: 5,
  optimizer: { type: "adam", learningRate: 0.003 },
};

interface PageResult {
  isolated: boolean;
  transport: string;
  replicasIdentical: boolean;
  losses: number[];
  checkpoint: string;
}

const servers: Server[] = [];
let browser: Browser;
let isolatedPage: Page;
let plainPage: Page;
let nodeRun: { losses: number[]; checkpoint: string };
const pageErrors: string[] = [];

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
  });
  await page.goto(`${url}parallel.html`);
  await page.waitForFunction(() => (window as any).edgennParallel?.ready, null, {
    timeout: 30_000,
  });
  await page.evaluate(() => (window as any).edgennParallel.ready);
  return page;
}

function runOnPage(page: Page, run: ParallelRun): Promise<PageResult> {
  return page.evaluate(async (run) => {
    const r = await (window as any).edgennParallel.run(run);
    let binary = "";
    for (const b of r.checkpoint as Uint8Array) binary += String.fromCharCode(b);
    return {
      isolated: crossOriginIsolated,
      transport: r.transport,
      replicasIdentical: r.replicasIdentical,
      losses: r.history.map((e: { loss: number }) => e.loss),
      checkpoint: btoa(binary),
    };
  }, run);
}

beforeAll(async () => {
  requireChromium();
  const [root, workerScript, data] = await Promise.all([
    buildWeb({ outdir: join(ROOT, "dist-test", "web-parallel") }),
    buildNodeWorker({
      entry: join(ROOT, "worker", "parallelNodeWorker.ts"),
      outfile: join(ROOT, "dist-test", "browserParallel-nodeWorker.mjs"),
    }),
    readIdxDataset(defaultDataDir()),
  ]);
  const train: Dataset = subsetDataset(data.train, RUN.samples);
  const node = await fitParallel(SPEC, train.x, train.y, {
    workers: RUN.workers,
    epochs: RUN.epochs,
    batchSize: RUN.batchSize,
    seed: RUN.seed,
    optimizer: RUN.optimizer,
    workerScript,
  });
  expect(node.replicasIdentical).toBe(true);
  nodeRun = {
    losses: node.history.map((e) => e.loss),
    checkpoint: Buffer.from(node.checkpoint).toString("base64"),
  };
  const [isolated, plain] = await Promise.all([
    startWebServer({ root }),
    startWebServer({ root, isolated: false }),
  ]);
  servers.push(isolated.server, plain.server);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  [isolatedPage, plainPage] = await Promise.all([openPage(isolated.url), openPage(plain.url)]);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe("multi-core training in headless Chromium", () => {
  it("on a cross-origin-isolated page: 2 workers over SharedArrayBuffer, Node's bits", async () => {
    const r = await runOnPage(isolatedPage, RUN);
    expect(r.isolated).toBe(true);
    expect(r.transport).toBe("shared");
    expect(r.replicasIdentical).toBe(true);
    expect(r.losses).toEqual(nodeRun.losses);
    expect(r.checkpoint.length).toBe(nodeRun.checkpoint.length);
    expect(r.checkpoint === nodeRun.checkpoint).toBe(true);
    expect(pageErrors).toEqual([]);
  });

  it("on a page without COOP/COEP: 2 workers over postMessage, the same bits", async () => {
    expect(await plainPage.evaluate(() => typeof SharedArrayBuffer)).toBe("undefined");
    const r = await runOnPage(plainPage, RUN);
    expect(r.isolated).toBe(false);
    expect(r.transport).toBe("message");
    expect(r.replicasIdentical).toBe(true);
    expect(r.losses).toEqual(nodeRun.losses);
    expect(r.checkpoint === nodeRun.checkpoint).toBe(true);
    // The comparison can fail: another seed gives other bytes.
    const other = await runOnPage(plainPage, { ...RUN, seed: 6, epochs: 1 });
    expect(other.checkpoint.length).toBe(nodeRun.checkpoint.length);
    expect(other.checkpoint === nodeRun.checkpoint).toBe(false);
    // Asking for shared memory there fails with what to do about it.
    const err = await plainPage.evaluate(
      (run) =>
        (window as any).edgennParallel.run({ ...run, transport: "shared" }).then(
          () => "resolved",
          (e: Error) => e.message,
        ),
      RUN,
    );
    expect(err).toMatch(/cross-origin isolated .*use transport "message"/);
    expect(pageErrors).toEqual([]);
  });

  it.each(["isolated", "plain"] as const)(
    "%s page: a cancel stops the workers after the same step inside an epoch",
    async (which) => {
      const page = which === "isolated" ? isolatedPage : plainPage;
      // 100 batches of 20 rows an epoch; the page aborts just after the first epoch ends.
      const r = await page.evaluate(
        async (run) => {
          const res = await (window as any).edgennParallel.run(run);
          return {
            transport: res.transport as string,
            cancelled: res.cancelled as boolean,
            epochs: res.history.length as number,
            replicasIdentical: res.replicasIdentical as boolean,
            batch: res.model.epochProgress?.batch as number | undefined,
            modelEpoch: res.model.epoch as number,
          };
        },
        { ...RUN, samples: 2000, batchSize: 20, epochs: 1000, cancelAfterEpoch: 0 },
      );
      expect(r.transport).toBe(which === "isolated" ? "shared" : "message");
      expect(r.cancelled).toBe(true);
      expect(r.epochs).toBe(1);
      expect(r.modelEpoch).toBe(1);
      expect(r.replicasIdentical).toBe(true);
      expect(r.batch).toBeGreaterThan(0);
      expect(r.batch).toBeLessThan(100);
      expect(pageErrors).toEqual([]);
    },
  );

  it("the page's button trains and logs each epoch", async () => {
    await plainPage.fill("#workers", "2");
    await plainPage.fill("#epochs", "1");
    await plainPage.fill("#samples", "500");
    await plainPage.click("#train");
    await plainPage.waitForFunction(
      () => /done on 2 workers/.test(document.querySelector("#log")!.textContent!),
      null,
      { timeout: 30_000 },
    );
    const text = (await plainPage.textContent("#log"))!;
    expect(text).toMatch(/epoch 1: loss [\d.]+, accuracy [\d.]+/);
    expect(text).toContain("done on 2 workers over messages; replicas identical: true");
  });

  it("the page's Cancel button stops a run inside an epoch", async () => {
    await plainPage.fill("#workers", "2");
    await plainPage.fill("#epochs", "50");
    await plainPage.fill("#samples", "6000");
    // The log keeps earlier runs' lines: wait for this run's first epoch line.
    const epochLines = () =>
      (document.querySelector("#log")!.textContent!.match(/epoch 1: /g) ?? []).length;
    const before = await plainPage.evaluate(epochLines);
    await plainPage.click("#train");
    await plainPage.waitForFunction(
      (n) => (document.querySelector("#log")!.textContent!.match(/epoch 1: /g) ?? []).length > n,
      before,
      {
        timeout: 30_000,
      },
    );
    await plainPage.click("#cancel");
    await plainPage.waitForFunction(
      () => /cancelled on 2 workers/.test(document.querySelector("#log")!.textContent!),
      null,
      { timeout: 30_000 },
    );
    const text = (await plainPage.textContent("#log"))!;
    expect(text).toMatch(/cancelled on 2 workers over messages after \d+ epoch\(s\)/);
    expect(text).toContain("replicas identical: true");
    expect(await plainPage.isDisabled("#cancel")).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
