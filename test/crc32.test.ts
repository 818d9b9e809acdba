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
