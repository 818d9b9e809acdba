// Multi-core training: the reference cnn trained data-parallel on 1 and 2 worker_threads
// (src/dataParallel.ts), same data, batch 64, Adam; reports samples/s and the speed-up.
import { fitParallel } from "../src/node/fitParallel.js";
import type { Dataset } from "../src/dataset.js";
import { cnnSpec } from "../src/referenceModels.js";

export interface ParallelBenchRow {
  workers: number;
  samplesPerSecond: number;
  epochSeconds: number;
}

export async function runParallelBench(
  train: Dataset,
  options: { samples?: number; workers?: number[] } = {},
): Promise<{ model: string; samples: number; rows: ParallelBenchRow[]; speedup: number }> {
  const n = Math.min(options.samples ?? 12800, train.count);
  const x = train.x.subarray(0, n * 784);
  const y = train.y.subarray(0, n);
  const rows: ParallelBenchRow[] = [];
  for (const workers of options.workers ?? [1, 2]) {
    // Two epochs: the first warms V8's tiers up in every worker; the second is timed.
    const r = await fitParallel(cnnSpec(), x, y, { workers, epochs: 2, batchSize: 64, seed: 0 });
    const last = r.history[r.history.length - 1];
    rows.push({ workers, samplesPerSecond: last.samplesPerSecond, epochSeconds: last.seconds });
  }
  const speedup = rows[rows.length - 1].samplesPerSecond / rows[0].samplesPerSecond;
  console.log(`\nmulti-core training, cnn, ${n} samples/epoch, batch 64 (per-shard BN):`);
  for (const r of rows)
    console.log(
      `  ${r.workers} worker(s): ${Math.round(r.samplesPerSecond)} samples/s (epoch ${r.epochSeconds.toFixed(2)} s)`,
    );
  console.log(
    `  speed-up ${rows[rows.length - 1].workers} vs ${rows[0].workers}: ${speedup.toFixed(2)}x (target >= 1.7x on 2 workers)`,
  );
  return { model: "cnn", samples: n, rows, speedup };
}
