// Kernel micro-benchmarks: the machine's WASM SIMD mul+add peak, gemm_f32 at the shapes Dense
// training uses, and the reference CNN's two Conv2D layers at batch 64 (forward and both backward
// passes). Single thread, medians of several timed runs after a warm-up (the first calls run in
// V8's baseline tier, Liftoff, until TurboFan's code arrives).
//
//   npm run build && node dist/bench/gemm.js [--quick]
//
// `npm run bench` calls runGemmBench() and stores its result object with the training numbers.
import { pathToFileURL } from "node:url";
import type { Kernels } from "../src/kernels.js";
import { loadKernels } from "../src/node/loadKernels.js";

export interface GemmBenchRow {
  name: string;
  /** median milliseconds per call */
  ms: number;
  /** fastest timed batch, ms per call: closest to the uncontended speed on a shared machine */
  bestMs: number;
  /** useful flops per second / 1e9 (2*M*N*K, or the direct convolution's count for conv2d) */
  gflops: number;
}

export interface GemmBenchResult {
  simdPeakGflops: number;
  gemm: GemmBenchRow[];
  conv2d: GemmBenchRow[];
  /** forward + both backward passes of conv layer 2 + forward and filter gradient of layer 1 */
  cnnConvTrainStepMs: number;
  /** the same from the fastest runs */
  cnnConvTrainStepBestMs: number;
}

/** The peak kernel lives in gemm.ts but is not part of the host ABI. */
interface PeakExport {
  simd_peak_f32(iters: number, m: number, a: number): number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median (and best) ms per call of fn over `runs` timed batches, each long enough (>= ~20 ms). */
function timeIt(fn: () => void, runs: number): { ms: number; bestMs: number } {
  for (let i = 0; i < 3; i++) fn(); // warm-up: tier-up to TurboFan
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    if (performance.now() - t0 >= 20 || reps >= 1 << 16) break;
    reps *= 2;
  }
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    samples.push((performance.now() - t0) / reps);
  }
  return { ms: median(samples), bestMs: Math.min(...samples) };
}

class Bump {
  private cursor: number;
  constructor(private readonly k: Kernels) {
    this.cursor = k.heapBase;
  }
  floats(n: number, fill = true): number {
    const p = this.cursor;
    this.cursor = Math.ceil((p + Math.max(n, 1) * 4) / 64) * 64;
    this.k.ensure(this.cursor);
    if (fill) {
      const f = this.k.f32;
      for (let i = 0; i < n; i++) f[(p >> 2) + i] = Math.random() - 0.5;
    }
    return p;
  }
}

function benchGemm(k: Kernels, M: number, N: number, K: number, layout: string, runs: number) {
  const mem = new Bump(k);
  const A = mem.floats(M * K);
  const B = mem.floats(K * N);
  const C = mem.floats(M * N, false);
  const scratch = mem.floats(k.abi.gemm_scratch_bytes(M, N, K) / 4, false);
  // NN: A[M,K] B[K,N]; NT: B stored [N,K] (dX = dY.W^T); TN: A stored [K,M] (dW = X^T.dY).
  const [rsA, csA] = layout[0] === "T" ? [1, M] : [K, 1];
  const [rsB, csB] = layout[1] === "T" ? [1, K] : [N, 1];
  const t = timeIt(
    () =>
      k.abi.gemm_f32(M, N, K, A, rsA, csA, B, rsB, csB, C, N, 0, -Infinity, Infinity, 0, scratch),
    runs,
  );
  const name = `gemm ${layout} M=${M} N=${N} K=${K}`;
  return { name, ...t, gflops: (2 * M * N * K) / t.ms / 1e6 };
}

interface ConvLayer {
  name: string;
  N: number;
  H: number;
  W: number;
  C: number;
  F: number;
}

/** A 3x3 'same' stride-1 conv at batch N: forward, bwd_data, bwd_filter (+ bias gradient). */
function benchConv(k: Kernels, L: ConvLayer, runs: number): GemmBenchRow[] {
  const { N, H, W, C, F } = L;
  const g = [N, H, W, C, 3, 3, 1, 1, 1, 1, H, W, F] as const;
  const mem = new Bump(k);
  const x = mem.floats(N * H * W * C);
  const w = mem.floats(9 * C * F);
  const b = mem.floats(F);
  const y = mem.floats(N * H * W * F, false);
  const dy = mem.floats(N * H * W * F);
  const dx = mem.floats(N * H * W * C, false);
  const dw = mem.floats(9 * C * F, false);
  const db = mem.floats(F, false);
  const scratch = mem.floats(k.abi.conv2d_scratch_bytes(...g) / 4, false);
  const flops = 2 * N * H * W * 9 * C * F; // of the direct convolution
  const row = (pass: string, fn: () => void): GemmBenchRow => {
    const t = timeIt(fn, runs);
    return { name: `conv2d ${L.name} ${pass}`, ...t, gflops: flops / t.ms / 1e6 };
  };
  return [
    row("fwd", () => k.abi.conv2d_nhwc_fwd_f32(...g, x, w, b, y, 0, Infinity, scratch)),
    row("bwd_data", () => k.abi.conv2d_nhwc_bwd_data_f32(...g, dy, w, dx, scratch)),
    row("bwd_filter", () => k.abi.conv2d_nhwc_bwd_filter_f32(...g, x, dy, dw, db, scratch)),
  ];
}

export function runGemmBench(opts: { quick?: boolean; print?: boolean } = {}): GemmBenchResult {
  const runs = opts.quick ? 3 : 7;
  const print = opts.print ?? true;
  const k = loadKernels();

  const peak = k.abi as unknown as PeakExport;
  const iters = 2_000_000;
  const peakMs = timeIt(() => peak.simd_peak_f32(iters, 0.999, 1e-3), runs).bestMs;
  // 12 chains x (4 mul + 4 add) per iteration; a peak is a best case, so the fastest run counts.
  const simdPeakGflops = (iters * 96) / peakMs / 1e6;

  const gemm: GemmBenchRow[] = [
    benchGemm(k, 64, 256, 784, "NN", runs), // Dense 784->256 forward at batch 64
    benchGemm(k, 64, 784, 256, "NT", runs), // its dX = dY.W^T
    benchGemm(k, 784, 256, 64, "TN", runs), // its dW = X^T.dY
    benchGemm(k, 64, 256, 784, "NT", runs),
    benchGemm(k, 64, 256, 784, "TN", runs),
    benchGemm(k, 512, 512, 512, "NN", runs),
    benchGemm(k, 1, 256, 784, "NN", runs), // batch-1 inference (row kernel)
  ];
  const layers: ConvLayer[] = [
    { name: "28x28x1->32", N: 64, H: 28, W: 28, C: 1, F: 32 },
    { name: "14x14x32->64", N: 64, H: 14, W: 14, C: 32, F: 64 },
  ];
  const conv2d = layers.flatMap((L) => benchConv(k, L, runs));
  // Layer 1 needs no input gradient in training.
  const trainStep = conv2d.filter(
    (r) => !(r.name.includes("28x28x1") && r.name.endsWith("bwd_data")),
  );
  const cnnConvTrainStepMs = trainStep.reduce((s, r) => s + r.ms, 0);
  const cnnConvTrainStepBestMs = trainStep.reduce((s, r) => s + r.bestMs, 0);

  const result = { simdPeakGflops, gemm, conv2d, cnnConvTrainStepMs, cnnConvTrainStepBestMs };
  if (print) {
    console.log(`\nWASM SIMD mul+add peak: ${simdPeakGflops.toFixed(1)} GFLOP/s (single thread)`);
    console.log(
      "kernel                                  | median ms | GFLOP/s |  best ms | GFLOP/s",
    );
    for (const r of [...gemm, ...conv2d]) {
      const bestG = (r.gflops * r.ms) / r.bestMs;
      console.log(
        `${r.name.padEnd(39)} | ${r.ms.toFixed(3).padStart(9)} | ${r.gflops.toFixed(1).padStart(7)} | ${r.bestMs.toFixed(3).padStart(8)} | ${bestG.toFixed(1).padStart(7)}`,
      );
    }
    console.log(
      `cnn conv layers per training step (batch 64; layer 1 without bwd_data): ${cnnConvTrainStepMs.toFixed(1)} ms median, ${cnnConvTrainStepBestMs.toFixed(1)} ms best`,
    );
  }
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runGemmBench({ quick: process.argv.includes("--quick") });
}
