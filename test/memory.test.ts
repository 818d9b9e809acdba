import { describe, expect, it } from "vitest";
import { loadKernels } from "../src/node/loadKernels.js";

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
