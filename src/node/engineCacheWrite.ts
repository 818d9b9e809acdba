// Makes dist/engine.v8cache, the code cache edgenn/engine compiles its bundled code with
// (src/node/engineCode.ts): compiles dist/engine.cjs in this process, loads the reference models
// (untrained, seed 0; f32 and int8) from files as a serverless handler does and predicts at batch
// 1 and 8, so the bytecode of every function those paths run goes into the cache, then writes V8's
// code cache behind the code's build token. V8 takes the cache only in processes of this Node and
// with this process's V8 flags: `npm run build` makes it with none (scripts/engine-code-cache.mjs),
// and `edgenn engine-cache` remakes it with the flags a deployment runs with (AWS Lambda's Node,
// for one, starts with --max-old-space-size).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportModel } from "../export.js";
import { Model } from "../model.js";
import { cnnSpec, mlpSpec } from "../referenceModels.js";
import { buildToken, codeCacheFile, compileEngineCode } from "./engineCode.js";
import type * as Engine from "./engine.js";
import { loadKernels } from "./loadKernels.js";

/** Writes distDir/engine.v8cache for distDir/engine.cjs; returns its path and size. */
export function writeEngineCodeCache(distDir: string): { path: string; bytes: number } {
  const codePath = join(distDir, "engine.cjs");
  const token = buildToken(readFileSync(codePath, "latin1"));
  if (!token) throw new Error(`${codePath} has no build token line; rebuild edgenn`);
  const { exports, script } = compileEngineCode(codePath, null, createRequire(codePath));
  const engine = exports as unknown as typeof Engine;
  const dir = mkdtempSync(join(tmpdir(), "edgenn-cache-"));
  try {
    for (const spec of [mlpSpec(), cnnSpec()]) {
      const model = new Model(loadKernels(), spec, { seed: 0 });
      for (const int8 of [false, true]) {
        const file = join(dir, "model.enn");
        writeFileSync(file, exportModel(model, { int8 }).bytes);
        for (const maxBatch of [1, 8]) {
          const e = engine.loadEngineFile(file, { maxBatch });
          const x = new Float32Array(e.inputSize * maxBatch).fill(0.5);
          // Twice: a Winograd conv prepares its weights at its second call.
          e.predict(x, maxBatch);
          e.predict(x, maxBatch);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const path = join(distDir, "engine.v8cache");
  const file = codeCacheFile(token, script.createCachedData());
  writeFileSync(path, file);
  return { path, bytes: file.length };
}
