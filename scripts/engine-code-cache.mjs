// Writes dist/engine.v8cache (scripts/build-engine.mjs runs this in a child `node` with no flags,
// the flags V8 then expects of the processes that use it): compiles dist/engine.cjs, loads the
// reference models (untrained, seed 0; f32 and int8) from files as a serverless handler does and
// predicts at batch 1 and 8, so the bytecode of every function those paths run goes into the cache,
// then saves V8's code cache behind the code's build token.
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildToken, codeCacheFile, compileEngineCode } from "../dist/src/node/engineCode.js";
import { exportModel } from "../dist/src/export.js";
import { Model } from "../dist/src/model.js";
import { loadKernels } from "../dist/src/node/loadKernels.js";
import { cnnSpec, mlpSpec } from "../dist/src/referenceModels.js";

const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const codePath = join(dist, "engine.cjs");
const { exports: engine, script } = compileEngineCode(codePath, null, createRequire(codePath));
const dir = mkdtempSync(join(tmpdir(), "edgenn-cache-"));
try {
  for (const spec of [mlpSpec(), cnnSpec()])
    for (const int8 of [false, true]) {
      const bytes = exportModel(new Model(loadKernels(), spec, { seed: 0 }), { int8 }).bytes;
      const file = join(dir, "model.enn");
      writeFileSync(file, bytes);
      for (const maxBatch of [1, 8]) {
        const e = engine.loadEngineFile(file, { maxBatch });
        const x = new Float32Array(e.inputSize * maxBatch).fill(0.5);
        e.predict(x, maxBatch);
      }
    }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const token = buildToken(readFileSync(codePath, "latin1"));
if (!token) throw new Error(`${codePath} has no build token line`);
writeFileSync(join(dist, "engine.v8cache"), codeCacheFile(token, script.createCachedData()));
