// gemm_f32 (packed 4x8 SIMD micro-kernel) against its scalar twin, the plain triple loop, and
// against a float64 product computed here: every tail of M (mod 4), N (mod 8) and K, the three
// transposition patterns plus generic strides, bias/clamp/accumulate on and off, the KC/MC/NC
// block boundaries, and guard values around C to catch stray writes.
import { describe, expect, it } from "vitest";
import type { Kernels } from "../src/kernels.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { Bump, rng } from "./bumpArena.js";

type Layout = "NN" | "NT" | "TN" | "TT" | "strided";

interface Strides {
  rsA: number;
  csA: number;
  rsB: number;
  csB: number;
  /** floats each operand needs */
  aLen: number;
  bLen: number;
}

/** Element strides for A[M,K] and B[K,N] stored as the layout says (transposes via strides). */
function strides(layout: Layout, M: number, N: number, K: number): Strides {
  switch (layout) {
    case "NN":
      return { rsA: K, csA: 1, rsB: N, csB: 1, aLen: M * K, bLen: K * N };
    case "NT": // B stored as [N,K] (dX = dY.W^T)
      return { rsA: K, csA: 1, rsB: 1, csB: K, aLen: M * K, bLen: K * N };
    case "TN": // A stored as [K,M] (dW = X^T.dY)
      return { rsA: 1, csA: M, rsB: N, csB: 1, aLen: M * K, bLen: K * N };
    case "TT":
      return { rsA: 1, csA: M, rsB: 1, csB: K, aLen: M * K, bLen: K * N };
    case "strided": // padded leading dimensions and non-unit inner strides: the generic packers
      return {
        rsA: 2 * K + 3,
        csA: 2,
        rsB: 1,
        csB: K + 5,
        aLen: (M - 1) * (2 * K + 3) + 2 * (K - 1) + 1,
        bLen: (N - 1) * (K + 5) + K,
      };
  }
}

interface Case {
  M: number;
  N: number;
  K: number;
  layout: Layout;
  bias: boolean;
  clamp: boolean;
  accumulate: boolean;
  ldcPad: number;
  /** Pack B once with gemm_pack_b_f32, then run gemm_f32_prepacked. */
  prepacked?: boolean;
}

const GUARD = 12345.5;
const LO = -0.25;
const HI = 0.6;

function runCase(k: Kernels, c: Case, seed: number): void {
  const { M, N, K, layout } = c;
  const s = strides(layout, M, N, K);
  const ldc = N + c.ldcPad;
  const r = rng(seed);
  const mem = new Bump(k);
  const A = mem.floats(Math.max(s.aLen, 1));
  const B = mem.floats(Math.max(s.bLen, 1));
  const bias = c.bias ? mem.floats(N) : 0;
  // C with 16 guard floats before and after; the ldc padding columns are guarded too.
  const cLen = (M - 1) * ldc + N;
  const Cs = mem.floats(cLen + 32) + 64;
  const Cw = mem.floats(cLen + 32) + 64;
  const scratch = mem.scratch(k.abi.gemm_scratch_bytes(M, N, K));
  const f = k.f32;
  for (let i = 0; i < s.aLen; i++) f[(A >> 2) + i] = r();
  for (let i = 0; i < s.bLen; i++) f[(B >> 2) + i] = r();
  if (bias) for (let j = 0; j < N; j++) f[(bias >> 2) + j] = r();
  const inC = (idx: number) => idx >= 0 && idx < cLen && idx % ldc < N;
  for (let i = -16; i < cLen + 16; i++) {
    const v = inC(i) ? r() : GUARD;
    f[(Cs >> 2) + i] = v;
    f[(Cw >> 2) + i] = v;
  }
  // float64 reference: sum and sum of magnitudes (for the rounding bound)
  const want = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let acc = 0;
      let m = 0;
      for (let q = 0; q < K; q++) {
        const p = f[(A >> 2) + i * s.rsA + q * s.csA] * f[(B >> 2) + q * s.rsB + j * s.csB];
        acc += p;
        m += Math.abs(p);
      }
      if (c.accumulate) {
        acc += f[(Cs >> 2) + i * ldc + j];
        m += Math.abs(f[(Cs >> 2) + i * ldc + j]);
      }
      if (bias) {
        acc += f[(bias >> 2) + j];
        m += Math.abs(f[(bias >> 2) + j]);
      }
      if (c.clamp) acc = Math.min(Math.max(acc, LO), HI);
      want[i * N + j] = acc;
      mag[i * N + j] = m;
    }
  }
  const lo = c.clamp ? LO : -Infinity;
  const hi = c.clamp ? HI : Infinity;
  const acc = c.accumulate ? 1 : 0;
  if (c.prepacked) {
    const floats = k.abi.gemm_packed_b_floats(K, N);
    expect(floats).toBe(Math.ceil(Math.max(N, 1) / 8) * 8 * Math.max(K, 1));
    const P = mem.floats(floats + 16);
    k.f32.fill(GUARD, (P >> 2) + floats, (P >> 2) + floats + 16);
    k.abi.gemm_pack_b_f32(K, N, B, s.rsB, s.csB, P);
    for (let i = 0; i < 16; i++)
      if (k.f32[(P >> 2) + floats + i] !== GUARD) expect.fail(`pack wrote past ${floats} floats`);
    k.abi.gemm_f32_prepacked(M, N, K, A, s.rsA, s.csA, P, Cs, ldc, bias, lo, hi, acc, scratch);
  } else
    k.abi.gemm_f32(M, N, K, A, s.rsA, s.csA, B, s.rsB, s.csB, Cs, ldc, bias, lo, hi, acc, scratch);
  k.twin("gemm_f32")(M, N, K, A, s.rsA, s.csA, B, s.rsB, s.csB, Cw, ldc, bias, lo, hi, acc, 0);
  const label = `${c.prepacked ? "prepacked " : ""}${layout} M=${M} N=${N} K=${K} bias=${c.bias} clamp=${c.clamp} acc=${c.accumulate} ldc=${ldc}`;
  mem.expectScratchGuards(label);
  const g = k.f32;
  for (let i = -16; i < cLen + 16; i++) {
    const got = g[(Cs >> 2) + i];
    if (!inC(i)) {
      if (got !== GUARD) expect.fail(`${label}: wrote outside C at offset ${i}: ${got}`);
      if (g[(Cw >> 2) + i] !== GUARD) expect.fail(`${label}: twin wrote outside C at ${i}`);
      continue;
    }
    const row = Math.floor(i / ldc);
    const e = row * N + (i % ldc);
    // f32 summation in any order: |error| <= ~K * eps * sum|terms|; 4x margin on eps.
    const tol = 2.4e-7 * (K + 2) * mag[e] + 1e-7;
    const twin = g[(Cw >> 2) + i];
    if (Math.abs(got - want[e]) > tol || Math.abs(twin - want[e]) > tol) {
      expect.fail(
        `${label}: C[${row},${i % ldc}] simd=${got} twin=${twin} float64=${want[e]} tol=${tol}`,
      );
    }
  }
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33];

describe("gemm_f32 (packed 4x8 SIMD) vs scalar twin and float64", () => {
  it("every M, N, K tail in {1..33} for NN/NT/TN, cycling bias/clamp/accumulate", () => {
    const k = loadKernels();
    const layouts: Layout[] = ["NN", "NT", "TN"];
    let n = 0;
    for (const M of SIZES) {
      for (const N of SIZES) {
        for (const K of SIZES) {
          const layout = layouts[n % 3];
          const bits = Math.floor(n / 3);
          runCase(
            k,
            {
              M,
              N,
              K,
              layout,
              bias: (bits & 1) !== 0,
              clamp: (bits & 2) !== 0,
              accumulate: (bits & 4) !== 0,
              ldcPad: n % 5 === 0 ? 3 : 0,
            },
            n,
          );
          n++;
        }
      }
    }
    expect(n).toBe(SIZES.length ** 3);
  });

  it("all 8 epilogue combinations on every layout, including TT and generic strides", () => {
    const k = loadKernels();
    const layouts: Layout[] = ["NN", "NT", "TN", "TT", "strided"];
    let seed = 1000;
    for (const layout of layouts) {
      for (const [M, N, K] of [
        [7, 13, 19],
        [8, 16, 4],
        [33, 9, 65],
        [1, 1, 1],
      ]) {
        for (let bits = 0; bits < 8; bits++) {
          runCase(
            k,
            {
              M,
              N,
              K,
              layout,
              bias: (bits & 1) !== 0,
              clamp: (bits & 2) !== 0,
              accumulate: (bits & 4) !== 0,
              ldcPad: bits & 1 ? 5 : 0,
            },
            seed++,
          );
        }
      }
    }
  });

  it("crosses the K-slice (<= 320, cut into equal depths), MC (128) and NC (1024) boundaries with tails", () => {
    const k = loadKernels();
    // M <= 2 with row-major B: one row at a time, 32/4/1-column steps, B read in place.
    runCase(
      k,
      { M: 2, N: 1063, K: 517, layout: "TN", bias: true, clamp: true, accumulate: true, ldcPad: 1 },
      4,
    );
    // M <= 8 with row-major B reads full B panels in place (no packing); the N tail is packed.
    runCase(
      k,
      { M: 5, N: 1033, K: 517, layout: "NN", bias: true, clamp: true, accumulate: true, ldcPad: 3 },
      6,
    );
    runCase(
      k,
      { M: 8, N: 20, K: 300, layout: "TN", bias: true, clamp: false, accumulate: false, ldcPad: 0 },
      5,
    );
    // NN with M > 8: the first row block's tiles pack the next B panel as they go (fused
    // packing), across the NC block boundary, with a 9-column tail and a second MC block.
    runCase(
      k,
      {
        M: 131,
        N: 1033,
        K: 517,
        layout: "NN",
        bias: true,
        clamp: true,
        accumulate: true,
        ldcPad: 2,
      },
      7,
    );
    runCase(
      k,
      {
        M: 130,
        N: 45,
        K: 300,
        layout: "TN",
        bias: false,
        clamp: false,
        accumulate: true,
        ldcPad: 0,
      },
      8,
    );
    runCase(
      k,
      {
        M: 64,
        N: 257,
        K: 784,
        layout: "NT",
        bias: true,
        clamp: false,
        accumulate: false,
        ldcPad: 1,
      },
      9,
    );
    // NN past the NC block by less than a panel (1029 = 1024 + 5): the fused packing of the first
    // block, none in the 5-column one.
    runCase(
      k,
      { M: 9, N: 1029, K: 40, layout: "NN", bias: true, clamp: true, accumulate: false, ldcPad: 0 },
      11,
    );
    // Four slices (961 = 241 + 240 + 240 + 240) with a short M tail.
    runCase(
      k,
      { M: 7, N: 24, K: 961, layout: "TN", bias: true, clamp: true, accumulate: true, ldcPad: 0 },
      10,
    );
  });

  it("fused packing: each tile of the first row block copies its share of the next B panel's rows", () => {
    const k = loadKernels();
    // [M, N, K]: tiles = ceil(M / 4) against slice depths that they divide or do not, fewer k-steps
    // than tiles (the last tiles copy nothing), two panels only, a partial last tile, two
    // slices, and a second MC block (which reads the panels the first one packed).
    const shapes = [
      [9, 24, 2],
      [61, 40, 37],
      [12, 32, 331],
      [13, 17, 5],
      [9, 16, 9],
      [64, 64, 64],
      [133, 48, 50],
    ];
    let seed = 300;
    for (const [M, N, K] of shapes)
      for (const accumulate of [false, true])
        runCase(
          k,
          { M, N, K, layout: "NN", bias: true, clamp: accumulate, accumulate, ldcPad: 1 },
          seed++,
        );
  });

  it("K = 0 gives clamp(bias (+C)); M = 0 or N = 0 writes nothing", () => {
    const k = loadKernels();
    for (let bits = 0; bits < 16; bits++) {
      runCase(
        k,
        {
          M: bits & 8 ? 2 : 5, // the row kernel (M <= 2) and the packed path
          N: 11,
          K: 0,
          layout: "NN",
          bias: (bits & 1) !== 0,
          clamp: (bits & 2) !== 0,
          accumulate: (bits & 4) !== 0,
          ldcPad: 1,
        },
        bits,
      );
    }
    const mem = new Bump(k);
    const C = mem.floats(64);
    k.abi.fill_f32(C, 64, GUARD);
    k.abi.gemm_f32(0, 8, 8, C, 8, 1, C, 8, 1, C, 8, 0, -Infinity, Infinity, 0, C);
    k.abi.gemm_f32(8, 0, 8, C, 8, 1, C, 8, 1, C, 8, 0, -Infinity, Infinity, 0, C);
    expect(Array.from(k.readF32(C, 64)).every((v) => v === GUARD)).toBe(true);
  });

  it("clamp keeps NaN visible (does not turn it into lo): full tiles, M and N tails, prepacked", () => {
    const k = loadKernels();
    const K = 3;
    // M <= 2: the row kernels (gemmRows, or gemmRowsPacked when prepacked); M > 2: the 4x8 tiles.
    // N = 9 and 13 have an N % 8 tail, stored one column at a time with a scalar clamp.
    for (const prepacked of [false, true])
      for (const M of [1, 2, 3, 4, 5])
        for (const N of [8, 9, 13])
          for (const [lo, hi] of [
            [0, Infinity],
            [-1, 2],
          ]) {
            const label = `${prepacked ? "prepacked " : ""}M=${M} N=${N} clamp [${lo}, ${hi}]`;
            const r = rng(M * 100 + N);
            const mem = new Bump(k);
            const A = mem.floats(M * K);
            const B = mem.floats(K * N);
            const bias = mem.floats(N);
            // Small integers: every sum is exact, so the kernel and its twin agree bit for bit.
            const f = k.f32;
            for (let i = 0; i < M * K; i++) f[(A >> 2) + i] = Math.round(2 * r());
            for (let i = 0; i < K * N; i++) f[(B >> 2) + i] = Math.round(2 * r());
            for (let j = 0; j < N; j++) f[(bias >> 2) + j] = Math.round(2 * r());
            // NaN at A[M-1, 0] and B[1, N-1]: C's last row and last column are NaN.
            f[(A >> 2) + (M - 1) * K] = NaN;
            f[(B >> 2) + 1 * N + (N - 1)] = NaN;
            const Cs = mem.floats(M * N + 16);
            const Cw = mem.floats(M * N + 16);
            f.fill(GUARD, (Cs >> 2) + M * N, (Cs >> 2) + M * N + 16);
            f.fill(GUARD, (Cw >> 2) + M * N, (Cw >> 2) + M * N + 16);
            const scratch = mem.scratch(k.abi.gemm_scratch_bytes(M, N, K));
            if (prepacked) {
              const P = mem.floats(k.abi.gemm_packed_b_floats(K, N));
              k.abi.gemm_pack_b_f32(K, N, B, N, 1, P);
              k.abi.gemm_f32_prepacked(M, N, K, A, K, 1, P, Cs, N, bias, lo, hi, 0, scratch);
            } else k.abi.gemm_f32(M, N, K, A, K, 1, B, N, 1, Cs, N, bias, lo, hi, 0, scratch);
            k.twin("gemm_f32")(M, N, K, A, K, 1, B, N, 1, Cw, N, bias, lo, hi, 0, 0);
            mem.expectScratchGuards(label);
            const got = k.readF32(Cs, M * N + 16);
            const twin = k.readF32(Cw, M * N + 16);
            for (let i = 0; i < M; i++)
              for (let j = 0; j < N; j++) {
                const [g, t] = [got[i * N + j], twin[i * N + j]];
                const nan = i === M - 1 || j === N - 1;
                if (Number.isNaN(t) !== nan) expect.fail(`${label}: twin C[${i},${j}] = ${t}`);
                if (nan ? !Number.isNaN(g) : g !== t)
                  expect.fail(`${label}: C[${i},${j}] simd=${g} twin=${t}`);
              }
            for (let i = M * N; i < M * N + 16; i++)
              if (got[i] !== GUARD || twin[i] !== GUARD) expect.fail(`${label}: wrote past C`);
          }
  });
});

describe("gemm_f32_prepacked (weights packed once) vs scalar twin and float64", () => {
  it("every M, N, K tail in {1..33}, the batch-1/2 row path included, packed from NN and NT", () => {
    const k = loadKernels();
    const layouts: Layout[] = ["NN", "NT", "TN", "strided"];
    let n = 0;
    for (const M of SIZES)
      for (const N of SIZES)
        for (const K of SIZES) {
          const bits = n >> 2;
          runCase(
            k,
            {
              M,
              N,
              K,
              layout: layouts[n % 4],
              bias: (bits & 1) !== 0,
              clamp: (bits & 2) !== 0,
              accumulate: (bits & 4) !== 0,
              ldcPad: n % 7 === 0 ? 2 : 0,
              prepacked: true,
            },
            50_000 + n++,
          );
        }
  });

  it("block boundaries: K across KC, N across NC, M across MC; inference shapes", () => {
    const k = loadKernels();
    let seed = 90_000;
    for (const [M, N, K] of [
      [1, 256, 784],
      [2, 10, 128],
      [1, 1030, 9],
      [3, 256, 784],
      [64, 256, 784],
      [64, 10, 128],
      [130, 33, 257],
      [5, 1030, 520],
      [1, 24, 961],
      [2, 17, 641],
      [9, 40, 641],
    ])
      for (const bits of [0, 3, 5]) {
        runCase(
          k,
          {
            M,
            N,
            K,
            layout: seed % 2 ? "NT" : "NN",
            bias: (bits & 1) !== 0,
            clamp: (bits & 2) !== 0,
            accumulate: (bits & 4) !== 0,
            ldcPad: 0,
            prepacked: true,
          },
          seed++,
        );
      }
  });
});

describe("simd_peak_f32 / simd_peak_madd_f32 (the bench's SIMD peak loops)", () => {
  // Not part of the host ABI: the bench times them. They must still compute what they claim, 12
  // chains x = x*m + a from x0 = 1..12 with m and a read from memory, so a change that made the
  // loop do less work (or read the wrong lanes) would not show up as a faster "peak".
  interface Peak {
    simd_peak_f32(iters: number, ma: number): number;
    simd_peak_madd_f32(iters: number, ma: number): number;
  }
  it("return the lane sum of the 12 chains, m and a taken from the 8 floats at ma", () => {
    const k = loadKernels();
    const peak = k.abi as unknown as Peak;
    const ma = new Bump(k).floats(8);
    const f = Math.fround;
    for (const [m, a] of [
      [0.5, 0.25],
      [f(0.999), f(1e-3)],
      [-1.25, 3],
    ]) {
      k.f32.set([m, m, m, m, a, a, a, a], ma >> 2);
      for (const iters of [0, 1, 2, 7, 50]) {
        // Reference in float32: mul then add, each rounded (the baseline build's bits).
        const chains = Array.from({ length: 12 }, (_, i) => i + 1);
        for (let t = 0; t < iters; t++)
          for (let c = 0; c < 12; c++) chains[c] = f(f(chains[c] * m) + a);
        // The kernel sums the chains pairwise into one vector, then the 4 (equal) lanes in order.
        const pair = (x: number, y: number) => f(x + y);
        const [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11] = chains;
        const s = pair(
          pair(pair(pair(x0, x1), pair(x2, x3)), pair(x4, x5)),
          pair(pair(pair(x6, x7), pair(x8, x9)), pair(x10, x11)),
        );
        const want = f(f(f(s + s) + s) + s);
        expect(peak.simd_peak_f32(iters, ma)).toBe(want);
        // Relaxed build: one FMA per step (one rounding), so close rather than equal.
        const madd = peak.simd_peak_madd_f32(iters, ma);
        if (k.isa === "baseline") expect(madd).toBe(want);
        else expect(Math.abs(madd - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
      }
    }
  });
});
