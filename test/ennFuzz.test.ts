// Fuzzing the model loader: thousands of seeded random mutations of valid files (bit flips, byte
// sets, truncations, extensions, splices, and edits of the header JSON or the preamble with the CRC
// recomputed so the checks past the checksum run). The contract for every mutated file:
//   - readEnn either returns a model or throws ModelFormatError — never another error, never a
//     hang or a giant allocation;
//   - a model it returns loads into the engine (or the engine refuses it with ModelFormatError when
//     it would need more memory than allowed) and predict() then runs without throwing and returns
//     [batch, ...outputShape] numbers (finite for valid weights, but NaN/Infinity are allowed: a
//     mutated weight or alpha may overflow; that is arithmetic, not a loader failure).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InferenceEngine } from "../src/engine.js";
import { ModelFormatError, readEnn } from "../src/ennFormat.js";
import { exportModel } from "../src/export.js";
import { Kernels } from "../src/kernels.js";
import { loadEngineFile } from "../src/node/engine.js";
import { kernelModule } from "../src/node/loadKernels.js";
import { Rng } from "../src/random.js";
import {
  fakeModel,
  fixCrc,
  predictBits,
  randomInputs,
  scaleShiftModel,
  smallCnn,
  smallMlp,
  withHeader,
} from "./exportFixtures.js";

const ITERATIONS = Number(process.env.EDGENN_FUZZ_ITERATIONS ?? 10000);
const LOAD_FILE_ITERATIONS = Math.ceil(ITERATIONS / 5);

const bases = [
  exportModel(fakeModel(smallMlp, 1)).bytes,
  exportModel(fakeModel(smallCnn, 2)).bytes,
  exportModel(fakeModel(smallCnn, 3), { int8: true }).bytes,
  exportModel(fakeModel(scaleShiftModel, 4), { logits: true }).bytes,
  exportModel(fakeModel(smallMlp, 5), { int8: true, logits: true }).bytes,
];

const HOSTILE: unknown[] = [
  0,
  -1,
  1,
  2,
  3,
  16,
  0.5,
  -0,
  1e300,
  -1e300,
  2 ** 31,
  2 ** 32 + 1,
  2 ** 53 + 2,
  null,
  true,
  "x",
  "__proto__",
  "dense",
  "relu",
  [],
  [1],
  [1, 1, 1, 1, 1],
  [2 ** 20, 2 ** 20],
  {},
  JSON.parse('{"__proto__": {"polluted": true}}'),
  JSON.parse('{"constructor": {"prototype": {"polluted": true}}}'),
  JSON.parse("[".repeat(40) + "]".repeat(40)),
  "x".repeat(5000),
];

type Json = Record<string, unknown> | unknown[];

/** Every (container, key) pair in a JSON tree. */
function slots(root: Json): [Json, string | number][] {
  const out: [Json, string | number][] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v))
      v.forEach((e, i) => {
        out.push([v, i]);
        walk(e);
      });
    else if (v && typeof v === "object")
      for (const k of Object.keys(v)) {
        out.push([v as Json, k]);
        walk((v as Record<string, unknown>)[k]);
      }
  };
  walk(root);
  return out;
}

function editJson(h: Record<string, unknown>, rng: Rng): void {
  const all = slots(h);
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits; e++) {
    const [c, k] = all[rng.int(all.length)];
    const cur = (c as Record<string | number, unknown>)[k];
    const kind = rng.int(6);
    if (kind === 0 && typeof cur === "number")
      // Small numeric nudges keep most of the file plausible and reach the deepest checks.
      (c as Record<string | number, unknown>)[k] = cur + [1, -1, 16, -16, 2, 0.5][rng.int(6)];
    else if (kind === 1) {
      if (Array.isArray(c)) c.splice(k as number, 1);
      else delete (c as Record<string, unknown>)[k as string];
    } else if (kind === 2 && Array.isArray(c)) c.push(structuredClone(cur));
    else if (kind === 3 && !Array.isArray(c))
      Object.defineProperty(c, pickKey(rng), {
        value: HOSTILE[rng.int(HOSTILE.length)],
        enumerable: true,
        configurable: true,
        writable: true,
      });
    else if (kind === 4 && Array.isArray(c) && c.length > 1) {
      const j = rng.int(c.length);
      [c[k as number], c[j]] = [c[j], c[k as number]];
    } else
      (c as Record<string | number, unknown>)[k] = structuredClone(
        HOSTILE[rng.int(HOSTILE.length)],
      );
  }
}

function pickKey(rng: Rng): string {
  return [
    "__proto__",
    "constructor",
    "prototype",
    "op",
    "kernel",
    "bias",
    "center",
    "extra",
    "labels",
  ][rng.int(9)];
}

function mutate(base: Uint8Array, rng: Rng): { bytes: Uint8Array; kind: string } {
  const n = base.length;
  const b = base.slice();
  switch (rng.int(10)) {
    case 0: {
      for (let i = 1 + rng.int(8); i > 0; i--) b[rng.int(n)] ^= 1 << rng.int(8);
      return { bytes: b, kind: "bit flips" };
    }
    case 1: {
      for (let i = 1 + rng.int(4); i > 0; i--) b[rng.int(n)] = rng.int(256);
      return { bytes: b, kind: "byte sets" };
    }
    case 2:
      return { bytes: base.slice(0, rng.int(n)), kind: "truncation" };
    case 3: {
      const extra = new Uint8Array(1 + rng.int(64)).map(() => rng.int(256));
      const out = new Uint8Array(n + extra.length);
      out.set(base);
      out.set(extra, n);
      return { bytes: rng.next() < 0.5 ? out : fixCrc(out), kind: "extension" };
    }
    case 4: {
      // Splice: a chunk of another file (or this one) over a random place.
      const src = bases[rng.int(bases.length)];
      const len = 1 + rng.int(64);
      const from = rng.int(Math.max(1, src.length - len));
      const to = rng.int(Math.max(1, n - len));
      b.set(src.subarray(from, from + len).subarray(0, n - to), to);
      return { bytes: rng.next() < 0.5 ? b : fixCrc(b), kind: "splice" };
    }
    case 5:
    case 6: {
      // Past the checksum: raw damage with the CRC recomputed (preamble, header or data).
      const region = rng.int(3);
      const at =
        region === 0
          ? 8 + rng.int(16)
          : region === 1
            ? 24 + rng.int(Math.min(400, n - 28))
            : rng.int(n - 4);
      for (let i = 1 + rng.int(3); i > 0; i--) b[Math.min(at + rng.int(4), n - 5)] = rng.int(256);
      return { bytes: fixCrc(b), kind: "raw + crc" };
    }
    default:
      return { bytes: withHeader(base, (h) => editJson(h, rng)), kind: "header edit + crc" };
  }
}

describe(".enn fuzzing", () => {
  it(`${ITERATIONS} seeded mutations: a model or a ModelFormatError, and loaded models predict`, () => {
    const rng = new Rng(0xf022);
    const kernels = Kernels.loadSync(kernelModule());
    const outcomes = new Map<string, number>();
    const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
    const start = performance.now();
    let deep = 0;
    for (let it = 0; it < ITERATIONS; it++) {
      const base = bases[it % bases.length];
      const { bytes, kind } = mutate(base, rng);
      let model;
      try {
        model = readEnn(bytes);
      } catch (e) {
        if (!(e instanceof ModelFormatError))
          throw new Error(
            `iteration ${it} (${kind}): ${(e as Error)?.name}: ${(e as Error)?.message}`,
          );
        expect(e.message).toMatch(/^model file/);
        if (e.where.op !== undefined || e.where.tensor !== undefined || e.where.field !== undefined)
          deep++;
        count(`${kind}: ModelFormatError`);
        continue;
      }
      let engine: InferenceEngine;
      try {
        // One kernel instance for all: each engine re-plans from the heap base.
        engine = new InferenceEngine(kernels, model, { maxBatch: 2, maxMemoryBytes: 64 << 20 });
      } catch (e) {
        if (!(e instanceof ModelFormatError))
          throw new Error(
            `iteration ${it} (${kind}) engine: ${(e as Error)?.name}: ${(e as Error)?.message}`,
          );
        count(`${kind}: refused by engine`);
        continue;
      }
      const x = randomInputs(2 * engine.inputSize, it);
      const y = engine.predict(x, 2);
      expect(y.length).toBe(2 * engine.outputSize);
      count(`${kind}: loaded and predicted`);
    }
    const seconds = (performance.now() - start) / 1000;
    console.log(
      `fuzz: ${ITERATIONS} mutations in ${seconds.toFixed(1)}s; ${deep} errors located past the checksum (op/tensor/field)\n` +
        [...outcomes]
          .sort()
          .map(([k, v]) => `  ${k}: ${v}`)
          .join("\n"),
    );
    // The generator reaches the deep checks and also produces files that still load.
    expect(deep).toBeGreaterThan(ITERATIONS / 10);
    expect([...outcomes.keys()].some((k) => k.endsWith("loaded and predicted"))).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it(`${LOAD_FILE_ITERATIONS} mutations through loadEngineFile (read into kernel memory): the same verdicts and, when loaded, loadSync's bits`, () => {
    const rng = new Rng(0xf11e);
    const dir = mkdtempSync(join(tmpdir(), "edgenn-fuzz-"));
    const path = join(dir, "m.enn");
    let loaded = 0;
    for (let it = 0; it < LOAD_FILE_ITERATIONS; it++) {
      const { bytes, kind } = mutate(bases[it % bases.length], rng);
      writeFileSync(path, bytes);
      const verdict = (load: () => InferenceEngine): InferenceEngine | string => {
        try {
          return load();
        } catch (e) {
          if (!(e instanceof ModelFormatError))
            throw new Error(
              `iteration ${it} (${kind}): ${(e as Error)?.name}: ${(e as Error)?.message}`,
            );
          // The file path's plan includes the file itself: the memory it needs reads higher.
          return e.message.replace(/needs [\d.]+ MiB/, "needs N MiB");
        }
      };
      const options = { maxBatch: 2, maxMemoryBytes: 64 << 20 };
      const fromFile = verdict(() => loadEngineFile(path, options));
      const fromBytes = verdict(() => InferenceEngine.loadSync(bytes, options));
      if (typeof fromFile === "string" || typeof fromBytes === "string") {
        expect(fromFile, `iteration ${it} (${kind})`).toEqual(fromBytes);
        continue;
      }
      const x = randomInputs(2 * fromFile.inputSize, it);
      const a = predictBits(fromFile, x, 2);
      const b = predictBits(fromBytes, x, 2);
      expect(Array.from(a), `iteration ${it} (${kind})`).toEqual(Array.from(b));
      loaded++;
    }
    expect(loaded).toBeGreaterThan(LOAD_FILE_ITERATIONS / 20);
  });
});
