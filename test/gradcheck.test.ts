// Every layer's backward, exercised inside whole models, against central finite differences of the
// training-mode loss (BN with batch statistics, dropout with a fixed mask).
import { describe, expect, it } from "vitest";
import { Model, type LossName } from "../src/model.js";
import { loadKernels } from "../src/node/loadKernels.js";
import { Rng } from "../src/random.js";
import type { ModelSpec } from "../src/spec.js";

interface Case {
  name: string;
  spec: ModelSpec;
  loss?: LossName;
}

const cases: Case[] = [
  {
    name: "dense -> BN -> tanh -> dropout -> dense -> softmax (sparse CE)",
    spec: {
      inputShape: [6],
      layers: [
        { type: "dense", units: 5 },
        { type: "batchNorm", momentum: 0.9 },
        { type: "tanh" },
        { type: "dropout", rate: 0.3 },
        { type: "dense", units: 4 },
        { type: "softmax" },
      ],
    },
  },
  {
    name: "conv same -> BN -> elu -> maxpool -> conv valid stride 2 -> leakyRelu -> avgpool same -> flatten -> dense -> softmax",
    spec: {
      inputShape: [7, 6, 2],
      layers: [
        { type: "conv2d", filters: 3, kernelSize: 3, padding: "same" },
        { type: "batchNorm" },
        { type: "elu" },
        { type: "maxPool2d", poolSize: 2, strides: 1 },
        {
          type: "conv2d",
          filters: 5,
          kernelSize: [2, 3],
          strides: 2,
          padding: "valid",
          useBias: false,
        },
        { type: "leakyRelu", alpha: 0.2 },
        { type: "avgPool2d", poolSize: 2, padding: "same" },
        { type: "flatten" },
        { type: "dense", units: 3 },
        { type: "softmax" },
      ],
    },
  },
  {
    name: "BN first (scale/center off) -> conv -> sigmoid -> globalAvgPool -> dense (MSE)",
    loss: "meanSquaredError",
    spec: {
      inputShape: [5, 5, 3],
      layers: [
        { type: "batchNorm", center: false },
        { type: "conv2d", filters: 4, kernelSize: 3, strides: [1, 2], padding: "same" },
        { type: "batchNorm", scale: false },
        { type: "sigmoid" },
        { type: "globalAvgPool2d" },
        { type: "dense", units: 2 },
      ],
    },
  },
  {
    name: "dense -> relu -> dense logits (CE from logits) ",
    spec: {
      inputShape: [5],
      layers: [
        { type: "dense", units: 7 },
        { type: "relu" },
        { type: "dense", units: 3, useBias: false },
      ],
    },
  },
  {
    name: "dense -> softmax under MSE (softmax backward)",
    loss: "meanSquaredError",
    spec: { inputShape: [4], layers: [{ type: "dense", units: 3 }, { type: "softmax" }] },
  },
];

describe("backward vs central finite differences", () => {
  for (const c of cases) {
    it(c.name, () => {
      const B = 5;
      const m = new Model(loadKernels(), c.spec, { seed: 3, loss: c.loss });
      const k = m.kernels;
      const rng = new Rng(11);
      const p = m.plan(B);
      const x = new Float32Array(B * m.inputSize).map(() => rng.next() * 2 - 1);
      k.writeF32(p.x, x);
      const sparse = c.loss !== "meanSquaredError";
      if (sparse) for (let i = 0; i < B; i++) k.i32[(p.labels >>> 2) + i] = rng.int(m.outputSize);
      else
        k.writeF32(
          p.targets,
          new Float32Array(B * m.outputSize).map(() => rng.next()),
        );
      // Non-trivial BN parameters so gamma/beta gradients matter.
      for (const t of m.params)
        if (t.name === "gamma" || t.name === "beta")
          k.writeF32(
            t.ptr,
            new Float32Array(t.size).map(() => 0.5 + rng.next()),
          );
      const rngState = m.getDropoutRngState();
      const correct = new Int32Array(1);
      const lossAt = (): number => {
        m.setDropoutRngState(rngState);
        k.writeF32(p.x, x); // layers never write their input, but be explicit
        m.forwardTrain(p);
        return m.lossOf(p, B, true, sparse, 0, correct);
      };
      m.setDropoutRngState(rngState);
      m.forwardTrain(p);
      m.lossOf(p, B, true, sparse, p.gradA, correct);
      m.backward(p);
      const f = () => k.f32;
      let checked = 0;
      for (const t of m.params) {
        const picks = Math.min(t.size, 6);
        for (let j = 0; j < picks; j++) {
          const idx = (t.ptr >>> 2) + Math.floor((j * t.size) / picks);
          const analytic = f()[idx + (m.block.gradDelta >>> 2)];
          const w0 = f()[idx];
          const eps = 1e-3; // small enough not to cross max-pool and ReLU kinks
          f()[idx] = w0 + eps;
          const lp = lossAt();
          f()[idx] = w0 - eps;
          const lm = lossAt();
          f()[idx] = w0;
          const numeric = (lp - lm) / (2 * eps);
          const tol = 2e-3 + 3e-2 * Math.max(Math.abs(numeric), Math.abs(analytic));
          expect(
            Math.abs(numeric - analytic),
            `layer ${t.layer} ${t.name}[${j}]: analytic ${analytic}, numeric ${numeric}`,
          ).toBeLessThanOrEqual(tol);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(5);
    });
  }
});
