import { describe, expect, it } from "vitest";
import { firstNonFinite } from "../src/finite.js";
import { Rng } from "../src/random.js";

/** The oracle: one compare per element. */
function firstNonFiniteScalar(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

describe("firstNonFinite", () => {
  it("finds NaN and ±Infinity at every position of arrays that end inside and outside the 8-wide loop", () => {
    for (let n = 0; n <= 35; n++) {
      const clean = Float32Array.from({ length: n }, (_, i) => (i % 7) - 3.5);
      expect(firstNonFinite(clean)).toBe(-1);
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (let at = 0; at < n; at++) {
          const x = clean.slice();
          x[at] = bad;
          if (at + 3 < n) x[at + 3] = bad; // a later one does not hide the first
          expect(firstNonFinite(x)).toBe(at);
          expect(firstNonFinite(x)).toBe(firstNonFiniteScalar(x));
        }
      }
    }
  });

  it("takes every finite float32 as finite: ±0, subnormals, ±float32 max, mixed signs that sum to 0", () => {
    const max = 3.4028234663852886e38;
    const x = new Float32Array([-0, 0, 1e-45, -1e-45, 1.17549435e-38, max, -max, max, max, -5, 5]);
    expect(firstNonFinite(x)).toBe(-1);
    // Big values whose products with 0 are all zero, and no overflow from summing them.
    expect(firstNonFinite(new Float32Array(1000).fill(max))).toBe(-1);
  });

  it("agrees with the oracle on random arrays with rare non-finite values", () => {
    const rng = new Rng(12345);
    for (let t = 0; t < 200; t++) {
      const x = Float32Array.from({ length: 1 + rng.int(300) }, () => (rng.next() - 0.5) * 1e6);
      if (rng.next() < 0.7) x[rng.int(x.length)] = [NaN, Infinity, -Infinity][t % 3];
      expect(firstNonFinite(x)).toBe(firstNonFiniteScalar(x));
    }
  });

  it("scans views at an offset into a larger buffer", () => {
    const buf = new Float32Array(40);
    buf[2] = NaN; // outside the view
    const view = buf.subarray(4, 36);
    expect(firstNonFinite(view)).toBe(-1);
    buf[20] = -Infinity;
    expect(firstNonFinite(view)).toBe(16);
  });
});
