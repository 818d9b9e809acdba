// A data-parallel replica worker that fails on purpose (test/parallel.test.ts): replica 1 throws,
// or ends its thread with process.exit(3), at its third optimizer step. FAULT_MODE is set when the
// test bundles this file (esbuild `define`).
import { parentPort } from "node:worker_threads";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { kernelModule } from "../src/node/loadKernels.js";
import { exposeReplica } from "../worker/parallelReplica.js";

declare const FAULT_MODE: "throw" | "exit";
const FAULT_RANK = 1;
const FAULT_STEP = 3;

exposeReplica(nodeEndpoint(parentPort!), {
  defaultKernels: kernelModule,
  onReplica(replica) {
    if (replica.rank !== FAULT_RANK) return;
    const model = replica.model;
    const apply = model.applyGradients.bind(model);
    let steps = 0;
    model.applyGradients = () => {
      if (++steps === FAULT_STEP) {
        if (FAULT_MODE === "exit") process.exit(3);
        throw new Error(`injected failure at step ${steps} of replica ${replica.rank}`);
      }
      apply();
    };
  },
});
