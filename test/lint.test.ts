import { afterAll, describe, expect, it } from "vitest";
import {
  formatFindings,
  hasErrors,
  LINT_CODES,
  LintError,
  lintLayerOrder,
  type LintCode,
  type LintFinding,
} from "../src/lint.js";
import { cnnSpec, mlpSpec } from "../src/referenceModels.js";
import { resolveSpec, SpecError, type LayerSpec, type ModelSpec } from "../src/spec.js";

const dense = (units: number, useBias?: boolean): LayerSpec =>
  useBias === undefined ? { type: "dense", units } : { type: "dense", units, useBias };
const conv = (filters: number, padding: "same" | "valid" = "same"): LayerSpec => ({
  type: "conv2d",
  filters,
  kernelSize: 3,
  padding,
});
const bn: LayerSpec = { type: "batchNorm" };
const relu: LayerSpec = { type: "relu" };
const softmax: LayerSpec = { type: "softmax" };
const flatten: LayerSpec = { type: "flatten" };
const maxPool: LayerSpec = { type: "maxPool2d" };
const dropout = (rate: number): LayerSpec => ({ type: "dropout", rate });

const flat = (...layers: LayerSpec[]): ModelSpec => ({ inputShape: [784], layers });
const image = (...layers: LayerSpec[]): ModelSpec => ({ inputShape: [28, 28, 1], layers });

/** Warnings and errors as "code@layer", the form the bad-order cases compare exactly. */
const serious = (f: LintFinding[]) =>
  f.filter((x) => x.severity !== "info").map((x) => `${x.code}@${x.layer}`);

const seen = new Set<string>();
function lint(spec: ModelSpec, strict = false): LintFinding[] {
  const findings = lintLayerOrder(spec, { strict });
  for (const f of findings) seen.add(f.code);
  return findings;
}

function only(findings: LintFinding[], code: LintCode): LintFinding {
  const hits = findings.filter((f) => f.code === code);
  expect(hits.map((f) => f.code)).toEqual([code]);
  return hits[0];
}

describe("good layer orders pass clean of warnings", () => {
  const good: Record<string, ModelSpec> = {
    "canonical dense block": flat(dense(128), bn, relu, dropout(0.3), dense(10), softmax),
    "reference mlp": mlpSpec(),
    "reference cnn": cnnSpec(),
    "conv net without batchNorm": image(
      conv(16),
      relu,
      maxPool,
      conv(32),
      relu,
      maxPool,
      flatten,
      dense(64),
      relu,
      dropout(0.5),
      dense(10),
      softmax,
    ),
    "conv net, global pooling, pool before relu": image(
      conv(16, "valid"),
      bn,
      maxPool,
      relu,
      dropout(0.2),
      conv(32),
      bn,
      relu,
      { type: "globalAvgPool2d" },
      dense(10),
      softmax,
    ),
    "sigmoid output": flat(dense(32), relu, dense(1), { type: "sigmoid" }),
    "logistic regression": flat(dense(10), softmax),
  };
  for (const [name, spec] of Object.entries(good))
    it(name, () => {
      expect(serious(lint(spec))).toEqual([]);
      expect(hasErrors(lint(spec, true))).toBe(false);
    });

  it("the canonical block without biases before batchNorm has no findings at all", () => {
    expect(lint(flat(dense(128, false), bn, relu, dropout(0.3), dense(10), softmax))).toEqual([]);
  });

  it("reference models get only the expected notes", () => {
    expect(lint(mlpSpec()).map((f) => `${f.code}@${f.layer}`)).toEqual([
      "redundant-bias-before-batchnorm@0",
      "dropout-before-batchnorm-indirect@3",
      "redundant-bias-before-batchnorm@4",
    ]);
    expect(lint(cnnSpec()).map((f) => `${f.code}@${f.layer}`)).toEqual([
      "redundant-bias-before-batchnorm@0",
      "redundant-bias-before-batchnorm@4",
      "redundant-bias-before-batchnorm@9",
    ]);
  });
});

describe("bad layer orders: exactly the expected warning at the expected layer", () => {
  it("dropout directly before batchNorm", () => {
    const f = lint(flat(dense(64), dropout(0.5), bn, relu, dense(10), softmax));
    expect(serious(f)).toEqual(["dropout-before-batchnorm@1"]);
    const d = only(f, "dropout-before-batchnorm");
    expect(d.severity).toBe("warning");
    expect(d.message).toContain("layer 2 (batchNorm)");
    expect(d.message).toContain("1/(1-0.5) = 2");
    expect(d.message).toContain("variance shift");
    expect(d.fix).toBe(
      "move layer 1 (dropout) after layer 3 (relu), so the block reads Dense/Conv -> batchNorm -> activation -> dropout.",
    );
  });

  it("dropout before batchNorm through an activation", () => {
    const f = lint(flat(dense(64), dropout(0.25), relu, bn, dense(10), softmax));
    expect(serious(f)).toEqual(["dropout-before-batchnorm@1"]);
    const d = only(f, "dropout-before-batchnorm");
    expect(d.message).toContain("through layer 2 (relu)");
    expect(d.fix).toContain("move layer 1 (dropout) after layer 3 (batchNorm)");
  });

  it("dropout before batchNorm through pooling", () => {
    const f = lint(
      image(conv(8), relu, dropout(0.2), maxPool, bn, conv(8), relu, flatten, dense(10), softmax),
    );
    expect(serious(f)).toEqual(["dropout-before-batchnorm@2"]);
    expect(only(f, "dropout-before-batchnorm").message).toContain("through layer 3 (maxPool2d)");
  });

  it("dropout before the output block's batchNorm suggests moving it before the Dense", () => {
    const f = lint(flat(dense(64), relu, dense(10), dropout(0.3), bn, softmax));
    expect(serious(f)).toEqual(["dropout-before-batchnorm@3"]);
    expect(only(f, "dropout-before-batchnorm").fix).toContain(
      "move layer 3 (dropout) before layer 2 (dense)",
    );
  });

  it("dropout after the softmax", () => {
    const f = lint(flat(dense(64), relu, dense(10), softmax, dropout(0.2)));
    expect(serious(f)).toEqual(["dropout-after-output@4"]);
    const d = only(f, "dropout-after-output");
    expect(d.message).toContain("after the model's output, layer 3 (softmax)");
    expect(d.fix).toContain("remove layer 4 (dropout)");
    expect(d.fix).toContain("before layer 2 (dense)");
  });

  it("dropout as the last layer", () => {
    const f = lint(flat(dense(64), relu, dense(10), dropout(0.2)));
    expect(serious(f)).toEqual(["dropout-after-output@3"]);
    expect(only(f, "dropout-after-output").message).toContain("is the model's last layer");
    only(f, "no-output-activation"); // the last non-dropout layer is a Dense
  });

  it("dropout on the logits", () => {
    const f = lint(flat(dense(64), relu, dense(10), dropout(0.2), softmax));
    expect(serious(f)).toEqual(["dropout-on-logits@3"]);
  });

  it("two dropouts in a row", () => {
    const f = lint(flat(dense(64), relu, dropout(0.5), dropout(0.2), dense(10), softmax));
    expect(serious(f)).toEqual(["consecutive-dropout@3"]);
    const d = only(f, "consecutive-dropout");
    expect(d.message).toContain("layer 2 (dropout, rate 0.5)");
    expect(d.fix).toBe("replace layers 2 and 3 with one dropout of rate 0.6 (1-(1-a)(1-b)).");
  });

  it("two dropouts around an activation", () => {
    const f = lint(flat(dense(64), dropout(0.5), relu, dropout(0.5), dense(10), softmax));
    expect(serious(f)).toEqual(["consecutive-dropout@3"]);
    expect(only(f, "consecutive-dropout").fix).toContain("rate 0.75");
  });

  it("softmax in a hidden layer", () => {
    const f = lint(flat(dense(64), softmax, dense(10), softmax));
    expect(serious(f)).toEqual(["softmax-not-last@1"]);
    expect(only(f, "softmax-not-last").message).toContain("layer 2 (dense) follows it");
  });

  it("relu twice", () => {
    const f = lint(flat(dense(64), relu, relu, dense(10), softmax));
    expect(serious(f)).toEqual(["double-activation@2"]);
    expect(only(f, "double-activation").fix).toBe("remove layer 2 (relu).");
  });

  it("relu right before the output softmax", () => {
    const f = lint(flat(dense(64), relu, dense(10), relu, softmax));
    expect(serious(f)).toEqual(["double-activation@4"]);
    expect(only(f, "double-activation").fix).toContain("remove layer 3 (relu)");
  });

  it("batchNorm twice", () => {
    const f = lint(flat(dense(64), bn, bn, relu, dense(10), softmax));
    expect(serious(f)).toEqual(["batchnorm-twice@2"]);
    expect(only(f, "batchnorm-twice").message).toContain("layer 1 (batchNorm)");
  });

  it("dropout rate of 0.8 or more", () => {
    const f = lint(flat(dense(64), bn, relu, dropout(0.8), dense(10), softmax));
    expect(serious(f)).toEqual(["dropout-rate-high@3"]);
    expect(only(f, "dropout-rate-high").message).toContain("keeps only 20%");
  });

  it("two Dense layers without an activation between", () => {
    expect(serious(lint(flat(dense(64), dense(10), softmax)))).toEqual(["linear-stack@1"]);
    const f = lint(flat(dense(64, false), bn, dropout(0.2), dense(10), softmax));
    expect(serious(f).filter((c) => c.startsWith("linear-stack"))).toEqual(["linear-stack@3"]);
    expect(only(f, "linear-stack").fix).toContain("after layer 1 (batchNorm)");
  });

  it("softmax over a single unit", () => {
    expect(serious(lint(flat(dense(16), relu, dense(1), softmax)))).toEqual([
      "softmax-single-unit@3",
    ]);
  });

  it("a hidden activation as the output", () => {
    const f = lint(flat(dense(64), relu, dense(10), { type: "tanh" }));
    expect(serious(f)).toEqual(["hidden-activation-at-output@3"]);
    expect(only(f, "hidden-activation-at-output").message).toContain("bounded to (-1, 1)");
  });
});

describe("notes (info) on otherwise fine orders", () => {
  const info = (spec: ModelSpec, code: LintCode, layer: number): LintFinding => {
    const f = lint(spec);
    expect(serious(f)).toEqual([]);
    const hit = only(f, code);
    expect(hit.severity).toBe("info");
    expect(hit.layer).toBe(layer);
    return hit;
  };

  it("dropout reaching batchNorm through a Dense", () => {
    const hit = info(
      flat(dense(64), relu, dropout(0.3), dense(32), bn, relu, dense(10), softmax),
      "dropout-before-batchnorm-indirect",
      2,
    );
    expect(hit.message).toContain("through layer 3 (dense)");
  });

  it("batchNorm after an activation folds forward into the next Dense", () => {
    const hit = info(
      flat(dense(64), relu, bn, dense(10), softmax),
      "batchnorm-after-activation",
      2,
    );
    expect(hit.message).toContain("fold forward into layer 3 (dense)");
    expect(hit.fix).toContain("move layer 2 (batchNorm) to right after layer 0 (dense)");
  });

  it("batchNorm after an activation before a 'same' conv stays a scale-and-shift", () => {
    const hit = info(
      image(conv(8), relu, bn, conv(8), relu, flatten, dense(10), softmax),
      "batchnorm-after-activation",
      2,
    );
    expect(hit.message).toContain('"same" zero padding');
  });

  it("bias before batchNorm is redundant unless batchNorm has no center", () => {
    const hit = info(
      flat(dense(64), bn, relu, dense(10), softmax),
      "redundant-bias-before-batchnorm",
      0,
    );
    expect(hit.fix).toContain("useBias: false on layer 0");
    const f = lint(flat(dense(64), { type: "batchNorm", center: false }, relu, dense(10), softmax));
    expect(f.map((x) => x.code)).toEqual([]);
  });

  it("batchNorm on the raw input", () => {
    info(flat(bn, dense(10), softmax), "batchnorm-first", 0);
  });

  it("batchNorm separated from its conv by max pooling", () => {
    const hit = info(
      image(conv(8), maxPool, bn, relu, flatten, dense(10), softmax),
      "batchnorm-not-foldable",
      2,
    );
    expect(hit.message).toContain("layer 1 (maxPool2d)");
  });

  it("batchNorm after flatten: foldable from a 1x1 map (positions are channels), not from a larger one", () => {
    const tiny = (size: number, ...rest: LayerSpec[]): ModelSpec => ({
      inputShape: [size, size, 1],
      layers: [
        { type: "conv2d", filters: 8, kernelSize: size, padding: "valid" },
        flatten,
        bn,
        ...rest,
      ],
    });
    expect(lint(tiny(3, relu, dense(10), softmax)).map((f) => f.code)).not.toContain(
      "batchnorm-not-foldable",
    );
    const { layers } = image(conv(8), flatten, bn, relu, dense(10), softmax);
    const hit = info({ inputShape: [28, 28, 1], layers }, "batchnorm-not-foldable", 2);
    expect(hit.message).toContain("after flatten");
  });

  it("dropout on the raw input", () => {
    info(flat(dropout(0.2), dense(64), relu, dense(10), softmax), "dropout-first", 0);
  });

  it("dropout with rate 0", () => {
    info(flat(dense(64), relu, dropout(0), dense(10), softmax), "dropout-rate-zero", 2);
  });

  it("Dense output without softmax or sigmoid", () => {
    info(flat(dense(64), relu, dense(10)), "no-output-activation", 2);
  });

  it("flatten of an input that is already flat", () => {
    info(flat(flatten, dense(10), softmax), "flatten-noop", 0);
  });

  it("no bias and no batchNorm to supply one", () => {
    info(flat(dense(64, false), relu, dense(10), softmax), "missing-bias", 0);
  });
});

describe("options, input forms and output", () => {
  const bad = flat(dense(64), dropout(0.5), bn, relu, dense(10), softmax);

  it("strict turns every warning into an error and leaves infos alone", () => {
    const spec = flat(dense(64), bn, relu, relu, dense(10), softmax);
    expect(hasErrors(lint(spec))).toBe(false);
    const strict = lint(spec, true);
    expect(hasErrors(strict)).toBe(true);
    expect(strict.map((f) => `${f.code}@${f.layer}:${f.severity}`)).toEqual([
      "redundant-bias-before-batchnorm@0:info",
      "double-activation@3:error",
    ]);
  });

  it("ignore leaves codes out", () => {
    expect(
      lintLayerOrder(bad, { ignore: ["dropout-before-batchnorm"] }).map((f) => f.code),
    ).not.toContain("dropout-before-batchnorm");
  });

  it("a resolved model lints the same as its spec", () => {
    expect(lintLayerOrder(resolveSpec(bad))).toEqual(lintLayerOrder(bad));
  });

  it("an invalid spec throws its SpecError", () => {
    expect(() => lintLayerOrder(flat(conv(8)))).toThrow(SpecError);
  });

  it("formats one finding per entry with its fix on the next line", () => {
    const text = formatFindings(lintLayerOrder(bad));
    expect(text).toMatch(
      /^layer 1 dropout {2}warning dropout-before-batchnorm: layer 1 \(dropout, rate 0\.5\) feeds .*\n {2}fix: move layer 1 \(dropout\) after layer 3 \(relu\)/,
    );
    expect(formatFindings([])).toBe("");
  });

  it("LintError carries the findings and lists the errors", () => {
    const findings = lintLayerOrder(bad, { strict: true });
    const e = new LintError(findings);
    expect(e.findings).toBe(findings);
    expect(e.message).toMatch(/^layer-order lint found 1 error:\nlayer 1 dropout {2}error/);
  });
});

afterAll(() => {
  // Every code the lint can emit is exercised by at least one case above.
  const missing = Object.keys(LINT_CODES).filter((c) => !seen.has(c));
  expect(missing).toEqual([]);
});
