// Layer-order lint: reviews a model's layer list the way a careful reviewer would, before any
// training time is spent. Each finding names the layer index, explains the numerical reason, and
// says which layers to move, merge or remove.
//
// The canonical block is Dense/Conv -> BatchNorm -> activation -> Dropout; it and the reference
// models produce no warnings. Infos are notes (mostly about what folds at inference), warnings are
// orders that cost accuracy, training time or parameters; strict mode turns warnings into errors.
import {
  ACTIVATION_TYPES,
  SHAPE_ONLY_TYPES,
  resolveSpec,
  type LayerType,
  type ModelSpec,
  type ResolvedLayer,
  type ResolvedModel,
} from "./spec.js";

export type LintSeverity = "error" | "warning" | "info";

/** Every finding code with its default severity (strict mode raises "warning" to "error"). */
export const LINT_CODES = {
  "dropout-before-batchnorm": "warning",
  "dropout-before-batchnorm-indirect": "info",
  "dropout-after-output": "warning",
  "dropout-on-logits": "warning",
  "consecutive-dropout": "warning",
  "dropout-rate-high": "warning",
  "dropout-rate-zero": "info",
  "dropout-first": "info",
  "batchnorm-twice": "warning",
  "batchnorm-first": "info",
  "batchnorm-after-activation": "info",
  "batchnorm-not-foldable": "info",
  "redundant-bias-before-batchnorm": "info",
  "missing-bias": "info",
  "softmax-not-last": "warning",
  "softmax-single-unit": "warning",
  "double-activation": "warning",
  "linear-stack": "warning",
  "hidden-activation-at-output": "warning",
  "no-output-activation": "info",
  "flatten-noop": "info",
} as const satisfies Record<string, LintSeverity>;

export type LintCode = keyof typeof LINT_CODES;

export interface LintFinding {
  code: LintCode;
  severity: LintSeverity;
  /** Index of the layer in the model's layer list. */
  layer: number;
  /** Type of that layer, for display. */
  layerType: LayerType;
  message: string;
  /** What to change, naming concrete layer indices. */
  fix: string;
}

export interface LintOptions {
  /** Report every warning as an error (compile/fit then refuse the model). */
  strict?: boolean;
  /** Codes to leave out of the result. */
  ignore?: readonly string[];
}

/** Thrown (by compile/fit in strict mode) when lint finds errors; carries all the findings. */
export class LintError extends Error {
  constructor(readonly findings: LintFinding[]) {
    const errors = findings.filter((f) => f.severity === "error");
    super(
      `layer-order lint found ${errors.length} error${errors.length === 1 ? "" : "s"}:\n${formatFindings(errors)}`,
    );
    this.name = "LintError";
  }
}

export function hasErrors(findings: readonly LintFinding[]): boolean {
  return findings.some((f) => f.severity === "error");
}

/** One finding per entry: `layer 3 dropout  warning code: message` and an indented `fix:` line. */
export function formatFindings(findings: readonly LintFinding[]): string {
  return findings
    .map(
      (f) =>
        `layer ${f.layer} ${f.layerType}  ${f.severity} ${f.code}: ${f.message}\n  fix: ${f.fix}`,
    )
    .join("\n");
}

function isResolved(m: ModelSpec | ResolvedModel): m is ResolvedModel {
  return (
    Array.isArray((m as ResolvedModel).outputShape) &&
    Array.isArray(m.layers) &&
    m.layers.every((l) => typeof l === "object" && l !== null && "spec" in l && "inShape" in l)
  );
}

const SEVERITY_RANK: Record<LintSeverity, number> = { error: 0, warning: 1, info: 2 };

/**
 * Lints the order of a model's layers. A raw spec is resolved first (a SpecError propagates).
 * Findings come sorted by layer index, most severe first within a layer.
 */
export function lintLayerOrder(
  model: ModelSpec | ResolvedModel,
  options: LintOptions = {},
): LintFinding[] {
  const resolved = isResolved(model) ? model : resolveSpec(model);
  const ignore = new Set(options.ignore ?? []);
  return new LayerOrderReview(resolved.layers)
    .run()
    .filter((f) => !ignore.has(f.code))
    .map((f) =>
      options.strict && f.severity === "warning" ? { ...f, severity: "error" as const } : f,
    )
    .sort((a, b) => a.layer - b.layer || SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity]);
}

const isTrainable = (t: LayerType) => t === "dense" || t === "conv2d";
const isActivation = (t: LayerType) => ACTIVATION_TYPES.has(t);
const isShapeOnly = (t: LayerType) => SHAPE_ONLY_TYPES.has(t);
const isOutputActivation = (t: LayerType) => t === "softmax" || t === "sigmoid";
/** No parameters and no state: activations, shape-only layers, dropout. */
const isParameterFree = (t: LayerType) => isActivation(t) || isShapeOnly(t) || t === "dropout";

function fmt(x: number): string {
  return Number(x.toFixed(3)).toString();
}

class LayerOrderReview {
  private readonly findings: LintFinding[] = [];
  private readonly last: number;

  constructor(private readonly layers: readonly ResolvedLayer[]) {
    this.last = layers.length - 1;
  }

  run(): LintFinding[] {
    this.layers.forEach((l, i) => {
      switch (l.spec.type) {
        case "dropout":
          this.dropout(i);
          break;
        case "batchNorm":
          this.batchNorm(i);
          break;
        case "dense":
        case "conv2d":
          this.trainable(i);
          break;
        case "flatten":
          if (l.inShape.length === 1)
            this.add(
              "flatten-noop",
              i,
              `${this.name(i)} gets an input that is already flat ([${l.inShape.join(", ")}]), so it does nothing.`,
              `remove ${this.name(i)}.`,
            );
          break;
        default:
          if (isActivation(l.spec.type)) this.activation(i);
      }
    });
    this.output();
    return this.findings;
  }

  private type(i: number): LayerType {
    return this.layers[i].spec.type;
  }

  private name(i: number): string {
    return `layer ${i} (${this.type(i)})`;
  }

  private rate(i: number): number {
    const s = this.layers[i].spec;
    return s.type === "dropout" ? s.rate : 0;
  }

  private add(code: LintCode, layer: number, message: string, fix: string): void {
    this.findings.push({
      code,
      severity: LINT_CODES[code],
      layer,
      layerType: this.type(layer),
      message,
      fix,
    });
  }

  /** First index at or after `from` whose type fails `skip` (layers.length when none). */
  private forwardPast(from: number, skip: (t: LayerType) => boolean): number {
    let k = from;
    while (k <= this.last && skip(this.type(k))) k++;
    return k;
  }

  /** Last index at or before `from` whose type fails `skip` (-1 when none). */
  private backPast(from: number, skip: (t: LayerType) => boolean): number {
    let k = from;
    while (k >= 0 && skip(this.type(k))) k--;
    return k;
  }

  /** " through layers 2 (relu), 3 (flatten)" for the layers strictly between a and b. */
  private through(a: number, b: number): string {
    const between = [];
    for (let k = a + 1; k < b; k++) between.push(`${k} (${this.type(k)})`);
    return between.length
      ? ` through layer${between.length > 1 ? "s" : ""} ${between.join(", ")}`
      : "";
  }

  /** End of the BN block starting at `bn`: the BN plus the hidden activations right after it. */
  private blockEnd(bn: number): number {
    let k = bn;
    while (k < this.last && isActivation(this.type(k + 1)) && !isOutputActivation(this.type(k + 1)))
      k++;
    return k;
  }

  /** What happens to a BN at inference when it cannot fold into the layer before it. */
  private forwardFold(bn: number): string {
    // Dropout is the identity at inference; flatten and average pooling are linear per channel.
    const k = this.forwardPast(
      bn + 1,
      (t) => t === "dropout" || t === "flatten" || t === "avgPool2d" || t === "globalAvgPool2d",
    );
    if (k > this.last)
      return "with nothing after it to fold into, it stays a per-channel scale-and-shift at inference";
    const s = this.layers[k].spec;
    if (s.type === "dense" || (s.type === "conv2d" && s.padding === "valid"))
      return `it can still fold forward into ${this.name(k)}'s weights and bias`;
    if (s.type === "conv2d")
      return `it cannot fold forward into ${this.name(k)} either, because that conv's "same" zero padding would need the shift too, so it stays a per-channel scale-and-shift at inference`;
    return `${this.name(k)} comes next, so it cannot fold forward either and stays a per-channel scale-and-shift at inference`;
  }

  private dropout(i: number): void {
    const rate = this.rate(i);
    if (rate === 0) {
      this.add(
        "dropout-rate-zero",
        i,
        `${this.name(i)} has rate 0 and does nothing.`,
        `remove ${this.name(i)}, or give it a rate such as 0.2-0.5.`,
      );
      return;
    }
    const desc = `layer ${i} (dropout, rate ${rate})`;
    if (rate >= 0.8)
      this.add(
        "dropout-rate-high",
        i,
        `layer ${i} (dropout) has rate ${rate}: it keeps only ${fmt((1 - rate) * 100)}% of the units and scales them by ${fmt(1 / (1 - rate))}x, so gradients are very noisy and training is slow; rates of 0.1-0.5 are usual.`,
        `lower the rate of layer ${i} to 0.5 or less; if the model overfits that much, make the layers before it smaller.`,
      );

    const before = this.backPast(i - 1, (t) => isShapeOnly(t));
    if (before < 0) {
      const p = this.forwardPast(i + 1, (t) => !isTrainable(t));
      const after = p <= this.last ? this.afterBlock(p) : -1;
      this.add(
        "dropout-first",
        i,
        `${this.name(i)} drops raw input values. That is deliberate input noise at low rates (around 0.1-0.2), but it is not the usual regularizer: it blanks input pixels or features rather than learned units.`,
        after >= 0
          ? `keep it only as input noise at rate 0.2 or less; otherwise move layer ${i} (dropout) after ${this.name(after)}, the end of the first block.`
          : `keep it only as input noise at rate 0.2 or less; otherwise remove ${this.name(i)}.`,
      );
    }

    const prev = this.backPast(i - 1, (t) => isParameterFree(t) && t !== "dropout");
    if (prev >= 0 && this.type(prev) === "dropout" && this.rate(prev) > 0) {
      const a = this.rate(prev);
      const combined = 1 - (1 - a) * (1 - rate);
      this.add(
        "consecutive-dropout",
        i,
        `${desc} follows layer ${prev} (dropout, rate ${a})${this.through(prev, i)} with no trainable layer between: together they keep (1-${a})(1-${rate}) = ${fmt((1 - a) * (1 - rate))} of the units, like one dropout of rate ${fmt(combined)}, at the cost of two random masks.`,
        `replace layers ${prev} and ${i} with one dropout of rate ${fmt(combined)} (1-(1-a)(1-b)).`,
      );
    }

    const next = this.forwardPast(i + 1, (t) => isParameterFree(t) && t !== "dropout");
    if (next <= this.last && this.type(next) === "batchNorm") {
      const end = this.blockEnd(next);
      const tail = this.forwardPast(end + 1, (t) => !isTrainable(t)) > this.last;
      const prevTrainable = this.backPast(i - 1, (t) => !isTrainable(t));
      this.add(
        "dropout-before-batchnorm",
        i,
        `${desc} feeds ${this.name(next)}${this.through(i, next)} with no Dense/Conv between. In training, dropout scales the surviving values by 1/(1-${rate}) = ${fmt(1 / (1 - rate))}, so the variance batchNorm sees grows by about that factor and its moving statistics learn it; at inference dropout is gone, the activations have less variance than those statistics expect, and batchNorm mis-scales them ("variance shift", Li et al. 2019), which costs accuracy.`,
        !tail
          ? `move layer ${i} (dropout) after ${this.name(end)}, so the block reads Dense/Conv -> batchNorm -> activation -> dropout.`
          : prevTrainable >= 0
            ? `nothing trainable follows ${this.name(end)}, so move layer ${i} (dropout) before ${this.name(prevTrainable)} (dropout then only reaches batchNorm through a Dense/Conv, which dilutes the shift) or remove it.`
            : `remove ${this.name(i)}: no trainable layer follows the batchNorm block it could regularize.`,
      );
    } else if (next <= this.last && isTrainable(this.type(next))) {
      const bn = this.forwardPast(next + 1, (t) => isParameterFree(t) && t !== "dropout");
      if (bn <= this.last && this.type(bn) === "batchNorm")
        this.add(
          "dropout-before-batchnorm-indirect",
          i,
          `${desc} reaches ${this.name(bn)} through ${this.name(next)}. The Dense/Conv sums many dropped inputs, which dilutes the training-time variance increase (up to 1/(1-${rate}) = ${fmt(1 / (1 - rate))}x) that batchNorm's moving statistics learn, so the inference-time "variance shift" (Li et al. 2019) is small but not zero.`,
          `usually fine at rates up to 0.5; if accuracy at inference falls short of training accuracy, lower the rate of layer ${i} or keep dropout only after the last batchNorm block.`,
        );
    }

    const laterTrainable = this.forwardPast(i + 1, (t) => !isTrainable(t) && t !== "batchNorm");
    if (laterTrainable > this.last) {
      const lastTrainable = this.backPast(i - 1, (t) => !isTrainable(t) && t !== "batchNorm");
      let outAct = -1;
      for (let k = lastTrainable + 1; k < i; k++) if (isOutputActivation(this.type(k))) outAct = k;
      const fix =
        lastTrainable >= 0 && isTrainable(this.type(lastTrainable))
          ? `remove ${this.name(i)}; to regularize the classifier, put the dropout before ${this.name(lastTrainable)}, the last trainable layer.`
          : `remove ${this.name(i)}.`;
      if (outAct >= 0 || i === this.last)
        this.add(
          "dropout-after-output",
          i,
          `${desc} ${outAct >= 0 ? `comes after the model's output, ${this.name(outAct)}` : "is the model's last layer"}: in training it zeroes random outputs and scales the rest by ${fmt(1 / (1 - rate))}x, so the loss sees corrupted predictions (probabilities that no longer sum to 1); at inference it does nothing, and with no trainable layer after it it regularizes nothing.`,
          fix,
        );
      else
        this.add(
          "dropout-on-logits",
          i,
          `${desc} has no trainable layer after it, so it only adds noise to the model's outputs: in training random logits are forced to 0 whatever the evidence, and nothing downstream learns to cope with the missing units.`,
          fix,
        );
    }
  }

  /** Last layer of the block that starts with the trainable layer p (p, its BN, activations). */
  private afterBlock(p: number): number {
    let k = p;
    while (k < this.last && this.type(k + 1) === "batchNorm") k++;
    while (k < this.last && isActivation(this.type(k + 1)) && !isOutputActivation(this.type(k + 1)))
      k++;
    return k;
  }

  private batchNorm(i: number): void {
    const bn = this.layers[i].spec;
    const prevNonShape = this.backPast(i - 1, isShapeOnly);
    if (prevNonShape >= 0 && this.type(prevNonShape) === "batchNorm") {
      this.add(
        "batchnorm-twice",
        i,
        `${this.name(i)} normalizes the output of ${this.name(prevNonShape)}${this.through(prevNonShape, i)} again: it undoes the first one's learned scale and shift, so one of the two is redundant (parameters, moving statistics and a pass over the activations).`,
        `remove ${this.name(i)}.`,
      );
      return;
    }
    // Walks back over what lies between this BN and the layer that produced its input.
    let blocker = -1;
    let k = i - 1;
    for (; k >= 0; k--) {
      const l = this.layers[k];
      const t = l.spec.type;
      if (t === "dropout" || t === "avgPool2d" || t === "globalAvgPool2d") continue;
      if (t === "flatten" || t === "maxPool2d") {
        // Max pooling commutes only with a positive scale; after a 3-D flatten BN keeps one
        // statistic per position and channel, which a conv's shared kernels cannot absorb (unless
        // the map is 1x1: then positions are channels, and export folds through the flatten).
        const spatial = l.inShape.length === 3 && l.inShape[0] * l.inShape[1] > 1;
        if (t === "maxPool2d" || spatial) blocker = k;
        continue;
      }
      break;
    }
    if (k < 0) {
      this.add(
        "batchnorm-first",
        i,
        `${this.name(i)} normalizes the raw input with batch statistics. That works as learned input standardization, but there is no Dense/Conv before it to fold into at inference; ${this.forwardFold(i)}.`,
        `if the input is already scaled (pixels in [0, 1]), remove ${this.name(i)} or standardize the data once when loading it; otherwise keep it.`,
      );
      return;
    }
    const t = this.type(k);
    if (isActivation(t)) {
      const p = this.backPast(k - 1, (x) => isParameterFree(x));
      this.add(
        "batchnorm-after-activation",
        i,
        `${this.name(i)} follows ${this.name(k)}${this.through(k, i)}. Both orders train, but only a batchNorm right after a Dense/Conv folds into that layer's weights and bias for free at inference; here ${this.forwardFold(i)}.`,
        p >= 0 && isTrainable(this.type(p))
          ? `for the foldable order Dense/Conv -> batchNorm -> activation, move ${this.name(i)} to right after ${this.name(p)}.`
          : `keep it if the extra scale-and-shift at inference is acceptable.`,
      );
      return;
    }
    if (!isTrainable(t)) return;
    if (blocker >= 0) {
      this.add(
        "batchnorm-not-foldable",
        i,
        `${this.name(i)} is separated from ${this.name(k)} by ${this.name(blocker)}: ${this.type(blocker) === "maxPool2d" ? "max pooling commutes only with a positive per-channel scale, which batchNorm's gamma does not guarantee" : "after flatten, batchNorm keeps one statistic per position and channel, which a conv's shared kernels cannot absorb"}, so it cannot fold into ${this.name(k)} at inference; ${this.forwardFold(i)}.`,
        `move ${this.name(i)} to right after ${this.name(k)}.`,
      );
    }
    const producer = this.layers[k].spec;
    const direct = this.backPast(i - 1, isShapeOnly) === k;
    if (
      direct &&
      bn.type === "batchNorm" &&
      bn.center &&
      (producer.type === "dense" || producer.type === "conv2d") &&
      producer.useBias
    ) {
      const n = producer.type === "dense" ? producer.units : producer.filters;
      this.add(
        "redundant-bias-before-batchnorm",
        k,
        `${this.name(k)} adds a bias that ${this.name(i)} cancels: batchNorm subtracts the batch mean, which removes any constant per-channel offset (the bias's gradient is always about 0), and its beta supplies the offset instead. The bias costs ${n} parameters that do nothing.`,
        `set useBias: false on layer ${k}. (Harmless to keep: folding at inference merges both into one bias.)`,
      );
    }
  }

  private trainable(i: number): void {
    const s = this.layers[i].spec;
    if (s.type !== "dense" && s.type !== "conv2d") return;
    // Layers that are affine per channel (or the identity at inference) keep a stack linear.
    const j = this.backPast(
      i - 1,
      (t) =>
        t === "batchNorm" ||
        t === "dropout" ||
        t === "flatten" ||
        t === "avgPool2d" ||
        t === "globalAvgPool2d",
    );
    if (j >= 0 && isTrainable(this.type(j))) {
      let at = j; // the activation belongs after j's batchNorm, if it has one
      while (at + 1 < i && this.type(at + 1) === "batchNorm") at++;
      this.add(
        "linear-stack",
        i,
        `${this.name(i)} follows ${this.name(j)}${this.through(j, i)} with no activation between: two linear maps compose into one, so ${this.name(i)} adds ${this.layers[i].params} parameters but no capacity.`,
        `add an activation such as {"type": "relu"} after ${this.name(at)}, or merge layers ${j} and ${i} into one.`,
      );
    }
    if (!s.useBias) {
      const k = this.forwardPast(i + 1, (t) => isShapeOnly(t) || t === "dropout");
      const next = k <= this.last ? this.layers[k].spec : undefined;
      if (!(next?.type === "batchNorm" && next.center))
        this.add(
          "missing-bias",
          i,
          `${this.name(i)} has useBias: false and no batchNorm with center follows it, so nothing adds a learned offset to its outputs.`,
          `remove useBias: false from layer ${i}, or follow it with {"type": "batchNorm"}.`,
        );
    }
  }

  private activation(i: number): void {
    const t = this.type(i);
    const prev = this.backPast(i - 1, (x) => isShapeOnly(x) || x === "dropout");
    if (prev >= 0 && isActivation(this.type(prev))) {
      const p = this.type(prev);
      const why =
        p === "relu" && t === "relu"
          ? "relu is idempotent, so the second one does nothing"
          : isOutputActivation(t) && !isOutputActivation(p)
            ? `the output ${t} gets logits already squashed by ${p}, which ${p === "relu" ? "cannot go negative" : "are bounded"}, so the model cannot express confident predictions`
            : `the second activation reshapes outputs that are already non-linear, without a Dense/Conv between to use them`;
      this.add(
        "double-activation",
        i,
        `${this.name(i)} directly follows ${this.name(prev)}${this.through(prev, i)}: ${why}.`,
        isOutputActivation(t) && !isOutputActivation(p)
          ? `remove ${this.name(prev)}; the layer before the output ${t} should produce unbounded logits.`
          : `remove ${this.name(i)}.`,
      );
    }
    if (t === "softmax") {
      const after = this.forwardPast(i + 1, (x) => x === "dropout");
      if (after <= this.last)
        this.add(
          "softmax-not-last",
          i,
          `${this.name(i)} is not the output: ${this.name(after)} follows it. Softmax makes the units compete and sum to 1, squashing the signal and its gradients; it belongs only on the last layer, producing class probabilities.`,
          `remove ${this.name(i)} (use relu for a hidden activation); keep softmax only as the last layer.`,
        );
      const inShape = this.layers[i].inShape;
      if (inShape[inShape.length - 1] === 1)
        this.add(
          "softmax-single-unit",
          i,
          `${this.name(i)} normalizes over a single value, so it always outputs 1 and passes no gradient: the layers before it cannot learn.`,
          `for one yes/no output use {"type": "sigmoid"} instead; for C classes give the layer before it C >= 2 units.`,
        );
    }
  }

  private output(): void {
    const o = this.backPast(this.last, (t) => t === "dropout");
    if (o < 0) return;
    const t = this.type(o);
    if (isOutputActivation(t)) return;
    if (isActivation(t))
      this.add(
        "hidden-activation-at-output",
        o,
        `the model ends in ${this.name(o)}: as logits its outputs ${t === "tanh" ? "are bounded to (-1, 1)" : t === "relu" ? "cannot go negative" : "are clipped or squashed"}, which caps how confident a softmax cross-entropy can make them and slows training.`,
        `end with a Dense layer producing the logits (optionally followed by {"type": "softmax"}): remove ${this.name(o)}, or add {"type": "dense", "units": C} after it.`,
      );
    else
      this.add(
        "no-output-activation",
        o,
        `the model ends in ${this.name(o)} without softmax or sigmoid: training treats its outputs as logits, and predictions are unnormalized scores.`,
        `add {"type": "softmax"} after layer ${o} for class probabilities (sigmoid for independent yes/no outputs), or keep logits on purpose.`,
      );
  }
}
