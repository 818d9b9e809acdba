// Optimizer kernels (assembly/optimizers.ts): bitwise agreement with their scalar twins on every
// tail length, and several steps against float64 implementations of Keras's formulas written here
// (Adam's bias correction computed as the host does: lrT = lr*sqrt(1-b2^t)/(1-b1^t)).
import { describe, it } from "vitest";
import {
  TAIL_SIZES,
  TestArena,
  expectClose,
  expectSameBits,
  normal,
  uniform,
} from "./kernelHarness.js";

const STEPS = 6;

/** A gradient per step; some tiny entries make eps matter in Adam. */
function gradients(n: number, seed: number): Float32Array[] {
  return Array.from({ length: STEPS }, (_, t) => {
    const g = normal(n, seed * 31 + t);
    for (let i = 0; i < n; i += 5) g[i] *= 1e-6;
    return g;
  });
}

describe("sgd_f32", () => {
  it("matches its twin bitwise and float64 w -= lr*g over several steps", () => {
    const a = new TestArena();
    for (const n of TAIL_SIZES) {
      a.reset();
      const w0 = uniform(n, n, -1, 1);
      const w = a.f32(n, w0, "w");
      const wt = a.f32(n, w0, "wTwin");
      const g = a.f32(n, 0, "g");
      const ref = Float64Array.from(w0);
      for (const gs of gradients(n, 1)) {
        a.write(g, gs);
        a.abi.sgd_f32(n, w, g, 0.05);
        a.k.twin("sgd_f32")(n, wt, g, 0.05);
        for (let i = 0; i < n; i++) ref[i] -= Math.fround(0.05) * gs[i];
      }
      expectSameBits(a.read(w, n), a.read(wt, n), `n=${n} twin`);
      expectClose(a.read(w, n), ref, { rtol: 1e-6, atol: 1e-7 }, `n=${n}`);
      a.expectGuards(`n=${n}`);
    }
  });
});

describe("sgd_momentum_f32", () => {
  for (const nesterov of [0, 1]) {
    it(`${nesterov ? "Nesterov" : "classic"} momentum matches its twin and float64 Keras SGD`, () => {
      const a = new TestArena();
      const lr = Math.fround(0.03);
      const mu = Math.fround(0.9);
      for (const n of TAIL_SIZES) {
        a.reset();
        const w0 = uniform(n, n + 1, -1, 1);
        const w = a.f32(n, w0, "w");
        const v = a.f32(n, 0, "v");
        const wt = a.f32(n, w0, "wTwin");
        const vt = a.f32(n, 0, "vTwin");
        const g = a.f32(n, 0, "g");
        const rw = Float64Array.from(w0);
        const rv = new Float64Array(n);
        for (const gs of gradients(n, 2)) {
          a.write(g, gs);
          a.abi.sgd_momentum_f32(n, w, g, v, lr, mu, nesterov);
          a.k.twin("sgd_momentum_f32")(n, wt, g, vt, lr, mu, nesterov);
          // Keras: velocity = momentum*velocity - lr*g; w += velocity, or with Nesterov
          // w += momentum*velocity - lr*g.
          for (let i = 0; i < n; i++) {
            rv[i] = mu * rv[i] - lr * gs[i];
            rw[i] += nesterov ? mu * rv[i] - lr * gs[i] : rv[i];
          }
        }
        expectSameBits(a.read(w, n), a.read(wt, n), `n=${n} w twin`);
        expectSameBits(a.read(v, n), a.read(vt, n), `n=${n} v twin`);
        expectClose(a.read(w, n), rw, { rtol: 1e-6, atol: 1e-7 }, `n=${n} w`);
        expectClose(a.read(v, n), rv, { rtol: 1e-5, atol: 1e-8 }, `n=${n} velocity`);
        a.expectGuards(`n=${n}`);
      }
    });
  }
});

describe("adam_f32", () => {
  for (const weightDecay of [0, 0.01]) {
    it(`${weightDecay ? "AdamW" : "Adam"} matches its twin and float64 Keras over ${STEPS} steps`, () => {
      const a = new TestArena();
      const lr = 1e-2;
      // The kernel receives f32 betas, so 1-b2 is 1-fround(0.999), 1.3e-5 off 0.001 relatively:
      // the reference uses the same f32 values (TF.js is f32 throughout as well).
      const b1 = Math.fround(0.9);
      const b2 = Math.fround(0.999);
      const eps = 1e-7;
      for (const n of TAIL_SIZES) {
        a.reset();
        const w0 = uniform(n, n + 2, -1, 1);
        const w = a.f32(n, w0, "w");
        const m = a.f32(n, 0, "m");
        const v = a.f32(n, 0, "v");
        const wt = a.f32(n, w0, "wTwin");
        const mt = a.f32(n, 0, "mTwin");
        const vt = a.f32(n, 0, "vTwin");
        const g = a.f32(n, 0, "g");
        const rw = Float64Array.from(w0);
        const rm = new Float64Array(n);
        const rv = new Float64Array(n);
        gradients(n, 3).forEach((gs, step) => {
          const t = step + 1;
          // What the host passes: the bias correction folded into the learning rate, and the
          // decoupled decay as lr*weightDecay.
          const lrT = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
          const decay = lr * weightDecay;
          a.write(g, gs);
          a.abi.adam_f32(n, w, g, m, v, lrT, b1, b2, eps, decay);
          a.k.twin("adam_f32")(n, wt, g, mt, vt, lrT, b1, b2, eps, decay);
          // Keras 3 Adam/AdamW in float64: decoupled decay, then
          // alpha = lr*sqrt(1-b2^t)/(1-b1^t); w -= alpha*m/(sqrt(v) + eps).
          const alpha = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
          for (let i = 0; i < n; i++) {
            rw[i] -= lr * weightDecay * rw[i];
            rm[i] = b1 * rm[i] + (1 - b1) * gs[i];
            rv[i] = b2 * rv[i] + (1 - b2) * gs[i] * gs[i];
            rw[i] -= (alpha * rm[i]) / (Math.sqrt(rv[i]) + eps);
          }
        });
        expectSameBits(a.read(w, n), a.read(wt, n), `n=${n} w twin`);
        expectSameBits(a.read(m, n), a.read(mt, n), `n=${n} m twin`);
        expectSameBits(a.read(v, n), a.read(vt, n), `n=${n} v twin`);
        expectClose(a.read(w, n), rw, { rtol: 1e-5, atol: 1e-6 }, `n=${n} w`);
        // m sums gradients of both signs: its error is relative to the terms (|g| ~ 1, times 1-b1).
        expectClose(a.read(m, n), rm, { rtol: 1e-5, atol: 1e-7 }, `n=${n} m`);
        expectClose(a.read(v, n), rv, { rtol: 1e-5, atol: 1e-18 }, `n=${n} v`);
        a.expectGuards(`n=${n}`);
      }
    });
  }
});
