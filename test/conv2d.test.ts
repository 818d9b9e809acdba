// Conv2D NHWC (im2col + GEMM) against three oracles: its scalar twins (direct 7-nested loops),
// TensorFlow.js's conv2d on the cpu backend, and central finite differences of loss = sum(y * r)
// for both backward passes.
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { Kernels } from "../src/kernels.js";
import { kernelModule, loadKernels } from "../src/node/loadKernels.js";
import { Bump, rng } from "./bumpArena.js";

interface Conv {
  N: number;
  H: number;
  W: number;
  C: number;
  KH: number;
  KW: number;
  SH: number;
  SW: number;
  F: number;
  /** TF's "same"/"valid", or explicit zero rows/cols before the image and output size. */
  padding: "same" | "valid" | { padT: number; padL: number; OH: number; OW: number };
}

/** The 13 shape arguments every conv2d kernel takes, with TF's same/valid padding arithmetic. */
function geometry(c: Conv): number[] {
  let OH: number, OW: number, padT: number, padL: number;
  if (c.padding === "same") {
    OH = Math.ceil(c.H / c.SH);
    OW = Math.ceil(c.W / c.SW);
    // TF puts the odd padding row/col after the image.
    padT = Math.floor(Math.max((OH - 1) * c.SH + c.KH - c.H, 0) / 2);
    padL = Math.floor(Math.max((OW - 1) * c.SW + c.KW - c.W, 0) / 2);
  } else if (typeof c.padding === "object") {
    ({ padT, padL, OH, OW } = c.padding);
  } else {
    OH = Math.ceil((c.H - c.KH + 1) / c.SH);
    OW = Math.ceil((c.W - c.KW + 1) / c.SW);
    padT = 0;
    padL = 0;
  }
  return [c.N, c.H, c.W, c.C, c.KH, c.KW, c.SH, c.SW, padT, padL, OH, OW, c.F];
}

function describeConv(c: Conv): string {
  const pad = typeof c.padding === "object" ? JSON.stringify(c.padding) : c.padding;
  return `N${c.N} ${c.H}x${c.W}x${c.C} k${c.KH}x${c.KW} s${c.SH}x${c.SW} F${c.F} ${pad}`;
}

/** Max |a-b| / (scale + |b|) must stay under tol. */
function expectClose(
  got: Float32Array,
  want: ArrayLike<number>,
  tol: number,
  what: string,
  scale = 1,
): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (scale + Math.abs(want[i]));
    if (!(err <= tol)) expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tol ${tol})`);
  }
}

/** Floats after every output buffer of the twin comparison; a kernel writing one overran. */
const OUT_GUARDS = 16;
const OUT_GUARD = -31337.75;

/** n floats for a kernel's output, then OUT_GUARDS guard floats (a gap before the next buffer). */
function guardedOutput(k: Kernels, mem: Bump, n: number): number {
  const p = mem.floats(n + OUT_GUARDS);
  k.f32.fill(OUT_GUARD, (p >> 2) + n, (p >> 2) + n + OUT_GUARDS);
  return p;
}

/** The guard floats after an output of n floats are intact. */
function expectOutputGuards(k: Kernels, p: number, n: number, what: string): void {
  const f = k.f32;
  for (let i = 0; i < OUT_GUARDS; i++) {
    if (f[(p >> 2) + n + i] !== OUT_GUARD)
      expect.fail(`${what}: wrote past its output (+${i * 4} bytes)`);
  }
}

const CASES: Conv[] = [
  { N: 1, H: 1, W: 1, C: 1, KH: 1, KW: 1, SH: 1, SW: 1, F: 1, padding: "valid" },
  { N: 2, H: 5, W: 5, C: 1, KH: 3, KW: 3, SH: 1, SW: 1, F: 8, padding: "same" },
  { N: 2, H: 7, W: 6, C: 3, KH: 3, KW: 3, SH: 1, SW: 1, F: 5, padding: "same" },
  { N: 1, H: 7, W: 6, C: 2, KH: 3, KW: 2, SH: 2, SW: 2, F: 3, padding: "valid" },
  { N: 2, H: 8, W: 9, C: 5, KH: 2, KW: 3, SH: 2, SW: 1, F: 10, padding: "same" },
  { N: 3, H: 6, W: 6, C: 4, KH: 1, KW: 5, SH: 1, SW: 2, F: 9, padding: "same" },
  { N: 2, H: 5, W: 4, C: 6, KH: 1, KW: 1, SH: 1, SW: 1, F: 7, padding: "valid" }, // pointwise
  { N: 2, H: 9, W: 7, C: 3, KH: 1, KW: 1, SH: 2, SW: 2, F: 4, padding: "same" },
  { N: 1, H: 10, W: 10, C: 2, KH: 5, KW: 5, SH: 3, SW: 3, F: 6, padding: "same" },
  { N: 2, H: 4, W: 4, C: 3, KH: 4, KW: 4, SH: 1, SW: 1, F: 2, padding: "valid" },
  { N: 1, H: 3, W: 3, C: 2, KH: 1, KW: 1, SH: 3, SW: 3, F: 3, padding: "valid" }, // skipped pixels
  { N: 2, H: 6, W: 6, C: 2, KH: 2, KW: 2, SH: 3, SW: 3, F: 3, padding: "valid" }, // stride > kernel
  // Several im2col chunks (rows x KH*KW*C > 65536 floats), chunk boundaries mid-image.
  { N: 5, H: 21, W: 19, C: 8, KH: 3, KW: 3, SH: 1, SW: 1, F: 12, padding: "same" },
  // Several chunks on the im2col path in every pass (C > 32: not implicit; not Winograd): w and
  // w^T are packed once for all chunks.
  { N: 2, H: 9, W: 9, C: 40, KH: 5, KW: 5, SH: 1, SW: 1, F: 12, padding: "same" },
  { N: 6, H: 16, W: 14, C: 36, KH: 3, KW: 3, SH: 2, SW: 1, F: 10, padding: "same" },
  // Winograd F(2x2,3x3) path (3x3, stride 1, C and F >= 16 and multiples of 4): odd output sizes
  // (partial tiles), valid and unusual padding, several tile chunks with a boundary mid-image.
  { N: 3, H: 14, W: 14, C: 32, KH: 3, KW: 3, SH: 1, SW: 1, F: 64, padding: "same" },
  { N: 2, H: 7, W: 9, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 20, padding: "same" },
  { N: 1, H: 9, W: 6, C: 20, KH: 3, KW: 3, SH: 1, SW: 1, F: 16, padding: "valid" },
  { N: 2, H: 11, W: 11, C: 64, KH: 3, KW: 3, SH: 1, SW: 1, F: 64, padding: "same" },
  {
    ...{ N: 2, H: 6, W: 7, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 16 },
    padding: { padT: 0, padL: 2, OH: 5, OW: 6 },
  },
  {
    ...{ N: 1, H: 5, W: 5, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 24 },
    padding: { padT: 2, padL: 2, OH: 7, OW: 7 }, // "full": windows hang 2 over every side
  },
  {
    ...{ N: 1, H: 4, W: 5, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 16 },
    padding: { padT: 3, padL: 1, OH: 8, OW: 5 }, // padT > 2: bwd data leaves Winograd
  },
  // Implicit-GEMM path (C < 8, F a multiple of 8): pixel-count and tap-count tails, strides,
  // non-square kernels, valid and unusual padding.
  { N: 2, H: 7, W: 5, C: 1, KH: 3, KW: 3, SH: 1, SW: 1, F: 16, padding: "same" },
  { N: 3, H: 9, W: 8, C: 3, KH: 5, KW: 5, SH: 2, SW: 2, F: 8, padding: "same" },
  { N: 1, H: 8, W: 11, C: 2, KH: 2, KW: 3, SH: 1, SW: 2, F: 24, padding: "valid" },
  { N: 2, H: 6, W: 6, C: 5, KH: 1, KW: 2, SH: 3, SW: 1, F: 8, padding: "same" },
  {
    ...{ N: 2, H: 5, W: 6, C: 7, KH: 3, KW: 3, SH: 1, SW: 1, F: 16 },
    padding: { padT: 2, padL: 0, OH: 5, OW: 3 }, // padding beyond "same"; last rows unused
  },
  // Just outside the Winograd conditions (C not a multiple of 4; F < 16): the im2col path.
  { N: 2, H: 6, W: 6, C: 18, KH: 3, KW: 3, SH: 1, SW: 1, F: 16, padding: "same" },
  { N: 2, H: 6, W: 6, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 12, padding: "same" },
];

describe("conv2d NHWC: SIMD kernels vs scalar twins", () => {
  it("forward (bias on/off, clamp on/off), bwd_data and bwd_filter (db on/off)", () => {
    const k = loadKernels();
    let seed = 1;
    for (const c of CASES) {
      const [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] = geometry(c);
      const args = [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] as const;
      const what = describeConv(c);
      const nx = N * H * W * C;
      const nw = KH * KW * C * F;
      const ny = N * OH * OW * F;
      const kdim = KH * KW * C;
      for (const variant of [0, 1]) {
        const r = rng(seed++);
        const mem = new Bump(k);
        const x = mem.random(nx, r);
        const w = mem.random(nw, r);
        const bias = variant ? mem.random(F, r) : 0;
        const dy = mem.random(ny, r);
        const scratch = mem.scratch(k.abi.conv2d_scratch_bytes(...args));
        // Every output has guard floats after it, and the twins' outputs come after all the SIMD
        // ones: an overrun cannot land in a buffer a later call rewrites before the comparison.
        const out = (n: number): number => guardedOutput(k, mem, n);
        const [y, dx, dw, db] = [out(ny), out(nx), out(nw), out(F)];
        const [yT, dxT, dwT, dbT] = [out(ny), out(nx), out(nw), out(F)];
        type Out = readonly [string, number, number];
        const simdOuts: Out[] = [
          ["y", y, ny],
          ["dx", dx, nx],
          ["dw", dw, nw],
          ["db", db, F],
        ];
        const twinOuts: Out[] = [
          ["yT", yT, ny],
          ["dxT", dxT, nx],
          ["dwT", dwT, nw],
          ["dbT", dbT, F],
        ];
        const guards = (outs: Out[], after: string): void => {
          for (const [name, p, n] of outs)
            expectOutputGuards(k, p, n, `${name} after ${after} ${what}`);
        };
        const lo = variant ? 0 : -Infinity;
        const hi = variant ? 0.5 : Infinity;
        k.abi.fill_f32(dx, nx, 7); // must be overwritten, not accumulated into
        k.abi.fill_f32(dw, nw, 7);
        k.abi.fill_f32(db, F, 7);
        k.abi.conv2d_nhwc_fwd_f32(...args, x, w, bias, y, lo, hi, scratch);
        guards(simdOuts, "fwd");
        k.twin("conv2d_nhwc_fwd_f32")(...args, x, w, bias, yT, lo, hi, 0);
        k.abi.conv2d_nhwc_bwd_data_f32(...args, dy, w, dx, scratch);
        guards(simdOuts, "bwd_data");
        k.twin("conv2d_nhwc_bwd_data_f32")(...args, dy, w, dxT, 0);
        k.abi.conv2d_nhwc_bwd_filter_f32(...args, x, dy, dw, variant ? db : 0, scratch);
        guards(simdOuts, "bwd_filter");
        k.twin("conv2d_nhwc_bwd_filter_f32")(...args, x, dy, dwT, dbT, 0);
        guards(twinOuts, "the twins");
        mem.expectScratchGuards(what);
        expectClose(k.readF32(y, ny), k.readF32(yT, ny), 3e-7 * (kdim + 2), `y ${what}`);
        expectClose(k.readF32(dx, nx), k.readF32(dxT, nx), 3e-7 * (KH * KW * F + 2), `dx ${what}`);
        const rows = N * OH * OW;
        expectClose(k.readF32(dw, nw), k.readF32(dwT, nw), 3e-7 * (rows + 2), `dw ${what}`);
        if (variant) {
          expectClose(k.readF32(db, F), k.readF32(dbT, F), 3e-7 * (rows + 2), `db ${what}`);
        } else {
          expect(Array.from(k.readF32(db, F)).every((v) => v === 7)).toBe(true);
        }
      }
    }
  });
});

describe("conv2d NHWC forward from prepared weights (the inference engine's Winograd convs)", () => {
  it("prepares exactly the Winograd convs and gives conv2d_nhwc_fwd_f32's bits, in the full and the inference build", () => {
    for (const k of [loadKernels(), Kernels.loadSync(kernelModule("inference"))]) {
      let seed = 100;
      let preparedCases = 0;
      for (const c of CASES) {
        const [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] = geometry(c);
        const what = describeConv(c);
        const n = k.abi.conv2d_prepared_weights_floats(C, F, KH, KW, SH, SW);
        const winograd = KH === 3 && KW === 3 && SH === 1 && SW === 1;
        const applies = winograd && C >= 16 && F >= 16 && C % 4 === 0 && F % 4 === 0;
        expect(n > 0, what).toBe(applies);
        if (!applies) continue;
        preparedCases++;
        const args = [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] as const;
        const ny = N * OH * OW * F;
        for (const variant of [0, 1]) {
          const r = rng(seed++);
          const mem = new Bump(k);
          const x = mem.random(N * H * W * C, r);
          const w = mem.random(KH * KW * C * F, r);
          const bias = variant ? mem.random(F, r) : 0;
          // The engine prepares with a batch-1 scratch and runs with the largest batch's.
          const prepScratch = mem.scratch(
            k.abi.conv2d_scratch_bytes(1, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F),
          );
          const scratch = mem.scratch(k.abi.conv2d_scratch_bytes(...args));
          const prepared = guardedOutput(k, mem, n);
          const [y, yP] = [guardedOutput(k, mem, ny), guardedOutput(k, mem, ny)];
          const lo = variant ? 0 : -Infinity;
          const hi = variant ? 0.5 : Infinity;
          k.abi.conv2d_prepare_weights_f32(C, F, w, prepared, prepScratch);
          expectOutputGuards(k, prepared, n, `prepared ${what}`);
          k.abi.conv2d_nhwc_fwd_f32(...args, x, w, bias, y, lo, hi, scratch);
          k.abi.conv2d_nhwc_fwd_prepared_f32(
            ...([N, H, W, C, padT, padL, OH, OW, F] as const),
            x,
            prepared,
            bias,
            yP,
            lo,
            hi,
            scratch,
          );
          expectOutputGuards(k, yP, ny, `y prepared ${what}`);
          mem.expectScratchGuards(what);
          const bits = (p: number) => Array.from(new Uint32Array(k.readF32(p, ny).slice().buffer));
          expect(bits(yP), what).toEqual(bits(y));
        }
      }
      expect(preparedCases).toBe(7);
    }
  });
});

describe("conv2d NHWC: backward vs central finite differences", () => {
  const FD_CASES: Conv[] = [
    { N: 2, H: 5, W: 4, C: 2, KH: 3, KW: 3, SH: 1, SW: 1, F: 3, padding: "same" },
    { N: 1, H: 7, W: 6, C: 3, KH: 3, KW: 2, SH: 2, SW: 2, F: 5, padding: "valid" },
    { N: 2, H: 6, W: 5, C: 1, KH: 2, KW: 3, SH: 2, SW: 1, F: 9, padding: "same" },
    { N: 2, H: 5, W: 3, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 16, padding: "same" }, // Winograd
    { N: 2, H: 5, W: 4, C: 3, KH: 3, KW: 2, SH: 2, SW: 1, F: 8, padding: "same" }, // implicit
  ];
  for (const c of FD_CASES) {
    it(describeConv(c), () => {
      const k = loadKernels();
      const [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] = geometry(c);
      const args = [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] as const;
      const r = rng(N * 31 + H * 7 + F);
      const mem = new Bump(k);
      const nx = N * H * W * C;
      const nw = KH * KW * C * F;
      const ny = N * OH * OW * F;
      const x = mem.random(nx, r);
      const w = mem.random(nw, r);
      const b = mem.random(F, r);
      const rr = mem.random(ny, r); // loss = sum(y * rr): dL/dy = rr
      const y = mem.floats(ny);
      const [dx, dw, db] = [mem.floats(nx), mem.floats(nw), mem.floats(F)];
      const scratch = mem.scratch(k.abi.conv2d_scratch_bytes(...args));
      const loss = (): number => {
        k.abi.conv2d_nhwc_fwd_f32(...args, x, w, b, y, -Infinity, Infinity, scratch);
        const yv = k.readF32(y, ny);
        const rv = k.readF32(rr, ny);
        let s = 0;
        for (let i = 0; i < ny; i++) s += yv[i] * rv[i];
        return s;
      };
      k.abi.conv2d_nhwc_bwd_data_f32(...args, rr, w, dx, scratch);
      k.abi.conv2d_nhwc_bwd_filter_f32(...args, x, rr, dw, db, scratch);
      mem.expectScratchGuards(describeConv(c));
      const eps = 1e-2;
      for (const [name, p, grad, n] of [
        ["x", x, dx, nx],
        ["w", w, dw, nw],
        ["b", b, db, F],
      ] as const) {
        const analytic = k.readF32(grad, n);
        for (let i = 0; i < n; i++) {
          const idx = (p >> 2) + i;
          const orig = k.f32[idx];
          k.f32[idx] = orig + eps;
          const lp = loss();
          k.f32[idx] = orig - eps;
          const lm = loss();
          k.f32[idx] = orig;
          const numeric = (lp - lm) / (2 * eps);
          const err = Math.abs(numeric - analytic[i]) / (1e-2 + Math.abs(numeric));
          if (!(err < 1e-2))
            expect.fail(`d${name}[${i}]: analytic ${analytic[i]} numeric ${numeric}`);
        }
      }
    });
  }
});

describe("conv2d NHWC forward vs TensorFlow.js (cpu backend)", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu");
  });
  const TF_CASES: Conv[] = [
    { N: 2, H: 28, W: 28, C: 1, KH: 3, KW: 3, SH: 1, SW: 1, F: 32, padding: "same" },
    { N: 2, H: 14, W: 14, C: 32, KH: 3, KW: 3, SH: 1, SW: 1, F: 64, padding: "same" },
    { N: 2, H: 9, W: 8, C: 3, KH: 3, KW: 3, SH: 2, SW: 2, F: 5, padding: "same" },
    { N: 1, H: 10, W: 7, C: 4, KH: 2, KW: 3, SH: 2, SW: 1, F: 6, padding: "same" },
    { N: 3, H: 8, W: 8, C: 2, KH: 3, KW: 3, SH: 1, SW: 1, F: 7, padding: "valid" },
    { N: 1, H: 11, W: 9, C: 5, KH: 4, KW: 2, SH: 3, SW: 2, F: 9, padding: "valid" },
    { N: 2, H: 5, W: 6, C: 6, KH: 1, KW: 1, SH: 1, SW: 1, F: 3, padding: "same" },
    { N: 2, H: 9, W: 7, C: 16, KH: 3, KW: 3, SH: 1, SW: 1, F: 20, padding: "valid" },
    { N: 2, H: 11, W: 9, C: 3, KH: 5, KW: 3, SH: 2, SW: 2, F: 16, padding: "same" },
  ];
  for (const c of TF_CASES) {
    it(describeConv(c), () => {
      const k = loadKernels();
      const [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] = geometry(c);
      const args = [N, H, W, C, KH, KW, SH, SW, padT, padL, OH, OW, F] as const;
      const r = rng(H * 100 + F);
      const mem = new Bump(k);
      const x = mem.random(N * H * W * C, r);
      const w = mem.random(KH * KW * C * F, r);
      const b = mem.random(F, r);
      const y = mem.floats(N * OH * OW * F);
      const scratch = mem.scratch(k.abi.conv2d_scratch_bytes(...args));
      k.abi.conv2d_nhwc_fwd_f32(...args, x, w, b, y, -Infinity, Infinity, scratch);
      const want = tf.tidy(() => {
        const xt = tf.tensor4d(k.readF32(x, N * H * W * C), [N, H, W, C]);
        const wt = tf.tensor4d(k.readF32(w, KH * KW * C * F), [KH, KW, C, F]);
        const pad = c.padding === "same" ? "same" : "valid";
        const yt = tf.conv2d(xt, wt, [SH, SW], pad).add(tf.tensor1d(k.readF32(b, F)));
        expect(yt.shape).toEqual([N, OH, OW, F]);
        return yt.dataSync() as Float32Array;
      });
      expectClose(k.readF32(y, N * OH * OW * F), want, 1e-4, `y ${describeConv(c)}`);
      mem.expectScratchGuards(describeConv(c));
    });
  }
});
