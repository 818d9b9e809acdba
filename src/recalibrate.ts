// BatchNorm recalibration: replaces every BN layer's moving statistics (an exponential average of
// training-time batch statistics) with the population statistics of the inputs it will see at
// inference, measured with the network in inference mode.
//
// Why: the moving averages describe the training-mode network. Dropout scales its survivors by
// 1/(1-rate) in training and is the identity at inference, so any BN downstream of a dropout (the
// next block's BN in Dense -> BN -> ReLU -> Dropout -> Dense -> BN) sees a different variance at
// test time than it learned ("variance shift", Li et al. 2019, "Understanding the Disharmony
// between Dropout and Batch Normalization"). The moving averages also lag the weights by ~1/(1-
// momentum) steps. Recomputing the statistics after training, with dropout off and each BN's
// predecessors already recalibrated, removes both (the "precise BN" of Wu & Johnson 2021, in the
// inference-time form). It changes no learned weight, only the statistics BN folds at export.
//
// Order matters: layer j's input depends on earlier BN layers' statistics, so layers are
// recalibrated one at a time, front to back, each pass running the inference forward only up to
// the layer being measured. Per batch the kernel computes the mean and biased variance per channel
// (the BN training kernel, numerically careful); batches are merged in float64 with Chan et al.'s
// formula, so the result is the population mean and biased variance of all rows used.
import { ModelError, type Model } from "./model.js";
import { Rng } from "./random.js";

export interface RecalibrateOptions {
  /** Samples to measure on: a seeded random subset of x (default min(N, 10,000)). */
  samples?: number;
  /** Inference batch size for the passes (default 256). */
  batchSize?: number;
  /** Seed of the subset choice (default 0). */
  seed?: number;
}

export interface RecalibrationReport {
  /** Indices (in the layer list) of the BN layers recalibrated, in order. */
  layers: number[];
  samples: number;
}

export function recalibrateBatchNorm(
  model: Model,
  xIn: Float32Array | number[],
  options: RecalibrateOptions = {},
): RecalibrationReport {
  const x = xIn instanceof Float32Array ? xIn : Float32Array.from(xIn);
  const N = model.checkInputs(x, "x");
  const bnLayers = model.layers.flatMap((rt, i) => (rt.l.spec.type === "batchNorm" ? [i] : []));
  if (bnLayers.length === 0) return { layers: [], samples: 0 };
  if (N === 0) throw new ModelError("BatchNorm recalibration needs at least one sample");
  const want = options.samples ?? 10_000;
  if (!Number.isInteger(want) || want < 1)
    throw new ModelError(`samples must be a positive integer, got ${options.samples}`);
  const batchSize = options.batchSize ?? 256;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ModelError(`batchSize must be a positive integer, got ${options.batchSize}`);
  const S = Math.min(want, N);
  // The first S of a seeded permutation: a random subset (data sets are often sorted by class).
  const rows = new Int32Array(N);
  for (let i = 0; i < N; i++) rows[i] = i;
  if (S < N) new Rng(options.seed ?? 0).shuffle(rows);
  const B = Math.min(batchSize, S);
  const k = model.kernels;
  const abi = k.abi;
  const D = model.inputSize;

  for (const j of bnLayers) {
    const rt = model.layers[j];
    const C = rt.channels;
    const eps = (rt.l.spec as { epsilon: number }).epsilon;
    // Per-batch moments, merged at the end: [batches][C] means and variances, rows per batch.
    const means: Float64Array[] = [];
    const vars: Float64Array[] = [];
    const counts: number[] = [];
    for (let s = 0; s < S; s += B) {
      const b = Math.min(B, S - s);
      const p = model.plan(b);
      const f = k.f32;
      for (let r = 0; r < b; r++) {
        const row = rows[s + r];
        f.set(x.subarray(row * D, (row + 1) * D), (p.x >>> 2) + r * D);
      }
      model.forwardInferUntil(p, b, j);
      const buf = p.infer[j];
      const R = (b * rt.outSize) / C;
      // y aliases x: the BN input is not needed after its statistics are taken.
      abi.batchnorm_train_fwd_f32(
        R,
        C,
        buf.in,
        rt.gamma,
        rt.beta,
        eps,
        buf.in,
        buf.batchMean,
        buf.batchVar,
        buf.batchInvStd,
      );
      const g = k.f32;
      means.push(Float64Array.from(g.subarray(buf.batchMean >>> 2, (buf.batchMean >>> 2) + C)));
      vars.push(Float64Array.from(g.subarray(buf.batchVar >>> 2, (buf.batchVar >>> 2) + C)));
      counts.push(R);
    }
    // Chan et al.: total M2 = sum of per-batch M2 + sum of n_b * (mean_b - mean)^2.
    const total = counts.reduce((a, c) => a + c, 0);
    const f = k.f32;
    for (let c = 0; c < C; c++) {
      let mean = 0;
      for (let b = 0; b < counts.length; b++) mean += counts[b] * means[b][c];
      mean /= total;
      let m2 = 0;
      for (let b = 0; b < counts.length; b++) {
        const d = means[b][c] - mean;
        m2 += counts[b] * (vars[b][c] + d * d);
      }
      f[(rt.movingMean >>> 2) + c] = mean;
      f[(rt.movingVariance >>> 2) + c] = m2 / total;
    }
  }
  return { layers: bnLayers, samples: S };
}
