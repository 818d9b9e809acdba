// Child process of test/relaxedSimd.test.ts: loads build/edgenn.wasm and build/edgenn.relaxed.wasm
// side by side and runs the same seeded inputs through both. Node 20 compiles relaxed SIMD only
// with --experimental-wasm-relaxed-simd, a V8 flag that NODE_OPTIONS refuses, so the test bundles
// this file (esbuild, into dist-test/) and spawns `node --experimental-wasm-relaxed-simd` on it.
// Prints one JSON object (RelaxedCompareReport) on stdout.
//
// Error measure: a length-K dot product computed with any summation order and either rounding
// (mul then add, or FMA) is within about K*u*sum|a_k*b_k| of the exact value (u = 2^-24), so the
// two builds differ by at most ~2*K*u*S, S the same sum over absolute values (computed by the
// scalar twin on |inputs|). Each case reports max |baseline - relaxed| / (K*u*S) per element.
import { readFileSync } from "node:fs";
import { Kernels } from "../src/kernels.js";
import { Model } from "../src/model.js";
import { InferenceEngine } from "../src/engine.js";
import { kernelIsa, kernelModulePath, kernelWasmPath } from "../src/node/loadKernels.js";
import type { ModelSpec } from "../src/spec.js";
import { fit } from "../src/train.js";
import { engineTestFiles, predictBits, randomInputs } from "./exportFixtures.js";

const U = 2 ** -24;

export interface CaseResult {
  name: string;
  /** dot-product length of the worst element's output */
  K: number;
  /** max over elements of |baseline - relaxed| / (K*u*S) */
  ratio: number;
  /** max |baseline - relaxed| */
  maxAbs: number;
  /** elements whose value differs between the builds (0 where the CPU has no FMA) */
  differing: number;
  elements: number;
}

export interface TrainingResult {
  lossBaseline: number[];
  lossRelaxed: number[];
  /** max |p_baseline - p_relaxed| over the predicted probabilities */
  maxProbDiff: number;
  argmaxAgree: number;
  samples: number;
}

/** The relaxed inference-only build against the relaxed full build, through the engine. */
export interface InferenceBuildResult {
  /** the module Node's engine loads by default in this (flagged) process */
  defaultPath: string;
  files: number;
  outputs: number;
  /** outputs whose bits differ (must be 0: same kernels, same code) */
  differing: number;
}

export interface RelaxedCompareReport {
  /** what kernelIsa() picks with EDGENN_ISA unset in this (flagged) process */
  autoIsa: string;
  isa: { baseline: string; relaxed: string };
  cases: CaseResult[];
  training: TrainingResult;
  inference: InferenceBuildResult;
}

/** mulberry32 floats in [lo, hi). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    a[i] = lo + ((hi - lo) * ((t ^ (t >>> 14)) >>> 0)) / 4294967296;
  }
  return a;
}

const abs = (a: Float32Array) => a.map(Math.abs);

/** Places inputs and output buffers in a fresh instance's memory, runs `call`, reads the outputs. */
function run(
  k: Kernels,
  inputs: Float32Array[],
  outLens: number[],
  scratchBytes: number,
  call: (inPtrs: number[], outPtrs: number[], scratch: number) => void,
): Float32Array[] {
  let cursor = Math.ceil((k.heapBase + 64) / 64) * 64;
  const alloc = (floats: number) => {
    const p = cursor;
    cursor = Math.ceil((p + Math.max(floats, 1) * 4 + 64) / 64) * 64;
    k.ensure(cursor);
    return p;
  };
  const inPtrs = inputs.map((a) => {
    const p = alloc(a.length);
    k.writeF32(p, a);
    return p;
  });
  const outPtrs = outLens.map((n) => {
    const p = alloc(n);
    k.f32.fill(0, p >>> 2, (p >>> 2) + n);
    return p;
  });
  const scratch = alloc(scratchBytes / 4);
  call(inPtrs, outPtrs, scratch);
  return outPtrs.map((p, i) => k.readF32(p, outLens[i]));
}

function compare(
  name: string,
  K: number,
  base: Float32Array,
  relaxed: Float32Array,
  S: Float32Array,
) {
  let ratio = 0;
  let maxAbs = 0;
  let differing = 0;
  for (let i = 0; i < base.length; i++) {
    const d = Math.abs(base[i] - relaxed[i]);
    if (Number.isNaN(d))
      return { name, K, ratio: Infinity, maxAbs: NaN, differing, elements: base.length };
    if (d > 0) differing++;
    maxAbs = Math.max(maxAbs, d);
    // The bound's floor: an exact 0 sum still allows the last rounding of a nonzero bias etc.
    ratio = Math.max(ratio, d / (Math.max(K, 1) * U * S[i] + Number.MIN_VALUE));
  }
  return { name, K, ratio, maxAbs, differing, elements: base.length };
}

function gemmCases(k0: Kernels, k1: Kernels, out: CaseResult[]): void {
  const shapes: [number, number, number][] = [];
  for (const M of [1, 2, 3, 5, 8, 9])
    for (const N of [1, 3, 4, 7, 8, 13, 33])
      for (const K of [1, 7, 64, 300]) shapes.push([M, N, K]);
  shapes.push([64, 256, 784], [130, 40, 20]); // the Dense 784->256 shape (K > one 256-deep slice); M > MC
  let seed = 1;
  for (const layout of ["NN", "NT", "TN"]) {
    for (const [M, N, K] of shapes) {
      // bias + clamp + accumulate on a subset: the epilogue must not change the comparison.
      const epilogue = seed % 3 === 0;
      const A = uniform(M * K, seed++);
      const B = uniform(K * N, seed++);
      const C0 = epilogue ? uniform(M * N, seed++) : new Float32Array(M * N);
      const bias = uniform(N, seed++);
      const [rsA, csA] = layout[0] === "T" ? [1, M] : [K, 1];
      const [rsB, csB] = layout[1] === "T" ? [1, K] : [N, 1];
      const lo = epilogue ? -0.5 : -Infinity;
      const gemm = (
        k: Kernels,
        a: Float32Array,
        b: Float32Array,
        c0: Float32Array,
        bs: Float32Array,
        scalar: boolean,
      ) =>
        run(
          k,
          [a, b, c0, bs],
          [M * N],
          k.abi.gemm_scratch_bytes(M, N, K),
          ([pa, pb, pc0, pbias], [pc], s) => {
            k.f32.copyWithin(pc >>> 2, pc0 >>> 2, (pc0 >>> 2) + M * N);
            const f = scalar ? k.twin("gemm_f32") : k.abi.gemm_f32;
            f(
              M,
              N,
              K,
              pa,
              rsA,
              csA,
              pb,
              rsB,
              csB,
              pc,
              N,
              epilogue ? pbias : 0,
              scalar ? -Infinity : lo,
              Infinity,
              epilogue ? 1 : 0,
              s,
            );
          },
        )[0];
      const r0 = gemm(k0, A, B, C0, bias, false);
      const r1 = gemm(k1, A, B, C0, bias, false);
      const S = gemm(k0, abs(A), abs(B), abs(C0), abs(bias), true);
      const name = `gemm ${layout} M=${M} N=${N} K=${K}${epilogue ? " +C +bias clamp" : ""}`;
      out.push(compare(name, K, r0, r1, S));
    }
  }
}

function denseCases(k0: Kernels, k1: Kernels, out: CaseResult[]): void {
  for (const [B, In, Out] of [
    [1, 784, 256],
    [5, 37, 19],
    [64, 256, 128],
  ]) {
    const x = uniform(B * In, 100 + B);
    const w = uniform(In * Out, 200 + B, -0.1, 0.1);
    const b = uniform(Out, 300 + B);
    const dy = uniform(B * Out, 400 + B);
    const sb = k0.abi.dense_scratch_bytes(B, In, Out);
    const fwd = (k: Kernels, scalar: boolean, xs = x, ws = w, bs = b) =>
      run(k, [xs, ws, bs], [B * Out], sb, ([px, pw, pb], [py], s) =>
        (scalar ? k.twin("dense_fwd_f32") : k.abi.dense_fwd_f32)(
          B,
          In,
          Out,
          px,
          pw,
          pb,
          py,
          -Infinity,
          Infinity,
          s,
        ),
      )[0];
    const bwd = (k: Kernels, scalar: boolean, xs = x, ws = w, dys = dy) =>
      run(k, [xs, ws, dys], [B * In, In * Out, Out], sb, ([px, pw, pdy], [pdx, pdw, pdb], s) =>
        (scalar ? k.twin("dense_bwd_f32") : k.abi.dense_bwd_f32)(
          B,
          In,
          Out,
          px,
          pw,
          pdy,
          pdx,
          pdw,
          pdb,
          s,
        ),
      );
    const tag = `dense B=${B} In=${In} Out=${Out}`;
    out.push(
      compare(
        `${tag} fwd`,
        In,
        fwd(k0, false),
        fwd(k1, false),
        fwd(k0, true, abs(x), abs(w), abs(b)),
      ),
    );
    const [g0, g1, gs] = [bwd(k0, false), bwd(k1, false), bwd(k0, true, abs(x), abs(w), abs(dy))];
    out.push(compare(`${tag} bwd dx`, Out, g0[0], g1[0], gs[0]));
    out.push(compare(`${tag} bwd dw`, B, g0[1], g1[1], gs[1]));
    out.push(compare(`${tag} bwd db`, B, g0[2], g1[2], gs[2]));
  }
}

interface ConvCase {
  name: string;
  N: number;
  H: number;
  W: number;
  C: number;
  F: number;
  K: number;
  S: number;
  pad: number;
}

function convCases(k0: Kernels, k1: Kernels, out: CaseResult[]): void {
  const cases: ConvCase[] = [
    { name: "implicit 12x12x1->8 3x3", N: 2, H: 12, W: 12, C: 1, F: 8, K: 3, S: 1, pad: 1 },
    { name: "implicit 11x11x3->16 5x5 valid", N: 2, H: 11, W: 11, C: 3, F: 16, K: 5, S: 1, pad: 0 },
    { name: "winograd 8x8x16->16 3x3", N: 2, H: 8, W: 8, C: 16, F: 16, K: 3, S: 1, pad: 1 },
    { name: "winograd 7x7x32->64 3x3", N: 2, H: 7, W: 7, C: 32, F: 64, K: 3, S: 1, pad: 1 },
    { name: "im2col 9x9x5->6 3x3/2", N: 2, H: 9, W: 9, C: 5, F: 6, K: 3, S: 2, pad: 1 },
    { name: "pointwise 5x5x12->20 1x1", N: 2, H: 5, W: 5, C: 12, F: 20, K: 1, S: 1, pad: 0 },
  ];
  let seed = 500;
  for (const c of cases) {
    const OH = Math.floor((c.H + 2 * c.pad - c.K) / c.S) + 1;
    const OW = Math.floor((c.W + 2 * c.pad - c.K) / c.S) + 1;
    const g = [c.N, c.H, c.W, c.C, c.K, c.K, c.S, c.S, c.pad, c.pad, OH, OW, c.F] as const;
    const x = uniform(c.N * c.H * c.W * c.C, seed++);
    const w = uniform(c.K * c.K * c.C * c.F, seed++, -0.3, 0.3);
    const b = uniform(c.F, seed++);
    const dy = uniform(c.N * OH * OW * c.F, seed++);
    const sb = k0.abi.conv2d_scratch_bytes(...g);
    const nx = c.N * c.H * c.W * c.C;
    const ny = c.N * OH * OW * c.F;
    const nw = c.K * c.K * c.C * c.F;
    const fwd = (k: Kernels, scalar: boolean, xs = x, ws = w, bs = b) =>
      run(k, [xs, ws, bs], [ny], sb, ([px, pw, pb], [py], s) =>
        (scalar ? k.twin("conv2d_nhwc_fwd_f32") : k.abi.conv2d_nhwc_fwd_f32)(
          ...g,
          px,
          pw,
          pb,
          py,
          -Infinity,
          Infinity,
          s,
        ),
      )[0];
    const bwdData = (k: Kernels, scalar: boolean, dys = dy, ws = w) =>
      run(k, [dys, ws], [nx], sb, ([pdy, pw], [pdx], s) =>
        (scalar ? k.twin("conv2d_nhwc_bwd_data_f32") : k.abi.conv2d_nhwc_bwd_data_f32)(
          ...g,
          pdy,
          pw,
          pdx,
          s,
        ),
      )[0];
    const bwdFilter = (k: Kernels, scalar: boolean, xs = x, dys = dy) =>
      run(k, [xs, dys], [nw, c.F], sb, ([px, pdy], [pdw, pdb], s) =>
        (scalar ? k.twin("conv2d_nhwc_bwd_filter_f32") : k.abi.conv2d_nhwc_bwd_filter_f32)(
          ...g,
          px,
          pdy,
          pdw,
          pdb,
          s,
        ),
      );
    const tag = `conv2d ${c.name}`;
    out.push(
      compare(
        `${tag} fwd`,
        c.K * c.K * c.C,
        fwd(k0, false),
        fwd(k1, false),
        fwd(k0, true, abs(x), abs(w), abs(b)),
      ),
    );
    out.push(
      compare(
        `${tag} bwd_data`,
        c.K * c.K * c.F,
        bwdData(k0, false),
        bwdData(k1, false),
        bwdData(k0, true, abs(dy), abs(w)),
      ),
    );
    const [f0, f1, fs] = [
      bwdFilter(k0, false),
      bwdFilter(k1, false),
      bwdFilter(k0, true, abs(x), abs(dy)),
    ];
    out.push(compare(`${tag} bwd_filter dw`, c.N * OH * OW, f0[0], f1[0], fs[0]));
    out.push(compare(`${tag} bwd_filter db`, c.N * OH * OW, f0[1], f1[1], fs[1]));
  }
}

/** A small CNN touching every relaxed path: implicit conv (C=1), Winograd (16->16), dense GEMMs. */
function trainingSpec(): ModelSpec {
  return {
    inputShape: [12, 12, 1],
    layers: [
      { type: "conv2d", filters: 16, kernelSize: 3, padding: "same" },
      { type: "batchNorm" },
      { type: "relu" },
      { type: "conv2d", filters: 16, kernelSize: 3, padding: "same" },
      { type: "relu" },
      { type: "maxPool2d", poolSize: 2 },
      { type: "flatten" },
      { type: "dense", units: 32 },
      { type: "relu" },
      { type: "dense", units: 10 },
      { type: "softmax" },
    ],
  };
}

async function training(m0: WebAssembly.Module, m1: WebAssembly.Module): Promise<TrainingResult> {
  const n = 256;
  const x = uniform(n * 144, 900, 0, 1);
  // Learnable labels: the brightest of ten pixel groups.
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < 10; c++) if (x[i * 144 + c * 14] > x[i * 144 + best * 14]) best = c;
    y[i] = best;
  }
  const one = async (m: WebAssembly.Module) => {
    const model = new Model(Kernels.loadSync(m), trainingSpec(), {
      seed: 7,
      optimizer: { type: "adam", learningRate: 1e-3 },
    });
    const losses: number[] = [];
    await fit(model, x, y, {
      epochs: 3,
      batchSize: 32,
      onEpochEnd: (l) => void losses.push(l.loss),
    });
    return { losses, probs: model.predict(x.subarray(0, 64 * 144)) };
  };
  const [a, b] = [await one(m0), await one(m1)];
  let maxProbDiff = 0;
  let argmaxAgree = 0;
  for (let s = 0; s < 64; s++) {
    let ia = 0;
    let ib = 0;
    for (let c = 0; c < 10; c++) {
      maxProbDiff = Math.max(maxProbDiff, Math.abs(a.probs[s * 10 + c] - b.probs[s * 10 + c]));
      if (a.probs[s * 10 + c] > a.probs[s * 10 + ia]) ia = c;
      if (b.probs[s * 10 + c] > b.probs[s * 10 + ib]) ib = c;
    }
    if (ia === ib) argmaxAgree++;
  }
  return { lossBaseline: a.losses, lossRelaxed: b.losses, maxProbDiff, argmaxAgree, samples: 64 };
}

function inferenceBuild(full: WebAssembly.Module): InferenceBuildResult {
  const infer = new WebAssembly.Module(readFileSync(kernelWasmPath("edgenn.infer.relaxed.wasm")));
  const files = engineTestFiles(12);
  let outputs = 0;
  let differing = 0;
  for (const [, file] of files)
    for (const maxBatch of [1, 64]) {
      const [a, b] = [infer, full].map((module) => {
        const e = InferenceEngine.loadSync({ module, bytes: file }, { maxBatch });
        return predictBits(e, randomInputs(maxBatch * e.inputSize, maxBatch), maxBatch);
      });
      outputs += a.length;
      for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) differing++;
    }
  return { defaultPath: kernelModulePath("inference"), files: files.length, outputs, differing };
}

async function main(): Promise<void> {
  const m0 = new WebAssembly.Module(readFileSync(kernelWasmPath("edgenn.wasm")));
  const m1 = new WebAssembly.Module(readFileSync(kernelWasmPath("edgenn.relaxed.wasm")));
  const k0 = Kernels.loadSync(m0);
  const k1 = Kernels.loadSync(m1);
  const cases: CaseResult[] = [];
  gemmCases(k0, k1, cases);
  denseCases(k0, k1, cases);
  convCases(k0, k1, cases);
  const report: RelaxedCompareReport = {
    autoIsa: kernelIsa(),
    isa: { baseline: k0.isa, relaxed: k1.isa },
    cases,
    training: await training(m0, m1),
    inference: inferenceBuild(m1),
  };
  process.stdout.write(JSON.stringify(report));
}

await main();
