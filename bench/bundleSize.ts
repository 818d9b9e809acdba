// Shipped size: the minimal inference bundle of each runtime (bench/bundles/*.ts: load a model,
// predict one sample), built with esbuild (bundle, minify, ESM, browser platform), plus the .wasm
// file each loads at run time in its single-thread SIMD configuration. Sizes are gzip level 9, as
// a server would send them; the .wasm counts as its own file.
//
// Which .wasm: edgenn build/edgenn.infer.wasm (assembly/inference.ts: the kernels InferenceEngine
// calls; training needs build/edgenn.wasm); TF.js tfjs-backend-wasm-simd.wasm (chosen when SIMD is
// supported and threads are not used; the threaded and non-SIMD binaries are not fetched);
// ONNX Runtime Web 1.30's wasm EP has one binary, ort-wasm-simd-threaded.wasm, which it loads for
// one thread too (the .jsep/.asyncify/.jspi variants are the WebGPU/WebNN builds).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { packageRoot } from "../src/node/readDataset.js";

export interface BundleRow {
  runtime: "edgenn" | "tfjs" | "ort";
  jsBytes: number;
  jsGzip: number;
  wasmFile: string;
  wasmBytes: number;
  wasmGzip: number;
  /** JS + WASM, gzipped */
  totalGzip: number;
}

export interface BundleResult {
  rows: BundleRow[];
  /** edgenn total / theirs */
  ratioVsTfjs: number;
  ratioVsOrt: number;
}

export const BUNDLE_TARGET_GZIP = 40 * 1024;

const gz = (b: Uint8Array) => gzipSync(b, { level: 9 }).length;

async function bundle(entry: string): Promise<Uint8Array> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  return r.outputFiles[0].contents;
}

export async function runBundleSizeBench(): Promise<BundleResult> {
  const root = packageRoot();
  const require = createRequire(join(root, "package.json"));
  const entries: [BundleRow["runtime"], string][] = [
    ["edgenn", join(root, "build", "edgenn.infer.wasm")],
    [
      "tfjs",
      join(
        dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")),
        "dist",
        "tfjs-backend-wasm-simd.wasm",
      ),
    ],
    [
      "ort",
      // The package exports no ./package.json; its main file sits in dist/.
      join(dirname(require.resolve("onnxruntime-web")), "ort-wasm-simd-threaded.wasm"),
    ],
  ];
  const rows: BundleRow[] = [];
  for (const [runtime, wasmPath] of entries) {
    const js = await bundle(join(root, "bench", "bundles", `${runtime}.ts`));
    const wasm = readFileSync(wasmPath);
    const jsGzip = gz(js);
    const wasmGzip = gz(wasm);
    rows.push({
      runtime,
      jsBytes: js.length,
      jsGzip,
      wasmFile: wasmPath.slice(wasmPath.lastIndexOf("/") + 1),
      wasmBytes: wasm.length,
      wasmGzip,
      totalGzip: jsGzip + wasmGzip,
    });
  }
  const [e, t, o] = rows;
  return { rows, ratioVsTfjs: e.totalGzip / t.totalGzip, ratioVsOrt: e.totalGzip / o.totalGzip };
}

export function printBundleSizeTable(r: BundleResult): void {
  const kb = (b: number) => (b / 1024).toFixed(1);
  console.log(
    "\nshipped size: minimal inference bundle (esbuild bundle+minify, ESM, browser) + its .wasm, KiB (gzip -9)",
  );
  console.log("runtime | JS | JS gzip | wasm file | wasm | wasm gzip | total gzip | edgenn / this");
  const e = r.rows[0];
  for (const row of r.rows)
    console.log(
      `${row.runtime} | ${kb(row.jsBytes)} | ${kb(row.jsGzip)} | ${row.wasmFile} | ${kb(row.wasmBytes)} | ${kb(row.wasmGzip)} | ${kb(row.totalGzip)} | ${row === e ? "" : `${(e.totalGzip / row.totalGzip).toFixed(3)}x`}`,
    );
  console.log(
    `target: edgenn inference bundle <= ${BUNDLE_TARGET_GZIP / 1024} KiB gzipped: ${kb(e.totalGzip)} KiB ${e.totalGzip <= BUNDLE_TARGET_GZIP ? "met" : "NOT met"}`,
  );
}
