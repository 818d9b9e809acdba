// Multi-core training: the reference cnn trained data-parallel on 1 and 2 worker_threads
// (src/dataParallel.ts), same data, batch 64, Adam; reports samples/s and the speed-up.
//
// The configurations run side by side and take turns epoch by epoch (1 worker, 2 workers, 1, 2,
// ...; each pool stays up and idles while the other trains), so a noisy stretch of the shared
// machine falls on both alike instead of on whichever configuration ran second. Every pool's
// first epoch warms V8's tiers up and is not counted; the speed-up is the ratio of the medians of
// the timed epochs.
import { fitParallel } from "../src/node/fitParallel.js";
import type { Dataset } from "../src/dataset.js";
import { cnnSpec } from "../src/referenceModels.js";
import { median } from "./stats.js";

export interface ParallelBenchRow {
  workers: number;
  /** median over the timed epochs */
  samplesPerSecond: number;
  /** median epoch seconds */
  epochSeconds: number;
  /** the fastest timed epoch */
  bestSamplesPerSecond: number;
  /** every timed epoch, in the order run */
  epochsSamplesPerSecond: number[];
}

export interface ParallelBenchResult {
  model: string;
  samples: number;
  /** timed epochs per configuration (after one warm-up epoch each) */
  timedEpochs: number;
  rows: ParallelBenchRow[];
  /** median samples/s of the most workers over that of the fewest */
  speedup: number;
  /** the same from the fastest epochs */
  bestSpeedup: number;
}

/** Lets one configuration train at a time, first come first served. */
class Turns {
  private busy = false;
  private readonly waiting: (() => void)[] = [];
  async acquire(): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.busy = false;
  }
}

export async function runParallelBench(
  train: Dataset,
  options: { samples?: number; workers?: number[]; timedEpochs?: number } = {},
): Promise<ParallelBenchResult> {
  const n = Math.min(options.samples ?? 3200, train.count);
  const timed = options.timedEpochs ?? 5;
  const x = train.x.subarray(0, n * 784);
  const y = train.y.subarray(0, n);
  const configs = options.workers ?? [1, 2];
  const turns = new Turns();
  const runs = configs.map(async (workers) => {
    await turns.acquire(); // held from the pool's start-up through its first epoch
    let holding = true;
    try {
      const epochs = 1 + timed;
      const r = await fitParallel(cnnSpec(), x, y, {
        workers,
        epochs,
        batchSize: 64,
        seed: 0,
        onEpochEnd: async (log) => {
          turns.release();
          holding = false;
          if (log.epoch < epochs - 1) {
            await turns.acquire();
            holding = true;
          }
        },
      });
      return r.history.slice(1).map((h) => h.samplesPerSecond);
    } finally {
      // A failed run hands its turn on, so the other pool finishes and the process can exit.
      if (holding) turns.release();
    }
  });
  const perConfig = await Promise.all(runs);
  const rows: ParallelBenchRow[] = configs.map((workers, i) => {
    const sps = perConfig[i];
    const med = median(sps);
    return {
      workers,
      samplesPerSecond: med,
      epochSeconds: n / med,
      bestSamplesPerSecond: Math.max(...sps),
      epochsSamplesPerSecond: sps,
    };
  });
  const first = rows[0];
  const last = rows[rows.length - 1];
  const speedup = last.samplesPerSecond / first.samplesPerSecond;
  const bestSpeedup = last.bestSamplesPerSecond / first.bestSamplesPerSecond;
  console.log(
    `\nmulti-core training, cnn, ${n} samples/epoch, batch 64 (per-shard BN); ` +
      `configurations take turns, ${timed} timed epochs each after a warm-up epoch:`,
  );
  for (const r of rows)
    console.log(
      `  ${r.workers} worker(s): median ${Math.round(r.samplesPerSecond)} samples/s (epoch ${r.epochSeconds.toFixed(2)} s), ` +
        `best ${Math.round(r.bestSamplesPerSecond)}; epochs ${r.epochsSamplesPerSecond.map(Math.round).join(", ")}`,
    );
  console.log(
    `  speed-up ${last.workers} vs ${first.workers}: ${speedup.toFixed(2)}x from the medians, ` +
      `${bestSpeedup.toFixed(2)}x from the best epochs (target >= 1.7x on 2 workers)`,
  );
  return { model: "cnn", samples: n, timedEpochs: timed, rows, speedup, bestSpeedup };
}
