// Whole training steps against TensorFlow.js (cpu backend) as the oracle: same weights, same batch,
// SGD; after a few steps the weights, BN moving statistics and losses must agree.
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { Model } from "../src/model.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { Rng } from "../src/random.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe("training steps match TensorFlow.js", () => {
  for (const bn of [
    { momentum: 0.99, epsilon: 1e-3 },
    { momentum: 0.8, epsilon: 0.05 },
  ]) {
    it(`dense -> BN(momentum ${bn.momentum}, epsilon ${bn.epsilon}) -> relu -> dense -> softmax, 3 SGD steps`, async () => {
      const B = 8;
      const rng = new Rng(42);
      const m = new Model(
        loadKernels(),
        {
          inputShape: [6],
          layers: [
            { type: "dense", units: 5 },
            { type: "batchNorm", ...bn },
            { type: "relu" },
            { type: "dense", units: 3 },
            { type: "softmax" },
          ],
        },
        { seed: 9, optimizer: { type: "sgd", learningRate: 0.1 } },
      );
      // Non-trivial BN parameters and moving statistics.
      const w = m.getWeights();
      w.set(
        "layers.1.gamma",
        w.get("layers.1.gamma")!.map(() => 0.5 + rng.next()),
      );
      w.set(
        "layers.1.beta",
        w.get("layers.1.beta")!.map(() => rng.next() - 0.5),
      );
      w.set(
        "layers.1.movingMean",
        w.get("layers.1.movingMean")!.map(() => rng.next() - 0.5),
      );
      w.set(
        "layers.1.movingVariance",
        w.get("layers.1.movingVariance")!.map(() => 0.5 + rng.next()),
      );
      w.set(
        "layers.0.bias",
        w.get("layers.0.bias")!.map(() => rng.next() - 0.5),
      );
      m.setWeights(w);

      const tfm = tf.sequential({
        layers: [
          tf.layers.dense({ units: 5, inputShape: [6] }),
          tf.layers.batchNormalization({ momentum: bn.momentum, epsilon: bn.epsilon }),
          tf.layers.activation({ activation: "relu" }),
          tf.layers.dense({ units: 3 }),
          tf.layers.activation({ activation: "softmax" }),
        ],
      });
      // Per layer, in Keras weight order (TF.js's model.getWeights lists trainable weights first).
      const perLayer: [number, string[]][] = [
        [0, ["layers.0.kernel", "layers.0.bias"]],
        [1, ["layers.1.gamma", "layers.1.beta", "layers.1.movingMean", "layers.1.movingVariance"]],
        [3, ["layers.3.kernel", "layers.3.bias"]],
      ];
      const w0 = m.getWeights();
      for (const [li, names] of perLayer) {
        const shapes = tfm.layers[li].getWeights().map((t) => t.shape);
        tfm.layers[li].setWeights(names.map((n, i) => tf.tensor(w0.get(n)!, shapes[i])));
      }
      tfm.compile({ optimizer: tf.train.sgd(0.1), loss: "sparseCategoricalCrossentropy" });

      const xs: Float32Array[] = [];
      const ys: Int32Array[] = [];
      for (let s = 0; s < 3; s++) {
        xs.push(new Float32Array(B * 6).map(() => rng.next() * 4 - 2));
        ys.push(new Int32Array(B).map(() => rng.int(3)));
      }
      const p = m.plan(B);
      const correct = new Int32Array(1);
      for (let s = 0; s < 3; s++) {
        m.kernels.writeF32(p.x, xs[s]);
        m.kernels.i32.set(ys[s], p.labels >>> 2);
        m.forwardTrain(p);
        const ours = m.lossOf(p, B, true, true, p.gradA, correct);
        m.backward(p);
        m.applyGradients();
        const theirs = (await tfm.trainOnBatch(
          tf.tensor2d(xs[s], [B, 6]),
          tf.tensor2d(Array.from(ys[s]), [B, 1]),
        )) as number;
        expect(Math.abs(ours - theirs)).toBeLessThan(1e-4);
      }
      const ws = m.getWeights();
      for (const [li, names] of perLayer) {
        const tw = tfm.layers[li].getWeights();
        names.forEach((n, i) =>
          expect(maxAbsDiff(ws.get(n)!, tw[i].dataSync()), n).toBeLessThan(1e-4),
        );
      }
      // Inference mode uses the moving statistics: predictions agree too.
      const xt = new Float32Array(4 * 6).map(() => rng.next() * 2 - 1);
      const ours = m.predict(xt);
      const theirs = (tfm.predict(tf.tensor2d(xt, [4, 6])) as tf.Tensor).dataSync();
      expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-5);
    });
  }
});
