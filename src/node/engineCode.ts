// The Node engine's code (dist/engine.cjs, src/node/engine.ts bundled by scripts/build-engine.mjs)
// compiled with V8's code cache (dist/engine.v8cache): the bytecode of every function a load and a
// prediction run, made at build time, so a cold process neither parses the engine's JavaScript
// nor compiles its functions one by one on first call: 3-5 ms less from a new process to its
// first prediction here (of ~15-20 ms above a bare Node's start). dist/engine.mjs, the
// "edgenn/engine" entry, is src/node/engineEntry.ts, which calls compileEngineCode.
//
// V8 accepts a cache only from its own version and the same flags, and checks little of the
// source (its length): the cache file therefore starts with the build token that the code's first
// line carries (a hash of the code), and a cache from another build is not offered to V8 at all.
// Without a usable cache the code compiles as any script does; the engine is the same either way.
//
// Node's built-in modules come through the `require` the caller passes, not through ES imports: an
// ES import of a built-in makes its module namespace, which for node:fs loads Node's streams
// (~1-2 ms of a cold start that a serverless handler may never need).
import type * as Fs from "node:fs";
import type * as Url from "node:url";
import type * as Vm from "node:vm";

/** Node's require, or anything that returns its built-in modules (process.getBuiltinModule). */
export type BuiltinRequire = (id: string) => unknown;

/**
 * What happened to the code cache: "used" (V8 took it), "rejected" (V8 refused it: another Node or
 * V8 version, or other V8 flags), "stale" (made for another build of the code), "absent" (no
 * file).
 */
export type CodeCacheStatus = "used" | "rejected" | "stale" | "absent";

const CODE_PREFIX = "//edgenn-build ";
const CACHE_PREFIX = "edgenn-v8cache ";

/** The parameters the bundled CommonJS code sees; import.meta.url is bundled as __edgennUrl. */
const WRAPPER_HEAD = "(function (exports, require, module, __filename, __dirname, __edgennUrl) {";
const WRAPPER_TAIL = "\n})";

/** The code's build token (its first line, "//edgenn-build <token>"), or undefined. */
export function buildToken(code: string): string | undefined {
  if (!code.startsWith(CODE_PREFIX)) return undefined;
  const end = code.indexOf("\n");
  return end < 0 ? undefined : code.slice(CODE_PREFIX.length, end);
}

/** The first line a build writes above the bundled code. */
export function buildTokenLine(token: string): string {
  return `${CODE_PREFIX}${token}\n`;
}

/** The cache file's bytes: "edgenn-v8cache <token>\n" and V8's data. */
export function codeCacheFile(token: string, data: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`${CACHE_PREFIX}${token}\n`);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/** V8's data from a cache file made for `token`, or undefined when it was made for another build. */
function cacheFor(file: Uint8Array, token: string | undefined): Uint8Array | undefined {
  const nl = file.indexOf(10);
  if (token === undefined || nl < 0 || nl > 128) return undefined;
  const head = String.fromCharCode(...file.subarray(0, nl));
  return head === `${CACHE_PREFIX}${token}` ? file.subarray(nl + 1) : undefined;
}

export interface CompiledEngineCode {
  /** What the bundled code exports (src/node/engine.ts's exports). */
  exports: Record<string, unknown>;
  /** The compiled script: createCachedData() after a warm-up makes a cache (the build does). */
  script: Vm.Script;
  cache: CodeCacheStatus;
}

/**
 * Compiles and runs the bundled engine at codePath, with the cache file at cachePath when it exists
 * and was made for this code (null: compile without one). `require` serves the node: modules, to
 * this function and to the engine's code.
 */
export function compileEngineCode(
  codePath: string,
  cachePath: string | null,
  require: BuiltinRequire,
): CompiledEngineCode {
  const { readFileSync } = require("node:fs") as typeof Fs;
  const { Script } = require("node:vm") as typeof Vm;
  const { pathToFileURL } = require("node:url") as typeof Url;
  const code = readFileSync(codePath, "latin1");
  let cache: CodeCacheStatus = "absent";
  let cachedData: Uint8Array | undefined;
  if (cachePath !== null) {
    let file: Uint8Array | undefined;
    try {
      file = readFileSync(cachePath);
    } catch {
      file = undefined;
    }
    if (file) {
      cachedData = cacheFor(file, buildToken(code));
      if (!cachedData) cache = "stale";
    }
  }
  const script = new Script(WRAPPER_HEAD + code + WRAPPER_TAIL, {
    filename: codePath,
    ...(cachedData ? { cachedData } : {}),
  });
  // V8's answer (undefined when it was offered no cache).
  if (script.cachedDataRejected === false) cache = "used";
  else if (script.cachedDataRejected === true) cache = "rejected";
  const module = { exports: {} as Record<string, unknown> };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  const dir = codePath.slice(0, Math.max(codePath.lastIndexOf("/"), codePath.lastIndexOf("\\")));
  run(module.exports, require, module, codePath, dir, pathToFileURL(codePath).href);
  return { exports: module.exports, script, cache };
}
