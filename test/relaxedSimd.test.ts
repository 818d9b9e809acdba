// The relaxed-SIMD kernel build (build/edgenn.relaxed.wasm, assembly/isa.ts) against the baseline
// (build/edgenn.wasm): how the host picks one, and that both compute the same results to rounding.
// Node 20 runs relaxed SIMD only under --experimental-wasm-relaxed-simd, which NODE_OPTIONS does
// not accept, so the comparison runs in a child process (test/relaxedSimdCompare.ts) started with
// the flag; on Node >= 22 the flag is harmless.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../scripts/build-web.mjs";
import { KERNEL_FILES, Kernels, pickKernelIsa, supportsRelaxedSimd } from "../src/kernels.js";
import {
  kernelIsa,
  kernelModulePath,
  kernelWasmPath,
  loadKernels,
} from "../src/node/loadKernels.js";
import type { RelaxedCompareReport } from "./relaxedSimdCompare.js";

const RELAXED_FLAG = "--experimental-wasm-relaxed-simd";

describe("kernel build selection", () => {
  const saved = { isa: process.env.EDGENN_ISA, wasm: process.env.EDGENN_WASM };
  afterEach(() => {
    for (const [key, value] of [
      ["EDGENN_ISA", saved.isa],
      ["EDGENN_WASM", saved.wasm],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it("the probe agrees with the runtime about the real relaxed module; the baseline always validates", () => {
    const relaxed = readFileSync(kernelWasmPath(KERNEL_FILES.relaxed));
    const baseline = readFileSync(kernelWasmPath(KERNEL_FILES.baseline));
    expect(WebAssembly.validate(baseline)).toBe(true);
    // Node 20 without the flag: both false, which also shows the relaxed build holds relaxed opcodes.
    expect(supportsRelaxedSimd()).toBe(WebAssembly.validate(relaxed));
  });

  it("picks the baseline when validation fails and relaxed when it passes or is forced", () => {
    const no = () => false;
    const yes = () => true;
    expect(supportsRelaxedSimd(no)).toBe(false);
    expect(
      supportsRelaxedSimd(() => {
        throw new Error("no WebAssembly.validate here");
      }),
    ).toBe(false);
    expect(supportsRelaxedSimd(yes)).toBe(true);
    expect(pickKernelIsa(undefined, no)).toBe("baseline");
    expect(pickKernelIsa("auto", no)).toBe("baseline");
    expect(pickKernelIsa(undefined, yes)).toBe("relaxed");
    expect(pickKernelIsa("", yes)).toBe("relaxed");
    expect(pickKernelIsa("baseline", yes)).toBe("baseline");
    expect(pickKernelIsa("relaxed", yes)).toBe("relaxed");
    expect(() => pickKernelIsa("relaxed", no)).toThrow(RELAXED_FLAG);
    expect(() => pickKernelIsa("avx512", yes)).toThrow(/unknown kernel ISA "avx512"/);
  });

  it("Node's loader follows EDGENN_ISA, and the loaded module says which build it is", () => {
    delete process.env.EDGENN_WASM;
    process.env.EDGENN_ISA = "baseline";
    expect(kernelModulePath()).toBe(kernelWasmPath("edgenn.wasm"));
    expect(loadKernels().isa).toBe("baseline");

    delete process.env.EDGENN_ISA;
    const auto = supportsRelaxedSimd() ? "relaxed" : "baseline";
    expect(kernelIsa()).toBe(auto);
    expect(loadKernels().isa).toBe(auto);

    process.env.EDGENN_ISA = "relaxed";
    if (supportsRelaxedSimd()) {
      expect(kernelModulePath()).toBe(kernelWasmPath("edgenn.relaxed.wasm"));
      expect(loadKernels().isa).toBe("relaxed");
    } else {
      expect(() => loadKernels()).toThrow(RELAXED_FLAG);
    }
  });

  it("a module built before kernel_isa existed counts as the baseline", () => {
    const k = Kernels.loadSync(readFileSync(kernelWasmPath("edgenn.wasm")));
    Object.defineProperty(k, "abi", { value: { ...k.abi, kernel_isa: undefined } });
    expect(k.isa).toBe("baseline");
  });
});

describe("relaxed and baseline builds agree (child process with relaxed SIMD)", () => {
  let report: RelaxedCompareReport;

  beforeAll(async () => {
    const outfile = join(ROOT, "dist-test", "relaxedSimdCompare.mjs");
    await build({
      entryPoints: [join(ROOT, "test", "relaxedSimdCompare.ts")],
      outfile,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      logLevel: "warning",
    });
    const env = { ...process.env };
    delete env.EDGENN_ISA;
    delete env.EDGENN_WASM;
    const stdout = execFileSync(process.execPath, [RELAXED_FLAG, outfile], {
      env,
      encoding: "utf8",
      timeout: 60_000,
    });
    report = JSON.parse(stdout) as RelaxedCompareReport;
  });

  it("the flagged child picks and runs the relaxed build by itself", () => {
    expect(report.autoIsa).toBe("relaxed");
    expect(report.isa).toEqual({ baseline: "baseline", relaxed: "relaxed" });
  });

  it("gemm (NN/NT/TN, every M/N tail, K slices, epilogue), dense and conv2d fwd/bwd agree within the dot-product rounding bound", () => {
    expect(report.cases.length).toBeGreaterThan(500);
    // Both builds are within ~K*u*S of the exact sum (S = sum of |products|), so they differ by
    // at most ~2*K*u*S: ratio <= 2. Measured <= 0.4 (the worst at K = 5..7). Winograd's
    // transforms could stretch this by their norm (<= 4), but the relaxed ops are only in its
    // channel GEMMs; measured <= 0.03.
    for (const c of report.cases) {
      expect.soft(c.ratio, `${c.name}: |baseline - relaxed| / (K u S)`).toBeLessThanOrEqual(2);
    }
    // The relaxed build really fuses: on CPUs with FMA (x86-64 since 2013, every ARM64) a good
    // share of outputs round differently. If this fails the CPU lacks FMA and relaxed_madd fell
    // back to mul+add: the builds are then identical and the relaxed one brings nothing.
    const gemm = report.cases.filter((c) => c.name.startsWith("gemm") && c.K > 1);
    const differing = gemm.reduce((s, c) => s + c.differing, 0);
    const elements = gemm.reduce((s, c) => s + c.elements, 0);
    expect(differing / elements).toBeGreaterThan(0.2);
    // Bias gradients are plain sums with no multiply: bit-identical.
    for (const c of report.cases.filter((c) => c.name.endsWith(" db")))
      expect.soft(c.differing, c.name).toBe(0);
  });

  it("a short training run and its predictions stay close (not bit-identical)", () => {
    const t = report.training;
    expect(t.lossBaseline).toHaveLength(3);
    for (let e = 0; e < 3; e++) {
      const rel = Math.abs(t.lossBaseline[e] - t.lossRelaxed[e]) / t.lossBaseline[e];
      expect(rel, `epoch ${e + 1} loss`).toBeLessThan(1e-4);
    }
    // 24 Adam steps: rounding differences grow through training but stay far below what changes
    // a prediction (measured ~6e-5).
    expect(t.maxProbDiff).toBeLessThan(2e-3);
    expect(t.argmaxAgree).toBeGreaterThanOrEqual(t.samples - 1);
  });

  it("the relaxed inference-only build is Node's default engine module here and gives the full relaxed build's bits", () => {
    const r = report.inference;
    expect(r.defaultPath).toMatch(/edgenn\.infer\.relaxed\.wasm$/);
    expect(r.files).toBe(16);
    expect(r.outputs).toBeGreaterThan(1000);
    expect(r.differing).toBe(0);
  });
});
