// Dropout (assembly/dropout.ts): the 4-lane xoshiro128** stream and its seeding, the mask's values
// and statistics, bit-exact agreement with the scalar twin (which runs the same generator one lane
// at a time), reproducibility from a seed, and the backward's use of the mask.
import { describe, expect, it } from "vitest";
import { TAIL_SIZES, TestArena, expectSameBits, normal } from "./kernelHarness.js";

function seeded(a: TestArena, seed: number): number {
  const state = a.f32(a.abi.rng_state_bytes() / 4, 0, "rng state");
  a.abi.rng_seed(state, seed);
  return state;
}

function runDropout(
  a: TestArena,
  x: Float32Array,
  rate: number,
  seed: number,
  twin = false,
): { y: Float32Array; mask: Float32Array } {
  const n = x.length;
  const xp = a.f32(n, x, "x");
  const y = a.f32(n, NaN, "y");
  const mask = a.f32(n, NaN, "mask");
  const f = twin ? a.k.twin("dropout_fwd_train_f32") : a.abi.dropout_fwd_train_f32;
  f(n, xp, y, mask, rate, seeded(a, seed));
  return { y: a.read(y, n), mask: a.read(mask, n) };
}

describe("rng", () => {
  it("has a 64-byte state (4 lanes x 4 words) that seeding fills without zero lanes", () => {
    const a = new TestArena();
    expect(a.abi.rng_state_bytes()).toBe(64);
    for (const seed of [0, 1, 2, 0xffffffff, 123456789]) {
      const s = seeded(a, seed);
      const words = a.readI32(s, 16);
      for (let lane = 0; lane < 4; lane++) {
        const laneWords = [0, 1, 2, 3].map((w) => words[w * 4 + lane]);
        expect(laneWords.some((w) => w !== 0)).toBe(true);
      }
      expect(new Set(words).size).toBe(16);
    }
  });

  it("rng_next_f32 is uniform in [0, 1): range, mean, variance and a 10-bin chi-square", () => {
    const a = new TestArena();
    const s = seeded(a, 42);
    const n = 100000;
    const bins = new Array(10).fill(0);
    let sum = 0;
    let sq = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const u = a.abi.rng_next_f32(s);
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
      sum += u;
      sq += u * u;
      bins[Math.floor(u * 10)]++;
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    const mean = sum / n;
    // Uniform: mean 1/2 (sd 1/sqrt(12 n)), E[u^2] = 1/3; chi-square with 9 dof < 27.9 (p = 0.001).
    expect(Math.abs(mean - 0.5)).toBeLessThan(5 / Math.sqrt(12 * n));
    expect(Math.abs(sq / n - 1 / 3)).toBeLessThan(0.005);
    const chi2 = bins.reduce((acc, b) => acc + (b - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9);
  });

  it("nearby seeds give unrelated streams (splitmix32 expansion)", () => {
    const a = new TestArena();
    const draw = (seed: number): number[] => {
      const s = seeded(a, seed);
      return Array.from({ length: 64 }, () => a.abi.rng_next_f32(s));
    };
    const s0 = draw(1);
    const s1 = draw(2);
    // Correlation of two independent 64-sample uniform streams: |r| < 0.5 by a wide margin.
    const m0 = s0.reduce((p, v) => p + v, 0) / 64;
    const m1 = s1.reduce((p, v) => p + v, 0) / 64;
    let c = 0;
    let v0 = 0;
    let v1 = 0;
    for (let i = 0; i < 64; i++) {
      c += (s0[i] - m0) * (s1[i] - m1);
      v0 += (s0[i] - m0) ** 2;
      v1 += (s1[i] - m1) ** 2;
    }
    expect(Math.abs(c / Math.sqrt(v0 * v1))).toBeLessThan(0.5);
    expect(s0.filter((v, i) => v === s1[i]).length).toBe(0);
  });
});

describe("dropout_fwd_train_f32", () => {
  it("matches its scalar twin bit for bit on every tail length, and advances the state alike", () => {
    const a = new TestArena();
    for (const n of TAIL_SIZES) {
      for (const rate of [0, 0.3, 0.5]) {
        a.reset();
        const x = normal(n, n + 1);
        const s = runDropout(a, x, rate, 7);
        const t = runDropout(a, x, rate, 7, true);
        expectSameBits(s.mask, t.mask, `mask n=${n} rate=${rate}`);
        expectSameBits(s.y, t.y, `y n=${n} rate=${rate}`);
        a.expectGuards(`n=${n}`);
      }
    }
    // The state after a call is the same either way (the next call continues one stream).
    const st1 = seeded(a, 99);
    const st2 = seeded(a, 99);
    const x = a.f32(13, 1);
    a.abi.dropout_fwd_train_f32(13, x, a.f32(13), a.f32(13), 0.5, st1);
    a.k.twin("dropout_fwd_train_f32")(13, x, a.f32(13), a.f32(13), 0.5, st2);
    expect(Array.from(a.readI32(st1, 16))).toEqual(Array.from(a.readI32(st2, 16)));
  });

  it("is the identity at rate 0 (mask exactly 1, y bitwise x, NaN and -0 included)", () => {
    const a = new TestArena();
    const x = normal(1001, 3);
    x[0] = -0;
    x[1] = NaN;
    x[2] = Infinity;
    const { y, mask } = runDropout(a, x, 0, 5);
    expect(mask.every((m) => m === 1)).toBe(true);
    expectSameBits(y, x, "y");
  });

  for (const rate of [0.1, 0.5, 0.8]) {
    it(`at rate ${rate}: mask in {0, 1/(1-rate)}, drop fraction and mean of y within 5 standard errors`, () => {
      const a = new TestArena();
      const n = 200003;
      const { y, mask } = runDropout(a, new Float32Array(n).fill(1), rate, 1234);
      // The kernel receives rate as f32 and forms 1/(1-rate) in f32.
      const scale = Math.fround(1 / Math.fround(1 - Math.fround(rate)));
      expect(mask.every((m) => m === 0 || m === scale)).toBe(true);
      const dropped = mask.filter((m) => m === 0).length / n;
      const seDrop = Math.sqrt((rate * (1 - rate)) / n);
      expect(Math.abs(dropped - rate)).toBeLessThan(5 * seDrop);
      // E[y] = x = 1 (inverted dropout); sd of one y is scale*sqrt(rate*(1-rate)).
      const meanY = y.reduce((p, v) => p + v, 0) / n;
      const seMean = (scale * Math.sqrt(rate * (1 - rate))) / Math.sqrt(n);
      expect(Math.abs(meanY - 1)).toBeLessThan(5 * seMean);
      expectSameBits(y, mask, "y = 1*mask");
    });
  }

  it("the same seed reproduces the mask; a different seed or a continued stream does not", () => {
    const a = new TestArena();
    const x = normal(4099, 8);
    const m1 = runDropout(a, x, 0.5, 2024).mask;
    const m2 = runDropout(a, x, 0.5, 2024).mask;
    const m3 = runDropout(a, x, 0.5, 2025).mask;
    expectSameBits(m1, m2, "same seed");
    const differ = m1.filter((v, i) => v !== m3[i]).length / x.length;
    expect(differ).toBeGreaterThan(0.4); // independent masks differ in half the places
    // Two calls on one state: the second mask continues the stream.
    const state = seeded(a, 2024);
    const xp = a.f32(x.length, x);
    const mp = a.f32(x.length);
    a.abi.dropout_fwd_train_f32(x.length, xp, a.f32(x.length), mp, 0.5, state);
    expectSameBits(a.read(mp, x.length), m1, "first call");
    a.abi.dropout_fwd_train_f32(x.length, xp, a.f32(x.length), mp, 0.5, state);
    const again = a.read(mp, x.length);
    expect(again.filter((v, i) => v !== m1[i]).length / x.length).toBeGreaterThan(0.4);
  });
});

describe("dropout_bwd_f32", () => {
  it("dx = dy*mask, matching its twin on every tail length", () => {
    const a = new TestArena();
    for (const n of TAIL_SIZES) {
      a.reset();
      const { mask } = runDropout(a, normal(n, 1), 0.4, n);
      const dyv = normal(n, n + 2);
      const dy = a.f32(n, dyv, "dy");
      const mp = a.f32(n, mask, "mask");
      const dx = a.f32(n, NaN, "dx");
      const dxt = a.f32(n, NaN, "dxTwin");
      a.abi.dropout_bwd_f32(n, dy, mp, dx);
      a.k.twin("dropout_bwd_f32")(n, dy, mp, dxt);
      const want = dyv.map((v, i) => Math.fround(v * mask[i]));
      expectSameBits(a.read(dx, n), want, `n=${n}`);
      expectSameBits(a.read(dxt, n), want, `twin n=${n}`);
      a.expectGuards(`n=${n}`);
    }
  });
});
