// Node entry: the same training API (worker/trainWorker.ts) on a worker_threads Worker, through
// comlink's node adapter. Kernels default to build/edgenn.wasm read from disk (init() still works).
// Start it with spawnNodeTrainer (worker/nodeClient.ts).
import { parentPort } from "node:worker_threads";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { kernelModule } from "../src/node/loadKernels.js";
import { exposeTrainWorker } from "./trainWorker.js";

if (!parentPort)
  throw new Error("edgenn: worker/nodeWorker.js must run in a worker_threads Worker");
exposeTrainWorker(nodeEndpoint(parentPort), { defaultKernels: kernelModule });
