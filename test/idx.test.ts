import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeIdx, IdxFormatError, isGzip, parseIdx, type IdxArray } from "../src/idx.js";
import {
  classCounts,
  flattenShape,
  idxToDataset,
  subsetDataset,
  type Dataset,
} from "../src/dataset.js";
import {
  DatasetFileNotFoundError,
  defaultDataDir,
  fullDataDir,
  IDX_FILES,
  packageRoot,
  readIdxDataset,
} from "../src/node/readDataset.js";

/** A well-formed ubyte IDX file. */
function idx(dims: number[], data?: ArrayLike<number>): Uint8Array {
  const size = dims.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(4 + 4 * dims.length + size);
  out[2] = 0x08;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data ?? Array.from({ length: size }, (_, i) => i % 251), 4 + 4 * dims.length);
  return out;
}

/** Byte equality of two typed arrays (toEqual walks millions of elements one by one: slow). */
function bytesEqual(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const u = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return Buffer.compare(u(a), u(b)) === 0;
}

/** Runs fn and returns the IdxFormatError it throws (failing the test if it throws anything else). */
async function idxError(fn: () => unknown): Promise<IdxFormatError> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IdxFormatError);
    return e as IdxFormatError;
  }
  throw new Error("expected an IdxFormatError, nothing was thrown");
}

describe("bundled Fashion-MNIST subset", () => {
  let data: { train: Dataset; test: Dataset };
  beforeAll(async () => {
    data = await readIdxDataset(defaultDataDir());
  });

  it("is found from the package root", () => {
    expect(JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")).name).toBe(
      "edgenn",
    );
    expect(defaultDataDir()).toBe(join(packageRoot(), "data", "fashion-mnist-subset"));
  });

  it("has 6000 train and 1000 test images of 28x28x1 in [0, 1]", () => {
    for (const [ds, n] of [
      [data.train, 6000],
      [data.test, 1000],
    ] as const) {
      expect(ds.count).toBe(n);
      expect(ds.shape).toEqual([28, 28, 1]);
      expect(ds.classes).toBe(10);
      expect(ds.x.length).toBe(n * 784);
      expect(ds.y.length).toBe(n);
      let min = Infinity;
      let max = -Infinity;
      for (const v of ds.x) {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      expect(min).toBe(0);
      expect(max).toBe(1);
    }
  });

  it("is class-balanced with labels 0-9", () => {
    expect(classCounts(data.train)).toEqual(new Array(10).fill(600));
    expect(classCounts(data.test)).toEqual(new Array(10).fill(100));
  });

  // The full set lives outside the package (../shared/data); without it this check is skipped.
  it.skipIf(!fullDataDir())("keeps the full set's samples and order", async () => {
    const full = fullDataDir()!;
    const labels = await decodeIdx(readFileSync(join(full, `${IDX_FILES.testLabels}.gz`)));
    const images = await decodeIdx(readFileSync(join(full, `${IDX_FILES.testImages}.gz`)));
    // The subset keeps the full set's order, so its first sample is the full set's first sample.
    expect(data.test.y[0]).toBe(labels.data[0]);
    expect(Array.from(data.test.x.subarray(0, 784), (v) => Math.round(v * 255))).toEqual(
      Array.from(images.data.subarray(0, 784)),
    );
  });

  it("flattens and subsets without copying", () => {
    const flat = flattenShape(data.test);
    expect(flat.shape).toEqual([784]);
    expect(flat.x).toBe(data.test.x);
    const sub = subsetDataset(data.test, 10, 5);
    expect(sub.count).toBe(10);
    expect(sub.x.length).toBe(7840);
    expect(sub.x.buffer).toBe(data.test.x.buffer);
    expect(Array.from(sub.y)).toEqual(Array.from(data.test.y.subarray(5, 15)));
    expect(subsetDataset(data.test, 5000).count).toBe(1000);
  });
});

describe("raw and gzip'd IDX", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "edgenn-idx-"));
    for (const base of Object.values(IDX_FILES))
      writeFileSync(
        join(dir, base),
        gunzipSync(readFileSync(join(defaultDataDir(), `${base}.gz`))),
      );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("decode to identical data", async () => {
    const gz = readFileSync(join(defaultDataDir(), `${IDX_FILES.trainImages}.gz`));
    const raw = readFileSync(join(dir, IDX_FILES.trainImages));
    expect(isGzip(gz)).toBe(true);
    expect(isGzip(raw)).toBe(false);
    const a = await decodeIdx(gz);
    const b = await decodeIdx(raw);
    const c = parseIdx(raw);
    expect(a.dims).toEqual([6000, 28, 28]);
    expect(b.dims).toEqual(a.dims);
    expect(Buffer.compare(a.data, b.data)).toBe(0);
    expect(Buffer.compare(c.data, b.data)).toBe(0);
  });

  it("read into identical data sets from a folder of raw files", async () => {
    const fromGz = await readIdxDataset(defaultDataDir());
    const fromRaw = await readIdxDataset(dir);
    for (const split of ["train", "test"] as const) {
      expect(fromRaw[split].count).toBe(fromGz[split].count);
      expect(bytesEqual(fromRaw[split].x, fromGz[split].x)).toBe(true);
      expect(bytesEqual(fromRaw[split].y, fromGz[split].y)).toBe(true);
    }
  });

  it("report a missing file with the names looked for and the folder", async () => {
    rmSync(join(dir, IDX_FILES.testLabels));
    const err = await readIdxDataset(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetFileNotFoundError);
    const msg = (err as Error).message;
    expect(msg).toContain(dir);
    expect(msg).toContain("t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz");
  });
});

describe("IdxFormatError", () => {
  const good = idx([3, 2, 2]);

  it("parses a well-formed file", () => {
    const a = parseIdx(good, "good");
    expect(a.dims).toEqual([3, 2, 2]);
    expect(Array.from(a.data)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(a.name).toBe("good");
  });

  it("short header", async () => {
    const e = await idxError(() => parseIdx(good.subarray(0, 3), "tiny.idx"));
    expect(e.message).toMatch(/^tiny\.idx: short header: 3 bytes/);
    const e2 = await idxError(() => parseIdx(good.subarray(0, 10), "cut.idx"));
    expect(e2.message).toContain("3 dimensions need a 16-byte header");
    expect(e2.offset).toBe(10);
  });

  it("bad magic", async () => {
    const bad = good.slice();
    bad[0] = 0x12;
    const e = await idxError(() => parseIdx(bad, "x.idx"));
    expect(e.message).toContain("bad magic");
    expect(e.message).toContain("0x12 0x00");
    expect(e.offset).toBe(0);
  });

  it("unsupported and unknown type codes name the type", async () => {
    const float = good.slice();
    float[2] = 0x0d;
    const e = await idxError(() => parseIdx(float, "f.idx"));
    expect(e.message).toContain("0x0d (float32) is not supported");
    expect(e.message).toContain("(at byte 2)");
    const weird = good.slice();
    weird[2] = 0x42;
    expect((await idxError(() => parseIdx(weird))).message).toContain(
      "unknown element type code 0x42",
    );
  });

  it("zero or absurd dimension count", async () => {
    const zero = good.slice();
    zero[3] = 0;
    expect((await idxError(() => parseIdx(zero))).message).toContain("dimension count 0");
    const many = good.slice();
    many[3] = 200;
    const e = await idxError(() => parseIdx(many));
    expect(e.message).toContain("dimension count 200");
    expect(e.offset).toBe(3);
  });

  it("dimension product overflow and size cap", async () => {
    const huge = idx([1, 1, 1]);
    const view = new DataView(huge.buffer);
    view.setUint32(4, 0x10000);
    view.setUint32(8, 0x10000);
    view.setUint32(12, 0x10000);
    const e = await idxError(() => parseIdx(huge, "huge.idx", { maxElements: 2 ** 40 }));
    expect(e.message).toContain("overflow");
    expect(e.offset).toBe(8); // the second dimension already exceeds 32 bits
    view.setUint32(8, 20_000); // 65536 x 20000 fits in 32 bits but exceeds the default 2^30 cap
    view.setUint32(12, 1);
    const e2 = await idxError(() => parseIdx(huge, "huge.idx"));
    expect(e2.message).toContain("too large");
    const e3 = await idxError(() => parseIdx(good, "small.idx", { maxElements: 10 }));
    expect(e3.message).toContain("more than the limit of 10 elements");
  });

  it("truncated data and trailing bytes", async () => {
    const e = await idxError(() => parseIdx(good.subarray(0, good.length - 5), "t.idx"));
    expect(e.message).toContain("truncated");
    expect(e.message).toContain("5 missing");
    const long = new Uint8Array(good.length + 2);
    long.set(good);
    const e2 = await idxError(() => parseIdx(long, "l.idx"));
    expect(e2.message).toContain("2 trailing bytes");
    expect(e2.offset).toBe(good.length);
  });

  it("gzip'd input: parseIdx refuses it, decodeIdx reports errors in the decompressed bytes", async () => {
    const gz = gzipSync(good.subarray(0, good.length - 1));
    expect((await idxError(() => parseIdx(gz, "g.gz"))).message).toContain("decodeIdx");
    const e = await idxError(() => decodeIdx(gz, "g.gz"));
    expect(e.message).toContain("truncated");
    expect(e.message).toContain("of the decompressed data");
    expect(e.decompressed).toBe(true);
  });

  it("corrupt gzip stream", async () => {
    const gz = gzipSync(idx([100, 10, 10]));
    const flipped = gz.slice();
    flipped[20] ^= 0xff;
    const e = await idxError(() => decodeIdx(flipped, "bad.gz"));
    expect(e.message).toMatch(/^bad\.gz: corrupt gzip stream/);
    const cut = gz.subarray(0, gz.length - 12);
    expect((await idxError(() => decodeIdx(cut, "cut.gz"))).message).toContain("corrupt gzip");
    const crc = gz.slice();
    crc[crc.length - 6] ^= 1; // the CRC-32 trailer
    expect((await idxError(() => decodeIdx(crc, "crc.gz"))).message).toContain("corrupt gzip");
  });

  it("a gzip bomb stops at the size cap", async () => {
    const gz = gzipSync(idx([200, 100, 100]));
    const e = await idxError(() => decodeIdx(gz, "bomb.gz", { maxElements: 50_000 }));
    expect(e.message).toContain("decompresses to more than");
  });
});

describe("idxToDataset", () => {
  const images: IdxArray = parseIdx(idx([4, 2, 3], [0, 255, 51, 102, 153, 204, ...new Array(18)]));
  const labels = (values: number[]) => parseIdx(idx([values.length], values), "labels.idx");

  it("scales pixels to [0, 1] as float32 and shapes samples [rows, cols, 1]", () => {
    const ds = idxToDataset(images, labels([1, 0, 9, 3]), "tiny");
    expect(ds.shape).toEqual([2, 3, 1]);
    expect(ds.count).toBe(4);
    expect(Array.from(ds.y)).toEqual([1, 0, 9, 3]);
    expect(Array.from(ds.x.subarray(0, 6))).toEqual(
      [0, 255, 51, 102, 153, 204].map((b) => Math.fround(b / 255)),
    );
  });

  it("label/image count mismatch", async () => {
    const e = await idxError(() => idxToDataset(images, labels([1, 2, 3]), "tiny"));
    expect(e.message).toContain("3 labels for the 4 images of tiny images");
    expect(e.file).toBe("labels.idx");
  });

  it("label out of range names the first bad sample and its byte", async () => {
    const e = await idxError(() => idxToDataset(images, labels([1, 12, 10, 3]), "tiny"));
    expect(e.message).toBe(
      "labels.idx: label 12 of sample 1 is out of range: expected 0..9 (at byte 9)",
    );
    expect(() => idxToDataset(images, labels([1, 12, 10, 3]), "tiny", 13)).not.toThrow();
  });

  it("wrong ranks", async () => {
    expect((await idxError(() => idxToDataset(labels([1, 2]), labels([1, 2])))).message).toContain(
      "expected 3 dimensions",
    );
    expect((await idxError(() => idxToDataset(images, images))).message).toContain(
      "expected 1 dimension",
    );
  });
});
