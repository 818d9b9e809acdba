// The inference engine: loading from every source, one memory plan, no allocation in steady state,
// batch handling, plain-array convenience, errors, and int8 weights (bound and size).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 as zlibCrc32 } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import type { Dataset } from "../src/dataset.js";
import { InferenceError, engineAccuracy } from "../src/engine.js";
import { ModelFormatError, readEnn } from "../src/ennFormat.js";
import { exportModel } from "../src/export.js";
import { Kernels, KernelsTakenError } from "../src/kernels.js";
import { Model } from "../src/model.js";
import { InferenceEngine, loadEngineFile } from "../src/node/engine.js";
import { kernelModule, loadKernels } from "../src/node/loadKernels.js";
import { defaultDataDir, readIdxDataset } from "../src/node/readDataset.js";
import { cnnSpec, mlpSpec } from "../src/referenceModels.js";
import { fit } from "../src/train.js";
import {
  engineTestFiles,
  fakeModel,
  fixCrc,
  predictBits,
  headerOf,
  randomInputs,
  smallCnn,
  smallMlp,
  tensorDataOffset,
} from "./exportFixtures.js";

const mlp = exportModel(fakeModel(smallMlp, 5)).bytes;
const cnn = exportModel(fakeModel(smallCnn, 6)).bytes;

describe("InferenceEngine loading", () => {
  const x = randomInputs(3 * 20, 1);
  let want: Float32Array;
  beforeAll(() => {
    want = InferenceEngine.loadSync(mlp).predict(x, 3).slice();
  });

  it("from bytes, an ArrayBuffer, {module, bytes}, options.kernels, sync or async: same outputs", async () => {
    const module = kernelModule();
    const engines = [
      await InferenceEngine.load(mlp),
      await InferenceEngine.load(mlp.slice().buffer),
      await InferenceEngine.load({ module, bytes: mlp }),
      await InferenceEngine.load(mlp, { kernels: module }),
      await InferenceEngine.load(mlp, {
        kernels: readFileSync(process.env.EDGENN_WASM || join("build", "edgenn.wasm")),
      }),
      InferenceEngine.loadSync({ module, bytes: mlp.slice().buffer }),
      InferenceEngine.loadSync(mlp, { kernels: loadKernels() }),
    ];
    for (const e of engines) expect(Array.from(e.predict(x, 3))).toEqual(Array.from(want));
  });

  it("from a file path (Node)", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-engine-"));
    const path = join(dir, "m.enn");
    writeFileSync(path, mlp);
    expect(Array.from(loadEngineFile(path).predict(x, 3))).toEqual(Array.from(want));
  });

  it("loadEngineFile reads the file into kernel memory and computes from the weights there: the bits of loadSync, every op, batch 1 and 64, f32 and int8", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-engine-"));
    const files = engineTestFiles(16);
    for (const [name, file] of files) {
      const path = join(dir, "m.enn");
      writeFileSync(path, file);
      for (const maxBatch of [1, 64]) {
        const fromFile = loadEngineFile(path, { maxBatch });
        const fromBytes = InferenceEngine.loadSync(file, { maxBatch });
        const xs = randomInputs(maxBatch * fromFile.inputSize, maxBatch + 1);
        const a = predictBits(fromFile, xs, maxBatch);
        const b = predictBits(fromBytes, xs, maxBatch);
        expect(Array.from(a), `${name} at maxBatch ${maxBatch}`).toEqual(Array.from(b));
        // engine.model stays readable (views re-made after memory grew) and holds the file's
        // weights; f32 ones sit in the engine's kernel memory, where it computes from them.
        const read = readEnn(file);
        fromFile.model.tensors.forEach((t, i) => {
          expect(Array.from(t.data), `${name} tensor ${i}`).toEqual(
            Array.from(read.tensors[i].data),
          );
          if (t.dtype === "f32")
            expect(t.data.buffer === fromFile.kernels.memory.buffer, `${name} tensor ${i}`).toBe(
              true,
            );
        });
        // Someone sharing its Kernels grows the memory: the views follow, the numbers stay.
        const grown = fromFile.model.tensors[0].data.slice();
        fromFile.kernels.ensure(fromFile.kernels.memory.buffer.byteLength + 65536);
        expect(Array.from(fromFile.model.tensors[0].data)).toEqual(Array.from(grown));
        expect(Array.from(fromFile.predict(xs, maxBatch))).toEqual(
          Array.from(fromBytes.predict(xs, maxBatch)),
        );
      }
    }
  });

  it("loadEngineFile refuses what loadSync refuses: a flipped bit (zlib's CRC and the kernels' in place), a truncated file, an oversized one", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-engine-"));
    const path = join(dir, "bad.enn");
    const flipped = cnn.slice();
    flipped[flipped.length - 100] ^= 1;
    writeFileSync(path, flipped);
    expect(() => loadEngineFile(path)).toThrow(/checksum mismatch/);
    InferenceEngine.setHostCrc32(undefined); // the kernels' CRC, over the file where it was read
    try {
      expect(() => loadEngineFile(path)).toThrow(/checksum mismatch/);
      writeFileSync(path, cnn);
      const xs = randomInputs(2 * 180, 9);
      expect(Array.from(loadEngineFile(path, { maxBatch: 2 }).predict(xs, 2))).toEqual(
        Array.from(InferenceEngine.loadSync(cnn, { maxBatch: 2 }).predict(xs, 2)),
      );
    } finally {
      // Restores the Node entry's zlib CRC (re-importing would not rerun the module).
      InferenceEngine.setHostCrc32((b) => zlibCrc32(b));
    }
    writeFileSync(path, cnn.subarray(0, cnn.length - 7));
    expect(() => loadEngineFile(path)).toThrow(/truncated/);
    writeFileSync(path, cnn);
    expect(() => loadEngineFile(path, { limits: { maxFileBytes: 1000 } })).toThrow(
      /over the 1000-byte limit/,
    );
  });

  it("exposes shapes, labels and normalisation from the file", () => {
    const e = InferenceEngine.loadSync(mlp);
    expect(e.inputShape).toEqual([20]);
    expect(e.outputShape).toEqual([4]);
    expect(e.labels).toEqual(["a", "b", "c", "d"]);
    expect(e.inputNormalization).toEqual({ scale: 1, offset: 0 });
    expect(e.maxBatch).toBe(64);
  });

  it("a bad file is a ModelFormatError; memory over the engine's limit too, before growing", () => {
    const bad = mlp.slice();
    bad[40] ^= 1;
    expect(() => InferenceEngine.loadSync(bad)).toThrow(ModelFormatError);
    expect(() => InferenceEngine.loadSync(cnn, { maxBatch: 64, maxMemoryBytes: 100_000 })).toThrow(
      /needs [\d.]+ MiB of memory at maxBatch 64, over the engine's limit/,
    );
  });

  it("the platform-neutral modules import no Node built-ins (they run in Workers)", () => {
    for (const f of ["engine", "ennFormat", "quantize", "export", "kernels", "crc32"])
      expect(readFileSync(join("src", `${f}.ts`), "utf8")).not.toMatch(/from "node:|require\(/);
  });
});

describe("InferenceEngine.predict", () => {
  it("plans memory once and allocates nothing in steady state: same buffer, same output object", () => {
    const e = InferenceEngine.loadSync(cnn, { maxBatch: 8 });
    const memory = e.kernels.memory;
    const buffer = memory.buffer;
    const x = randomInputs(8 * 180, 2);
    const first = e.predict(x, 8);
    const copy = first.slice();
    for (let i = 0; i < 20; i++) {
      const y = e.predict(x, 8);
      expect(y).toBe(first);
      expect(memory.buffer).toBe(buffer);
    }
    expect(Array.from(first)).toEqual(Array.from(copy));
    // The output is a view into the engine's memory, [batch, ...outputShape].
    expect(first.buffer).toBe(buffer);
    expect(first.length).toBe(8 * 3);
    // Another batch size: its own cached view, same memory.
    const y3 = e.predict(x.subarray(0, 3 * 180), 3);
    expect(y3.length).toBe(9);
    expect(e.predict(x.subarray(0, 3 * 180))).toBe(y3);
    expect(memory.buffer).toBe(buffer);
  });

  it("survives a memory.grow by someone sharing its Kernels instance (fresh views, same numbers)", () => {
    const k = Kernels.loadSync(kernelModule());
    const e = InferenceEngine.loadSync(cnn, { kernels: k, maxBatch: 2 });
    const x = randomInputs(2 * 180, 9);
    const before = e.predict(x, 2).slice();
    k.ensure(k.memory.buffer.byteLength + 65536);
    const after = e.predict(x, 2);
    expect(after.buffer).toBe(k.memory.buffer);
    expect(Array.from(after)).toEqual(Array.from(before));
  });

  it("each sample's output is independent of the batch it runs in", () => {
    const e = InferenceEngine.loadSync(cnn, { maxBatch: 16 });
    const x = randomInputs(13 * 180, 3);
    const batch = e.predict(x, 13).slice();
    for (let s = 0; s < 13; s++) {
      const one = e.predict(x.subarray(s * 180, (s + 1) * 180), 1);
      expect(Array.from(one)).toEqual(Array.from(batch.subarray(s * 3, (s + 1) * 3)));
    }
  });

  it("a Winograd conv's weights, prepared at its second call, give the first call's bits (batch 1 and 64, f32 and int8)", () => {
    // The reference cnn's second conv (14x14x32 -> 64, 3x3) takes the Winograd path.
    for (const int8 of [false, true]) {
      const bytes = exportModel(fakeModel(cnnSpec(), 12), { int8 }).bytes;
      const x = randomInputs(64 * 784, 6);
      for (const b of [1, 64]) {
        const e = InferenceEngine.loadSync(bytes, { maxBatch: 64 });
        const calls = [0, 1, 2].map(() => Array.from(predictBits(e, x.subarray(0, b * 784), b)));
        expect(calls[1]).toEqual(calls[0]);
        expect(calls[2]).toEqual(calls[0]);
      }
    }
  });

  it("batch independence holds for the reference models too (K > one GEMM slice, batch 1 row kernel)", () => {
    for (const spec of [mlpSpec(), cnnSpec()]) {
      const bytes = exportModel(fakeModel(spec, 8)).bytes;
      const e = InferenceEngine.loadSync(bytes, { maxBatch: 64 });
      // An engine for batches of 1-2 keeps dense weights row-major (another GEMM path): same bits.
      const small = InferenceEngine.loadSync(bytes, { maxBatch: 2 });
      const x = randomInputs(64 * 784, 4);
      for (const s of [0, 7]) {
        const one = e.predict(x.subarray(s * 784, (s + 1) * 784), 1).slice();
        expect(Array.from(small.predict(x.subarray(s * 784, (s + 1) * 784), 1))).toEqual(
          Array.from(one),
        );
        const two = e.predict(x.subarray(s * 784, (s + 2) * 784), 2).slice();
        expect(Array.from(small.predict(x.subarray(s * 784, (s + 2) * 784), 2))).toEqual(
          Array.from(two),
        );
      }
      for (const b of [64, 13, 5, 3, 2]) {
        const batch = e.predict(x.subarray(0, b * 784), b).slice();
        for (const s of [0, 1, b - 1]) {
          const one = e.predict(x.subarray(s * 784, (s + 1) * 784), 1);
          expect(Array.from(one)).toEqual(Array.from(batch.subarray(s * 10, (s + 1) * 10)));
        }
      }
    }
  });

  it("edgenn/engine (dist/engine.mjs, the bundle) predicts the same numbers", async () => {
    // Its files and its code cache: test/engineCodeCache.test.ts.
    const bundled = (await import(
      join(import.meta.dirname, "..", "dist", "engine.mjs")
    )) as typeof import("../src/node/engineEntry.js");
    const x = randomInputs(5 * 180, 11);
    const a = bundled.InferenceEngine.loadSync(cnn, { maxBatch: 8 }).predict(x, 5);
    const b = InferenceEngine.loadSync(cnn, { maxBatch: 8 }).predict(x, 5);
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it("a non-finite weight in any tensor is the ModelFormatError readEnn gives (checked in kernel memory)", () => {
    const nonFinitePath = join(mkdtempSync(join(tmpdir(), "edgenn-engine-")), "nan.enn");
    const int8 = exportModel(fakeModel(smallCnn, 6), { int8: true }).bytes;
    for (const file of [mlp, cnn, int8]) {
      const tensors = (headerOf(file) as { tensors: { dtype: string; bytes: number }[] }).tensors;
      tensors.forEach((t, i) => {
        if (t.dtype !== "f32") return;
        for (const [element, value] of [
          [0, NaN],
          [t.bytes / 4 - 1, -Infinity],
        ]) {
          const b = file.slice();
          new DataView(b.buffer).setFloat32(tensorDataOffset(b, i) + 4 * element, value, true);
          fixCrc(b);
          let want: ModelFormatError | undefined;
          let got: unknown;
          try {
            readEnn(b);
          } catch (e) {
            want = e as ModelFormatError;
          }
          try {
            InferenceEngine.loadSync(b, { maxBatch: 4 });
          } catch (e) {
            got = e;
          }
          expect(want).toBeInstanceOf(ModelFormatError);
          expect(got).toBeInstanceOf(ModelFormatError);
          expect((got as ModelFormatError).message).toBe(want!.message);
          expect((got as ModelFormatError).where).toEqual(want!.where);
          // Read into kernel memory by loadEngineFile and checked there: the same error.
          writeFileSync(nonFinitePath, b);
          expect(() => loadEngineFile(nonFinitePath, { maxBatch: 4 })).toThrow(want!.message);
        }
      });
    }
  });

  it("the same file gives bit-identical outputs in independent engines", () => {
    const x = randomInputs(5 * 180, 4);
    const a = InferenceEngine.loadSync(cnn).predict(x, 5).slice();
    const b = InferenceEngine.loadSync(cnn.slice(), { maxBatch: 5 }).predict(x, 5);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it("predict(number[][]): flat rows or nested to the input shape, any count (chunked by maxBatch)", () => {
    const e = InferenceEngine.loadSync(cnn, { maxBatch: 4 });
    const x = randomInputs(10 * 180, 5);
    const want = InferenceEngine.loadSync(cnn, { maxBatch: 10 }).predict(x, 10).slice();
    const flat = Array.from({ length: 10 }, (_, s) =>
      Array.from(x.subarray(s * 180, (s + 1) * 180)),
    );
    const nested = flat.map((row) =>
      Array.from({ length: 10 }, (_, h) =>
        Array.from({ length: 9 }, (_, w) => row.slice((h * 9 + w) * 2, (h * 9 + w) * 2 + 2)),
      ),
    );
    const a = e.predict(flat);
    const b = e.predict(nested);
    expect(a.length).toBe(10);
    expect(a.flat()).toEqual(Array.from(want));
    expect(b).toEqual(a);
  });

  it("wrong input sizes and batch sizes are InferenceErrors that say what is expected", () => {
    const e = InferenceEngine.loadSync(mlp, { maxBatch: 4 });
    expect(() => e.predict(new Float32Array(21))).toThrow(
      /21 values, not a whole number \(1 to 4\) of samples of 20/,
    );
    expect(() => e.predict(new Float32Array(100), 5)).toThrow(
      /batch size must be an integer from 1 to 4/,
    );
    expect(() => e.predict(new Float32Array(20), 2)).toThrow(/2 samples need 40/);
    expect(() => e.predict([[1, 2, 3]])).toThrow(InferenceError);
    expect(() => e.predict([new Array(20).fill(NaN)])).toThrow(
      /sample 0\[0\] must be a finite number/,
    );
    expect(() => InferenceEngine.loadSync(mlp, { maxBatch: 0 })).toThrow(InferenceError);
  });
});

describe("int8 weights", () => {
  it("store a quarter of the weight bytes, per-output-channel scales", () => {
    for (const spec of [mlpSpec(), cnnSpec()]) {
      const m = fakeModel(spec, 8);
      const f = exportModel(m);
      const q = exportModel(m, { int8: true });
      const ratio = q.report.bytesAfter / f.report.bytesAfter;
      expect(ratio).toBeLessThan(0.26);
      expect(q.bytes.length / f.bytes.length).toBeLessThan(0.27);
      const e = readEnn(q.bytes);
      expect(e.tensors.filter((t) => t.dtype === "i8").length).toBe(
        e.ops.filter((o) => "kernel" in o).length,
      );
    }
  });

  it("dequantised weights are within scale/2 of the f32 weights", () => {
    const m = fakeModel(smallCnn, 9);
    const f = readEnn(exportModel(m).bytes);
    const q = readEnn(exportModel(m, { int8: true }).bytes);
    q.ops.forEach((op, i) => {
      if (op.op !== "dense" && op.op !== "conv2d") return;
      const w = f.tensors[(f.ops[i] as typeof op).kernel].data;
      const qi = q.tensors[op.kernel].data;
      const s = q.tensors[op.kernelScale!].data;
      for (let j = 0; j < w.length; j++)
        expect(Math.abs(qi[j] * s[j % s.length] - w[j])).toBeLessThanOrEqual(
          s[j % s.length] / 2 + 1e-7,
        );
    });
  });

  let data: { train: Dataset; test: Dataset };
  beforeAll(async () => {
    data = await readIdxDataset(defaultDataDir());
  });

  it("a trained mlp loses at most 1 point of accuracy and its probabilities move < 0.02", async () => {
    const model = new Model(loadKernels(), mlpSpec(), { seed: 1 });
    const n = 3000;
    const per = 784;
    await fit(model, data.train.x.subarray(0, n * per), data.train.y.subarray(0, n), {
      epochs: 1,
      batchSize: 64,
    });
    const f32 = InferenceEngine.loadSync(exportModel(model).bytes);
    const int8 = InferenceEngine.loadSync(exportModel(model, { int8: true }).bytes);
    const N = data.test.count;
    let okF = 0;
    let okQ = 0;
    let worst = 0;
    for (let s = 0; s < N; s += 64) {
      const B = Math.min(64, N - s);
      const x = data.test.x.subarray(s * per, (s + B) * per);
      const a = f32.predict(x, B).slice();
      const b = int8.predict(x, B);
      for (let r = 0; r < B; r++) {
        const label = data.test.y[s + r];
        const arg = (y: Float32Array) => {
          let best = 0;
          for (let c = 1; c < 10; c++) if (y[r * 10 + c] > y[r * 10 + best]) best = c;
          return best;
        };
        if (arg(a) === label) okF++;
        if (arg(b) === label) okQ++;
        for (let c = 0; c < 10; c++)
          worst = Math.max(worst, Math.abs(a[r * 10 + c] - b[r * 10 + c]));
      }
    }
    expect(engineAccuracy(f32, data.test.x, data.test.y)).toBe(okF / N);
    expect(engineAccuracy(int8, data.test.x, data.test.y)).toBe(okQ / N);
    console.log(
      `int8 on a 1-epoch mlp: test accuracy ${((okF / N) * 100).toFixed(2)}% f32, ${((okQ / N) * 100).toFixed(2)}% int8 (${N} samples); largest probability change ${worst.toFixed(4)}`,
    );
    expect(okF / N).toBeGreaterThan(0.6);
    expect(Math.abs(okF - okQ) / N).toBeLessThanOrEqual(0.01);
    expect(worst).toBeLessThan(0.02);
  });

  it("an existing Kernels instance is used as given (the engine then owns its memory)", () => {
    const k = Kernels.loadSync(kernelModule());
    const e = InferenceEngine.loadSync(mlp, { kernels: k });
    expect(e.kernels).toBe(k);
  });

  it("one Kernels instance given to a second engine or a Model: the earlier engine refuses to run", () => {
    const k = Kernels.loadSync(kernelModule());
    const x = randomInputs(2 * 180, 4);
    const alone = InferenceEngine.loadSync(cnn, { kernels: loadKernels(), maxBatch: 2 });
    const expected = alone.predict(x, 2).slice();
    const first = InferenceEngine.loadSync(cnn, { kernels: k, maxBatch: 2 });
    expect(first.predict(x, 2)).toEqual(expected);
    // A second engine plans its arena from the same heap base, over the first one's weights.
    const second = InferenceEngine.loadSync(mlp, { kernels: k, maxBatch: 2 });
    expect(() => first.predict(x, 2)).toThrow(KernelsTakenError);
    expect(() => first.predict(x, 2)).toThrow(/given to another Model or InferenceEngine/);
    expect(second.predict(randomInputs(2 * second.inputSize, 5), 2).length).toBe(
      2 * second.outputSize,
    );
    // The same for a Model on that instance; the latest owner runs.
    const model = new Model(k, smallMlp, { seed: 1 });
    expect(() => second.predict(randomInputs(2 * second.inputSize, 5), 2)).toThrow(
      /engine's kernel instance was given to another/,
    );
    expect(model.predict(randomInputs(3 * model.inputSize, 6)).length).toBe(3 * model.outputSize);
    // An engine constructed later takes it from the model in turn.
    InferenceEngine.loadSync(cnn, { kernels: k, maxBatch: 2 });
    expect(() => model.predict(randomInputs(model.inputSize, 7))).toThrow(
      /model's kernel instance was given to another/,
    );
    expect(() => model.getWeights()).toThrow(/given to another/);
  });
});
