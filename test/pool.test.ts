// Pooling kernels (assembly/pool.ts), NHWC: SIMD kernels against their scalar twins over channel
// tails and geometries (valid/same padding, stride equal to, smaller and larger than the window),
// forwards against TensorFlow.js, backwards against finite differences of the forwards (and
// against tf.grad where TF.js computes the true gradient), argmax tie-breaking and NaN handling.
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  TestArena,
  dot64,
  expectClose,
  expectSameBits,
  finiteDiff,
  normal,
  rng,
} from "./kernelHarness.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

interface Geom {
  N: number;
  H: number;
  W: number;
  C: number;
  PH: number;
  PW: number;
  SH: number;
  SW: number;
  padT: number;
  padL: number;
  OH: number;
  OW: number;
  padding: "same" | "valid";
}

/** TF's output size and leading padding for "same" / "valid". */
function geom(
  N: number,
  H: number,
  W: number,
  C: number,
  PH: number,
  PW: number,
  SH: number,
  SW: number,
  padding: "same" | "valid",
): Geom {
  const out = (I: number, P: number, S: number): [number, number] => {
    if (padding === "valid") return [Math.ceil((I - P + 1) / S), 0];
    const O = Math.ceil(I / S);
    return [O, Math.floor(Math.max((O - 1) * S + P - I, 0) / 2)];
  };
  const [OH, padT] = out(H, PH, SH);
  const [OW, padL] = out(W, PW, SW);
  return { N, H, W, C, PH, PW, SH, SW, padT, padL, OH, OW, padding };
}

const describeGeom = (g: Geom): string =>
  `N${g.N} ${g.H}x${g.W}x${g.C} pool ${g.PH}x${g.PW} stride ${g.SH}x${g.SW} ${g.padding}`;

/** Geometries: every channel tail, valid/same, stride < = > window, non-square windows. */
function geometries(): Geom[] {
  const gs: Geom[] = [];
  for (const C of [1, 3, 4, 7, 8, 10, 64]) {
    gs.push(geom(2, 6, 5, C, 2, 2, 2, 2, "valid"));
    gs.push(geom(2, 7, 7, C, 3, 3, 2, 2, "same"));
    gs.push(geom(1, 5, 6, C, 3, 2, 1, 2, "same"));
  }
  gs.push(geom(1, 9, 9, 5, 2, 2, 3, 3, "valid")); // stride > window: cells nobody reads
  gs.push(geom(1, 4, 4, 6, 4, 4, 1, 1, "same")); // padding on both sides
  gs.push(geom(3, 1, 8, 4, 1, 3, 1, 2, "same"));
  return gs;
}

/** Distinct values (a shuffled grid 0.01 apart), so finite differences never flip an argmax. */
function distinct(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = Float32Array.from({ length: n }, (_, i) => (i - n / 2) * 0.01);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [v[i], v[j]] = [v[j], v[i]];
  }
  return v;
}

function maxFwd(a: TestArena, g: Geom, x: number, y: number, argmax: number, twin = false): void {
  const f = twin ? a.k.twin("maxpool2d_fwd_f32") : a.abi.maxpool2d_fwd_f32;
  f(g.N, g.H, g.W, g.C, g.PH, g.PW, g.SH, g.SW, g.padT, g.padL, g.OH, g.OW, x, y, argmax);
}

function avgFwd(a: TestArena, g: Geom, x: number, y: number, twin = false): void {
  const f = twin ? a.k.twin("avgpool2d_fwd_f32") : a.abi.avgpool2d_fwd_f32;
  f(g.N, g.H, g.W, g.C, g.PH, g.PW, g.SH, g.SW, g.padT, g.padL, g.OH, g.OW, x, y);
}

function avgBwd(a: TestArena, g: Geom, dy: number, dx: number, twin = false): void {
  const f = twin ? a.k.twin("avgpool2d_bwd_f32") : a.abi.avgpool2d_bwd_f32;
  f(g.N, g.H, g.W, g.C, g.PH, g.PW, g.SH, g.SW, g.padT, g.padL, g.OH, g.OW, dy, dx);
}

const sizes = (g: Geom): [number, number] => [g.N * g.H * g.W * g.C, g.N * g.OH * g.OW * g.C];

describe("maxpool2d", () => {
  it("forward matches its twin (values and argmax exactly); argmax = 0 gives the same y", () => {
    const a = new TestArena();
    for (const g of geometries()) {
      a.reset();
      const [nx, ny] = sizes(g);
      const x = a.f32(nx, normal(nx, nx + g.C), "x");
      const y = a.f32(ny, NaN, "y");
      const arg = a.i32(ny, -7, "argmax");
      const yt = a.f32(ny, NaN, "yTwin");
      const argt = a.i32(ny, -7, "argmaxTwin");
      const yNoArg = a.f32(ny, NaN, "yNoArgmax");
      maxFwd(a, g, x, y, arg);
      maxFwd(a, g, x, yt, argt, true);
      maxFwd(a, g, x, yNoArg, 0);
      const what = describeGeom(g);
      expectSameBits(a.read(y, ny), a.read(yt, ny), `${what} y`);
      expect(Array.from(a.readI32(arg, ny)), `${what} argmax`).toEqual(
        Array.from(a.readI32(argt, ny)),
      );
      expectSameBits(a.read(yNoArg, ny), a.read(y, ny), `${what} y without argmax`);
      // argmax really points at the value chosen.
      const xs = a.read(x, nx);
      const ys = a.read(y, ny);
      expect(Array.from(a.readI32(arg, ny), (i) => xs[i])).toEqual(Array.from(ys));
      a.expectGuards(what);
    }
  });

  it("forward matches tf.maxPool (same and valid)", () => {
    const a = new TestArena();
    for (const g of [geom(2, 7, 6, 5, 3, 3, 2, 2, "same"), geom(1, 8, 8, 4, 2, 2, 2, 2, "valid")]) {
      a.reset();
      const [nx, ny] = sizes(g);
      const xv = normal(nx, 3);
      const x = a.f32(nx, xv);
      const y = a.f32(ny);
      maxFwd(a, g, x, y, 0);
      const want = tf
        .maxPool(tf.tensor4d(xv, [g.N, g.H, g.W, g.C]), [g.PH, g.PW], [g.SH, g.SW], g.padding)
        .dataSync();
      expectSameBits(a.read(y, ny), want as Float32Array, describeGeom(g));
    }
  });

  it("breaks ties to the first maximum in window order and ignores NaN, with and without argmax", () => {
    const a = new TestArena();
    // 1 image, 2x3, 9 channels, one 2x3 window. Channel 0: all equal; 1: max at (0,2) and (1,0);
    // 2: NaN first, then values; 3: all NaN; 4: -0 then +0 (first wins: -0); 5: +0 then -0;
    // 6: NaN between values; 7: NaN and -inf only; 8 (the C % 4 tail): NaN first, then values.
    // argmax = 0 (inference) runs a loop of its own, and must choose exactly the same values.
    const g = geom(1, 2, 3, 9, 2, 3, 1, 1, "valid");
    const C = g.C;
    const cells = [
      [5, 1, NaN, NaN, -0, 0, 1, NaN, NaN],
      [5, 2, 3, NaN, 0, -0, NaN, -Infinity, 2],
      [5, 9, 7, NaN, -0, 0, 3, NaN, 4],
      [5, 9, 7, NaN, 0, -0, NaN, -Infinity, NaN],
      [5, 0, -1, NaN, -0, 0, 2, NaN, 4],
      [5, 3, 2, NaN, 0, -0, -5, NaN, -3],
    ];
    const x = a.f32(6 * C, cells.flat(), "x");
    const y = a.f32(C, NaN, "y");
    const arg = a.i32(C, -7, "argmax");
    const yNoArg = a.f32(C, NaN, "yNoArgmax");
    const yt = a.f32(C, NaN, "yTwin");
    const argt = a.i32(C, -7, "argmaxTwin");
    const ytNoArg = a.f32(C, NaN, "yTwinNoArgmax");
    maxFwd(a, g, x, y, arg);
    maxFwd(a, g, x, yNoArg, 0);
    maxFwd(a, g, x, yt, argt, true);
    maxFwd(a, g, x, ytNoArg, 0, true);
    const want = Float32Array.of(5, 9, 7, -Infinity, -0, 0, 3, -Infinity, 4);
    expectSameBits(a.read(y, C), want, "y");
    expectSameBits(a.read(yNoArg, C), a.read(y, C), "y without argmax");
    expectSameBits(a.read(yt, C), a.read(y, C), "twin y");
    expectSameBits(a.read(ytNoArg, C), a.read(y, C), "twin y without argmax");
    const at = (cell: number, c: number): number => cell * C + c;
    expect(Array.from(a.readI32(arg, C))).toEqual([
      at(0, 0),
      at(2, 1),
      at(2, 2),
      at(0, 3),
      at(0, 4),
      at(0, 5),
      at(2, 6),
      at(0, 7),
      at(2, 8),
    ]);
    expect(Array.from(a.readI32(argt, C))).toEqual(Array.from(a.readI32(arg, C)));
    a.expectGuards("NaN and ties");
  });

  it("backward matches its twin, finite differences and tf.grad (stride != window, same padding)", () => {
    const a = new TestArena();
    for (const g of geometries()) {
      a.reset();
      const [nx, ny] = sizes(g);
      const xv = distinct(nx, nx);
      const x = a.f32(nx, xv, "x");
      const y = a.f32(ny, 0, "y");
      const arg = a.i32(ny, 0, "argmax");
      maxFwd(a, g, x, y, arg);
      const r = normal(ny, ny);
      const dy = a.f32(ny, r, "dy");
      const dx = a.f32(nx, NaN, "dx");
      const dxt = a.f32(nx, NaN, "dxTwin");
      a.abi.maxpool2d_bwd_f32(g.N, g.H, g.W, g.C, g.OH, g.OW, dy, arg, dx);
      a.k.twin("maxpool2d_bwd_f32")(g.N, g.H, g.W, g.C, g.OH, g.OW, dy, arg, dxt);
      const what = describeGeom(g);
      expectSameBits(a.read(dx, nx), a.read(dxt, nx), `${what} twin`);
      a.expectGuards(what);
      if (nx <= 400) {
        const loss = (xs: Float32Array): number => {
          a.write(x, xs);
          maxFwd(a, g, x, y, 0);
          return dot64(a.read(y, ny), r);
        };
        const fd = finiteDiff(xv, loss, 1e-3);
        expectClose(a.read(dx, nx), fd, { rtol: 1e-2, atol: 1e-3 }, `${what} finite differences`);
      }
    }
    for (const g of [geom(2, 7, 6, 5, 3, 3, 2, 2, "same"), geom(1, 7, 7, 3, 2, 2, 1, 1, "same")]) {
      a.reset();
      const [nx, ny] = sizes(g);
      const xv = distinct(nx, 5);
      const r = normal(ny, 6);
      const x = a.f32(nx, xv);
      const y = a.f32(ny);
      const arg = a.i32(ny);
      maxFwd(a, g, x, y, arg);
      const dx = a.f32(nx);
      a.abi.maxpool2d_bwd_f32(g.N, g.H, g.W, g.C, g.OH, g.OW, a.f32(ny, r), arg, dx);
      const rT = tf.tensor4d(r, [g.N, g.OH, g.OW, g.C]);
      const want = tf
        .grad((t: tf.Tensor) =>
          tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, [g.PH, g.PW], [g.SH, g.SW], g.padding), rT)),
        )(tf.tensor4d(xv, [g.N, g.H, g.W, g.C]))
        .dataSync();
      expectClose(
        a.read(dx, nx),
        want,
        { rtol: 1e-6, atol: 1e-6 },
        `${describeGeom(g)} vs tf.grad`,
      );
    }
  });
});

describe("avgpool2d", () => {
  it("forward matches its twin on every geometry and tf.avgPool (padding excluded from counts)", () => {
    const a = new TestArena();
    for (const g of geometries()) {
      a.reset();
      const [nx, ny] = sizes(g);
      const xv = normal(nx, nx + 1);
      const x = a.f32(nx, xv, "x");
      const y = a.f32(ny, NaN, "y");
      const yt = a.f32(ny, NaN, "yTwin");
      avgFwd(a, g, x, y);
      avgFwd(a, g, x, yt, true);
      const what = describeGeom(g);
      expectClose(a.read(y, ny), a.read(yt, ny), { rtol: 1e-6, atol: 1e-6 }, what);
      const want = tf
        .avgPool(tf.tensor4d(xv, [g.N, g.H, g.W, g.C]), [g.PH, g.PW], [g.SH, g.SW], g.padding)
        .dataSync();
      expectClose(a.read(y, ny), want, { rtol: 1e-5, atol: 1e-6 }, `${what} vs tf.avgPool`);
      a.expectGuards(what);
    }
  });

  it("backward matches its twin and finite differences (the true gradient, also at same padding)", () => {
    const a = new TestArena();
    for (const g of geometries()) {
      a.reset();
      const [nx, ny] = sizes(g);
      const xv = normal(nx, 17);
      const x = a.f32(nx, xv, "x");
      const y = a.f32(ny, 0, "y");
      const r = normal(ny, ny + 3);
      const dy = a.f32(ny, r, "dy");
      const dx = a.f32(nx, NaN, "dx");
      const dxt = a.f32(nx, NaN, "dxTwin");
      avgBwd(a, g, dy, dx);
      avgBwd(a, g, dy, dxt, true);
      const what = describeGeom(g);
      expectClose(a.read(dx, nx), a.read(dxt, nx), { rtol: 1e-6, atol: 1e-6 }, `${what} twin`);
      a.expectGuards(what);
      if (nx <= 400) {
        const loss = (xs: Float32Array): number => {
          a.write(x, xs);
          avgFwd(a, g, x, y);
          return dot64(a.read(y, ny), r);
        };
        const fd = finiteDiff(xv, loss, 1e-2);
        expectClose(a.read(dx, nx), fd, { rtol: 1e-2, atol: 1e-3 }, `${what} finite differences`);
      }
    }
  });

  it("agrees with tf.grad of tf.avgPool where TF.js's gradient is exact (valid padding)", () => {
    const a = new TestArena();
    const g = geom(2, 6, 7, 5, 3, 2, 1, 2, "valid");
    const [nx, ny] = sizes(g);
    const r = normal(ny, 1);
    const dx = a.f32(nx);
    avgBwd(a, g, a.f32(ny, r), dx);
    const rT = tf.tensor4d(r, [g.N, g.OH, g.OW, g.C]);
    const want = tf
      .grad((t: tf.Tensor) =>
        tf.sum(tf.mul(tf.avgPool(t as tf.Tensor4D, [g.PH, g.PW], [g.SH, g.SW], "valid"), rT)),
      )(tf.zeros([g.N, g.H, g.W, g.C]))
      .dataSync();
    expectClose(a.read(dx, nx), want, { rtol: 1e-5, atol: 1e-6 }, "vs tf.grad");
  });
});

describe("global_avgpool2d", () => {
  it("forward and backward match their twins, tf.mean and finite differences", () => {
    const a = new TestArena();
    for (const [N, HW, C] of [
      [1, 1, 1],
      [2, 9, 3],
      [3, 49, 8],
      [2, 16, 10],
      [1, 784, 64],
      [2, 5, 7],
    ]) {
      a.reset();
      const xv = normal(N * HW * C, HW + C);
      const x = a.f32(N * HW * C, xv, "x");
      const y = a.f32(N * C, NaN, "y");
      const yt = a.f32(N * C, NaN, "yTwin");
      a.abi.global_avgpool2d_fwd_f32(N, HW, C, x, y);
      a.k.twin("global_avgpool2d_fwd_f32")(N, HW, C, x, yt);
      const what = `N=${N} HW=${HW} C=${C}`;
      expectClose(a.read(y, N * C), a.read(yt, N * C), { rtol: 1e-5, atol: 1e-6 }, what);
      const want = tf.mean(tf.tensor3d(xv, [N, HW, C]), 1).dataSync();
      expectClose(a.read(y, N * C), want, { rtol: 1e-5, atol: 1e-6 }, `${what} vs tf.mean`);

      const r = normal(N * C, 5);
      const dy = a.f32(N * C, r, "dy");
      const dx = a.f32(N * HW * C, NaN, "dx");
      const dxt = a.f32(N * HW * C, NaN, "dxTwin");
      a.abi.global_avgpool2d_bwd_f32(N, HW, C, dy, dx);
      a.k.twin("global_avgpool2d_bwd_f32")(N, HW, C, dy, dxt);
      expectClose(a.read(dx, N * HW * C), a.read(dxt, N * HW * C), { rtol: 1e-6, atol: 0 }, what);
      a.expectGuards(what);
      if (N * HW * C <= 200) {
        const loss = (xs: Float32Array): number => {
          a.write(x, xs);
          a.abi.global_avgpool2d_fwd_f32(N, HW, C, x, y);
          return dot64(a.read(y, N * C), r);
        };
        const fd = finiteDiff(xv, loss, 1e-2);
        expectClose(a.read(dx, N * HW * C), fd, { rtol: 1e-2, atol: 1e-3 }, `${what} fd`);
      }
    }
  });
});
