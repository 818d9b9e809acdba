// Loss kernels (assembly/loss.ts): fused softmax + cross-entropy (sparse and dense targets) and
// MSE against float64 references written here, against their scalar twins on every row-length
// tail, against tf.losses for a sanity case, their gradients against finite differences of the
// returned loss, stability for huge logits, and the accuracy counters' tie-breaking.
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { TestArena, expectClose, finiteDiff, normal, rng, uniform } from "./kernelHarness.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

/** float64 reference: probs, mean loss, dlogits of softmax cross-entropy with dense targets. */
function xentReference(
  B: number,
  C: number,
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
): { loss: number; probs: number[]; dlogits: number[] } {
  let loss = 0;
  const probs: number[] = [];
  const dlogits: number[] = [];
  for (let r = 0; r < B; r++) {
    const row = Array.from({ length: C }, (_, j) => logits[r * C + j]);
    const m = Math.max(...row);
    const s = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
    const lse = m + Math.log(s);
    row.forEach((v, j) => {
      const t = targets[r * C + j];
      const p = Math.exp(v - m) / s;
      loss += t * (lse - v);
      probs.push(p);
      dlogits.push((p - t) / B);
    });
  }
  return { loss: loss / B, probs, dlogits };
}

function oneHot(B: number, C: number, labels: ArrayLike<number>): Float32Array {
  const t = new Float32Array(B * C);
  for (let r = 0; r < B; r++) t[r * C + labels[r]] = 1;
  return t;
}

function randomLabels(B: number, C: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: B }, () => Math.floor(r() * C));
}

/** Random soft targets: rows of a softmax of random scores (sum to 1). */
function softTargets(B: number, C: number, seed: number): Float32Array {
  const z = normal(B * C, seed);
  const t = new Float32Array(B * C);
  for (let r = 0; r < B; r++) {
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(z[r * C + j]);
    for (let j = 0; j < C; j++) t[r * C + j] = Math.exp(z[r * C + j]) / s;
  }
  return t;
}

type Xent = "sparse" | "dense";

function runXent(
  a: TestArena,
  kind: Xent,
  B: number,
  C: number,
  logits: ArrayLike<number>,
  target: ArrayLike<number>,
  withGrad = true,
  twin = false,
): { loss: number; probs: Float32Array; dlogits: Float32Array | null } {
  const lp = a.f32(B * C, logits, "logits");
  const tp = kind === "sparse" ? a.i32(B, target, "labels") : a.f32(B * C, target, "targets");
  const pp = a.f32(B * C, NaN, "probs");
  const dp = withGrad ? a.f32(B * C, NaN, "dlogits") : 0;
  const name = kind === "sparse" ? "softmax_xent_sparse_f32" : "softmax_xent_dense_f32";
  const f = twin ? a.k.twin(name) : a.abi[name];
  const loss = f(B, C, lp, tp, pp, dp);
  return { loss, probs: a.read(pp, B * C), dlogits: dp ? a.read(dp, B * C) : null };
}

describe("softmax cross-entropy", () => {
  for (const kind of ["sparse", "dense"] as const) {
    it(`${kind}: matches the float64 reference and its twin on every row-length tail`, () => {
      const a = new TestArena();
      for (const C of [1, 3, 4, 7, 8, 10, 64]) {
        for (const B of [1, 2, 5, 33]) {
          a.reset();
          const logits = normal(B * C, B * 100 + C, 3);
          const labels = randomLabels(B, C, B + C);
          const targets = kind === "sparse" ? oneHot(B, C, labels) : softTargets(B, C, B * C);
          const got = runXent(a, kind, B, C, logits, kind === "sparse" ? labels : targets);
          const twin = runXent(
            a,
            kind,
            B,
            C,
            logits,
            kind === "sparse" ? labels : targets,
            true,
            true,
          );
          const ref = xentReference(B, C, logits, targets);
          const what = `${kind} B=${B} C=${C}`;
          expect(Math.abs(got.loss - ref.loss), `${what} loss`).toBeLessThan(1e-6 * (1 + ref.loss));
          expect(Math.abs(twin.loss - ref.loss), `${what} twin loss`).toBeLessThan(
            1e-9 * (1 + ref.loss),
          );
          // Dense: p - t in f32 cancels where p ~ t, leaving about an ulp of 1 (over B); sparse
          // forms 1 - p from the other probabilities and keeps its relative accuracy.
          const dTol = { rtol: 2e-6, atol: kind === "dense" ? 2 ** -22 / B : 1e-12 };
          expectClose(got.probs, ref.probs, { rtol: 2e-6, atol: 1e-12 }, `${what} probs`);
          expectClose(got.dlogits!, ref.dlogits, dTol, `${what} dlogits`);
          expectClose(got.probs, twin.probs, { rtol: 2e-6, atol: 1e-12 }, `${what} probs vs twin`);
          expectClose(got.dlogits!, twin.dlogits!, dTol, `${what} dlogits vs twin`);
          a.expectGuards(what);
        }
      }
    });

    it(`${kind}: dlogits is the gradient of the returned loss (finite differences)`, () => {
      const a = new TestArena();
      const B = 4;
      const C = 7;
      const logits = normal(B * C, 99, 2);
      const labels = randomLabels(B, C, 5);
      const target = kind === "sparse" ? labels : softTargets(B, C, 6);
      const grad = runXent(a, kind, B, C, logits, target).dlogits!;
      const fd = finiteDiff(logits, (l) => runXent(a, kind, B, C, l, target, false).loss, 1e-2);
      expectClose(grad, fd, { rtol: 1e-2, atol: 1e-4 }, "finite differences");
    });

    it(`${kind}: huge logits give finite, exact losses (log-sum-exp, not log of probs)`, () => {
      const a = new TestArena();
      const C = 5;
      const rows = [
        [1e4, -1e4, 0, 5, 1e4 - 20],
        [-1e30, 1e30, 0, 3e38, -3e38],
        [100, 100, 100, 100, 100],
        [-1e4, -1e4 - 1, -1e4 - 2, -1e4 - 3, -1e4 - 4],
      ];
      const B = rows.length;
      const logits = Float32Array.from(rows.flat());
      const labels = Int32Array.from([4, 0, 2, 3]); // row 0 wants the logit 20 below the max
      const targets = kind === "sparse" ? oneHot(B, C, labels) : softTargets(B, C, 1);
      const got = runXent(a, kind, B, C, logits, kind === "sparse" ? labels : targets);
      const ref = xentReference(B, C, logits, targets);
      expect(Number.isFinite(got.loss)).toBe(true);
      expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-6 * (1 + Math.abs(ref.loss)));
      expect(got.probs.every(Number.isFinite)).toBe(true);
      expect(got.dlogits!.every(Number.isFinite)).toBe(true);
      const dTol = { rtol: 2e-6, atol: kind === "dense" ? 2 ** -22 / B : 1e-12 };
      expectClose(got.dlogits!, ref.dlogits, dTol, "dlogits");
    });
  }

  it("matches tf.losses.softmaxCrossEntropy (one-hot and soft targets)", () => {
    const a = new TestArena();
    const B = 6;
    const C = 10;
    const logits = normal(B * C, 1, 2);
    const labels = randomLabels(B, C, 2);
    const hot = oneHot(B, C, labels);
    const soft = softTargets(B, C, 3);
    const lT = tf.tensor2d(logits, [B, C]);
    const tfHot = tf.losses.softmaxCrossEntropy(tf.tensor2d(hot, [B, C]), lT).dataSync()[0];
    const tfSoft = tf.losses.softmaxCrossEntropy(tf.tensor2d(soft, [B, C]), lT).dataSync()[0];
    const sparse = runXent(a, "sparse", B, C, logits, labels).loss;
    const dense = runXent(a, "dense", B, C, logits, soft).loss;
    expect(Math.abs(sparse - tfHot)).toBeLessThan(1e-5);
    expect(Math.abs(dense - tfSoft)).toBeLessThan(1e-5);
    const grad = tf
      .grad((l: tf.Tensor) => tf.losses.softmaxCrossEntropy(tf.tensor2d(soft, [B, C]), l))(lT)
      .dataSync();
    expectClose(
      runXent(a, "dense", B, C, logits, soft).dlogits!,
      grad,
      { rtol: 1e-4, atol: 1e-6 },
      "grad",
    );
  });

  it("an out-of-range label makes the loss NaN without writing outside the row", () => {
    const a = new TestArena();
    const B = 3;
    const C = 4;
    const got = runXent(a, "sparse", B, C, normal(B * C, 1), Int32Array.from([1, 4, -1]));
    expect(Number.isNaN(got.loss)).toBe(true);
    // Rows 1 and 2 have no target: their gradient is probs/B.
    expectClose(
      got.dlogits!.subarray(C),
      got.probs.subarray(C).map((p) => p / B),
      { rtol: 1e-6, atol: 0 },
      "",
    );
    a.expectGuards();
  });
});

describe("mse_f32", () => {
  it("matches float64, its twin and tf.losses.meanSquaredError on every tail length", () => {
    const a = new TestArena();
    for (const [B, D] of [
      [1, 1],
      [1, 3],
      [2, 2],
      [5, 1],
      [3, 7],
      [4, 9],
      [8, 125],
      [7, 1000],
    ]) {
      a.reset();
      const n = B * D;
      const pred = normal(n, n, 2);
      const target = uniform(n, n + 1, -1, 1);
      const pp = a.f32(n, pred, "pred");
      const tp = a.f32(n, target, "target");
      const dp = a.f32(n, NaN, "dpred");
      const dpt = a.f32(n, NaN, "dpredTwin");
      const loss = a.abi.mse_f32(B, D, pp, tp, dp);
      const lossTwin = a.k.twin("mse_f32")(B, D, pp, tp, dpt);
      let ref = 0;
      const dref: number[] = [];
      for (let i = 0; i < n; i++) {
        const d = pred[i] - target[i];
        ref += d * d;
        dref.push((2 * d) / n);
      }
      ref /= n;
      const what = `B=${B} D=${D}`;
      expect(Math.abs(loss - ref), what).toBeLessThan(1e-6 * ref);
      expect(Math.abs(lossTwin - ref), what).toBeLessThan(1e-12 * ref);
      expectClose(a.read(dp, n), dref, { rtol: 2e-7, atol: 0 }, `${what} dpred`);
      expectClose(a.read(dpt, n), dref, { rtol: 2e-7, atol: 0 }, `${what} dpred twin`);
      expect(a.abi.mse_f32(B, D, pp, tp, 0)).toBe(loss); // no gradient requested
      a.expectGuards(what);
      if (n === 63) {
        const tfLoss = tf.losses
          .meanSquaredError(tf.tensor2d(target, [B, D]), tf.tensor2d(pred, [B, D]))
          .dataSync()[0];
        expect(Math.abs(loss - tfLoss)).toBeLessThan(1e-5 * ref);
      }
    }
  });

  it("dpred is the gradient of the returned loss (finite differences)", () => {
    const a = new TestArena();
    const B = 3;
    const D = 5;
    const pred = normal(B * D, 4);
    const tp = a.f32(B * D, normal(B * D, 5));
    const pp = a.f32(B * D);
    const dp = a.f32(B * D);
    a.write(pp, pred);
    a.abi.mse_f32(B, D, pp, tp, dp);
    const grad = a.read(dp, B * D);
    const fd = finiteDiff(
      pred,
      (p) => {
        a.write(pp, p);
        return a.abi.mse_f32(B, D, pp, tp, 0);
      },
      1e-2,
    );
    expectClose(grad, fd, { rtol: 1e-3, atol: 1e-5 }, "finite differences");
  });
});

describe("count_correct", () => {
  it("uses the first maximum on ties and ignores NaN scores", () => {
    const a = new TestArena();
    const C = 4;
    const scores = [
      [1, 3, 3, 0], // tie: argmax 1
      [NaN, 2, 5, 5], // NaN ignored, tie: 2
      [0, 0, 0, 0], // all tied: 0
      [-1, -2, NaN, -0.5], // 3
      [9, 1, 1, 1], // 0
    ];
    const B = scores.length;
    const sp = a.f32(B * C, scores.flat());
    const labels = [1, 2, 0, 3, 2]; // the last row is wrong
    expect(a.abi.count_correct_sparse(B, C, sp, a.i32(B, labels))).toBe(4);
    expect(a.abi.count_correct_sparse(B, C, sp, a.i32(B, [2, 3, 1, 2, 0]))).toBe(1);
    // Dense: argmax of the target row; a soft target's argmax counts, ties in targets -> first.
    const targets = [
      [0, 1, 0, 0],
      [0.1, 0.2, 0.6, 0.1],
      [0.5, 0.5, 0, 0],
      [0, 0, 0, 1],
      [0, 0, 1, 0],
    ];
    expect(a.abi.count_correct_dense(B, C, sp, a.f32(B * C, targets.flat()))).toBe(4);
    expect(a.abi.count_correct_sparse(0, C, sp, a.i32(1))).toBe(0);
  });
});
