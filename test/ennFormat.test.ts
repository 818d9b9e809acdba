// The .enn format: round trips, layout, and one targeted test per way a file can be wrong, each
// checking the error type, what it says and where it points.
import { describe, expect, it } from "vitest";
import { ENN_MAJOR, ModelFormatError, readEnn, writeEnn, type EnnModel } from "../src/ennFormat.js";
import { exportModel } from "../src/export.js";
import {
  fakeModel,
  fixCrc,
  headerOf,
  scaleShiftModel,
  smallCnn,
  smallMlp,
  tensorDataOffset,
  withHeader,
} from "./exportFixtures.js";

const mlp = exportModel(fakeModel(smallMlp, 3));
const cnnInt8 = exportModel(fakeModel(smallCnn, 4), { int8: true });

/** Runs fn, expects a ModelFormatError, returns it. */
function formatError(fn: () => unknown): ModelFormatError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ModelFormatError) return e;
    throw new Error(
      `expected ModelFormatError, got ${(e as Error)?.name}: ${(e as Error)?.message}`,
    );
  }
  throw new Error("expected ModelFormatError, nothing was thrown");
}

const read = (b: Uint8Array) => formatError(() => readEnn(b));
const copy = (b: Uint8Array) => b.slice();

describe(".enn round trip", () => {
  for (const [name, spec, int8] of [
    ["mlp", smallMlp, false],
    ["cnn", smallCnn, false],
    ["cnn int8", smallCnn, true],
    ["scaleShift", scaleShiftModel, false],
  ] as const)
    it(`${name}: the reader returns what the writer was given`, () => {
      const { bytes, content } = exportModel(fakeModel(spec, 7), { int8 });
      const m: EnnModel = readEnn(bytes);
      expect(m.version).toEqual({ major: ENN_MAJOR, minor: 0 });
      expect(m.checksumOk).toBe(true);
      expect(m.ops).toEqual(content.ops);
      expect(m.inputShape).toEqual(content.inputShape);
      expect(m.outputShape).toEqual(content.outputShape);
      expect(m.labels).toEqual(content.labels);
      expect(m.report).toEqual(content.report);
      expect(m.inputNormalization).toEqual({ scale: 1, offset: 0 });
      expect(m.tensors.length).toBe(content.tensors.length);
      m.tensors.forEach((t, i) => {
        expect(t.dtype).toBe(content.tensors[i].dtype);
        expect(t.shape).toEqual(content.tensors[i].shape);
        expect(Array.from(t.data)).toEqual(Array.from(content.tensors[i].data));
      });
      // Writing what was read gives the same bytes.
      expect(writeEnn(m)).toEqual(bytes);
    });

  it("lays the file out as documented: magic, version, lengths, 16-byte aligned data, CRC", () => {
    const b = mlp.bytes;
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(Array.from(b.subarray(0, 8))).toEqual([0x89, 0x45, 0x4e, 0x4e, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(v.getUint16(8, true)).toBe(1);
    expect(v.getUint16(10, true)).toBe(0);
    expect(v.getUint32(16, true)).toBe(b.length);
    const m = readEnn(b);
    expect(m.dataStart % 16).toBe(0);
    for (const e of m.tensorEntries) expect(e.offset % 16).toBe(0);
    // The first tensor is little-endian f32 at its offset.
    const first = m.tensors[0].data as Float32Array;
    expect(v.getFloat32(m.dataStart + m.tensorEntries[0].offset, true)).toBe(first[0]);
  });

  it("int8 kernels are stored as bytes with per-channel f32 scales", () => {
    const m = readEnn(cnnInt8.bytes);
    const kernels = m.tensors.filter((t) => t.name.endsWith(".kernel"));
    expect(kernels.every((t) => t.dtype === "i8" && t.data instanceof Int8Array)).toBe(true);
    const scales = m.tensors.filter((t) => t.name.endsWith(".kernelScale"));
    expect(scales.length).toBe(kernels.length);
    expect(scales.every((t) => t.dtype === "f32")).toBe(true);
  });

  it("accepts an ArrayBuffer and a Uint8Array at a non-zero offset", () => {
    const b = mlp.bytes;
    expect(readEnn(b.slice().buffer).ops.length).toBe(3);
    const big = new Uint8Array(b.length + 3);
    big.set(b, 3);
    expect(readEnn(big.subarray(3)).ops.length).toBe(3);
  });
});

describe(".enn loading is hardened", () => {
  it("truncated files say so, with the missing byte count", () => {
    for (const n of [0, 10, 27, 100, mlp.bytes.length - 1]) {
      const e = read(mlp.bytes.subarray(0, n));
      expect(e.message).toMatch(/truncated/);
    }
    expect(read(mlp.bytes.subarray(0, mlp.bytes.length - 5)).message).toMatch(/5 missing/);
  });

  it("extra bytes after the end are refused", () => {
    const b = new Uint8Array(mlp.bytes.length + 8);
    b.set(mlp.bytes);
    expect(read(b).message).toMatch(/8 unexpected bytes/);
  });

  it("bad magic, and a training checkpoint given by mistake", () => {
    const b = copy(mlp.bytes);
    b[3] = 0x41;
    const e = read(b);
    expect(e.message).toMatch(/bad magic/);
    expect(e.where.offset).toBe(3);
    const ck = copy(mlp.bytes);
    ck.set(new TextEncoder().encode("EDGENNCK"), 0);
    expect(read(ck).message).toMatch(/training checkpoint.*edgenn export/);
  });

  it("a newer major version is refused with a clear message; a newer minor loads", () => {
    const b = copy(mlp.bytes);
    new DataView(b.buffer).setUint16(8, ENN_MAJOR + 1, true);
    const e = read(fixCrc(b));
    expect(e.message).toMatch(/version 2\.0 is newer than this edgenn reads \(1\.x\); upgrade/);
    const minor = copy(mlp.bytes);
    new DataView(minor.buffer).setUint16(10, 7, true);
    expect(readEnn(fixCrc(minor)).version).toEqual({ major: 1, minor: 7 });
    const zero = copy(mlp.bytes);
    new DataView(zero.buffer).setUint16(8, 0, true);
    expect(read(fixCrc(zero)).message).toMatch(/does not exist/);
  });

  it("a flipped bit anywhere is a checksum mismatch naming both CRCs", () => {
    for (const at of [30, 200, mlp.bytes.length - 40, mlp.bytes.length - 2]) {
      const b = copy(mlp.bytes);
      b[at] ^= 0x10;
      const e = read(b);
      expect(e.message).toMatch(
        /checksum mismatch: stored CRC-32 [0-9a-f]{8}, computed [0-9a-f]{8}/,
      );
    }
  });

  it("verifyChecksum: false reads a damaged file and reports it", () => {
    const b = copy(mlp.bytes);
    b[tensorDataOffset(b, 0) + 1] ^= 1;
    const m = readEnn(b, { verifyChecksum: false });
    expect(m.checksumOk).toBe(false);
  });

  it("files and headers over the configured limits are refused before parsing", () => {
    expect(
      formatError(() => readEnn(mlp.bytes, { limits: { maxFileBytes: 1000 } })).message,
    ).toMatch(/over the 1000-byte limit/);
    expect(
      formatError(() => readEnn(mlp.bytes, { limits: { maxHeaderBytes: 100 } })).message,
    ).toMatch(/header is \d+ bytes, over the 100-byte limit/);
    const b = copy(mlp.bytes);
    new DataView(b.buffer).setUint32(12, 0xfffffff0, true);
    expect(read(fixCrc(b)).message).toMatch(/header is \d+ bytes, over/);
    const c = copy(mlp.bytes);
    new DataView(c.buffer).setUint32(12, b.length, true);
    expect(read(fixCrc(c)).message).toMatch(/runs past the end/);
  });

  it("malformed JSON gives the parser's position", () => {
    const e = read(withHeader(mlp.bytes, (h) => JSON.stringify(h).slice(0, -1)));
    expect(e.message).toMatch(/header is not valid JSON/);
    expect(read(withHeader(mlp.bytes, () => "\u00ff\u00fe")).message).toMatch(/inputShape|header/);
  });

  it("invalid UTF-8 in the header", () => {
    const b = withHeader(mlp.bytes, (h) => JSON.stringify({ ...h, producer: "xx" }));
    const i = new TextDecoder().decode(b).indexOf('"xx"');
    const at = new TextEncoder().encode(new TextDecoder().decode(b).slice(0, i)).length + 1;
    b[at] = 0xc3;
    b[at + 1] = 0x28;
    expect(read(fixCrc(b)).message).toMatch(/not valid UTF-8/);
  });

  it("deeply nested JSON is refused by a byte scan before parsing", () => {
    const deep = "[".repeat(100000) + "]".repeat(100000);
    const e = read(
      withHeader(mlp.bytes, (h) =>
        JSON.stringify({ ...h, extra: 0 }).replace('"extra":0', `"extra":${deep}`),
      ),
    );
    expect(e.message).toMatch(/nests deeper than 16 levels/);
    expect(e.where.offset).toBeGreaterThan(24);
  });

  it("prototype-pollution keys are refused", () => {
    for (const key of ["__proto__", "constructor", "prototype"]) {
      const e = read(
        withHeader(mlp.bytes, (h) =>
          JSON.stringify(h).replace('"op":"dense"', `"${key}":{"polluted":1},"op":"dense"`),
        ),
      );
      expect(e.message).toMatch(/forbidden key/);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("wrong types and huge numbers name the field and the op", () => {
    let e = read(withHeader(mlp.bytes, (h) => void (h.ops[1].units = "12")));
    expect(e.where).toMatchObject({ op: 1, field: "ops[1].units" });
    expect(e.message).toMatch(/op 1.*must be an integer/);
    e = read(
      withHeader(mlp.bytes, (h) => JSON.stringify(h).replace('"units":16', '"units":1e400')),
    );
    expect(e.message).toMatch(/ops\[0\]\.units.*must be an integer/);
    e = read(withHeader(mlp.bytes, (h) => void (h.ops[1].alpha = 1e300)));
    expect(e.message).toMatch(/ops\[1\]\.alpha/);
    e = read(withHeader(mlp.bytes, (h) => void (h.ops = { length: 3 })));
    expect(e.message).toMatch(/field ops\).*must be an array/);
    e = read(withHeader(mlp.bytes, () => "[1,2]"));
    expect(e.message).toMatch(/header.*must be an object/);
    e = read(withHeader(mlp.bytes, (h) => void (h.inputNormalization = { scale: "1", offset: 0 })));
    expect(e.message).toMatch(/inputNormalization\.scale/);
  });

  it("unknown ops and activations", () => {
    let e = read(withHeader(mlp.bytes, (h) => void (h.ops[2].op = "attention")));
    expect(e.message).toMatch(/op 2.*unknown op "attention"; this edgenn knows dense, conv2d/);
    e = read(withHeader(mlp.bytes, (h) => void (h.ops[0].activation = "gelu")));
    expect(e.message).toMatch(/ops\[0\]\.activation.*must be one of/);
  });

  it("shape and length mismatches", () => {
    let e = read(withHeader(mlp.bytes, (h) => void (h.ops[0].outShape = [17])));
    expect(e.message).toMatch(/op 0.*outShape.*computes \[16\]/);
    e = read(withHeader(mlp.bytes, (h) => void (h.inputShape = [21])));
    expect(e.message).toMatch(/op 0.*tensor 0 has shape \[20, 16\], expected \[21, 16\]/);
    e = read(withHeader(mlp.bytes, (h) => void (h.tensors[0].bytes += 4)));
    expect(e.where.tensor).toBe(0);
    expect(e.message).toMatch(/bytes.*needs 1280/);
    e = read(withHeader(mlp.bytes, (h) => void (h.outputShape = [5])));
    expect(e.message).toMatch(/outputShape/);
    e = read(withHeader(mlp.bytes, (h) => void (h.labels = ["only one"])));
    expect(e.message).toMatch(/labels/);
    e = read(withHeader(cnnInt8.bytes, (h) => void (h.ops[0].pad = [3, 0, 0, 0])));
    expect(e.message).toMatch(/ops\[0\]\.pad\[0\]/);
  });

  it("dimension products that overflow are caught with checked multiplication", () => {
    let e = read(
      withHeader(cnnInt8.bytes, (h) => void (h.inputShape = [1048576, 1048576, 1048576])),
    );
    expect(e.message).toMatch(/more than 16777216 elements/);
    e = read(
      withHeader(mlp.bytes, (h) => void (h.tensors[0].shape = [65536, 65536, 65536, 65536])),
    );
    expect(e.message).toMatch(/tensors\[0\]\.shape.*more than/);
    e = read(withHeader(mlp.bytes, (h) => void (h.inputShape = [2 ** 53])));
    expect(e.message).toMatch(/inputShape\[0\]/);
  });

  it("offsets out of range, misaligned or overlapping; unused or shared tensors", () => {
    let e = read(withHeader(mlp.bytes, (h) => void (h.tensors[1].offset = 1e9)));
    expect(e.message).toMatch(/tensor 1.*offset/);
    e = read(withHeader(mlp.bytes, (h) => void (h.tensors[1].offset += 4)));
    expect(e.message).toMatch(/not a multiple of 16/);
    e = read(withHeader(mlp.bytes, (h) => void (h.tensors[1].offset = h.tensors[0].offset)));
    expect(e.message).toMatch(/overlaps/);
    e = read(withHeader(mlp.bytes, (h) => void (h.tensors[2].offset = h.tensors[2].offset - 16)));
    expect(e.message).toMatch(/overlaps/);
    e = read(withHeader(mlp.bytes, (h) => void (h.ops[1].kernel = 0)));
    expect(e.message).toMatch(/already used by op 0/);
    e = read(withHeader(mlp.bytes, (h) => void delete h.ops[0].bias));
    expect(e.message).toMatch(/tensor 1.*not used by any op/);
    e = read(withHeader(mlp.bytes, (h) => void (h.ops[0].kernel = 99)));
    expect(e.message).toMatch(/ops\[0\]\.kernel/);
  });

  it("non-finite weights and the int8 value -128 are refused", () => {
    const b = copy(mlp.bytes);
    new DataView(b.buffer).setFloat32(tensorDataOffset(b, 0) + 8, NaN, true);
    const e = read(fixCrc(b));
    expect(e.where.tensor).toBe(0);
    expect(e.message).toMatch(/non-finite value \(NaN\) at element 2/);
    const q = copy(cnnInt8.bytes);
    q[tensorDataOffset(q, 0)] = 0x80;
    expect(read(fixCrc(q)).message).toMatch(/-128/);
  });

  it("the writer refuses what the reader would: a diverged model's NaN weights", () => {
    const m = fakeModel(smallMlp, 3);
    const w = m.getWeights();
    w.get("layers.4.kernel")![5] = NaN;
    const e = formatError(() => exportModel({ resolved: m.resolved, getWeights: () => w }));
    expect(e.message).toMatch(/ops\.1\.kernel holds NaN at element 5: .*diverged/);
  });

  it("the report must be well-formed too (inspect prints it)", () => {
    const e = read(withHeader(mlp.bytes, (h) => void (h.report.entries[0].note = 5)));
    expect(e.message).toMatch(/report\.entries\[0\]\.note/);
  });

  it("a hostile header cannot reach Object.prototype through missing fields", () => {
    // "toString" is on every object's prototype; the reader only reads own fields.
    const e = read(withHeader(mlp.bytes, (h) => void delete h.producer));
    expect(e.message).toMatch(/producer.*must be a string/);
    expect(headerOf(mlp.bytes).producer).toMatch(/^edgenn /);
  });
});
