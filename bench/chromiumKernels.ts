// The kernel micro-benchmark's target rows in a browser: the SIMD peak loops and gemm_f32 at
// 64x784x256 and 512^3, for both kernel builds, in headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core, as the browser tests do). Chromium runs relaxed SIMD by default, as
// workerd and Node >= 22 do, so its relaxed rows are the GEMM a user training in a Web Worker gets;
// Node 20 (this machine's) needs a process flag for it (bench/gemm.ts measures both there in a
// flagged child).
//
// Timed as bench/gemm.ts times them, with its own timeSamples (the function's source runs in the
// page): 4 rounds of 12 windows of >= 5 ms per kernel and build, builds alternating, best window
// against best window. The page is cross-origin isolated (COOP/COEP on a response the bench
// serves itself through playwright's request routing, no server), which gives it a 5 us clock
// instead of the 100 us a plain page gets.
//
//   npm run bench -- --only chromium
import { existsSync, readFileSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { KERNEL_FILES, type KernelIsa } from "../src/kernels.js";
import { kernelWasmPath } from "../src/node/loadKernels.js";
import { CHROMIUM, CHROMIUM_ARGS } from "../test/chromium.js";
import { GEMM_TARGET, gemmRow, timeSamples, type GemmBenchRow } from "./gemm.js";

export interface ChromiumBuildBench {
  isa: KernelIsa;
  /** simd_peak_f32: 12 chains of f32x4 mul then add */
  simdPeakGflops: number;
  /** simd_peak_madd_f32: the same through Isa.madd (FMA in the relaxed build) */
  simdPeakMaddGflops: number;
  gemm: GemmBenchRow[];
}

export interface ChromiumKernelBench {
  /** Chromium's version, as playwright reports it */
  browser?: string;
  /** timed windows behind each peak and GEMM row */
  windows?: number;
  builds?: ChromiumBuildBench[];
  /** why there are no numbers (no Chromium here, or it failed to start) */
  unavailable?: string;
}

/** [M, N, K] of the two GEMM shapes (NN, row-major). */
const SHAPES: [number, number, number][] = [
  [64, 256, 784],
  [512, 512, 512],
];
const PEAK_ITERS = 500_000;

interface PageArgs {
  wasm: string[];
  timeSamplesSource: string;
  shapes: [number, number, number][];
  iters: number;
  rounds: number;
  perRound: number;
}

interface PageSamples {
  peak: number[][];
  peakMadd: number[][];
  /** [shape][build] ms per call of each window */
  gemm: number[][][];
}

/**
 * Runs in the page (serialised by playwright: it may use nothing from this module). Instantiates
 * each build, places each shape's A and B (a 32-bit LCG, as bench/gemm.ts fills them), and times
 * the peaks and the GEMMs in rounds.
 */
async function measureInPage(a: PageArgs): Promise<PageSamples> {
  type TimeSamples = (fns: (() => void)[], runs: number) => number[][];
  const time = new Function(`return (${a.timeSamplesSource})`)() as TimeSamples;
  interface Exports {
    memory: WebAssembly.Memory;
    heap_base(): number;
    gemm_scratch_bytes(M: number, N: number, K: number): number;
    gemm_f32(...args: number[]): void;
    simd_peak_f32(iters: number, ma: number): number;
    simd_peak_madd_f32(iters: number, ma: number): number;
  }
  const builds: Exports[] = [];
  for (const b64 of a.wasm) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const { instance } = await WebAssembly.instantiate(bytes, {});
    builds.push(instance.exports as unknown as Exports);
  }
  const cases = builds.map((e) => {
    let cursor = e.heap_base();
    let seed = 12345;
    const floats = (n: number, fill: boolean): number => {
      const p = cursor;
      cursor = Math.ceil((p + Math.max(n, 1) * 4) / 64) * 64;
      const grow = cursor - e.memory.buffer.byteLength;
      if (grow > 0) e.memory.grow(Math.ceil(grow / 65536));
      if (fill) {
        const f = new Float32Array(e.memory.buffer, p, n);
        for (let i = 0; i < n; i++) {
          seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
          f[i] = seed / 4294967296 - 0.5;
        }
      }
      return p;
    };
    const ma = floats(8, false);
    new Float32Array(e.memory.buffer, ma, 8).set([
      0.999, 0.999, 0.999, 0.999, 1e-3, 1e-3, 1e-3, 1e-3,
    ]);
    const gemms = a.shapes.map(([M, N, K]) => {
      const A = floats(M * K, true);
      const B = floats(K * N, true);
      const C = floats(M * N, false);
      const S = floats(e.gemm_scratch_bytes(M, N, K) / 4, false);
      return () => e.gemm_f32(M, N, K, A, K, 1, B, N, 1, C, N, 0, -Infinity, Infinity, 0, S);
    });
    return {
      peak: () => void e.simd_peak_f32(a.iters, ma),
      peakMadd: () => void e.simd_peak_madd_f32(a.iters, ma),
      gemms,
    };
  });
  const out: PageSamples = {
    peak: builds.map(() => []),
    peakMadd: builds.map(() => []),
    gemm: a.shapes.map(() => builds.map(() => [])),
  };
  const pool = (into: number[][], add: number[][]) => add.forEach((s, i) => into[i].push(...s));
  for (let r = 0; r < a.rounds; r++) {
    pool(
      out.peak,
      time(
        cases.map((c) => c.peak),
        a.perRound,
      ),
    );
    pool(
      out.peakMadd,
      time(
        cases.map((c) => c.peakMadd),
        a.perRound,
      ),
    );
    a.shapes.forEach((_, j) =>
      pool(
        out.gemm[j],
        time(
          cases.map((c) => c.gemms[j]),
          a.perRound,
        ),
      ),
    );
  }
  return out;
}

/** Both builds' peaks and GEMMs in headless Chromium, or why not. */
export async function runChromiumKernelBench(
  opts: { quick?: boolean } = {},
): Promise<ChromiumKernelBench> {
  if (!existsSync(CHROMIUM)) return { unavailable: `${CHROMIUM} is not installed` };
  const isas: KernelIsa[] = ["baseline", "relaxed"];
  const wasm = isas.map((isa) =>
    readFileSync(kernelWasmPath(KERNEL_FILES[isa])).toString("base64"),
  );
  const rounds = opts.quick ? 1 : 4;
  const perRound = opts.quick ? 5 : 12;
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
  } catch (e) {
    return { unavailable: `Chromium did not start: ${(e as Error).message.split("\n")[0]}` };
  }
  try {
    const page = await browser.newPage();
    const origin = "http://localhost:9";
    await page.route(`${origin}/**`, (route) =>
      route.fulfill({
        status: 200,
        contentType: "text/html",
        headers: {
          "Cross-Origin-Opener-Policy": "same-origin",
          "Cross-Origin-Embedder-Policy": "require-corp",
        },
        body: "<!doctype html><title>edgenn kernels</title>",
      }),
    );
    await page.goto(`${origin}/`);
    if (!(await page.evaluate(() => crossOriginIsolated)))
      throw new Error("the page is not cross-origin isolated (its clock would be 100 us)");
    const relaxedRuns = await page.evaluate(
      (b64) => WebAssembly.validate(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))),
      wasm[1],
    );
    const n = relaxedRuns ? 2 : 1;
    const s = await page.evaluate(measureInPage, {
      wasm: wasm.slice(0, n),
      timeSamplesSource: timeSamples.toString(),
      shapes: SHAPES,
      iters: PEAK_ITERS,
      rounds,
      perRound,
    });
    const peak = (xs: number[]) => (PEAK_ITERS * 96) / Math.min(...xs) / 1e6;
    const builds = isas.slice(0, n).map((isa, i): ChromiumBuildBench => ({
      isa,
      simdPeakGflops: peak(s.peak[i]),
      simdPeakMaddGflops: peak(s.peakMadd[i]),
      gemm: SHAPES.map(([M, N, K], j) =>
        gemmRow(`gemm NN M=${M} N=${N} K=${K}`, 2 * M * N * K, s.gemm[j][i]),
      ),
    }));
    return { browser: `Chromium ${browser.version()}`, windows: rounds * perRound, builds };
  } finally {
    await browser.close();
  }
}

export function printChromiumKernelBench(r: ChromiumKernelBench): void {
  if (!r.builds) {
    console.log(`\nkernels in Chromium: not measured (${r.unavailable})`);
    return;
  }
  console.log(
    `\nkernels in headless ${r.browser} (cross-origin isolated page, ${r.windows} windows per row)`,
  );
  const pct = (share: number) => `${(Math.floor(share * 1000) / 10).toFixed(1)}%`;
  for (const b of r.builds) {
    // A build's GEMM against the higher of its two peak loops, as bench/gemm.ts prints it.
    const peak = Math.max(b.simdPeakGflops, b.simdPeakMaddGflops);
    console.log(
      `  ${b.isa} build: peak ${b.simdPeakGflops.toFixed(1)} GFLOP/s (mul+add), ${b.simdPeakMaddGflops.toFixed(1)} (Isa.madd)`,
    );
    for (const g of b.gemm) {
      const share = g.bestGflops / peak;
      console.log(
        `    ${g.name}: ${g.bestGflops.toFixed(1)} GFLOP/s best, ${g.gflops.toFixed(1)} median; ${pct(share)} of the peak, target >= ${GEMM_TARGET * 100}% ${share >= GEMM_TARGET ? "met" : "NOT met"}`,
      );
    }
  }
}
