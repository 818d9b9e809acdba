// edgenn/engine (dist/engine.mjs) compiles the bundled engine (dist/engine.cjs) with the V8 code
// cache the build made (dist/engine.v8cache): a plain `node` of the build's version takes it, and
// whatever happens to the cache (missing, from another build, refused by V8, other V8 flags) the
// engine predicts the same bits. Each case is a fresh Node process, as a cold start is.
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { exportModel } from "../src/export.js";
import { InferenceEngine } from "../src/node/engine.js";
import { kernelModulePath } from "../src/node/loadKernels.js";
import { fakeModel, predictBits, randomInputs, smallCnn, smallMlp } from "./exportFixtures.js";

const dist = join(import.meta.dirname, "..", "dist");
const BATCH = 3;

// Loads each model with loadEngineFile, predicts BATCH rows, prints the cache status and the bits.
const CHILD = `
import { readFileSync } from "node:fs";
const [entry, input, ...models] = process.argv.slice(1);
const { engineCodeCache, loadEngineFile } = await import(entry);
const x = new Float32Array(readFileSync(input).buffer.slice(0));
const bits = models.map((m) => {
  const e = loadEngineFile(m, { maxBatch: ${BATCH} });
  const y = e.predict(x.subarray(0, e.inputSize * ${BATCH}), ${BATCH});
  return Array.from(new Uint32Array(y.slice().buffer));
});
console.log(JSON.stringify({ cache: engineCodeCache, bits }));
`;

interface ChildResult {
  cache: string;
  bits: number[][];
}

const dir = mkdtempSync(join(tmpdir(), "edgenn-codecache-"));
const models = [smallMlp, smallCnn].map((spec, i) => {
  const path = join(dir, `m${i}.enn`);
  writeFileSync(path, exportModel(fakeModel(spec, 20 + i)).bytes);
  return path;
});
const input = join(dir, "x.f32");
const x = randomInputs(BATCH * 28 * 28, 9);

/** Runs the child on `entry` in a plain node (or with `flags`), the kernels pinned to the baseline build. */
function run(entry: string, flags: string[] = []): ChildResult {
  const out = execFileSync(
    process.execPath,
    [...flags, "--input-type=module", "-e", CHILD, entry, input, ...models],
    {
      env: {
        ...process.env,
        NODE_OPTIONS: "",
        EDGENN_ISA: "baseline",
        EDGENN_WASM: kernelModulePath("inference").replace(/\.relaxed\.wasm$/, ".wasm"),
      },
    },
  );
  return JSON.parse(out.toString()) as ChildResult;
}

/**
 * A copy of the engine files in a package layout of its own (dist/ and a link to build/, where the
 * engine looks for its kernels), the cache file as `cache` says; returns the entry's path.
 */
function copyEngine(cache: Uint8Array | null): string {
  const root = mkdtempSync(join(dir, "engine-"));
  symlinkSync(join(dist, "..", "build"), join(root, "build"));
  const d = join(root, "dist");
  mkdirSync(d);
  copyFileSync(join(dist, "engine.mjs"), join(d, "engine.mjs"));
  copyFileSync(join(dist, "engine.cjs"), join(d, "engine.cjs"));
  if (cache) writeFileSync(join(d, "engine.v8cache"), cache);
  return join(d, "engine.mjs");
}

describe("edgenn/engine's code cache", () => {
  let want: number[][];
  let cacheFile: Uint8Array;
  beforeAll(() => {
    writeFileSync(input, x);
    want = models.map((m) =>
      Array.from(
        predictBits(
          InferenceEngine.loadSync(readFileSync(m), { maxBatch: BATCH }),
          x.subarray(0, 784 * BATCH),
          BATCH,
        ),
      ),
    );
    cacheFile = readFileSync(join(dist, "engine.v8cache"));
  });

  it("is three files that resolve nothing but node: built-ins", () => {
    const entry = readFileSync(join(dist, "engine.mjs"), "utf8");
    const code = readFileSync(join(dist, "engine.cjs"), "latin1");
    expect(entry).not.toMatch(/from\s*["']\.{1,2}\//);
    expect(entry).not.toMatch(/import\(\s*["'](?!node:)/);
    const required = [...code.matchAll(/require\(\s*["']([^"']*)["']\s*\)/g)].map((m) => m[1]);
    expect(required.length).toBeGreaterThan(0);
    for (const id of required) expect(id).toMatch(/^node:/);
    expect(code).toMatch(/^\/\/edgenn-build [0-9a-f]{16}\n/);
    // The cache file starts with the code's build token.
    expect(Buffer.from(cacheFile.subarray(0, 32)).toString("latin1")).toBe(
      `edgenn-v8cache ${code.slice(15, 31)}\n`,
    );
  });

  it("a plain node takes the build's cache, and predicts what loadSync does", () => {
    const r = run(join(dist, "engine.mjs"));
    expect(r.cache).toBe("used");
    expect(r.bits).toEqual(want);
  });

  it("without the cache file, with one from another build, or one V8 refuses: the same bits", () => {
    const token = readFileSync(join(dist, "engine.cjs"), "latin1").slice(15, 31);
    const otherBuild = Buffer.concat([
      Buffer.from(`edgenn-v8cache ${"0".repeat(16)}\n`),
      cacheFile.subarray(cacheFile.indexOf(10) + 1),
    ]);
    const garbage = Buffer.concat([
      Buffer.from(`edgenn-v8cache ${token}\n`),
      Buffer.alloc(4096, 0x5a),
    ]);
    const cases: [Uint8Array | null, string][] = [
      [null, "absent"],
      [otherBuild, "stale"],
      [garbage, "rejected"],
      [cacheFile, "used"],
    ];
    for (const [cache, status] of cases) {
      const r = run(copyEngine(cache));
      expect(r.cache, status).toBe(status);
      expect(r.bits, status).toEqual(want);
    }
  });

  it("on a Node without process.getBuiltinModule (< 20.16) the entry takes the built-ins from require", () => {
    const r = run(join(dist, "engine.mjs"), [
      "--import",
      "data:text/javascript,delete process.getBuiltinModule",
    ]);
    expect(r.cache).toBe("used");
    expect(r.bits).toEqual(want);
  });

  it("`edgenn engine-cache` remakes the cache for its own V8 flags: those processes take it, plain ones refuse it", () => {
    const entry = copyEngine(null);
    const flag = "--stack-trace-limit=17";
    const said = execFileSync(
      process.execPath,
      [
        flag,
        join(import.meta.dirname, "..", "bin", "edgenn.js"),
        "engine-cache",
        "--dir",
        dirname(entry),
      ],
      { env: { ...process.env, NODE_OPTIONS: "", EDGENN_ISA: "baseline" } },
    ).toString();
    expect(said).toContain(`engine.v8cache`);
    expect(said).toContain(flag);
    const withFlag = run(entry, [flag]);
    expect(withFlag.cache).toBe("used");
    expect(withFlag.bits).toEqual(want);
    const plain = run(entry);
    expect(plain.cache).toBe("rejected");
    expect(plain.bits).toEqual(want);
  });

  it("other V8 flags than the build's: V8 refuses the cache, the engine compiles without it", () => {
    const r = run(join(dist, "engine.mjs"), ["--no-opt"]);
    expect(r.cache).toBe("rejected");
    expect(r.bits).toEqual(want);
  });
});
