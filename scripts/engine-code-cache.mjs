// Writes dist/engine.v8cache (src/node/engineCacheWrite.ts). scripts/build-engine.mjs runs this in a
// child `node` with no flags, the flags V8 then expects of the processes that use the cache.
import { fileURLToPath } from "node:url";
import { writeEngineCodeCache } from "../dist/src/node/engineCacheWrite.js";

writeEngineCodeCache(fileURLToPath(new URL("../dist/", import.meta.url)));
