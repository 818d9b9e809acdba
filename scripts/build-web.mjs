// Builds the browser demo into dist-web/ (`npm run web:build`): the page script and the training
// Web Worker bundled by esbuild for the browser platform (a Node built-in anywhere in their imports
// fails the build, which is the check that browser code stays platform-neutral), the multi-core
// page (parallel.html) and its replica worker, plus the pages, the kernel module and the bundled
// Fashion-MNIST subset. Also bundles Node worker_threads entries for tests that run them from
// source.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const WEB_OUT = join(ROOT, "dist-web");

/** Builds the demo site into outdir (default dist-web/); returns outdir. */
export async function buildWeb({ outdir = WEB_OUT, minify = false } = {}) {
  const wasm = join(ROOT, "build", "edgenn.wasm");
  if (!existsSync(wasm))
    throw new Error(`${wasm} is missing: run "npm run build:wasm" before building the web demo`);
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(join(outdir, "data"), { recursive: true });
  await build({
    entryPoints: {
      main: join(ROOT, "web", "main.ts"),
      webWorker: join(ROOT, "worker", "webWorker.ts"),
      parallel: join(ROOT, "web", "parallel.ts"),
      parallelWebWorker: join(ROOT, "worker", "parallelWebWorker.ts"),
    },
    outdir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    minify,
    logLevel: "warning",
  });
  for (const f of ["index.html", "parallel.html", "style.css"])
    copyFileSync(join(ROOT, "web", f), join(outdir, f));
  copyFileSync(wasm, join(outdir, "edgenn.wasm"));
  const data = join(ROOT, "data", "fashion-mnist-subset");
  for (const f of readdirSync(data).filter((f) => f.endsWith(".gz")))
    copyFileSync(join(data, f), join(outdir, "data", f));
  return outdir;
}

/**
 * Bundles a worker_threads entry (default worker/nodeWorker.ts) for running it from source;
 * `define` replaces identifiers at build time (test fixtures). Returns outfile.
 */
export async function buildNodeWorker({
  entry = join(ROOT, "worker", "nodeWorker.ts"),
  outfile = join(ROOT, "dist-test", "nodeWorker.mjs"),
  define = {},
} = {}) {
  await build({
    entryPoints: [entry],
    outfile,
    define,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
  });
  return outfile;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildWeb({ minify: process.argv.includes("--minify") });
  console.log(`web demo built into ${out}`);
}
