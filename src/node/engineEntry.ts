// "edgenn/engine": bundled by scripts/build-engine.mjs into dist/engine.mjs, which loads the engine
// (src/node/engine.ts, bundled as dist/engine.cjs beside it) with the code cache made at build
// time (dist/engine.v8cache; src/node/engineCode.ts says why and when V8 takes it). Only works
// bundled: the files it reads sit beside dist/engine.mjs.
import type * as Url from "node:url";
import { compileEngineCode, type BuiltinRequire, type CodeCacheStatus } from "./engineCode.js";
import type * as Engine from "./engine.js";

// Built-in modules without ES imports (engineCode.ts says why): Node >= 20.16 has
// process.getBuiltinModule; older Node gets them from a CommonJS require.
const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
const require: BuiltinRequire = builtin
  ? (id) => builtin.call(process, id)
  : (await import("node:module")).createRequire(import.meta.url);
const { fileURLToPath } = require("node:url") as typeof Url;
const loaded = compileEngineCode(
  fileURLToPath(new URL("./engine.cjs", import.meta.url)),
  fileURLToPath(new URL("./engine.v8cache", import.meta.url)),
  require,
);
const engine = loaded.exports as unknown as typeof Engine;

export const InferenceEngine = engine.InferenceEngine;
export type InferenceEngine = Engine.InferenceEngine;
export const InferenceError = engine.InferenceError;
export type InferenceError = Engine.InferenceError;
export const ModelFormatError = engine.ModelFormatError;
export type ModelFormatError = Engine.ModelFormatError;
export const loadEngineFile = engine.loadEngineFile;
export const readModelFile = engine.readModelFile;
export type { EngineOptions } from "./engine.js";
/** Whether this process compiled the engine from the build's code cache (CodeCacheStatus). */
export const engineCodeCache: CodeCacheStatus = loaded.cache;
export type { CodeCacheStatus };
