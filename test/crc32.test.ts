import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32 } from "../src/crc32.js";
import { Rng } from "../src/random.js";

// zlib's gzip trailer stores the CRC-32 of the input: an independent oracle.
function zlibCrc(bytes: Uint8Array): number {
  const gz = gzipSync(bytes);
  return new DataView(gz.buffer, gz.byteOffset + gz.length - 8, 4).getUint32(0, true);
}

describe("crc32 (slicing-by-8)", () => {
  it("matches the standard check value and zlib on every length and offset", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const rng = new Rng(3);
    const data = new Uint8Array(4099).map(() => rng.nextU32() & 0xff);
    for (const n of [1, 7, 8, 9, 15, 16, 17, 63, 64, 1000, 4099])
      for (const start of [0, 1, 3]) {
        if (start >= n) continue;
        expect(crc32(data, start, n)).toBe(zlibCrc(data.subarray(start, n)));
      }
  });
});

describe("model-file checks in WASM (engine cold-start path)", () => {
  it("crc32_u8 (slicing-by-8) equals its byte-at-a-time twin on every length, offset and split", async () => {
    const { loadKernels } = await import("../src/node/loadKernels.js");
    const k = loadKernels();
    const rng = new Rng(9);
    const n = 4133;
    const base = k.heapBase;
    k.ensure(base + n + 64);
    const bytes = new Uint8Array(n).map(() => rng.nextU32() & 0xff);
    k.u8.set(bytes, base);
    for (const len of [0, 1, 3, 7, 8, 9, 15, 16, 17, 100, 1024, 4133 - 5])
      for (const off of [0, 1, 2, 3, 5]) {
        if (off + len > n) continue;
        const want = k.abi.crc32_u8_bytewise(0, base + off, len) >>> 0;
        expect(k.abi.crc32_u8(0, base + off, len) >>> 0).toBe(want);
        expect(want).toBe(crc32(bytes, off, off + len));
        // Continuing from a running value equals one pass, at any split.
        for (const cut of [0, 1, 8, len >> 1, len]) {
          if (cut > len) continue;
          const first = k.abi.crc32_u8(0, base + off, cut);
          expect(k.abi.crc32_u8(first, base + off + cut, len - cut) >>> 0).toBe(want);
        }
      }
  });

  it("crc32_u8 and first_nonfinite_f32 agree with the JS versions", async () => {
    const { loadKernels } = await import("../src/node/loadKernels.js");
    const { kernelFileChecks } = await import("../src/engine.js");
    const k = loadKernels();
    const checks = kernelFileChecks(k);
    const rng = new Rng(5);
    const data = new Uint8Array(300_003).map(() => rng.nextU32() & 0xff);
    for (const [s, e] of [
      [0, 0],
      [0, 1],
      [3, 17],
      [0, 300_003],
      [7, 299_999],
      [0, 65536],
      [1, 65537],
    ])
      expect(checks.crc32(data, s, e)).toBe(crc32(data, s, e));
    for (const n of [0, 1, 15, 16, 17, 64, 1001]) {
      const f = new Float32Array(n).map(() => rng.next() * 2e38 - 1e38);
      expect(checks.firstNonFinite(f)).toBe(-1);
      for (const bad of [NaN, Infinity, -Infinity])
        for (const at of [0, n >> 1, n - 1]) {
          if (n === 0) continue;
          const g = f.slice();
          g[at] = bad;
          if (at > 0) g[at - 1] = 3.4e38; // finite extremes stay finite
          expect(checks.firstNonFinite(g)).toBe(at);
        }
    }
  });

  it("the Node entry checks model files with zlib's CRC-32 (Node >= 20.15): same values, same refusals", async () => {
    const zlib = process.getBuiltinModule?.("node:zlib") as { crc32?: unknown } | undefined;
    // This Node (20.20 in CI) has it, so the native path is the one under test here.
    expect(typeof zlib?.crc32).toBe("function");
    const { loadKernels } = await import("../src/node/loadKernels.js");
    const { InferenceEngine, kernelFileChecks } = await import("../src/node/engine.js").then(
      async (node) => ({ ...node, ...(await import("../src/engine.js")) }),
    );
    const checks = kernelFileChecks(loadKernels());
    const rng = new Rng(11);
    const data = new Uint8Array(200_001).map(() => rng.nextU32() & 0xff);
    for (const [s, e] of [
      [0, 0],
      [0, 1],
      [5, 77],
      [0, 200_001],
      [3, 199_998],
    ])
      expect(checks.crc32(data, s, e)).toBe(crc32(data, s, e));
    // A model file with one flipped bit is still refused through the Node entry.
    const { writeEnn } = await import("../src/ennFormat.js");
    const file = writeEnn({
      producer: "test",
      inputShape: [3],
      outputShape: [2],
      inputNormalization: { scale: 1, offset: 0 },
      ops: [{ op: "dense", units: 2, activation: "linear", kernel: 0, outShape: [2] }],
      tensors: [{ name: "k", dtype: "f32", shape: [3, 2], data: new Float32Array(6).fill(0.5) }],
    });
    expect(InferenceEngine.loadSync(file).predict(new Float32Array(3), 1).length).toBe(2);
    const bad = file.slice();
    bad[bad.length - 20] ^= 4;
    expect(() => InferenceEngine.loadSync(bad)).toThrow(/checksum mismatch/);
  });
});
