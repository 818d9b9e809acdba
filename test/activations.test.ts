// Activation kernels (assembly/activations.ts): SIMD kernels against their scalar twins (which
// compute in float64 with Math.* and round once) on every tail length, the vectorised exp-based
// ones against float64 over their whole range and at special values, and every backward against
// central finite differences of its forward.
import { describe, expect, it } from "vitest";
import type { KernelAbi } from "../src/kernelAbi.js";
import {
  TAIL_SIZES,
  TestArena,
  dot64,
  expectClose,
  expectSameBits,
  finiteDiff,
  normal,
  uniform,
} from "./kernelHarness.js";

/** Inputs that exercise every branch: random values, both zeros, infinities and NaN. */
function activationInput(n: number, seed: number, scale = 4): Float32Array {
  const x = normal(n, seed, scale);
  const special = [0, -0, Infinity, -Infinity, NaN, 1e-30, -1e-30, 88, -88, 1e-4, -1e-4];
  for (let i = 0; i < n; i += 7) x[i] = special[(i / 7) % special.length];
  return x;
}

type Unary = (n: number, x: number, y: number) => void;

/** Wraps the kernels that take an alpha as unary functions of (n, x, y). */
const forwards: Record<string, { simd: (a: TestArena) => Unary; twin: (a: TestArena) => Unary }> = {
  relu: { simd: (a) => a.abi.relu_fwd_f32, twin: (a) => a.k.twin("relu_fwd_f32") },
  leakyRelu: {
    simd: (a) => (n, x, y) => a.abi.leaky_relu_fwd_f32(n, x, y, 0.2),
    twin: (a) => (n, x, y) => a.k.twin("leaky_relu_fwd_f32")(n, x, y, 0.2),
  },
  elu: {
    simd: (a) => (n, x, y) => a.abi.elu_fwd_f32(n, x, y, 1.3),
    twin: (a) => (n, x, y) => a.k.twin("elu_fwd_f32")(n, x, y, 1.3),
  },
  tanh: { simd: (a) => a.abi.tanh_fwd_f32, twin: (a) => a.k.twin("tanh_fwd_f32") },
  sigmoid: { simd: (a) => a.abi.sigmoid_fwd_f32, twin: (a) => a.k.twin("sigmoid_fwd_f32") },
};

/** float64 definitions (TF.js semantics) for the whole-range sweep. */
const reference: Record<string, (x: number) => number> = {
  relu: (x) => (x < 0 ? 0 : x),
  leakyRelu: (x) => (x > 0 ? x : 0.2 * x),
  elu: (x) => (x > 0 ? x : 1.3 * Math.expm1(x)),
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
};

describe("activation forwards", () => {
  for (const name of Object.keys(forwards)) {
    it(`${name}: SIMD matches its scalar twin on every tail length`, () => {
      const a = new TestArena();
      const exact = name === "relu" || name === "leakyRelu";
      for (const n of TAIL_SIZES) {
        a.reset();
        const x = activationInput(n, n + 3);
        const xp = a.f32(n, x, "x");
        const y = a.f32(n, 0, "y");
        const yt = a.f32(n, 0, "yTwin");
        forwards[name].simd(a)(n, xp, y);
        forwards[name].twin(a)(n, xp, yt);
        if (exact) expectSameBits(a.read(y, n), a.read(yt, n), `${name} n=${n}`);
        else expectClose(a.read(y, n), a.read(yt, n), { rtol: 2e-6, atol: 2e-6 }, `${name} n=${n}`);
        a.expectGuards(`${name} n=${n}`);
      }
    });

    it(`${name}: matches float64 over [-100, 100], at tiny magnitudes and special values`, () => {
      const a = new TestArena();
      const xs: number[] = [];
      for (let i = -200000; i <= 200000; i++) xs.push(i / 2000); // step 5e-4 over [-100, 100]
      for (let e = -40; e <= 0; e += 0.25) xs.push(10 ** e, -(10 ** e));
      xs.push(0, -0, Infinity, -Infinity, NaN, 3.4e38, -3.4e38, 1e-45, -1e-45);
      const x = Float32Array.from(xs);
      const n = x.length;
      const xp = a.f32(n, x);
      const y = a.f32(n);
      forwards[name].simd(a)(n, xp, y);
      const want = Float64Array.from(x, reference[name]);
      // Relative 1e-6 (a few ulp); the absolute floor only matters where f32 goes denormal.
      expectClose(a.read(y, n), want, { rtol: 1e-6, atol: 1e-37 }, name);
      const got = a.read(y, n);
      if (name !== "relu" && name !== "leakyRelu") {
        // Saturation is exact; tanh keeps the sign of zero.
        const at = (v: number): number => got[xs.indexOf(v)];
        if (name === "tanh") expect(Object.is(at(-0), -0)).toBe(true);
        else expect(at(-0)).toBe(name === "sigmoid" ? 0.5 : 0); // elu: either zero
        expect(at(Infinity)).toBe(name === "elu" ? Infinity : 1);
        expect(at(-Infinity)).toBe(
          name === "tanh" ? -1 : name === "sigmoid" ? 0 : Math.fround(-1.3),
        );
      }
    });
  }

  it("relu passes NaN through and leaks nothing below zero", () => {
    const a = new TestArena();
    const x = a.f32(5, [NaN, -1, -0, 2, -Infinity]);
    const y = a.f32(5);
    a.abi.relu_fwd_f32(5, x, y);
    const got = Array.from(a.read(y, 5));
    expect(Number.isNaN(got[0])).toBe(true);
    expect(got.slice(1)).toEqual([0, -0, 2, 0]);
  });
});

type Backward = (a: TestArena, n: number, x: number, y: number, dy: number, dx: number) => void;

const backwards: Record<string, { simd: Backward; twin: Backward }> = {
  relu: {
    simd: (a, n, _x, y, dy, dx) => a.abi.relu_bwd_f32(n, y, dy, dx),
    twin: (a, n, _x, y, dy, dx) => a.k.twin("relu_bwd_f32")(n, y, dy, dx),
  },
  leakyRelu: {
    simd: (a, n, x, _y, dy, dx) => a.abi.leaky_relu_bwd_f32(n, x, dy, dx, 0.2),
    twin: (a, n, x, _y, dy, dx) => a.k.twin("leaky_relu_bwd_f32")(n, x, dy, dx, 0.2),
  },
  elu: {
    simd: (a, n, x, y, dy, dx) => a.abi.elu_bwd_f32(n, x, y, dy, dx, 1.3),
    twin: (a, n, x, y, dy, dx) => a.k.twin("elu_bwd_f32")(n, x, y, dy, dx, 1.3),
  },
  tanh: {
    simd: (a, n, _x, y, dy, dx) => a.abi.tanh_bwd_f32(n, y, dy, dx),
    twin: (a, n, _x, y, dy, dx) => a.k.twin("tanh_bwd_f32")(n, y, dy, dx),
  },
  sigmoid: {
    simd: (a, n, _x, y, dy, dx) => a.abi.sigmoid_bwd_f32(n, y, dy, dx),
    twin: (a, n, _x, y, dy, dx) => a.k.twin("sigmoid_bwd_f32")(n, y, dy, dx),
  },
};

describe("activation backwards", () => {
  for (const name of Object.keys(backwards)) {
    it(`${name}: SIMD matches its scalar twin on every tail length`, () => {
      const a = new TestArena();
      for (const n of TAIL_SIZES) {
        a.reset();
        const x = normal(n, n + 11, 3);
        const xp = a.f32(n, x, "x");
        const y = a.f32(n, 0, "y");
        forwards[name].simd(a)(n, xp, y);
        const dy = a.f32(n, normal(n, n + 12), "dy");
        const dx = a.f32(n, 0, "dx");
        const dxt = a.f32(n, 0, "dxTwin");
        backwards[name].simd(a, n, xp, y, dy, dx);
        backwards[name].twin(a, n, xp, y, dy, dxt);
        expectClose(a.read(dx, n), a.read(dxt, n), { rtol: 2e-6, atol: 1e-7 }, `${name} n=${n}`);
        a.expectGuards(`${name} n=${n}`);
      }
    });

    it(`${name}: is the derivative of the forward (finite differences)`, () => {
      const a = new TestArena();
      const n = 41;
      // Away from the kinks of relu/leakyRelu/elu at 0, where the derivative jumps.
      const x = uniform(n, 5, -4, 4).map((v) => (Math.abs(v) < 0.05 ? v + 0.1 : v));
      const r = normal(n, 6);
      const xp = a.f32(n, x);
      const y = a.f32(n);
      const rp = a.f32(n, r);
      const dx = a.f32(n);
      const loss = (xv: Float32Array): number => {
        a.write(xp, xv);
        forwards[name].simd(a)(n, xp, y);
        return dot64(a.read(y, n), r);
      };
      const fd = finiteDiff(x, loss, 1e-3);
      a.write(xp, x);
      forwards[name].simd(a)(n, xp, y);
      backwards[name].simd(a, n, xp, y, rp, dx);
      expectClose(a.read(dx, n), fd, { rtol: 1e-2, atol: 1e-3 }, name);
    });
  }

  it("elu's gradient keeps its relative accuracy for very negative x (no y + alpha cancellation)", () => {
    const a = new TestArena();
    const x = Float32Array.from([-5, -10, -15, -20, -30, -50]);
    const xp = a.f32(6, x);
    const y = a.f32(6);
    a.abi.elu_fwd_f32(6, xp, y, 1.3);
    const dx = a.f32(6);
    a.abi.elu_bwd_f32(6, xp, y, a.f32(6, 1), dx, 1.3);
    expectClose(
      a.read(dx, 6),
      Array.from(x, (v) => 1.3 * Math.exp(v)),
      { rtol: 1e-6, atol: 0 },
      "",
    );
  });
});

describe("softmax", () => {
  const shapes: Array<[number, number]> = [];
  for (const R of [0, 1, 2, 5]) for (const C of [1, 3, 4, 7, 8, 10, 64]) shapes.push([R, C]);

  it("forward matches its float64 twin and rows sum to 1, on every row-length tail", () => {
    const a = new TestArena();
    for (const [R, C] of shapes) {
      a.reset();
      const x = normal(R * C, R * 100 + C, 5);
      const xp = a.f32(R * C, x, "x");
      const y = a.f32(R * C, 0, "y");
      const yt = a.f32(R * C, 0, "yTwin");
      a.abi.softmax_fwd_f32(R, C, xp, y);
      a.k.twin("softmax_fwd_f32")(R, C, xp, yt);
      const got = a.read(y, R * C);
      expectClose(got, a.read(yt, R * C), { rtol: 2e-6, atol: 1e-9 }, `R=${R} C=${C}`);
      for (let r = 0; r < R; r++) {
        const s = got.subarray(r * C, (r + 1) * C).reduce((p, v) => p + v, 0);
        expect(Math.abs(s - 1)).toBeLessThan(1e-6 * C);
      }
      a.expectGuards(`R=${R} C=${C}`);
    }
  });

  it("is stable for huge logits and -Infinity entries", () => {
    const a = new TestArena();
    const rows = [
      [1e4, 1e4 - 1, -1e4, 0],
      [3e38, -3e38, 3e38, 1],
      [-1e4, -1e4 - 2, -1e4 - 1, -Infinity],
      [-3e38, -3e38, -3e38, -3e38],
    ];
    const C = 4;
    const R = rows.length;
    const xp = a.f32(R * C, rows.flat());
    const y = a.f32(R * C);
    a.abi.softmax_fwd_f32(R, C, xp, y);
    const got = a.read(y, R * C);
    const want = rows.flatMap((row) => {
      const m = Math.max(...row.map(Math.fround));
      const e = row.map((v) => Math.exp(Math.fround(v) - m));
      const s = e.reduce((p, v) => p + v, 0);
      return e.map((v) => v / s);
    });
    expectClose(got, want, { rtol: 2e-6, atol: 1e-30 }, "huge logits");
  });

  it("backward matches its twin and finite differences of the forward", () => {
    const a = new TestArena();
    for (const [R, C] of shapes) {
      a.reset();
      const x = normal(R * C, R + C * 7, 2);
      const xp = a.f32(R * C, x, "x");
      const y = a.f32(R * C, 0, "y");
      a.abi.softmax_fwd_f32(R, C, xp, y);
      const dy = a.f32(R * C, normal(R * C, 9), "dy");
      const dx = a.f32(R * C, 0, "dx");
      const dxt = a.f32(R * C, 0, "dxTwin");
      a.abi.softmax_bwd_f32(R, C, y, dy, dx);
      a.k.twin("softmax_bwd_f32")(R, C, y, dy, dxt);
      expectClose(
        a.read(dx, R * C),
        a.read(dxt, R * C),
        { rtol: 1e-5, atol: 1e-7 },
        `R=${R} C=${C}`,
      );
      a.expectGuards(`R=${R} C=${C}`);
    }
    a.reset();
    const R = 3;
    const C = 6;
    const x = normal(R * C, 77, 2);
    const r = normal(R * C, 78);
    const xp = a.f32(R * C, x);
    const y = a.f32(R * C);
    const loss = (xv: Float32Array): number => {
      a.write(xp, xv);
      a.abi.softmax_fwd_f32(R, C, xp, y);
      return dot64(a.read(y, R * C), r);
    };
    const fd = finiteDiff(x, loss, 1e-3);
    a.write(xp, x);
    a.abi.softmax_fwd_f32(R, C, xp, y);
    const dx = a.f32(R * C);
    a.abi.softmax_bwd_f32(R, C, y, a.f32(R * C, r), dx);
    expectClose(a.read(dx, R * C), fd, { rtol: 1e-2, atol: 1e-3 }, "finite differences");
  });
});

// Keeps the ABI import used for type-checking the wrappers above.
export type _Abi = KernelAbi;
