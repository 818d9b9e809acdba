// BatchNorm kernels (assembly/batchnorm.ts): the SIMD kernels against their float64 scalar twins
// on every channel tail and row-block boundary, the backward against finite differences of the
// forward, and the whole layer against TensorFlow.js (tf.layers.batchNormalization in a training
// call, tf.grad through tf.moments + tf.batchNorm, tf.batchNorm with moving statistics).
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  TestArena,
  dot64,
  expectClose,
  expectSameBits,
  finiteDiff,
  normal,
  uniform,
} from "./kernelHarness.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

/** Data whose channels have different means and scales, as BN inputs do (x[R,C]). */
function bnInput(R: number, C: number, seed: number): Float32Array {
  const z = normal(R * C, seed);
  for (let i = 0; i < z.length; i++) {
    const c = i % C;
    z[i] = z[i] * (0.5 + c * 0.25) + (c - 2) * 1.5;
  }
  return z;
}

/**
 * Absolute tolerance for y[R,C]: `base` plus the error the f32-stored mean carries (half an ulp of
 * |mean|, as in TF.js), times the slope gamma*invStd. When |mean| >> std that term is the
 * problem's conditioning, not the kernel's error.
 */
function yTolerance(
  R: number,
  C: number,
  mean: Float32Array,
  invStd: Float32Array,
  gamma: Float32Array | null,
  base: number,
): Float64Array {
  const t = new Float64Array(R * C);
  for (let i = 0; i < t.length; i++) {
    const c = i % C;
    t[i] = base + Math.abs((gamma ? gamma[c] : 1) * invStd[c] * mean[c]) * 2 ** -23;
  }
  return t;
}

interface BnBuffers {
  x: number;
  gamma: number;
  beta: number;
  y: number;
  mean: number;
  variance: number;
  invStd: number;
}

function trainForward(
  a: TestArena,
  R: number,
  C: number,
  x: Float32Array,
  gamma: Float32Array | null,
  beta: Float32Array | null,
  eps: number,
  twin = false,
): BnBuffers {
  const b: BnBuffers = {
    x: a.f32(R * C, x, "x"),
    gamma: gamma ? a.f32(C, gamma, "gamma") : 0,
    beta: beta ? a.f32(C, beta, "beta") : 0,
    y: a.f32(R * C, 0, "y"),
    mean: a.f32(C, 0, "mean"),
    variance: a.f32(C, 0, "var"),
    invStd: a.f32(C, 0, "invStd"),
  };
  const f = twin ? a.k.twin("batchnorm_train_fwd_f32") : a.abi.batchnorm_train_fwd_f32;
  f(R, C, b.x, b.gamma, b.beta, eps, b.y, b.mean, b.variance, b.invStd);
  return b;
}

describe("batchnorm_train_fwd_f32", () => {
  it("matches the float64 twin on channel tails, row blocks and gamma/beta on/off", () => {
    const a = new TestArena();
    for (const C of [1, 3, 4, 7, 8, 10, 23, 36, 64]) {
      for (const R of [1, 2, 5, 17, 300, 1100]) {
        for (const affine of [true, false]) {
          a.reset();
          const x = bnInput(R, C, R * 131 + C);
          const gamma = affine ? uniform(C, C + 1, 0.5, 2) : null;
          const beta = affine ? uniform(C, C + 2, -1, 1) : null;
          const s = trainForward(a, R, C, x, gamma, beta, 1e-3);
          const t = trainForward(a, R, C, x, gamma, beta, 1e-3, true);
          const what = `R=${R} C=${C} affine=${affine}`;
          expectClose(
            a.read(s.mean, C),
            a.read(t.mean, C),
            { rtol: 1e-5, atol: 1e-5 },
            `${what} mean`,
          );
          expectClose(
            a.read(s.variance, C),
            a.read(t.variance, C),
            { rtol: 2e-5, atol: 1e-7 },
            `${what} var`,
          );
          expectClose(
            a.read(s.invStd, C),
            a.read(t.invStd, C),
            { rtol: 2e-5, atol: 0 },
            `${what} invStd`,
          );
          const yTol = yTolerance(R, C, a.read(t.mean, C), a.read(t.invStd, C), gamma, 2e-5);
          expectClose(
            a.read(s.y, R * C),
            a.read(t.y, R * C),
            { rtol: 2e-5, atol: yTol },
            `${what} y`,
          );
          a.expectGuards(what);
        }
      }
    }
  });

  it("keeps the variance of a channel whose mean dwarfs its spread (no cancellation)", () => {
    // mean 1000, std 0.01: sum(x^2)/R - mean^2 in f32 would lose every digit of the variance.
    const a = new TestArena();
    const R = 20000;
    const C = 5;
    const x = normal(R * C, 7, 0.01, 1000);
    const s = trainForward(a, R, C, x, null, null, 1e-8);
    const t = trainForward(a, R, C, x, null, null, 1e-8, true);
    const mean = a.read(t.mean, C);
    expectClose(a.read(s.mean, C), mean, { rtol: 2 ** -23, atol: 0 }, "mean");
    expectClose(a.read(s.variance, C), a.read(t.variance, C), { rtol: 1e-4, atol: 0 }, "var");
    const yTol = yTolerance(R, C, mean, a.read(t.invStd, C), null, 1e-4);
    expectClose(a.read(s.y, R * C), a.read(t.y, R * C), { rtol: 1e-4, atol: yTol }, "y");
  });

  it("allows y to alias x", () => {
    const a = new TestArena();
    const R = 37;
    const C = 10;
    const x = bnInput(R, C, 3);
    const ref = trainForward(a, R, C, x, null, null, 1e-3);
    const p = a.f32(R * C, x, "x=y");
    const m = a.f32(C);
    a.abi.batchnorm_train_fwd_f32(R, C, p, 0, 0, 1e-3, p, m, a.f32(C), a.f32(C));
    expectSameBits(a.read(p, R * C), a.read(ref.y, R * C), "in place");
  });
});

function backward(
  a: TestArena,
  R: number,
  C: number,
  fwd: BnBuffers,
  dy: Float32Array,
  withParamGrads: boolean,
  twin = false,
): { dx: number; dgamma: number; dbeta: number } {
  const dyp = a.f32(R * C, dy, "dy");
  const dx = a.f32(R * C, NaN, "dx");
  const dgamma = withParamGrads ? a.f32(C, NaN, "dgamma") : 0;
  const dbeta = withParamGrads ? a.f32(C, NaN, "dbeta") : 0;
  const f = twin ? a.k.twin("batchnorm_bwd_f32") : a.abi.batchnorm_bwd_f32;
  f(R, C, fwd.x, dyp, fwd.gamma, fwd.mean, fwd.invStd, dx, dgamma, dbeta);
  return { dx, dgamma, dbeta };
}

describe("batchnorm_bwd_f32", () => {
  it("matches the float64 twin on channel tails and row blocks, with and without dgamma/dbeta", () => {
    const a = new TestArena();
    for (const C of [1, 3, 4, 7, 8, 10, 23, 36, 64]) {
      for (const R of [1, 2, 5, 17, 300, 1100]) {
        for (const affine of [true, false]) {
          a.reset();
          const x = bnInput(R, C, R * 7 + C);
          const gamma = affine ? uniform(C, C + 5, 0.5, 2) : null;
          const fwd = trainForward(a, R, C, x, gamma, null, 1e-3);
          const dy = normal(R * C, R + C * 3);
          const s = backward(a, R, C, fwd, dy, affine);
          const t = backward(a, R, C, fwd, dy, affine, true);
          const what = `R=${R} C=${C} affine=${affine}`;
          // dx is a difference of O(1) terms: absolute tolerance at the f32 rounding of those terms.
          expectClose(
            a.read(s.dx, R * C),
            a.read(t.dx, R * C),
            { rtol: 1e-4, atol: 1e-5 },
            `${what} dx`,
          );
          if (affine) {
            const sum = { rtol: 1e-4, atol: 1e-6 * Math.sqrt(R) * 10 };
            expectClose(a.read(s.dgamma, C), a.read(t.dgamma, C), sum, `${what} dgamma`);
            expectClose(a.read(s.dbeta, C), a.read(t.dbeta, C), sum, `${what} dbeta`);
          }
          a.expectGuards(what);
        }
      }
    }
  });

  for (const affine of [true, false]) {
    it(`is the gradient of the training forward (finite differences, gamma/beta ${affine ? "on" : "off"})`, () => {
      const a = new TestArena();
      const R = 6;
      const C = 5;
      const x = bnInput(R, C, 21);
      const gamma = uniform(C, 22, 0.5, 2);
      const beta = uniform(C, 23, -1, 1);
      const r = normal(R * C, 24);
      // loss = Σ y·r, so dy = r.
      const loss = (xv: Float32Array, g: Float32Array | null, b: Float32Array | null): number => {
        a.reset();
        const f = trainForward(a, R, C, xv, g, b, 1e-3);
        return dot64(a.read(f.y, R * C), r);
      };
      const g0 = affine ? gamma : null;
      const b0 = affine ? beta : null;
      a.reset();
      const fwd = trainForward(a, R, C, x, g0, b0, 1e-3);
      const grads = backward(a, R, C, fwd, r, affine);
      const dx = a.read(grads.dx, R * C);
      const fdTol = { rtol: 1e-2, atol: 2e-3 };
      expectClose(
        dx,
        finiteDiff(x, (xv) => loss(xv, g0, b0), 1e-2),
        fdTol,
        "dx",
      );
      if (affine) {
        a.reset();
        const fwd2 = trainForward(a, R, C, x, gamma, beta, 1e-3);
        const g2 = backward(a, R, C, fwd2, r, true);
        const dgamma = a.read(g2.dgamma, C);
        const dbeta = a.read(g2.dbeta, C);
        expectClose(
          dgamma,
          finiteDiff(gamma, (gv) => loss(x, gv, beta), 1e-2),
          fdTol,
          "dgamma",
        );
        expectClose(
          dbeta,
          finiteDiff(beta, (bv) => loss(x, gamma, bv), 1e-2),
          fdTol,
          "dbeta",
        );
      }
    });
  }
});

describe("batchnorm_infer_fwd_f32 and batchnorm_update_running_f32", () => {
  it("match their scalar twins on every channel tail; inference may run in place", () => {
    const a = new TestArena();
    for (const C of [1, 3, 4, 7, 8, 10, 23, 36, 64]) {
      for (const R of [0, 1, 5, 300]) {
        a.reset();
        const x = bnInput(R, C, R + C);
        const gamma = a.f32(C, uniform(C, 1, 0.5, 2));
        const beta = a.f32(C, uniform(C, 2, -1, 1));
        const rm = a.f32(C, uniform(C, 3, -2, 2));
        const rv = a.f32(C, uniform(C, 4, 0.1, 3));
        const xp = a.f32(R * C, x, "x");
        const y = a.f32(R * C, 0, "y");
        const yt = a.f32(R * C, 0, "yt");
        a.abi.batchnorm_infer_fwd_f32(R, C, xp, gamma, beta, rm, rv, 1e-3, y);
        a.k.twin("batchnorm_infer_fwd_f32")(R, C, xp, gamma, beta, rm, rv, 1e-3, yt);
        expectClose(
          a.read(y, R * C),
          a.read(yt, R * C),
          { rtol: 2e-6, atol: 2e-6 },
          `R=${R} C=${C}`,
        );
        a.abi.batchnorm_infer_fwd_f32(R, C, xp, 0, 0, rm, rv, 1e-3, xp);
        a.k.twin("batchnorm_infer_fwd_f32")(R, C, a.f32(R * C, x), 0, 0, rm, rv, 1e-3, yt);
        expectClose(a.read(xp, R * C), a.read(yt, R * C), { rtol: 2e-6, atol: 2e-6 }, "in place");

        const bm = a.f32(C, uniform(C, 5, -1, 1));
        const bv = a.f32(C, uniform(C, 6, 0.1, 2));
        const rm2 = a.f32(C, a.read(rm, C));
        const rv2 = a.f32(C, a.read(rv, C));
        a.abi.batchnorm_update_running_f32(C, rm, rv, bm, bv, 0.9);
        a.k.twin("batchnorm_update_running_f32")(C, rm2, rv2, bm, bv, 0.9);
        expectSameBits(a.read(rm, C), a.read(rm2, C), "moving mean");
        expectSameBits(a.read(rv, C), a.read(rv2, C), "moving var");
        a.expectGuards(`R=${R} C=${C}`);
      }
    }
  });
});

describe("BatchNorm against TensorFlow.js", () => {
  const cases = [
    { R: 12, C: 6, momentum: 0.99, epsilon: 1e-3, affine: true },
    { R: 40, C: 9, momentum: 0.9, epsilon: 1e-5, affine: true },
    { R: 7, C: 4, momentum: 0.5, epsilon: 0.1, affine: false },
  ];
  for (const { R, C, momentum, epsilon, affine } of cases) {
    const what = `R=${R} C=${C} momentum=${momentum} eps=${epsilon} affine=${affine}`;
    it(`training call and moving statistics match tf.layers.batchNormalization (${what})`, () => {
      const x = bnInput(R, C, R * C);
      const gamma = uniform(C, 31, 0.5, 2);
      const beta = uniform(C, 32, -1, 1);
      const mm0 = uniform(C, 33, -1, 1);
      const mv0 = uniform(C, 34, 0.5, 2);

      // tfjs-layers 4.22 cannot train with center/scale off (its training path reads the absent
      // gamma), so "off" is checked as our null pointers against TF.js's gamma = 1, beta = 0.
      const layer = tf.layers.batchNormalization({ axis: -1, momentum, epsilon });
      const xt = tf.tensor2d(x, [R, C]);
      layer.apply(xt); // builds the weights (an inference call changes nothing)
      const tfGamma = affine ? gamma : new Float32Array(C).fill(1);
      const tfBeta = affine ? beta : new Float32Array(C);
      layer.setWeights([tfGamma, tfBeta, mm0, mv0].map((w) => tf.tensor1d(w)));
      const yTf = (layer.apply(xt, { training: true }) as tf.Tensor).dataSync();
      const [, , mmTf, mvTf] = layer.getWeights().map((w) => w.dataSync() as Float32Array);

      const a = new TestArena();
      const f = trainForward(a, R, C, x, affine ? gamma : null, affine ? beta : null, epsilon);
      const mm = a.f32(C, mm0);
      const mv = a.f32(C, mv0);
      a.abi.batchnorm_update_running_f32(C, mm, mv, f.mean, f.variance, momentum);

      const tol = { rtol: 1e-4, atol: 1e-4 };
      expectClose(a.read(f.y, R * C), yTf, tol, "y");
      expectClose(a.read(mm, C), mmTf, tol, "moving mean");
      expectClose(a.read(mv, C), mvTf, tol, "moving variance (biased, as TF.js)");

      // Inference with the updated moving statistics.
      const gT = affine ? tf.tensor1d(gamma) : undefined;
      const bT = affine ? tf.tensor1d(beta) : undefined;
      const yInfTf = tf
        .batchNorm(xt, tf.tensor1d(mmTf), tf.tensor1d(mvTf), bT, gT, epsilon)
        .dataSync();
      const yInf = a.f32(R * C);
      a.abi.batchnorm_infer_fwd_f32(R, C, f.x, f.gamma, f.beta, mm, mv, epsilon, yInf);
      expectClose(a.read(yInf, R * C), yInfTf, tol, "inference");
      const yInfLayer = (layer.apply(xt, { training: false }) as tf.Tensor).dataSync();
      expectClose(a.read(yInf, R * C), yInfLayer, tol, "inference vs layer");
    });

    it(`gradients match tf.grads through tf.moments + tf.batchNorm (${what})`, () => {
      const x = bnInput(R, C, R * C + 1);
      const gamma = uniform(C, 41, 0.5, 2);
      const beta = uniform(C, 42, -1, 1);
      const r = normal(R * C, 43);
      const rT = tf.tensor2d(r, [R, C]);
      const f = (xt: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Scalar => {
        const { mean, variance } = tf.moments(xt, 0);
        return tf.sum(tf.mul(tf.batchNorm(xt, mean, variance, b, g, epsilon), rT));
      };
      const [dxTf, dgTf, dbTf] = tf
        .grads(f as (...args: tf.Tensor[]) => tf.Tensor)([
          tf.tensor2d(x, [R, C]),
          tf.tensor1d(affine ? gamma : new Float32Array(C).fill(1)),
          tf.tensor1d(affine ? beta : new Float32Array(C)),
        ])
        .map((t) => t.dataSync());

      const a = new TestArena();
      const fwd = trainForward(a, R, C, x, affine ? gamma : null, affine ? beta : null, epsilon);
      const dgp = a.f32(C, NaN);
      const dbp = a.f32(C, NaN);
      const dxp = a.f32(R * C, NaN);
      a.abi.batchnorm_bwd_f32(
        R,
        C,
        fwd.x,
        a.f32(R * C, r),
        fwd.gamma,
        fwd.mean,
        fwd.invStd,
        dxp,
        dgp,
        dbp,
      );
      const tol = { rtol: 1e-4, atol: 1e-4 };
      expectClose(a.read(dxp, R * C), dxTf, tol, "dx");
      // With gamma/beta off the layer has no parameters, but the sums are still defined.
      expectClose(a.read(dgp, C), dgTf, tol, "dgamma");
      expectClose(a.read(dbp, C), dbTf, tol, "dbeta");
    });
  }
});

describe("batchnorm degenerate shapes", () => {
  it("R = 1 gives y = beta and dx = 0 (zero variance); R = 0 writes unit statistics", () => {
    const a = new TestArena();
    const C = 6;
    const x = uniform(C, 1, -3, 3);
    const beta = uniform(C, 2);
    const f = trainForward(a, 1, C, x, uniform(C, 3, 1, 2), beta, 1e-3);
    expectClose(a.read(f.y, C), beta, { rtol: 0, atol: 1e-6 }, "y");
    const g = backward(a, 1, C, f, uniform(C, 4), true);
    expect(Array.from(a.read(g.dx, C)).every((v) => v === 0)).toBe(true);
    const e = trainForward(a, 0, C, new Float32Array(0), null, null, 0.25);
    expect(Array.from(a.read(e.invStd, C))).toEqual(new Array(C).fill(2));
    a.expectGuards();
  });
});
