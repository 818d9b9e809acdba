// Node: spawns worker/nodeWorker.js on a worker_threads Worker and connects a Trainer to it.
import { Worker } from "node:worker_threads";
import { connectNodeWorker, type Trainer } from "./client.js";

export * from "./client.js";

/** A Trainer on a fresh worker thread (script: the built nodeWorker.js, or a bundle of it). */
export function spawnNodeTrainer(
  script: string | URL = new URL("./nodeWorker.js", import.meta.url),
): Trainer {
  return connectNodeWorker(new Worker(script));
}
