// Browser entry: a module Web Worker exposing the training API (worker/trainWorker.ts) through
// comlink. No Node built-ins here: the kernel module comes from init(url | bytes | module), since a
// browser has no file to read it from. Start it with
//   new Worker(new URL("./webWorker.js", import.meta.url), { type: "module" })
// and talk to it through connectWebWorker (worker/client.ts).
import { exposeTrainWorker } from "./trainWorker.js";

exposeTrainWorker(globalThis as unknown as DedicatedWorkerGlobalScope);
