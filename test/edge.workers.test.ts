// The Cloudflare Worker (worker/edge.ts) inside real workerd: the same numbers as Node's engine,
// every client mistake a 4xx JSON answer, 200 concurrent requests each answered with its own
// outputs, and a model served from a KV binding. Expected outputs come from Node
// (test/edgeSetup.ts); inputs are regenerated here from the same seeds (test/edgeFixtures.ts).
import { SELF, env } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import kernels from "../build/edgenn.infer.wasm";
import { createEdgeWorker } from "../src/edgeWorker.js";
import {
  EDGE_INPUT_SIZE,
  EDGE_SAMPLES,
  KV_INPUT_SIZE,
  edgeInput,
  kvModelBytes,
} from "./edgeFixtures.js";

const expected = inject("edgeExpected");
const URL_BASE = "https://edge.test";
const FASHION = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

interface PredictBody {
  outputs: number[][];
  argmax: number[];
  labels?: string[];
}
interface ErrorBody {
  error: string;
  detail: string;
}

function postJson(body: unknown, path = "/predict"): Promise<Response> {
  return SELF.fetch(`${URL_BASE}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}
function postBinary(data: Float32Array | Uint8Array): Promise<Response> {
  return SELF.fetch(`${URL_BASE}/predict`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream" },
    body: new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength),
  });
}
function concat(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
function argmaxOf(row: number[]): number {
  return row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
}
/** Within 1e-6 of Node's engine (in practice bit-identical: the same kernels). */
function expectClose(got: number[][], want: number[][]): void {
  expect(got.length).toBe(want.length);
  got.forEach((row, i) => {
    expect(row.length).toBe(want[i].length);
    row.forEach((v, j) => expect(Math.abs(v - want[i][j])).toBeLessThanOrEqual(1e-6));
  });
}
async function expectClientError(r: Response | Promise<Response>, status: number, error: string) {
  const res = await r;
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const body = (await res.json()) as ErrorBody;
  expect(body.error).toBe(error);
  expect(typeof body.detail).toBe("string");
  expect(body.detail.length).toBeGreaterThan(10);
  return { res, body };
}

describe("edge worker in workerd: routes", () => {
  it("GET /healthz answers ok; HEAD too", async () => {
    const r = await SELF.fetch(`${URL_BASE}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ ok: true });
    const h = await SELF.fetch(`${URL_BASE}/healthz`, { method: "HEAD" });
    expect(h.status).toBe(200);
  });

  it("GET /model gives the header's metadata and the limits", async () => {
    const r = await SELF.fetch(`${URL_BASE}/model`);
    expect(r.status).toBe(200);
    const m = (await r.json()) as Record<string, unknown>;
    expect(m.inputShape).toEqual([784]);
    expect(m.outputShape).toEqual([10]);
    expect(m.labels).toEqual(FASHION);
    expect(m.inputNormalization).toEqual({ scale: 1, offset: 0 });
    expect(m.format).toBe("1.0");
    expect(m.limits).toEqual({
      maxBatch: Number(env.MAX_BATCH),
      maxBodyBytes: Number(env.MAX_BODY_BYTES),
    });
    expect((m.ops as { op: string }[]).map((o) => o.op)).toEqual(["dense", "dense", "dense"]);
  });

  it("unknown route: 404; wrong method: 405 with Allow", async () => {
    await expectClientError(SELF.fetch(`${URL_BASE}/`), 404, "not_found");
    await expectClientError(SELF.fetch(`${URL_BASE}/predict/x`), 404, "not_found");
    const { res } = await expectClientError(
      SELF.fetch(`${URL_BASE}/predict`),
      405,
      "method_not_allowed",
    );
    expect(res.headers.get("allow")).toBe("POST");
    const put = await expectClientError(
      SELF.fetch(`${URL_BASE}/model`, { method: "PUT", body: "x" }),
      405,
      "method_not_allowed",
    );
    expect(put.res.headers.get("allow")).toBe("GET, HEAD");
    await expectClientError(postJson({ inputs: [] }, "/healthz"), 405, "method_not_allowed");
  });
});

describe("edge worker in workerd: predictions equal Node's engine", () => {
  it("one sample as JSON: outputs, argmax and labels", async () => {
    const r = await postJson({ inputs: Array.from(edgeInput(0)) });
    expect(r.status).toBe(200);
    const b = (await r.json()) as PredictBody;
    expectClose(b.outputs, expected.bundled.slice(0, 1));
    expect(b.argmax).toEqual([argmaxOf(expected.bundled[0])]);
    expect(b.labels).toEqual([FASHION[b.argmax[0]]]);
  });

  it("a full batch (MAX_BATCH samples) as JSON and as raw float32", async () => {
    const n = Number(env.MAX_BATCH);
    const xs = Array.from({ length: n }, (_, i) => edgeInput(i));
    const want = expected.bundled.slice(0, n);
    const j = (await (
      await postJson({ inputs: xs.map((x) => Array.from(x)) })
    ).json()) as PredictBody;
    expectClose(j.outputs, want);
    expect(j.argmax).toEqual(want.map(argmaxOf));
    const r = await postBinary(concat(xs));
    expect(r.status).toBe(200);
    const b = (await r.json()) as PredictBody;
    expectClose(b.outputs, want);
    expect(b.outputs).toEqual(j.outputs);
  });

  it(`${EDGE_SAMPLES} concurrent requests, each answered with its own sample's outputs`, async () => {
    const answers = await Promise.all(
      Array.from({ length: EDGE_SAMPLES }, async (_, i) => {
        // Mix JSON and binary bodies and batch sizes so requests differ in every way.
        const r =
          i % 3 === 0
            ? await postBinary(edgeInput(i))
            : i % 3 === 1
              ? await postJson({ inputs: Array.from(edgeInput(i)) })
              : await postJson({
                  inputs: [Array.from(edgeInput(i)), Array.from(edgeInput(i - 1))],
                });
        expect(r.status).toBe(200);
        return (await r.json()) as PredictBody;
      }),
    );
    answers.forEach((a, i) => {
      const want =
        i % 3 === 2 ? [expected.bundled[i], expected.bundled[i - 1]] : [expected.bundled[i]];
      expectClose(a.outputs, want);
      expect(a.argmax).toEqual(want.map(argmaxOf));
    });
    // Distinct inputs really gave distinct answers (a leak would repeat one).
    expect(new Set(answers.map((a) => JSON.stringify(a.outputs[0]))).size).toBe(EDGE_SAMPLES);
  });
});

describe("edge worker in workerd: every client mistake is a 4xx JSON answer", () => {
  const x = Array.from(edgeInput(0));

  it("wrong or missing content type: 415", async () => {
    await expectClientError(
      SELF.fetch(`${URL_BASE}/predict`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "{}",
      }),
      415,
      "unsupported_media_type",
    );
    await expectClientError(
      SELF.fetch(`${URL_BASE}/predict`, { method: "POST", body: new Uint8Array(8) }),
      415,
      "unsupported_media_type",
    );
  });

  it("malformed JSON, not an object, no inputs, inputs not an array: 400", async () => {
    await expectClientError(postJson('{"inputs": [1, 2'), 400, "malformed_json");
    await expectClientError(postJson(""), 400, "malformed_json");
    await expectClientError(postJson("[1, 2, 3]"), 400, "invalid_request");
    await expectClientError(postJson({ input: x }), 400, "invalid_request");
    await expectClientError(postJson({ inputs: "0.5" }), 400, "invalid_request");
    await expectClientError(postJson({ inputs: [] }), 400, "empty_batch");
  });

  it("non-numbers and non-finite numbers: 400", async () => {
    for (const bad of ["0.5", null, true, { v: 1 }]) {
      const y = [...x];
      y[100] = bad as unknown as number;
      const { body } = await expectClientError(postJson({ inputs: [y] }), 400, "invalid_number");
      expect(body.detail).toContain("[100]");
    }
    // JSON has no NaN or Infinity, but 1e999 parses to Infinity.
    const inf = JSON.stringify({ inputs: x }).replace(/^\{"inputs":\[[^,]+/, '{"inputs":[1e999');
    await expectClientError(postJson(inf), 400, "invalid_number");
    const f = edgeInput(0);
    f[5] = NaN;
    await expectClientError(postBinary(f), 400, "invalid_number");
    f[5] = -Infinity;
    await expectClientError(postBinary(f), 400, "invalid_number");
  });

  it("wrong sample length (JSON) and a binary body that is not whole samples: 400", async () => {
    await expectClientError(postJson({ inputs: x.slice(1) }), 400, "wrong_sample_length");
    await expectClientError(postJson({ inputs: [x, x.slice(0, 10)] }), 400, "wrong_sample_length");
    await expectClientError(postJson({ inputs: [[x]] }), 400, "wrong_sample_length");
    await expectClientError(postJson({ inputs: [[]] }), 400, "wrong_sample_length");
    await expectClientError(
      postBinary(new Uint8Array(EDGE_INPUT_SIZE * 4 + 4)),
      400,
      "wrong_sample_length",
    );
    await expectClientError(postBinary(new Uint8Array(3)), 400, "wrong_sample_length");
    await expectClientError(postBinary(new Uint8Array(0)), 400, "empty_batch");
  });

  it("a batch over MAX_BATCH: 413", async () => {
    const n = Number(env.MAX_BATCH) + 1;
    await expectClientError(
      postJson({ inputs: Array.from({ length: n }, () => x) }),
      413,
      "batch_too_large",
    );
    await expectClientError(
      postBinary(new Float32Array(n * EDGE_INPUT_SIZE)),
      413,
      "batch_too_large",
    );
  });

  it("a body over MAX_BODY_BYTES: 413, also when streamed without a length (never read to the end)", async () => {
    const limit = Number(env.MAX_BODY_BYTES);
    await expectClientError(postBinary(new Uint8Array(limit + 1)), 413, "body_too_large");
    // An endless stream: the Worker must stop reading at the limit and answer, not hang. (When it
    // cancels the body, workerd logs "Network connection lost" for this sender's pump: expected.)
    let sent = 0;
    const chunk = new Uint8Array(64 * 1024);
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        sent += chunk.byteLength;
        c.enqueue(chunk);
      },
    });
    const { body } = await expectClientError(
      SELF.fetch(`${URL_BASE}/predict`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: endless,
      }),
      413,
      "body_too_large",
    );
    expect(body.detail).toContain(`${limit}`);
    expect(sent).toBeLessThan(limit + 16 * chunk.byteLength);
  });

  it("after all those mistakes the Worker still answers correctly", async () => {
    const b = (await (await postJson({ inputs: x })).json()) as PredictBody;
    expectClose(b.outputs, expected.bundled.slice(0, 1));
  });
});

describe("edge worker in workerd: model from a KV binding", () => {
  it("serves MODEL_KEY from MODEL_KV, nested inputs, the same numbers as Node", async () => {
    await env.TEST_MODEL_KV.put("models/cnn.enn", kvModelBytes());
    const worker = createEdgeWorker({ kernels });
    const kvEnv = { MODEL_KV: env.TEST_MODEL_KV, MODEL_KEY: "models/cnn.enn", MAX_BATCH: "8" };
    const call = (path: string, init?: RequestInit) =>
      worker.fetch(new Request(`${URL_BASE}${path}`, init), kvEnv);
    const m = (await (await call("/model")).json()) as {
      inputShape: number[];
      labels: string[];
      kernels: string;
    };
    expect(m.inputShape).toEqual([10, 9, 2]);
    // The Worker runs the baseline build on purpose: the same bits as Node 20's engine.
    expect(m.kernels).toBe("baseline");
    expect(m.labels).toEqual(["x", "y", "z"]);
    // Nested to the input shape [10, 9, 2].
    const nest = (f: Float32Array) =>
      Array.from({ length: 10 }, (_, h) =>
        Array.from({ length: 9 }, (_, w) => [f[(h * 9 + w) * 2], f[(h * 9 + w) * 2 + 1]]),
      );
    const xs = Array.from({ length: 8 }, (_, i) => edgeInput(i, KV_INPUT_SIZE));
    const r = await call("/predict", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: xs.map(nest) }),
    });
    expect(r.status).toBe(200);
    const b = (await r.json()) as PredictBody;
    expectClose(b.outputs, expected.kv);
    expect(b.labels).toEqual(expected.kv.map((row) => ["x", "y", "z"][argmaxOf(row)]));
  });

  it("serves MODEL_KEY from an R2 bucket (MODEL_BUCKET), raw float32 in", async () => {
    await env.TEST_MODEL_BUCKET.put("cnn.enn", kvModelBytes());
    const worker = createEdgeWorker({ kernels });
    const r2Env = { MODEL_BUCKET: env.TEST_MODEL_BUCKET, MODEL_KEY: "cnn.enn" };
    const xs = Array.from({ length: 8 }, (_, i) => edgeInput(i, KV_INPUT_SIZE));
    const r = await worker.fetch(
      new Request(`${URL_BASE}/predict`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: new Uint8Array(concat(xs).buffer as ArrayBuffer),
      }),
      r2Env,
    );
    expect(r.status).toBe(200);
    expectClose(((await r.json()) as PredictBody).outputs, expected.kv);
  });

  it("CORS_ORIGIN: preflight and an allowed origin's answer carry the grant", async () => {
    await env.TEST_MODEL_KV.put("models/cnn.enn", kvModelBytes());
    const worker = createEdgeWorker({ kernels });
    const page = "https://app.example";
    const corsEnv = { MODEL_KV: env.TEST_MODEL_KV, MODEL_KEY: "models/cnn.enn", CORS_ORIGIN: page };
    const pre = await worker.fetch(
      new Request(`${URL_BASE}/predict`, { method: "OPTIONS", headers: { origin: page } }),
      corsEnv,
    );
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe(page);
    expect(pre.headers.get("access-control-allow-methods")).toBe("POST, OPTIONS");
    const r = await worker.fetch(
      new Request(`${URL_BASE}/model`, { headers: { origin: "https://other.example" } }),
      corsEnv,
    );
    expect(r.status).toBe(200);
    expect(r.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("a missing KV key is the server's fault (503), and a client's 404 is still a 404", async () => {
    const worker = createEdgeWorker({ kernels });
    const kvEnv = { MODEL_KV: env.TEST_MODEL_KV, MODEL_KEY: "models/missing.enn" };
    const r = await worker.fetch(new Request(`${URL_BASE}/healthz`), kvEnv);
    expect(r.status).toBe(503);
    expect(((await r.json()) as ErrorBody).error).toBe("model_unavailable");
    expect((await worker.fetch(new Request(`${URL_BASE}/nope`), kvEnv)).status).toBe(404);
  });
});
