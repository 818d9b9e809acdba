// Optimizer configuration (Keras names and defaults) and the update step, which runs in WASM over
// the contiguous parameter block: one kernel call for the decayed tensors (Dense/Conv kernels),
// one for the rest (biases, BN gamma/beta), so AdamW's decay never touches BN or biases.
import type { KernelAbi } from "./kernelAbi.js";

export type OptimizerConfig =
  | {
      type: "adam" | "adamw";
      learningRate?: number;
      beta1?: number;
      beta2?: number;
      epsilon?: number;
      /** AdamW only: decoupled decay per step is learningRate * weightDecay (Keras default 0.004). */
      weightDecay?: number;
    }
  | { type: "sgd"; learningRate?: number; momentum?: number; nesterov?: boolean };

export type ResolvedOptimizer =
  | {
      type: "adam" | "adamw";
      learningRate: number;
      beta1: number;
      beta2: number;
      epsilon: number;
      weightDecay: number;
    }
  | { type: "sgd"; learningRate: number; momentum: number; nesterov: boolean };

export class OptimizerConfigError extends Error {
  override name = "OptimizerConfigError";
}

function check(
  v: unknown,
  name: string,
  dflt: number,
  lo: number,
  hi: number,
  hiOpen = false,
): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || (hiOpen ? v >= hi : v > hi))
    throw new OptimizerConfigError(
      `optimizer field "${name}" must be a number in [${lo}, ${hi}${hiOpen ? ")" : "]"}, got ${JSON.stringify(v)}`,
    );
  return v;
}

export function resolveOptimizer(c: OptimizerConfig | undefined): ResolvedOptimizer {
  const cfg = (c ?? { type: "adam" }) as Record<string, unknown>;
  const type = cfg.type;
  if (type === "adam" || type === "adamw") {
    return {
      type,
      learningRate: check(cfg.learningRate, "learningRate", 1e-3, 0, 10),
      beta1: check(cfg.beta1, "beta1", 0.9, 0, 1, true),
      beta2: check(cfg.beta2, "beta2", 0.999, 0, 1, true),
      epsilon: check(cfg.epsilon, "epsilon", 1e-7, 0, 1),
      weightDecay: type === "adamw" ? check(cfg.weightDecay, "weightDecay", 0.004, 0, 1) : 0,
    };
  }
  if (type === "sgd") {
    if (cfg.nesterov !== undefined && typeof cfg.nesterov !== "boolean")
      throw new OptimizerConfigError(`optimizer field "nesterov" must be true or false`);
    return {
      type,
      learningRate: check(cfg.learningRate, "learningRate", 0.01, 0, 10),
      momentum: check(cfg.momentum, "momentum", 0, 0, 1, true),
      nesterov: cfg.nesterov === true,
    };
  }
  throw new OptimizerConfigError(
    `unknown optimizer type ${JSON.stringify(type)}; use "adam", "adamw" or "sgd"`,
  );
}

/** How many floats of state per parameter the optimizer keeps (m and v for Adam, velocity for SGD). */
export function optimizerSlots(o: ResolvedOptimizer): number {
  return o.type === "sgd" ? (o.momentum > 0 ? 1 : 0) : 2;
}

/** Where the parameter block, its gradients and optimizer slots live (byte offsets). */
export interface ParamBlock {
  /** First byte of the decayed part ([0, decayBytes)) then the rest ([decayBytes, bytes)). */
  ptr: number;
  bytes: number;
  decayBytes: number;
  gradDelta: number;
  /** slot s of the optimizer state for the param at p lives at p + slotDelta[s]. */
  slotDelta: [number, number];
}

/** One optimizer update; `step` is the 1-based step number (Adam's bias correction). */
export function applyOptimizer(
  k: KernelAbi,
  o: ResolvedOptimizer,
  block: ParamBlock,
  step: number,
): void {
  const parts: [number, number, number][] = [
    [block.ptr, block.decayBytes >> 2, 1],
    [block.ptr + block.decayBytes, (block.bytes - block.decayBytes) >> 2, 0],
  ];
  for (const [w, n, decays] of parts) {
    if (n === 0) continue;
    const g = w + block.gradDelta;
    if (o.type === "sgd") {
      if (o.momentum > 0)
        k.sgd_momentum_f32(
          n,
          w,
          g,
          w + block.slotDelta[0],
          o.learningRate,
          o.momentum,
          o.nesterov ? 1 : 0,
        );
      else k.sgd_f32(n, w, g, o.learningRate);
    } else {
      const lrT =
        (o.learningRate * Math.sqrt(1 - Math.pow(o.beta2, step))) / (1 - Math.pow(o.beta1, step));
      const decay = decays ? o.learningRate * o.weightDecay : 0;
      k.adam_f32(
        n,
        w,
        g,
        w + block.slotDelta[0],
        w + block.slotDelta[1],
        lrT,
        o.beta1,
        o.beta2,
        o.epsilon,
        decay,
      );
    }
  }
}
