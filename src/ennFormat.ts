// The .enn model file: what `edgenn export` writes and the inference engine reads. The layout and
// every field are documented in docs/FORMAT.md; this file is the one place that writes and checks
// them. Platform-neutral (no Node built-ins): Workers load models with it too.
//
// Layout (little-endian):
//   0   8 bytes  magic 89 45 4E 4E 0D 0A 1A 0A ("\x89ENN\r\n\x1a\n": the PNG trick — a text-mode
//                transfer that rewrites line ends, or a 7-bit channel, breaks the magic, not the data)
//   8   u16      format major version (readers refuse a newer major)
//   10  u16      format minor version (additions a reader of the same major may ignore)
//   12  u32      header length H (bytes of UTF-8 JSON)
//   16  u32      file length, CRC included (tells a truncated file from a corrupt one)
//   20  u32      reserved, 0
//   24  H bytes  header JSON: ops, tensor table, shapes, labels, input normalisation, report
//   ..  zero padding to a multiple of 16
//   D   tensor data: each tensor 16-byte aligned at D + offset, f32 or i8, little-endian
//   end-4 u32    CRC-32 of every byte before it
//
// Reading is hardened against hostile files: every failure is a ModelFormatError saying what was
// wrong and where (byte offset, op index, tensor index), sizes are validated before anything is
// allocated, and every loop is bounded by a checked size.
import { crc32 } from "./crc32.js";
import { firstNonFinite } from "./finite.js";

export const ENN_MAGIC: readonly number[] = [0x89, 0x45, 0x4e, 0x4e, 0x0d, 0x0a, 0x1a, 0x0a];
export const ENN_MAJOR = 1;
export const ENN_MINOR = 0;
export const ENN_PREAMBLE_BYTES = 24;

/** Where in the file a problem is. Any subset is given. */
export interface FormatErrorLocation {
  /** Byte offset in the file. */
  offset?: number;
  /** Index in the header's op list. */
  op?: number;
  /** Index in the header's tensor table. */
  tensor?: number;
  /** JSON path of the header field, e.g. "ops[3].kernelSize". */
  field?: string;
}

/** A model file that cannot be used: truncated, corrupt, hostile, too large or from a newer edgenn. */
export class ModelFormatError extends Error {
  override name = "ModelFormatError";
  constructor(
    message: string,
    readonly where: FormatErrorLocation = {},
  ) {
    super(`${describeWhere(where)}${message}`);
  }
}

function describeWhere(w: FormatErrorLocation): string {
  const parts: string[] = [];
  if (w.op !== undefined) parts.push(`op ${w.op}`);
  if (w.tensor !== undefined) parts.push(`tensor ${w.tensor}`);
  if (w.field !== undefined) parts.push(`field ${w.field}`);
  if (w.offset !== undefined) parts.push(`byte ${w.offset}`);
  return `model file${parts.length ? ` (${parts.join(", ")})` : ""}: `;
}

/** Caps on what a file may ask for. Every size is checked against them before allocating. */
export interface EnnLimits {
  /** Whole file (default 64 MiB). */
  maxFileBytes: number;
  /** Header JSON (default 1 MiB). */
  maxHeaderBytes: number;
  /** Nesting depth of the header JSON (default 16; a valid header needs 5). */
  maxJsonDepth: number;
  /** Ops in the graph (default 1024). */
  maxOps: number;
  /** Any one dimension (default 2^20). */
  maxDim: number;
  /** Elements of any activation of one sample, or of any tensor (default 2^24). */
  maxElements: number;
}

export const DEFAULT_ENN_LIMITS: Readonly<EnnLimits> = Object.freeze({
  maxFileBytes: 64 * 1024 * 1024,
  maxHeaderBytes: 1024 * 1024,
  maxJsonDepth: 16,
  maxOps: 1024,
  maxDim: 1 << 20,
  maxElements: 1 << 24,
});

export type DType = "f32" | "i8";
export type ActivationName =
  "linear" | "relu" | "leakyRelu" | "elu" | "tanh" | "sigmoid" | "softmax";
export const ACTIVATION_NAMES: readonly ActivationName[] = [
  "linear",
  "relu",
  "leakyRelu",
  "elu",
  "tanh",
  "sigmoid",
  "softmax",
];
/** Activations with an `alpha` field. */
const WITH_ALPHA: ReadonlySet<string> = new Set(["leakyRelu", "elu"]);

/** [top, left, bottom, right] zero rows/cols around the image. */
export type Pad4 = [number, number, number, number];

export interface DenseOp {
  op: "dense";
  units: number;
  activation: ActivationName;
  /** leakyRelu/elu only. */
  alpha?: number;
  /** Tensor index: [inputs, units], f32 or i8. */
  kernel: number;
  /** Tensor index: [units] f32 per-output-channel scales, present iff the kernel is i8. */
  kernelScale?: number;
  /** Tensor index: [units] f32. */
  bias?: number;
  outShape: number[];
}
export interface Conv2dOp {
  op: "conv2d";
  filters: number;
  kernelSize: [number, number];
  strides: [number, number];
  pad: Pad4;
  activation: ActivationName;
  alpha?: number;
  /** Tensor index: [KH, KW, C, F] (HWIO), f32 or i8. */
  kernel: number;
  kernelScale?: number;
  bias?: number;
  outShape: number[];
}
/**
 * y = (x - center[c]) * scale[c] + shift[c] over the last axis (center absent = 0): a BatchNorm
 * that could not fold, with its square root folded (subtracting the mean first keeps the model's
 * rounding when the mean is far from zero).
 */
export interface ScaleShiftOp {
  op: "scaleShift";
  /** Tensor indices, each [channels] f32. */
  center?: number;
  scale: number;
  shift: number;
  outShape: number[];
}
export interface ActivationOp {
  op: "relu" | "leakyRelu" | "elu" | "tanh" | "sigmoid" | "softmax";
  alpha?: number;
  outShape: number[];
}
export interface Pool2dOp {
  op: "maxPool2d" | "avgPool2d";
  poolSize: [number, number];
  strides: [number, number];
  pad: Pad4;
  outShape: number[];
}
export interface ShapeOp {
  op: "globalAvgPool2d" | "flatten";
  outShape: number[];
}
export type EnnOp = DenseOp | Conv2dOp | ScaleShiftOp | ActivationOp | Pool2dOp | ShapeOp;
export type EnnOpName = EnnOp["op"];
export const OP_NAMES: readonly EnnOpName[] = [
  "dense",
  "conv2d",
  "scaleShift",
  "relu",
  "leakyRelu",
  "elu",
  "tanh",
  "sigmoid",
  "softmax",
  "maxPool2d",
  "avgPool2d",
  "globalAvgPool2d",
  "flatten",
];

/** One line of the export report: what happened to a layer of the source model. */
export interface ReportEntry {
  /** Layer index in the source model. */
  layer: number;
  /** Layer type in the source model. */
  type: string;
  action: "foldedBackward" | "foldedForward" | "scaleShift" | "fused" | "removed";
  /** Layer the BN or activation went into (source model index). */
  into?: number;
  /** Op index in the exported graph (scaleShift, fused). */
  op?: number;
  note: string;
}

export interface ExportReport {
  entries: ReportEntry[];
  /** Parameters and BN statistics of the source model. */
  paramsBefore: number;
  bytesBefore: number;
  /** Values stored in the exported file's tensors, and their bytes (padding excluded). */
  paramsAfter: number;
  bytesAfter: number;
  weights: "f32" | "int8";
  logits: boolean;
}

export interface InputNormalization {
  /** The model's input is raw * scale + offset. */
  scale: number;
  offset: number;
}

export interface EnnTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Float32Array | Int8Array;
}

/** A model file's content: what the writer takes and the reader returns. */
export interface EnnContent {
  producer: string;
  inputShape: number[];
  outputShape: number[];
  labels?: string[];
  inputNormalization: InputNormalization;
  ops: EnnOp[];
  tensors: EnnTensor[];
  report?: ExportReport;
}

export interface EnnModel extends EnnContent {
  version: { major: number; minor: number };
  fileBytes: number;
  /** Stored CRC-32; `checksumOk` is false only when reading with verifyChecksum: false. */
  checksum: number;
  checksumOk: boolean;
  /** Input shape of every op (its output shape is op.outShape). */
  inShapes: number[][];
  /** Byte offset of the tensor data region and each tensor's entry. */
  dataStart: number;
  tensorEntries: { name: string; dtype: DType; shape: number[]; offset: number; bytes: number }[];
}

export interface ReadOptions {
  limits?: Partial<EnnLimits>;
  /** Default true. false: read a file whose checksum fails (inspect shows it), never for inference. */
  verifyChecksum?: boolean;
  /**
   * Faster implementations of the byte-level checks (the inference engine passes WASM ones: on a
   * cold start JS loops over a megabyte run in V8's slow tiers). Same results as the defaults.
   */
  checks?: FileChecks;
  /**
   * Default true: every f32 tensor gets its own copy. false: aligned f32 tensors are views into
   * `bytes` (no copy; the caller must not change the bytes afterwards). The inference engine reads
   * this way, copying each tensor once into kernel memory: on a cold start each copy of a
   * megabyte-size model into fresh pages costs about a millisecond.
   */
  copyTensors?: boolean;
}

export interface FileChecks {
  /** CRC-32 of bytes[start, end). */
  crc32(bytes: Uint8Array, start: number, end: number): number;
  /** Index of the first non-finite value, or -1. */
  firstNonFinite(data: Float32Array): number;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);
const MAX_NAME = 256;
const MAX_REPORT_ENTRIES = 4096;
const MAX_PRODUCER = 256;

// ---- writer ----------------------------------------------------------------------------------

/** Serialises a model. The content is validated exactly as the reader would, so bad exports fail here. */
export function writeEnn(c: EnnContent): Uint8Array {
  const limits = { ...DEFAULT_ENN_LIMITS };
  const entries: EnnModel["tensorEntries"] = [];
  let off = 0;
  for (const t of c.tensors) {
    const bytes = t.data.length * (t.dtype === "f32" ? 4 : 1);
    entries.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], offset: off, bytes });
    off = align16(off + bytes);
  }
  const header = {
    producer: c.producer,
    inputShape: c.inputShape,
    outputShape: c.outputShape,
    ...(c.labels ? { labels: c.labels } : {}),
    inputNormalization: c.inputNormalization,
    ops: c.ops,
    tensors: entries,
    ...(c.report ? { report: c.report } : {}),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = align16(ENN_PREAMBLE_BYTES + json.length);
  const total = dataStart + off + 4;
  // Same checks as the reader (limits aside: the writer is trusted to produce what it is given).
  const parsed = validateHeader(JSON.parse(JSON.stringify(header)), off, {
    ...limits,
    maxFileBytes: Infinity,
  });
  void parsed;
  c.tensors.forEach((t, i) => {
    const want = entries[i].shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== want || (t.dtype === "f32") !== t.data instanceof Float32Array)
      throw new ModelFormatError(`tensor data does not match its shape/dtype`, { tensor: i });
    // Readers refuse non-finite weights, so a file holding one would be unloadable.
    for (let j = 0; j < t.data.length; j++)
      if (!Number.isFinite(t.data[j]))
        throw new ModelFormatError(
          `${t.name} holds ${t.data[j]} at element ${j}: the model's weights or BatchNorm statistics are not finite (a diverged run?), or folding overflowed f32`,
          { tensor: i },
        );
  });
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes.set(ENN_MAGIC, 0);
  view.setUint16(8, ENN_MAJOR, true);
  view.setUint16(10, ENN_MINOR, true);
  view.setUint32(12, json.length, true);
  view.setUint32(16, total, true);
  view.setUint32(20, 0, true);
  bytes.set(json, ENN_PREAMBLE_BYTES);
  c.tensors.forEach((t, i) => {
    const at = dataStart + entries[i].offset;
    if (t.data instanceof Float32Array)
      for (let j = 0; j < t.data.length; j++) view.setFloat32(at + 4 * j, t.data[j], true);
    else bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.length), at);
  });
  view.setUint32(total - 4, crc32(bytes, 0, total - 4), true);
  return bytes;
}

// ---- reader ----------------------------------------------------------------------------------

/** Parses and fully validates a model file. Throws ModelFormatError and nothing else on bad input. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function readEnn(source: Uint8Array | ArrayBuffer, options: ReadOptions = {}): EnnModel {
  const limits: EnnLimits = { ...DEFAULT_ENN_LIMITS, ...options.limits };
  const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
  const n = bytes.length;
  if (n > limits.maxFileBytes)
    throw new ModelFormatError(
      `the file is ${n} bytes, over the ${limits.maxFileBytes}-byte limit (raise the maxFileBytes limit if the model is really that large)`,
    );
  if (n < ENN_PREAMBLE_BYTES + 4)
    throw new ModelFormatError(
      `the file is truncated: ${n} bytes is shorter than any model file (${ENN_PREAMBLE_BYTES + 4} at least)`,
      { offset: n },
    );
  for (let i = 0; i < 8; i++)
    if (bytes[i] !== ENN_MAGIC[i]) {
      const text = String.fromCharCode(...bytes.subarray(0, 8));
      throw new ModelFormatError(
        text === "EDGENNCK"
          ? `this is a training checkpoint, not an exported model; run "edgenn export CKPT --out model.enn" first`
          : `not an edgenn model file: bad magic (expected 89 45 4E 4E 0D 0A 1A 0A)`,
        { offset: i },
      );
    }
  const view = new DataView(bytes.buffer, bytes.byteOffset, n);
  const major = view.getUint16(8, true);
  const minor = view.getUint16(10, true);
  if (major > ENN_MAJOR)
    throw new ModelFormatError(
      `format version ${major}.${minor} is newer than this edgenn reads (${ENN_MAJOR}.x); upgrade edgenn to load it`,
      { offset: 8 },
    );
  if (major < 1)
    throw new ModelFormatError(`format version ${major}.${minor} does not exist`, { offset: 8 });
  const headerLen = view.getUint32(12, true);
  const declared = view.getUint32(16, true);
  if (declared !== n)
    throw new ModelFormatError(
      declared > n
        ? `the file is truncated: it has ${n} bytes but its preamble says ${declared} (${declared - n} missing)`
        : `the file has ${n - declared} unexpected bytes after its end (the preamble says ${declared} bytes)`,
      { offset: Math.min(declared, n) },
    );
  if (view.getUint32(20, true) !== 0)
    throw new ModelFormatError(`reserved preamble field is not zero`, { offset: 20 });
  const stored = view.getUint32(n - 4, true);
  const actual = (options.checks?.crc32 ?? crc32)(bytes, 0, n - 4);
  const checksumOk = stored === actual;
  if (!checksumOk && options.verifyChecksum !== false)
    throw new ModelFormatError(
      `checksum mismatch: stored CRC-32 ${hex(stored)}, computed ${hex(actual)}; the file is corrupt (altered or damaged in transfer)`,
      { offset: n - 4 },
    );
  if (headerLen > limits.maxHeaderBytes)
    throw new ModelFormatError(
      `header is ${headerLen} bytes, over the ${limits.maxHeaderBytes}-byte limit`,
      { offset: 12 },
    );
  const headerEnd = ENN_PREAMBLE_BYTES + headerLen;
  const dataStart = align16(headerEnd);
  if (dataStart > n - 4)
    throw new ModelFormatError(`header (${headerLen} bytes) runs past the end of the file`, {
      offset: 12,
    });
  for (let i = headerEnd; i < dataStart; i++)
    if (bytes[i] !== 0)
      throw new ModelFormatError(`padding after the header is not zero`, { offset: i });
  const raw = parseHeaderJson(bytes, ENN_PREAMBLE_BYTES, headerEnd, limits.maxJsonDepth);
  const dataBytes = n - 4 - dataStart;
  const h = validateHeader(raw, dataBytes, limits);
  const tensors: EnnTensor[] = h.tensorEntries.map((e, i) => {
    const at = dataStart + e.offset;
    const count = e.bytes / (e.dtype === "f32" ? 4 : 1);
    if (e.dtype === "i8") {
      const data = new Int8Array(count);
      data.set(new Int8Array(bytes.buffer, bytes.byteOffset + at, count));
      for (let j = 0; j < count; j++)
        if (data[j] === -128)
          throw new ModelFormatError(
            `int8 weights must be in [-127, 127] (symmetric quantisation), found -128 at element ${j}`,
            { tensor: i, offset: at + j },
          );
      return { name: e.name, dtype: e.dtype, shape: e.shape, data };
    }
    let data: Float32Array;
    if (LITTLE_ENDIAN && (bytes.byteOffset + at) % 4 === 0) {
      // A view or one bulk copy: reading element by element is most of an edge function's cold start.
      const inPlace = new Float32Array(bytes.buffer, bytes.byteOffset + at, count);
      data = options.copyTensors === false ? inPlace : inPlace.slice();
    } else {
      data = new Float32Array(count);
      for (let j = 0; j < count; j++) data[j] = view.getFloat32(at + 4 * j, true);
    }
    const j = (options.checks?.firstNonFinite ?? firstNonFinite)(data);
    if (j >= 0)
      throw new ModelFormatError(`holds a non-finite value (${data[j]}) at element ${j}`, {
        tensor: i,
        offset: at + 4 * j,
      });
    return { name: e.name, dtype: e.dtype, shape: e.shape, data };
  });
  h.ops.forEach((op, i) => {
    if ((op.op === "dense" || op.op === "conv2d") && op.kernelScale !== undefined) {
      const s = tensors[op.kernelScale].data;
      for (let j = 0; j < s.length; j++)
        if (s[j] < 0)
          throw new ModelFormatError(`int8 scale ${j} is negative (${s[j]})`, {
            op: i,
            tensor: op.kernelScale,
          });
    }
  });
  return {
    producer: h.producer,
    inputShape: h.inputShape,
    outputShape: h.outputShape,
    ...(h.labels ? { labels: h.labels } : {}),
    inputNormalization: h.inputNormalization,
    ops: h.ops,
    tensors,
    ...(h.report ? { report: h.report } : {}),
    version: { major, minor },
    fileBytes: n,
    checksum: stored,
    checksumOk,
    inShapes: h.inShapes,
    dataStart,
    tensorEntries: h.tensorEntries,
  };
}

function hex(v: number): string {
  return v.toString(16).padStart(8, "0");
}

/**
 * Header JSON: UTF-8 checked, nesting depth checked on the raw bytes before parsing (JSON's
 * structural characters are ASCII, so a byte scan is exact), prototype keys rejected while parsing.
 */
function parseHeaderJson(bytes: Uint8Array, start: number, end: number, maxDepth: number): unknown {
  let depth = 0;
  let inString = false;
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x7b || b === 0x5b) {
      if (++depth > maxDepth)
        throw new ModelFormatError(`header JSON nests deeper than ${maxDepth} levels`, {
          offset: i,
        });
    } else if (b === 0x7d || b === 0x5d) depth--;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, end));
  } catch {
    throw new ModelFormatError(`header is not valid UTF-8`, { offset: start });
  }
  try {
    return JSON.parse(text, (key, value: unknown) => {
      if (FORBIDDEN_KEYS.has(key))
        throw new ModelFormatError(`header JSON has a forbidden key ${JSON.stringify(key)}`, {
          offset: start,
        });
      return value;
    });
  } catch (e) {
    if (e instanceof ModelFormatError) throw e;
    throw new ModelFormatError(
      `header is not valid JSON (${(e as Error).message}; the header starts at byte ${start})`,
      { offset: start },
    );
  }
}

// ---- header validation -------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Own property only: a hostile header must not reach Object.prototype through a missing key. */
function own(o: Obj, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

class Checker {
  constructor(
    readonly limits: EnnLimits,
    readonly where: FormatErrorLocation = {},
  ) {}

  at(where: FormatErrorLocation): Checker {
    return new Checker(this.limits, { ...this.where, ...where });
  }

  fail(field: string, what: string): never {
    throw new ModelFormatError(what, { ...this.where, field });
  }

  obj(field: string, v: unknown): Obj {
    if (!isObj(v)) this.fail(field, `must be an object, got ${typeName(v)}`);
    return v;
  }

  int(field: string, v: unknown, lo: number, hi: number): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
      this.fail(field, `must be an integer from ${lo} to ${hi}, got ${short(v)}`);
    return v;
  }

  num(field: string, v: unknown, lo: number, hi: number): number {
    if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi)
      this.fail(field, `must be a number from ${lo} to ${hi}, got ${short(v)}`);
    return v;
  }

  str(field: string, v: unknown, max: number): string {
    if (typeof v !== "string" || v.length > max)
      this.fail(field, `must be a string of at most ${max} characters, got ${short(v)}`);
    return v;
  }

  arr(field: string, v: unknown, minLen: number, maxLen: number): unknown[] {
    if (!Array.isArray(v) || v.length < minLen || v.length > maxLen)
      this.fail(field, `must be an array of ${minLen} to ${maxLen} items, got ${short(v)}`);
    return v;
  }

  shape(field: string, v: unknown, minRank = 1, maxRank = 4): number[] {
    const a = this.arr(field, v, minRank, maxRank);
    const dims = a.map((d, i) => this.int(`${field}[${i}]`, d, 1, this.limits.maxDim));
    this.elements(field, dims);
    return dims;
  }

  /** Element count with checked multiplication (every partial product stays under the cap). */
  elements(field: string, dims: readonly number[]): number {
    let p = 1;
    for (const d of dims) {
      p *= d;
      if (p > this.limits.maxElements)
        this.fail(field, `[${dims.join(", ")}] has more than ${this.limits.maxElements} elements`);
    }
    return p;
  }

  pair(field: string, v: unknown, max: number): [number, number] {
    const a = this.arr(field, v, 2, 2);
    return [this.int(`${field}[0]`, a[0], 1, max), this.int(`${field}[1]`, a[1], 1, max)];
  }

  pad(field: string, v: unknown, k: [number, number]): Pad4 {
    const a = this.arr(field, v, 4, 4);
    // A pad as wide as the window would make a window of pure padding (an empty average).
    return [
      this.int(`${field}[0]`, a[0], 0, k[0] - 1),
      this.int(`${field}[1]`, a[1], 0, k[1] - 1),
      this.int(`${field}[2]`, a[2], 0, k[0] - 1),
      this.int(`${field}[3]`, a[3], 0, k[1] - 1),
    ];
  }
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

function short(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = typeName(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

interface ValidHeader {
  producer: string;
  inputShape: number[];
  outputShape: number[];
  labels?: string[];
  inputNormalization: InputNormalization;
  ops: EnnOp[];
  inShapes: number[][];
  tensorEntries: EnnModel["tensorEntries"];
  report?: ExportReport;
}

/** Window sweep output length with explicit pads. */
function sweep(size: number, k: number, s: number, before: number, after: number): number {
  return Math.floor((size + before + after - k) / s) + 1;
}

function validateHeader(raw: unknown, dataBytes: number, limits: EnnLimits): ValidHeader {
  const c = new Checker(limits);
  const h = c.obj("header", raw);
  const producer = c.str("producer", own(h, "producer"), MAX_PRODUCER);
  const inputShape = c.shape("inputShape", own(h, "inputShape"), 1, 3);
  if (inputShape.length === 2)
    c.fail("inputShape", `must be [features] or [height, width, channels]`);
  const outputShape = c.shape("outputShape", own(h, "outputShape"), 1, 3);
  const nrm = c.obj("inputNormalization", own(h, "inputNormalization"));
  const inputNormalization = {
    scale: c.num("inputNormalization.scale", own(nrm, "scale"), -1e30, 1e30),
    offset: c.num("inputNormalization.offset", own(nrm, "offset"), -1e30, 1e30),
  };

  // Tensor table: sizes from shapes with checked products, 16-byte alignment, inside the data
  // region, no overlaps, and the region ends where the last tensor does.
  const rawTensors = c.arr("tensors", own(h, "tensors"), 0, 4 * limits.maxOps);
  const tensorEntries = rawTensors.map((rt, i) => {
    const tc = c.at({ tensor: i });
    const f = `tensors[${i}]`;
    const t = tc.obj(f, rt);
    const name = tc.str(`${f}.name`, own(t, "name"), MAX_NAME);
    const dtype = own(t, "dtype");
    if (dtype !== "f32" && dtype !== "i8")
      tc.fail(`${f}.dtype`, `must be "f32" or "i8", got ${short(dtype)}`);
    const shape = tc.shape(`${f}.shape`, own(t, "shape"), 1, 4);
    const offset = tc.int(`${f}.offset`, own(t, "offset"), 0, dataBytes);
    const bytes = tc.int(`${f}.bytes`, own(t, "bytes"), 0, dataBytes);
    const want = tc.elements(`${f}.shape`, shape) * (dtype === "f32" ? 4 : 1);
    if (bytes !== want)
      tc.fail(
        `${f}.bytes`,
        `is ${bytes} but shape [${shape.join(", ")}] of ${dtype} needs ${want}`,
      );
    if (offset % 16 !== 0) tc.fail(`${f}.offset`, `${offset} is not a multiple of 16`);
    if (offset + bytes > dataBytes)
      tc.fail(
        `${f}.offset`,
        `bytes ${offset}..${offset + bytes} lie outside the ${dataBytes}-byte data region`,
      );
    return { name, dtype: dtype as DType, shape, offset, bytes };
  });
  const byOffset = tensorEntries.map((e, i) => ({ ...e, i })).sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const e of byOffset) {
    if (e.offset < end)
      throw new ModelFormatError(`overlaps the tensor before it in the data region`, {
        tensor: e.i,
        field: `tensors[${e.i}].offset`,
      });
    end = e.offset + Math.max(e.bytes, 0);
  }
  if (align16(end) !== dataBytes)
    c.fail(
      "tensors",
      `the data region is ${dataBytes} bytes but its tensors end at ${end} (${align16(end)} aligned)`,
    );

  // Ops: shapes inferred from the input, checked against each op's stored outShape and tensors.
  const rawOps = c.arr("ops", own(h, "ops"), 1, limits.maxOps);
  const used = new Int32Array(tensorEntries.length).fill(-1);
  const ops: EnnOp[] = [];
  const inShapes: number[][] = [];
  let shape = inputShape;
  rawOps.forEach((ro, i) => {
    const oc = c.at({ op: i });
    const f = `ops[${i}]`;
    const o = oc.obj(f, ro);
    const rawName = own(o, "op");
    if (typeof rawName !== "string" || !(OP_NAMES as readonly string[]).includes(rawName))
      oc.fail(`${f}.op`, `unknown op ${short(rawName)}; this edgenn knows ${OP_NAMES.join(", ")}`);
    const name = rawName as EnnOpName;
    const useTensor = (field: string, dtypes: DType[], want: number[]): number => {
      const t = oc.int(`${f}.${field}`, own(o, field), 0, tensorEntries.length - 1);
      const e = tensorEntries[t];
      if (used[t] >= 0) oc.fail(`${f}.${field}`, `tensor ${t} is already used by op ${used[t]}`);
      used[t] = i;
      if (!dtypes.includes(e.dtype))
        oc.fail(`${f}.${field}`, `tensor ${t} is ${e.dtype}, expected ${dtypes.join(" or ")}`);
      if (!sameShape(e.shape, want))
        oc.fail(
          `${f}.${field}`,
          `tensor ${t} has shape [${e.shape.join(", ")}], expected [${want.join(", ")}]`,
        );
      return t;
    };
    const activation = (): { activation: ActivationName; alpha?: number } => {
      const a = own(o, "activation");
      if (typeof a !== "string" || !(ACTIVATION_NAMES as readonly string[]).includes(a))
        oc.fail(
          `${f}.activation`,
          `must be one of ${ACTIVATION_NAMES.join(", ")}, got ${short(a)}`,
        );
      return WITH_ALPHA.has(a as string)
        ? { activation: a as ActivationName, alpha: oc.num(`${f}.alpha`, own(o, "alpha"), 0, 1e6) }
        : { activation: a as ActivationName };
    };
    const need3d = () => {
      if (shape.length !== 3)
        oc.fail(
          `${f}.op`,
          `${name} needs an [height, width, channels] input, got [${shape.join(", ")}]`,
        );
      return shape as [number, number, number];
    };
    let op: EnnOp;
    let out: number[];
    switch (name) {
      case "dense": {
        if (shape.length !== 1)
          oc.fail(`${f}.op`, `dense needs a flat input, got [${shape.join(", ")}]`);
        const units = oc.int(`${f}.units`, own(o, "units"), 1, limits.maxDim);
        const act = activation();
        const kernel = useTensor("kernel", ["f32", "i8"], [shape[0], units]);
        const q = tensorEntries[kernel].dtype === "i8";
        const kernelScale = q ? useTensor("kernelScale", ["f32"], [units]) : undefined;
        if (!q && own(o, "kernelScale") !== undefined)
          oc.fail(`${f}.kernelScale`, `is only for an i8 kernel`);
        const bias = own(o, "bias") === undefined ? undefined : useTensor("bias", ["f32"], [units]);
        out = [units];
        op = { op: "dense", units, ...act, kernel, ...opt({ kernelScale, bias }), outShape: out };
        break;
      }
      case "conv2d": {
        const [H, W, C] = need3d();
        const filters = oc.int(`${f}.filters`, own(o, "filters"), 1, limits.maxDim);
        const kernelSize = oc.pair(`${f}.kernelSize`, own(o, "kernelSize"), 4096);
        const strides = oc.pair(`${f}.strides`, own(o, "strides"), 4096);
        const pad = oc.pad(`${f}.pad`, own(o, "pad"), kernelSize);
        if (H + pad[0] + pad[2] < kernelSize[0] || W + pad[1] + pad[3] < kernelSize[1])
          oc.fail(
            `${f}.kernelSize`,
            `${kernelSize.join("x")} is larger than the padded ${H}x${W} input`,
          );
        const act = activation();
        const kernel = useTensor("kernel", ["f32", "i8"], [...kernelSize, C, filters]);
        const q = tensorEntries[kernel].dtype === "i8";
        const kernelScale = q ? useTensor("kernelScale", ["f32"], [filters]) : undefined;
        if (!q && own(o, "kernelScale") !== undefined)
          oc.fail(`${f}.kernelScale`, `is only for an i8 kernel`);
        const bias =
          own(o, "bias") === undefined ? undefined : useTensor("bias", ["f32"], [filters]);
        out = [
          sweep(H, kernelSize[0], strides[0], pad[0], pad[2]),
          sweep(W, kernelSize[1], strides[1], pad[1], pad[3]),
          filters,
        ];
        op = {
          op: "conv2d",
          filters,
          kernelSize,
          strides,
          pad,
          ...act,
          kernel,
          ...opt({ kernelScale, bias }),
          outShape: out,
        };
        break;
      }
      case "scaleShift": {
        const ch = shape[shape.length - 1];
        out = shape;
        const center =
          own(o, "center") === undefined ? undefined : useTensor("center", ["f32"], [ch]);
        op = {
          op: "scaleShift",
          ...(center !== undefined ? { center } : {}),
          scale: useTensor("scale", ["f32"], [ch]),
          shift: useTensor("shift", ["f32"], [ch]),
          outShape: out,
        };
        break;
      }
      case "leakyRelu":
      case "elu":
        out = shape;
        op = { op: name, alpha: oc.num(`${f}.alpha`, own(o, "alpha"), 0, 1e6), outShape: out };
        break;
      case "relu":
      case "tanh":
      case "sigmoid":
      case "softmax":
        out = shape;
        op = { op: name, outShape: out };
        break;
      case "maxPool2d":
      case "avgPool2d": {
        const [H, W, C] = need3d();
        const poolSize = oc.pair(`${f}.poolSize`, own(o, "poolSize"), 4096);
        const strides = oc.pair(`${f}.strides`, own(o, "strides"), 4096);
        const pad = oc.pad(`${f}.pad`, own(o, "pad"), poolSize);
        if (H + pad[0] + pad[2] < poolSize[0] || W + pad[1] + pad[3] < poolSize[1])
          oc.fail(
            `${f}.poolSize`,
            `${poolSize.join("x")} is larger than the padded ${H}x${W} input`,
          );
        out = [
          sweep(H, poolSize[0], strides[0], pad[0], pad[2]),
          sweep(W, poolSize[1], strides[1], pad[1], pad[3]),
          C,
        ];
        op = { op: name, poolSize, strides, pad, outShape: out };
        break;
      }
      case "globalAvgPool2d":
        out = [need3d()[2]];
        op = { op: name, outShape: out };
        break;
      case "flatten":
        out = [oc.elements(`${f}.outShape`, shape)];
        op = { op: name, outShape: out };
        break;
    }
    oc.elements(`${f}.outShape`, out);
    const stored = oc.arr(`${f}.outShape`, own(o, "outShape"), 1, 4);
    if (!sameShape(stored as number[], out))
      oc.fail(
        `${f}.outShape`,
        `is ${short(stored)} but the op computes [${out.join(", ")}] from its input [${shape.join(", ")}]`,
      );
    inShapes.push(shape);
    ops.push(op);
    shape = out;
  });
  used.forEach((u, t) => {
    if (u < 0)
      throw new ModelFormatError(`is not used by any op`, { tensor: t, field: `tensors[${t}]` });
  });
  if (!sameShape(shape, outputShape))
    c.fail(
      "outputShape",
      `is [${outputShape.join(", ")}] but the ops end in [${shape.join(", ")}]`,
    );
  let labels: string[] | undefined;
  const rawLabels = own(h, "labels");
  if (rawLabels !== undefined) {
    const outputs = c.elements("outputShape", outputShape);
    const a = c.arr("labels", rawLabels, outputs, outputs);
    labels = a.map((l, i) => c.str(`labels[${i}]`, l, MAX_NAME));
  }
  const rawReport = own(h, "report");
  const report = rawReport === undefined ? undefined : validateReport(c, rawReport);
  return {
    producer,
    inputShape,
    outputShape,
    ...(labels ? { labels } : {}),
    inputNormalization,
    ops,
    inShapes,
    tensorEntries,
    ...(report ? { report } : {}),
  };
}

/** Drops undefined members (the JSON form omits absent tensors). */
function opt<T extends Record<string, number | undefined>>(o: T): Partial<Record<keyof T, number>> {
  const r: Partial<Record<keyof T, number>> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) r[k] = o[k];
  return r;
}

const REPORT_ACTIONS: readonly ReportEntry["action"][] = [
  "foldedBackward",
  "foldedForward",
  "scaleShift",
  "fused",
  "removed",
];

function validateReport(c: Checker, raw: unknown): ExportReport {
  const r = c.obj("report", raw);
  const big = Number.MAX_SAFE_INTEGER;
  const entries = c.arr("report.entries", own(r, "entries"), 0, MAX_REPORT_ENTRIES).map((re, i) => {
    const f = `report.entries[${i}]`;
    const e = c.obj(f, re);
    const action = own(e, "action");
    if (!(REPORT_ACTIONS as readonly unknown[]).includes(action))
      c.fail(`${f}.action`, `must be one of ${REPORT_ACTIONS.join(", ")}, got ${short(action)}`);
    const into = own(e, "into");
    const op = own(e, "op");
    return {
      layer: c.int(`${f}.layer`, own(e, "layer"), 0, big),
      type: c.str(`${f}.type`, own(e, "type"), MAX_NAME),
      action: action as ReportEntry["action"],
      ...(into !== undefined ? { into: c.int(`${f}.into`, into, 0, big) } : {}),
      ...(op !== undefined ? { op: c.int(`${f}.op`, op, 0, big) } : {}),
      note: c.str(`${f}.note`, own(e, "note"), 1024),
    };
  });
  const weights = own(r, "weights");
  if (weights !== "f32" && weights !== "int8")
    c.fail("report.weights", `must be "f32" or "int8", got ${short(weights)}`);
  const logits = own(r, "logits");
  if (typeof logits !== "boolean") c.fail("report.logits", `must be true or false`);
  return {
    entries,
    paramsBefore: c.int("report.paramsBefore", own(r, "paramsBefore"), 0, big),
    bytesBefore: c.int("report.bytesBefore", own(r, "bytesBefore"), 0, big),
    paramsAfter: c.int("report.paramsAfter", own(r, "paramsAfter"), 0, big),
    bytesAfter: c.int("report.bytesAfter", own(r, "bytesAfter"), 0, big),
    weights,
    logits,
  };
}
