// Browser entry of one data-parallel replica (worker/parallelReplica.ts): a module Web Worker that
// worker/parallelClient.ts's fitParallel starts once per replica. No Node built-ins here: the
// kernel module comes compiled from the coordinator with init().
import { exposeReplica } from "./parallelReplica.js";

exposeReplica(globalThis as unknown as DedicatedWorkerGlobalScope);
