// Checkpoints: everything a resumed run needs to continue exactly as an uninterrupted one would —
// weights, BN moving statistics, optimizer slots and step, both RNG states, the epoch count.
//
// Layout (little-endian):
//   0   8 bytes  magic "EDGENNCK"
//   8   u32      format version (1)
//   12  u32      header length H
//   16  H bytes  header JSON (utf-8): spec, optimizer, loss, epoch, step, RNG states, tensor table
//   ..  pad to 16, then the tensor data (f32, each tensor 16-byte aligned, offsets from data start)
//   end-4 u32    CRC-32 of every byte before it
import { crc32 } from "./crc32.js";
import type { Kernels } from "./kernels.js";
import { Model, type EpochProgress, type LossName } from "./model.js";
import { optimizerSlots, type ResolvedOptimizer } from "./optimizer.js";
import { resolveSpec, type ModelSpec } from "./spec.js";

const MAGIC = "EDGENNCK";
export const CHECKPOINT_VERSION = 1;

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

interface TensorEntry {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

interface CheckpointHeader {
  producer: string;
  spec: ModelSpec;
  optimizer: ResolvedOptimizer;
  loss: LossName;
  epoch: number;
  step: number;
  shuffleRng: number[];
  dropoutRng: number[];
  /** Present when a cancel stopped training inside an epoch (Model.epochProgress). */
  epochProgress?: EpochProgress;
  tensors: TensorEntry[];
}

function tensorsOf(
  model: Model,
): { name: string; shape: number[]; read: () => Float32Array; ptr: number; size: number }[] {
  const k = model.kernels;
  const out = [...model.params, ...model.state].map((t) => ({
    name: `layers.${t.layer}.${t.name}`,
    shape: t.shape,
    ptr: t.ptr,
    size: t.size,
    read: () => k.readF32(t.ptr, t.size),
  }));
  for (let s = 0; s < optimizerSlots(model.optimizer); s++) {
    for (const t of model.params) {
      const ptr = t.ptr + model.block.slotDelta[s];
      out.push({
        name: `optimizer.slot${s}.layers.${t.layer}.${t.name}`,
        shape: t.shape,
        ptr,
        size: t.size,
        read: () => k.readF32(ptr, t.size),
      });
    }
  }
  return out;
}

const align16 = (n: number) => (n + 15) & ~15;

export function saveCheckpoint(model: Model, producer = "edgenn"): Uint8Array {
  const tensors = tensorsOf(model);
  const table: TensorEntry[] = [];
  let off = 0;
  for (const t of tensors) {
    table.push({ name: t.name, shape: t.shape, offset: off, length: t.size });
    off = align16(off + t.size * 4);
  }
  const header: CheckpointHeader = {
    producer,
    spec: model.spec,
    optimizer: model.optimizer,
    loss: model.loss,
    epoch: model.epoch,
    step: model.step,
    shuffleRng: model.shuffleRng.getState(),
    dropoutRng: Array.from(model.getDropoutRngState()),
    ...(model.epochProgress ? { epochProgress: model.epochProgress } : {}),
    tensors: table,
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = align16(16 + json.length);
  const total = dataStart + off + 4;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < 8; i++) bytes[i] = MAGIC.charCodeAt(i);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, json.length, true);
  bytes.set(json, 16);
  tensors.forEach((t, i) => {
    const data = t.read();
    const at = dataStart + table[i].offset;
    for (let j = 0; j < data.length; j++) view.setFloat32(at + j * 4, data[j], true);
  });
  view.setUint32(total - 4, crc32(bytes, 0, total - 4), true);
  return bytes;
}

function parse(bytes: Uint8Array): { header: CheckpointHeader; dataStart: number; view: DataView } {
  if (bytes.length < 24)
    throw new CheckpointError(
      `checkpoint is truncated: ${bytes.length} bytes is shorter than any checkpoint`,
    );
  for (let i = 0; i < 8; i++)
    if (bytes[i] !== MAGIC.charCodeAt(i))
      throw new CheckpointError(
        `not an edgenn checkpoint: the file does not start with "${MAGIC}"`,
      );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION)
    throw new CheckpointError(
      `checkpoint format version ${version} is not supported (this edgenn reads version ${CHECKPOINT_VERSION})`,
    );
  const stored = view.getUint32(bytes.length - 4, true);
  const actual = crc32(bytes, 0, bytes.length - 4);
  if (stored !== actual)
    throw new CheckpointError(
      `checkpoint is corrupt: CRC-32 mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)}); the file was truncated or altered`,
    );
  const hlen = view.getUint32(12, true);
  if (16 + hlen > bytes.length - 4)
    throw new CheckpointError(`checkpoint header length ${hlen} runs past the end of the file`);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + hlen)),
    );
  } catch (e) {
    throw new CheckpointError(`checkpoint header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || !Array.isArray(header.tensors))
    throw new CheckpointError("checkpoint header has no tensor table");
  return { header, dataStart: align16(16 + hlen), view };
}

/** Writes the checkpoint's state into an existing model built from the same spec. */
export function restoreCheckpoint(model: Model, bytes: Uint8Array): void {
  const { header, dataStart, view } = parse(bytes);
  const mine = JSON.stringify(model.spec);
  const theirSpec = resolveSpecSafe(header.spec);
  const theirs = JSON.stringify(theirSpec);
  if (mine !== theirs)
    throw new CheckpointError(
      `checkpoint is for a different model: ${describeSpecDiff(model.spec, theirSpec)}`,
    );
  const dataEnd = bytes.length - 4;
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const k = model.kernels;
  for (const t of tensorsOf(model)) {
    const e = byName.get(t.name);
    if (!e)
      throw new CheckpointError(
        `checkpoint lacks tensor ${t.name} (made with another optimizer or model?)`,
      );
    if (e.length !== t.size)
      throw new CheckpointError(
        `checkpoint tensor ${t.name} has ${e.length} values, the model needs ${t.size}`,
      );
    const at = dataStart + e.offset;
    if (!Number.isInteger(e.offset) || e.offset < 0 || at + e.length * 4 > dataEnd)
      throw new CheckpointError(
        `checkpoint tensor ${t.name} lies outside the file (offset ${e.offset})`,
      );
    const f = k.f32;
    const o = t.ptr >>> 2;
    for (let j = 0; j < t.size; j++) f[o + j] = view.getFloat32(at + j * 4, true);
    byName.delete(t.name);
  }
  if (byName.size > 0)
    throw new CheckpointError(
      `checkpoint has tensors this model does not: ${[...byName.keys()].slice(0, 5).join(", ")}`,
    );
  if (
    !Number.isInteger(header.epoch) ||
    header.epoch < 0 ||
    !Number.isInteger(header.step) ||
    header.step < 0
  )
    throw new CheckpointError("checkpoint epoch/step are not non-negative integers");
  const progress =
    header.epochProgress === undefined ? undefined : checkProgress(header.epochProgress);
  model.epoch = header.epoch;
  model.step = header.step;
  try {
    model.shuffleRng.setState(header.shuffleRng);
    model.setDropoutRngState(Uint8Array.from(header.dropoutRng));
  } catch (e) {
    throw new CheckpointError(`checkpoint RNG state is invalid: ${(e as Error).message}`);
  }
  model.epochProgress = progress;
}

/** Validates a checkpoint's epoch position (written by saveCheckpoint after a cancel). */
function checkProgress(p: unknown): EpochProgress {
  const bad = (why: string): never => {
    throw new CheckpointError(`checkpoint epoch position is invalid: ${why}`);
  };
  if (typeof p !== "object" || p === null) return bad("not an object");
  const o = p as Record<string, unknown>;
  const int = (k: string, min: number) => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) bad(`${k} is ${String(v)}`);
    return v as number;
  };
  const samples = int("samples", 1);
  const batchSize = int("batchSize", 1);
  const batch = int("batch", 1);
  if (batch >= Math.ceil(samples / batchSize)) bad(`batch ${batch} is past the epoch's end`);
  const correct = int("correct", 0);
  const lossSum = o.lossSum;
  if (typeof lossSum !== "number" || !Number.isFinite(lossSum)) bad("lossSum is not finite");
  if (typeof o.shuffle !== "boolean") bad("shuffle is not a boolean");
  const rng = o.shuffleRng;
  if (
    !Array.isArray(rng) ||
    rng.length !== 4 ||
    rng.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff)
  )
    bad("shuffleRng is not four u32 values");
  return {
    shuffleRng: (rng as number[]).slice(),
    batch,
    samples,
    batchSize,
    shuffle: o.shuffle as boolean,
    lossSum: lossSum as number,
    correct,
  };
}

function resolveSpecSafe(spec: ModelSpec): ModelSpec {
  try {
    const r = resolveSpec(spec);
    return {
      inputShape: r.inputShape,
      layers: r.layers.map((l) => l.spec as ModelSpec["layers"][number]),
      ...(r.labels ? { labels: r.labels } : {}),
    };
  } catch (e) {
    throw new CheckpointError(`checkpoint holds an invalid model spec: ${(e as Error).message}`);
  }
}

/** Where two canonical (defaults filled) specs differ: `b` is the checkpoint's. */
function describeSpecDiff(a: ModelSpec, b: ModelSpec): string {
  if (JSON.stringify(a.inputShape) !== JSON.stringify(b.inputShape))
    return `input shape [${b.inputShape}] in the checkpoint, [${a.inputShape}] here`;
  if (a.layers.length !== b.layers.length)
    return `${b.layers.length} layers in the checkpoint, ${a.layers.length} here`;
  for (let i = 0; i < a.layers.length; i++) {
    const x = JSON.stringify(a.layers[i]);
    const y = JSON.stringify(b.layers[i]);
    if (x !== y) return `layer ${i} is ${y} in the checkpoint but ${x} here`;
  }
  return "the labels differ";
}

/** Reads the header only (for inspection and for building the matching model). */
export function checkpointInfo(
  bytes: Uint8Array,
): Omit<CheckpointHeader, "tensors"> & { tensors: number } {
  const { header } = parse(bytes);
  return { ...header, tensors: header.tensors.length };
}

/** Builds the model a checkpoint describes (same spec, optimizer, loss) and restores its state. */
export function loadCheckpoint(bytes: Uint8Array, kernels: Kernels): Model {
  const { header } = parse(bytes);
  const spec = resolveSpecSafe(header.spec);
  let model: Model;
  try {
    model = new Model(kernels, spec, { optimizer: header.optimizer, loss: header.loss });
  } catch (e) {
    throw new CheckpointError(`checkpoint's model cannot be built: ${(e as Error).message}`);
  }
  restoreCheckpoint(model, bytes);
  return model;
}
