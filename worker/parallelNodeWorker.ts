// Node worker_threads entry of one data-parallel replica (worker/parallelReplica.ts), driven
// through comlink by worker/parallelClient.ts (src/node/fitParallel.ts spawns it).
import { parentPort } from "node:worker_threads";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { kernelModule } from "../src/node/loadKernels.js";
import { exposeReplica } from "./parallelReplica.js";

if (!parentPort) throw new Error("edgenn: parallelNodeWorker must run in a worker_threads Worker");

exposeReplica(nodeEndpoint(parentPort), { defaultKernels: kernelModule });
