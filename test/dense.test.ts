// Dense forward/backward (three GEMMs + SIMD column sums) against the scalar twins, and the
// backward against central finite differences of loss = sum(y * r).
import { describe, expect, it } from "vitest";
import type { Kernels } from "../src/kernels.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { Bump, rng } from "./bumpArena.js";

/** Exports beyond the host ABI (kernelAbi.ts): the shared bias-gradient column sum and its twin. */
interface BiasGradExports {
  bias_grad_f32(R: number, C: number, dy: number, db: number): void;
  bias_grad_f32_scalar(R: number, C: number, dy: number, db: number): void;
}

/** max |a-b| / (1 + |b|) over two arrays, failing with the index when above tol. */
function expectClose(got: Float32Array, want: Float32Array, tol: number, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(err <= tol)) expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tol ${tol})`);
  }
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 784, 10],
  [3, 5, 7],
  [4, 8, 8],
  [5, 17, 9],
  [9, 33, 15],
  [16, 20, 130],
  [64, 300, 13],
  [33, 70, 257],
];

describe("dense_fwd_f32 / dense_bwd_f32", () => {
  it("forward matches the scalar twin, with and without bias, with a ReLU clamp", () => {
    const k = loadKernels();
    let seed = 1;
    for (const [B, In, Out] of SHAPES) {
      for (const withBias of [false, true]) {
        for (const relu of [false, true]) {
          const r = rng(seed++);
          const mem = new Bump(k);
          const x = mem.random(B * In, r);
          const w = mem.random(In * Out, r);
          const b = withBias ? mem.random(Out, r) : 0;
          const y = mem.floats(B * Out);
          const yTwin = mem.floats(B * Out);
          const scratch = mem.scratch(k.abi.dense_scratch_bytes(B, In, Out));
          const lo = relu ? 0 : -Infinity;
          k.abi.dense_fwd_f32(B, In, Out, x, w, b, y, lo, Infinity, scratch);
          k.twin("dense_fwd_f32")(B, In, Out, x, w, b, yTwin, lo, Infinity, 0);
          mem.expectScratchGuards(`dense_fwd ${B}x${In}x${Out}`);
          const tol = 3e-7 * (In + 2);
          expectClose(k.readF32(y, B * Out), k.readF32(yTwin, B * Out), tol, `y ${B}x${In}x${Out}`);
        }
      }
    }
  });

  it("backward matches the scalar twin; dx == 0 and db == 0 are skipped", () => {
    const k = loadKernels();
    let seed = 100;
    for (const [B, In, Out] of SHAPES) {
      for (const skip of [false, true]) {
        const r = rng(seed++);
        const mem = new Bump(k);
        const x = mem.random(B * In, r);
        const w = mem.random(In * Out, r);
        const dy = mem.random(B * Out, r);
        const [dx, dw, db] = [mem.floats(B * In), mem.floats(In * Out), mem.floats(Out)];
        const [dxT, dwT, dbT] = [mem.floats(B * In), mem.floats(In * Out), mem.floats(Out)];
        const scratch = mem.scratch(k.abi.dense_scratch_bytes(B, In, Out));
        k.abi.fill_f32(dx, B * In, 7);
        k.abi.fill_f32(db, Out, 7);
        k.abi.dense_bwd_f32(B, In, Out, x, w, dy, skip ? 0 : dx, dw, skip ? 0 : db, scratch);
        k.twin("dense_bwd_f32")(B, In, Out, x, w, dy, dxT, dwT, dbT, 0);
        const what = `${B}x${In}x${Out}`;
        mem.expectScratchGuards(`dense_bwd ${what}`);
        expectClose(
          k.readF32(dw, In * Out),
          k.readF32(dwT, In * Out),
          3e-7 * (B + 2),
          `dw ${what}`,
        );
        if (skip) {
          expect(Array.from(k.readF32(dx, B * In)).every((v) => v === 7)).toBe(true);
          expect(Array.from(k.readF32(db, Out)).every((v) => v === 7)).toBe(true);
        } else {
          expectClose(
            k.readF32(dx, B * In),
            k.readF32(dxT, B * In),
            3e-7 * (Out + 2),
            `dx ${what}`,
          );
          expectClose(k.readF32(db, Out), k.readF32(dbT, Out), 3e-7 * (B + 2), `db ${what}`);
        }
      }
    }
  });

  it("bias_grad_f32 matches its scalar twin on every column tail", () => {
    const k = loadKernels();
    for (const [R, C] of [
      [1, 1],
      [3, 3],
      [5, 4],
      [7, 15],
      [64, 16],
      [9, 37],
      [0, 5],
    ]) {
      const r = rng(R * 100 + C);
      const mem = new Bump(k);
      const dy = mem.random(R * C, r);
      const [db, dbT] = [mem.floats(C), mem.floats(C)];
      k.abi.fill_f32(db, C, 7);
      const extra = k.abi as unknown as BiasGradExports;
      extra.bias_grad_f32(R, C, dy, db);
      extra.bias_grad_f32_scalar(R, C, dy, dbT);
      expectClose(k.readF32(db, C), k.readF32(dbT, C), 1e-6 * (R + 1), `db ${R}x${C}`);
    }
  });

  it("backward equals central finite differences of sum(y * r)", () => {
    const k = loadKernels();
    for (const [B, In, Out] of [
      [3, 5, 4],
      [2, 9, 11],
    ]) {
      const r = rng(B * 1000 + In * 10 + Out);
      const mem = new Bump(k);
      const x = mem.random(B * In, r);
      const w = mem.random(In * Out, r);
      const b = mem.random(Out, r);
      const rr = mem.random(B * Out, r); // loss = sum(y * rr), so dL/dy = rr
      const y = mem.floats(B * Out);
      const [dx, dw, db] = [mem.floats(B * In), mem.floats(In * Out), mem.floats(Out)];
      const scratch = mem.scratch(k.abi.dense_scratch_bytes(B, In, Out));
      const loss = (): number => {
        k.abi.dense_fwd_f32(B, In, Out, x, w, b, y, -Infinity, Infinity, scratch);
        const yv = k.readF32(y, B * Out);
        const rv = k.readF32(rr, B * Out);
        let s = 0;
        for (let i = 0; i < yv.length; i++) s += yv[i] * rv[i];
        return s;
      };
      k.abi.dense_bwd_f32(B, In, Out, x, w, rr, dx, dw, db, scratch);
      const eps = 1e-2;
      for (const [name, p, g, n] of [
        ["x", x, dx, B * In],
        ["w", w, dw, In * Out],
        ["b", b, db, Out],
      ] as const) {
        const analytic = k.readF32(g, n);
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
    }
  });
});
