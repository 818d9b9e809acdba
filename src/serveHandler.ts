// The HTTP contract of a served model, written once against web-standard Request/Response so the
// Cloudflare Worker (worker/edge.ts) and `edgenn serve` (src/node/serve.ts) answer identically.
// Platform-neutral: no Node built-ins.
//
//   POST /predict  {"inputs": [...]} (application/json: one sample or a batch, flat or nested to
//                  the input shape) or raw little-endian float32 (application/octet-stream)
//                  -> {"outputs": [[...]], "argmax": [...], "labels": [...]}
//   GET  /model    the model file's header metadata (shapes, labels, normalisation, ops)
//   GET  /healthz  {"ok": true}
// A client's mistake is a 4xx JSON {"error": code, "detail": message}; only a fault of the server
// (the model cannot load) is a 5xx. See docs/SERVING.md.
import { float32InputProblem, nonFiniteOutputProblem, type InferenceEngine } from "./engine.js";

export interface ServeLimits {
  /** Most samples one request may carry (the engine is planned for this batch). */
  maxBatch: number;
  /** Most bytes of request body; the body is counted while it streams in. */
  maxBodyBytes: number;
}

export const DEFAULT_SERVE_LIMITS: Readonly<ServeLimits> = Object.freeze({
  maxBatch: 64,
  maxBodyBytes: 4 * 1024 * 1024,
});

/** Error codes of 4xx answers (the `error` field). */
export type ClientErrorCode =
  | "not_found"
  | "method_not_allowed"
  | "unsupported_media_type"
  | "body_too_large"
  | "batch_too_large"
  | "malformed_json"
  | "invalid_request"
  | "invalid_number"
  | "wrong_sample_length"
  | "empty_batch"
  | "non_finite_output";

/** A request the client got wrong: becomes a 4xx answer, never a 5xx. */
export class ClientError extends Error {
  override name = "ClientError";
  constructor(
    readonly status: number,
    readonly code: ClientErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const JSON_TYPE = "application/json; charset=utf-8";

export function jsonResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": JSON_TYPE, "cache-control": "no-store", ...headers },
  });
}

export function errorResponse(e: ClientError): Response {
  return jsonResponse(e.status, { error: e.code, detail: e.message }, e.headers);
}

/** Reads limits from string settings (wrangler vars, CLI flags); absent means the default. */
export function parseServeLimits(v: {
  maxBatch?: string | number;
  maxBodyBytes?: string | number;
}): ServeLimits {
  const int = (x: string | number | undefined, name: string, dflt: number, max: number) => {
    if (x === undefined || x === "") return dflt;
    const n = Number(x);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new RangeError(`${name} must be an integer from 1 to ${max}, got "${x}"`);
    return n;
  };
  return {
    maxBatch: int(v.maxBatch, "maxBatch", DEFAULT_SERVE_LIMITS.maxBatch, 65536),
    maxBodyBytes: int(v.maxBodyBytes, "maxBodyBytes", DEFAULT_SERVE_LIMITS.maxBodyBytes, 2 ** 30),
  };
}

/**
 * Which browser origins may call the server from their pages (CORS): every origin ("*") or a list
 * of exact origins (`https://app.example`). Without a policy no CORS header is sent, and browsers
 * allow only same-origin pages.
 */
export interface CorsPolicy {
  origins: "*" | string[];
}

/** "*" or a comma-separated list of origins (wrangler var CORS_ORIGIN, `edgenn serve --cors`). */
export function parseCorsPolicy(v: string | undefined): CorsPolicy | undefined {
  if (v === undefined || v.trim() === "") return undefined;
  if (v.trim() === "*") return { origins: "*" };
  const origins = v.split(",").map((o) => o.trim());
  for (const o of origins) {
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === "https:" || u.protocol === "http:") && u.origin === o;
    } catch {
      ok = false;
    }
    if (!ok)
      throw new RangeError(
        `CORS origin "${o}" is not an origin: use "*" or scheme://host[:port] without a path or trailing slash, comma-separated`,
      );
  }
  return { origins };
}

/** The Access-Control-Allow-Origin value for this request, or undefined (not allowed). */
function allowedOrigin(request: Request, cors: CorsPolicy): string | undefined {
  if (cors.origins === "*") return "*";
  const origin = request.headers.get("origin");
  return origin !== null && cors.origins.includes(origin) ? origin : undefined;
}

function withCors(request: Request, response: Response, cors: CorsPolicy): Response {
  const allow = allowedOrigin(request, cors);
  if (allow !== undefined) response.headers.set("access-control-allow-origin", allow);
  // A listed origin's answer differs by Origin: caches must keep them apart.
  if (cors.origins !== "*") response.headers.append("vary", "Origin");
  return response;
}

const ROUTES: Record<string, string[]> = {
  "/predict": ["POST"],
  "/model": ["GET", "HEAD"],
  "/healthz": ["GET", "HEAD"],
};

/**
 * Routes one request. `engine` is awaited only for a known route with the right method, so a 404
 * or 405 costs nothing and a model that fails to load does not hide the client's own mistake.
 */
export async function handleRequest(
  request: Request,
  engine: InferenceEngine | (() => Promise<InferenceEngine>),
  limits: ServeLimits,
  cors?: CorsPolicy,
): Promise<Response> {
  const response = await route(request, engine, limits, cors);
  return cors ? withCors(request, response, cors) : response;
}

async function route(
  request: Request,
  engine: InferenceEngine | (() => Promise<InferenceEngine>),
  limits: ServeLimits,
  cors: CorsPolicy | undefined,
): Promise<Response> {
  try {
    const path = new URL(request.url).pathname;
    const methods = ROUTES[path];
    if (!methods)
      throw new ClientError(
        404,
        "not_found",
        `no route ${path}: use POST /predict, GET /model or GET /healthz`,
      );
    // A browser's preflight before a cross-origin POST with a JSON or binary body.
    if (cors && request.method === "OPTIONS")
      return new Response(null, {
        status: 204,
        headers: {
          "access-control-allow-methods": [...methods, "OPTIONS"].join(", "),
          "access-control-allow-headers": "content-type",
          "access-control-max-age": "86400",
        },
      });
    if (!methods.includes(request.method))
      throw new ClientError(
        405,
        "method_not_allowed",
        `${path} takes ${methods.join(" or ")}, not ${request.method}`,
        { allow: methods.join(", ") },
      );
    if (path === "/predict") {
      // Check what can be checked before the model is needed.
      const kind = bodyKind(request);
      checkDeclaredLength(request, limits);
      const e = typeof engine === "function" ? await engine() : engine;
      return await predictResponse(e, request, kind, limits);
    }
    const e = typeof engine === "function" ? await engine() : engine;
    return path === "/model"
      ? jsonResponse(200, describeServedModel(e, limits))
      : jsonResponse(200, { ok: true });
  } catch (err) {
    if (err instanceof ClientError) return errorResponse(err);
    throw err;
  }
}

/** POST /predict alone (routing done by the caller). */
export async function handlePredictRequest(
  engine: InferenceEngine,
  request: Request,
  limits: ServeLimits,
): Promise<Response> {
  try {
    const kind = bodyKind(request);
    checkDeclaredLength(request, limits);
    return await predictResponse(engine, request, kind, limits);
  } catch (err) {
    if (err instanceof ClientError) return errorResponse(err);
    throw err;
  }
}

/** GET /model: what a client needs to build inputs and read outputs. */
export function describeServedModel(e: InferenceEngine, limits: ServeLimits): unknown {
  const m = e.model;
  return {
    format: `${m.version.major}.${m.version.minor}`,
    producer: m.producer,
    fileBytes: m.fileBytes,
    crc32: m.checksum.toString(16).padStart(8, "0"),
    inputShape: m.inputShape,
    inputSize: e.inputSize,
    inputNormalization: m.inputNormalization,
    outputShape: m.outputShape,
    labels: m.labels ?? null,
    params: m.tensors.reduce((a, t) => a + t.data.length, 0),
    ops: m.ops.map((op) => ({ op: op.op, outShape: op.outShape })),
    limits: { maxBatch: limits.maxBatch, maxBodyBytes: limits.maxBodyBytes },
    /** The kernel build computing the answers: "baseline" (WASM SIMD) or "relaxed" (FMA). */
    kernels: e.kernels.isa,
  };
}

type BodyKind = "json" | "binary";

function bodyKind(request: Request): BodyKind {
  const type = (request.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (type === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(type)) return "json";
  if (type === "application/octet-stream") return "binary";
  throw new ClientError(
    415,
    "unsupported_media_type",
    `content-type ${type ? `"${type}"` : "missing"}: send application/json {"inputs": [...]} or application/octet-stream raw little-endian float32`,
  );
}

function tooLarge(limits: ServeLimits, what: string): ClientError {
  return new ClientError(
    413,
    "body_too_large",
    `${what} is over the ${limits.maxBodyBytes}-byte limit; send fewer samples per request`,
  );
}

function checkDeclaredLength(request: Request, limits: ServeLimits): void {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limits.maxBodyBytes)
    throw tooLarge(limits, `the body (content-length ${declared})`);
}

/**
 * Reads the body, counting bytes as they arrive and cancelling the stream the moment the limit is
 * passed: a client cannot make the server buffer more than maxBodyBytes, whatever it declared.
 */
async function readBody(request: Request, limits: ServeLimits): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limits.maxBodyBytes) {
      reader.cancel().catch(() => {});
      throw tooLarge(limits, "the body");
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

async function predictResponse(
  engine: InferenceEngine,
  request: Request,
  kind: BodyKind,
  limits: ServeLimits,
): Promise<Response> {
  const body = await readBody(request, limits);
  const x =
    kind === "json" ? jsonSamples(body, engine, limits) : binarySamples(body, engine, limits);
  const B = x.length / engine.inputSize;
  // predict is synchronous and its output is a view of a buffer the next call overwrites: the rows
  // are copied out before this function yields, so concurrent requests cannot see each other's data.
  const C = engine.outputSize;
  const outputs: number[][] = [];
  const argmax: number[] = [];
  for (let s = 0; s < B; s += engine.maxBatch) {
    const b = Math.min(engine.maxBatch, B - s);
    const y = engine.predict(x.subarray(s * engine.inputSize, (s + b) * engine.inputSize), b);
    for (let i = 0; i < b; i++) {
      const row = Array.from(y.subarray(i * C, (i + 1) * C));
      const overflow = nonFiniteOutputProblem(row, s + i);
      if (overflow) throw new ClientError(422, "non_finite_output", overflow);
      let best = 0;
      for (let j = 1; j < C; j++) if (row[j] > row[best]) best = j;
      outputs.push(row);
      argmax.push(best);
    }
  }
  const labels = engine.labels;
  return jsonResponse(200, {
    outputs,
    argmax,
    ...(labels ? { labels: argmax.map((i) => labels[i] ?? null) } : {}),
  });
}

function checkBatch(count: number, limits: ServeLimits): void {
  if (count === 0) throw new ClientError(400, "empty_batch", `the request holds no samples`);
  if (count > limits.maxBatch)
    throw new ClientError(
      413,
      "batch_too_large",
      `${count} samples is over the limit of ${limits.maxBatch} per request; split the batch`,
    );
}

function binarySamples(
  body: Uint8Array,
  engine: InferenceEngine,
  limits: ServeLimits,
): Float32Array {
  const sampleBytes = engine.inputSize * 4;
  if (body.byteLength % sampleBytes !== 0)
    throw new ClientError(
      400,
      "wrong_sample_length",
      `the body is ${body.byteLength} bytes, not a whole number of samples of ${engine.inputSize} float32 (${sampleBytes} bytes each)`,
    );
  checkBatch(body.byteLength / sampleBytes, limits);
  const x = new Float32Array(body.byteLength / 4);
  if (LITTLE_ENDIAN) new Uint8Array(x.buffer).set(body);
  else {
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    for (let i = 0; i < x.length; i++) x[i] = v.getFloat32(4 * i, true);
  }
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]))
      throw new ClientError(
        400,
        "invalid_number",
        `float ${i % engine.inputSize} of sample ${Math.floor(i / engine.inputSize)} (byte ${4 * i}) is ${x[i]}; inputs must be finite`,
      );
  return x;
}

function jsonSamples(body: Uint8Array, engine: InferenceEngine, limits: ServeLimits): Float32Array {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new ClientError(
      400,
      "malformed_json",
      `the body is not valid JSON: ${(e as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || !("inputs" in value))
    throw new ClientError(
      400,
      "invalid_request",
      `the body must be a JSON object {"inputs": [...]}`,
    );
  const samples = splitSamples((value as { inputs: unknown }).inputs, engine.inputShape);
  checkBatch(samples.length, limits);
  const n = engine.inputSize;
  const x = new Float32Array(samples.length * n);
  samples.forEach((s, i) => writeSample(s, engine.inputShape, x, i * n, `inputs sample ${i}`));
  return x;
}

/**
 * The samples in `inputs`, told apart by nesting depth along first elements. For a [h, w, c] model:
 * 1 = one flat sample, 2 = flat samples, 3 = one nested sample, 4 = nested samples; for a
 * [features] model: 1 = one sample, 2 = samples (as `edgenn predict` reads its input files).
 */
function splitSamples(inputs: unknown, shape: readonly number[]): unknown[] {
  if (!Array.isArray(inputs))
    throw new ClientError(
      400,
      "invalid_request",
      `"inputs" must be an array, got ${typeOf(inputs)}`,
    );
  let d = 0;
  for (let v: unknown = inputs; Array.isArray(v); v = v[0]) {
    if (v.length === 0) {
      if (d === 0) return [];
      throw new ClientError(400, "wrong_sample_length", `"inputs" holds an empty array`);
    }
    d++;
  }
  const rank = shape.length;
  if (d === 1 || (rank > 1 && d === rank)) return [inputs];
  if (d === 2 || d === rank + 1) return inputs;
  throw new ClientError(
    400,
    "wrong_sample_length",
    `"inputs" must be one sample (${size(shape)} numbers, flat or nested as [${shape.join(", ")}]) or an array of samples; it is nested ${d} deep`,
  );
}

/** Writes one sample (flat, or nested exactly to `shape`) at out[at...], checking every value. */
function writeSample(
  sample: unknown,
  shape: readonly number[],
  out: Float32Array,
  at: number,
  what: string,
): void {
  const n = size(shape);
  let pos = at;
  const put = (v: unknown, path: string) => {
    const problem = float32InputProblem(v);
    if (problem) throw new ClientError(400, "invalid_number", `${what}${path} ${problem}`);
    out[pos++] = v as number;
  };
  if (!Array.isArray(sample))
    throw new ClientError(
      400,
      "wrong_sample_length",
      `${what} must be an array, got ${typeOf(sample)}`,
    );
  if (sample.length === n && !sample.some(Array.isArray)) {
    for (let i = 0; i < n; i++) put(sample[i], `[${i}]`);
    return;
  }
  const walk = (v: unknown, d: number, path: string): void => {
    if (d === shape.length) return put(v, path);
    if (!Array.isArray(v) || v.length !== shape[d])
      throw new ClientError(
        400,
        "wrong_sample_length",
        `${what}${path} must be an array of ${shape[d]}${Array.isArray(v) ? `, it has ${v.length}` : ""} (a sample is ${n} numbers, flat or nested as [${shape.join(", ")}])`,
      );
    for (let i = 0; i < v.length; i++) walk(v[i], d + 1, `${path}[${i}]`);
  };
  walk(sample, 0, "");
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function typeOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}
