import { describe, expect, it } from "vitest";
import { loadKernels } from "../src/node/loadKernels.js";
import { TAIL_SIZES, TestArena, expectSameBits, rng, uniform } from "./kernelHarness.js";

describe("kernel memory helpers", () => {
  it("fills and copies floats, including tails", () => {
    const k = loadKernels();
    const base = k.heapBase;
    expect(base % 64).toBe(0);
    k.ensure(base + 4096);
    for (const n of [0, 1, 3, 4, 7, 33]) {
      k.abi.fill_f32(base, n + 1, -1);
      k.abi.fill_f32(base, n, 2.5);
      const got = k.readF32(base, n + 1);
      expect(Array.from(got.subarray(0, n))).toEqual(new Array(n).fill(2.5));
      expect(got[n]).toBe(-1);
      k.abi.copy_f32(base + 1024, base, n);
      expect(Array.from(k.readF32(base + 1024, n))).toEqual(new Array(n).fill(2.5));
    }
  });

  it("re-creates views after memory grows", () => {
    const k = loadKernels();
    const before = k.f32;
    k.ensure(k.memory.buffer.byteLength + 65536);
    expect(before.length).toBe(0); // the old view is detached
    expect(k.f32 === before).toBe(false);
    expect(k.f32.length * 4).toBe(k.memory.buffer.byteLength);
  });
});

describe("batch gathering and elementwise helpers", () => {
  it("gather_rows_f32 copies rows by index, matching its scalar twin, for every row length", () => {
    const a = new TestArena();
    const r = rng(11);
    for (const rowLen of [1, 3, 4, 5, 8, 13, 784]) {
      for (const rows of [0, 1, 7, 32]) {
        a.reset();
        const datasetRows = 40;
        const data = uniform(datasetRows * rowLen, rowLen * 100 + rows);
        const idx = Array.from({ length: rows }, () => Math.floor(r() * datasetRows));
        const src = a.f32(datasetRows * rowLen, data, "src");
        const ip = a.i32(rows, idx, "idx");
        const dst = a.f32(rows * rowLen, 0, "dst", rowLen % 3); // also unaligned destinations
        const twin = a.f32(rows * rowLen, 0, "twin");
        a.abi.gather_rows_f32(rows, rowLen, src, ip, dst);
        a.k.twin("gather_rows_f32")(rows, rowLen, src, ip, twin);
        const want = new Float32Array(rows * rowLen);
        idx.forEach((i, row) =>
          want.set(data.subarray(i * rowLen, (i + 1) * rowLen), row * rowLen),
        );
        expectSameBits(a.read(dst, rows * rowLen), want, `gather rows=${rows} rowLen=${rowLen}`);
        expectSameBits(a.read(twin, rows * rowLen), want, "scalar twin");
        a.expectGuards(`rows=${rows} rowLen=${rowLen}`);
      }
    }
  });

  it("gather_i32 picks labels by index", () => {
    const a = new TestArena();
    const labels = Array.from({ length: 50 }, (_, i) => (i * 7) % 10);
    const idx = [49, 0, 3, 3, 17, 25, 1];
    const src = a.i32(labels.length, labels, "labels");
    const ip = a.i32(idx.length, idx, "idx");
    const dst = a.i32(idx.length, -1, "dst");
    a.abi.gather_i32(idx.length, src, ip, dst);
    expect(Array.from(a.readI32(dst, idx.length))).toEqual(idx.map((i) => labels[i]));
    a.expectGuards();
  });

  it("scale_f32, lincomb2_f32 and axpy_f32 match float32 arithmetic exactly on every tail", () => {
    const a = new TestArena();
    // Shard shares of a batch (e.g. 21/64): not exact in f32, so every rounding shows.
    const [s0, s1, s2] = [21 / 64, 43 / 64, -0.37].map(Math.fround);
    for (const n of TAIL_SIZES) {
      a.reset();
      const g0 = uniform(n, n + 1, -3, 3);
      const g1 = uniform(n, n + 2, -3, 3);
      const g2 = uniform(n, n + 3, -3, 3);
      const dst = a.f32(n, g0, "dst");
      const src = a.f32(n, g1, "src");
      const twin = a.f32(n, g0, "twin");
      // Two shards in one pass: g0*s0 + g1*s1, each product rounded, then the sum.
      a.abi.lincomb2_f32(n, dst, s0, src, s1);
      a.k.twin("lincomb2_f32")(n, twin, s0, src, s1);
      const two = g0.map((v, i) => Math.fround(Math.fround(v * s0) + Math.fround(g1[i] * s1)));
      expectSameBits(a.read(dst, n), two, `lincomb2 n=${n}`);
      expectSameBits(a.read(twin, n), two, `lincomb2 twin n=${n}`);
      // The other replica computes the same sum from the other side: the same bits.
      const mine = a.f32(n, g1, "mine");
      const other = a.f32(n, g0, "other");
      a.abi.lincomb2_f32(n, mine, s1, other, s0);
      expectSameBits(a.read(mine, n), two, `lincomb2 swapped n=${n}`);
      // A third shard: acc + g2*s2.
      const third = a.f32(n, g2, "third");
      a.abi.axpy_f32(n, dst, third, s2);
      a.k.twin("axpy_f32")(n, twin, third, s2);
      const three = two.map((v, i) => Math.fround(v + Math.fround(g2[i] * s2)));
      expectSameBits(a.read(dst, n), three, `axpy n=${n}`);
      expectSameBits(a.read(twin, n), three, `axpy twin n=${n}`);
      a.abi.scale_f32(n, dst, -0.37);
      a.k.twin("scale_f32")(n, twin, -0.37);
      const scaled = three.map((v) => Math.fround(v * Math.fround(-0.37)));
      expectSameBits(a.read(dst, n), scaled, `scale n=${n}`);
      expectSameBits(a.read(twin, n), scaled, `scale twin n=${n}`);
      a.expectGuards(`n=${n}`);
    }
  });
});
