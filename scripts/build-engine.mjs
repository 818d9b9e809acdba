// Builds "edgenn/engine", the Node inference engine for serverless cold starts, in three files:
// - dist/engine.cjs: src/node/engine.ts and what it imports, bundled and minified into one script
//   (a cold start pays for every module Node resolves, reads and compiles), its first line the
//   build token (a hash of the code);
// - dist/engine.mjs: the entry (src/node/engineEntry.ts, bundled), which compiles engine.cjs with
// - dist/engine.v8cache: V8's code cache of engine.cjs after loading and running the reference
//   models, made by a child `node` with no flags (scripts/engine-code-cache.mjs).
// The kernels stay a separate file (build/edgenn.infer.wasm), found relative to the bundle.
// Run after tsc (npm run build:ts): the cache step uses dist/src.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const common = {
  bundle: true,
  minify: true,
  platform: "node",
  target: "node20",
  legalComments: "none",
  logLevel: "warning",
  charset: "ascii",
};

const body = await build({
  ...common,
  entryPoints: [`${root}src/node/engine.ts`],
  format: "cjs",
  write: false,
  define: { "import.meta.url": "__edgennUrl" },
});
const code = body.outputFiles[0].text;
const token = createHash("sha256").update(code).digest("hex").slice(0, 16);
writeFileSync(`${root}dist/engine.cjs`, `//edgenn-build ${token}\n${code}`);

await build({
  ...common,
  entryPoints: [`${root}src/node/engineEntry.ts`],
  outfile: `${root}dist/engine.mjs`,
  format: "esm",
});

execFileSync(process.execPath, [`${root}scripts/engine-code-cache.mjs`], {
  stdio: "inherit",
  env: { ...process.env, NODE_OPTIONS: "" },
});
