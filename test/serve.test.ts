// `edgenn serve` (src/node/serve.ts): the Worker's contract over Node's HTTP server on 127.0.0.1 —
// outputs identical to the engine's, every client mistake a 4xx JSON answer, the body limit held
// while the body streams in, concurrent requests each answered with their own outputs, and the
// command line.
import { mkdtempSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { exportModel } from "../src/export.js";
import { InferenceEngine } from "../src/node/engine.js";
import { runServe, startServer, type RunningServer } from "../src/node/serve.js";
import { FASHION_LABELS, mlpSpec } from "../src/referenceModels.js";
import { edgeInput } from "./edgeFixtures.js";
import { fakeModel, smallCnn } from "./exportFixtures.js";
import { loadKernels } from "../src/node/loadKernels.js";

const mlpBytes = exportModel(fakeModel(mlpSpec(), 3)).bytes;
const cnnBytes = exportModel(fakeModel(smallCnn, 6)).bytes;
const MAX_BATCH = 16;
const MAX_BODY = 512 * 1024;

interface PredictBody {
  outputs: number[][];
  argmax: number[];
  labels?: string[];
}
interface ErrorBody {
  error: string;
  detail: string;
}

let mlp: RunningServer;
let cnn: RunningServer;
let oracle: InferenceEngine;

beforeAll(async () => {
  mlp = await startServer({ model: mlpBytes, maxBatch: MAX_BATCH, maxBodyBytes: MAX_BODY });
  cnn = await startServer({ model: cnnBytes });
  oracle = InferenceEngine.loadSync(mlpBytes, { maxBatch: MAX_BATCH });
});
afterAll(async () => {
  await mlp?.close();
  await cnn?.close();
});

/**
 * Node's engine on its own, batched as the server batches a request (the GEMM's summation order
 * depends on the batch size, so the last bits of a sample's outputs may too).
 */
function want(xs: Float32Array[], engine = oracle): number[][] {
  const y = engine.predict(concat(xs), xs.length);
  const C = engine.outputSize;
  return xs.map((_, i) => Array.from(y.subarray(i * C, (i + 1) * C)));
}
function argmaxOf(row: number[]): number {
  return row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
}
function concat(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
  xs.forEach((x, i) => out.set(x, i * x.length));
  return out;
}
function postJson(body: unknown, server = mlp, path = "/predict"): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}
function postBinary(data: Float32Array | Uint8Array, server = mlp): Promise<Response> {
  return fetch(`${server.url}/predict`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream" },
    body: new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength),
  });
}
async function expectClientError(r: Promise<Response>, status: number, error: string) {
  const res = await r;
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const body = (await res.json()) as ErrorBody;
  expect(body.error).toBe(error);
  expect(body.detail.length).toBeGreaterThan(10);
  return { res, body };
}

describe("edgenn serve: routes", () => {
  it("listens on 127.0.0.1; GET /healthz and GET /model", async () => {
    expect(mlp.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${mlp.url}/healthz`)).json()).toEqual({ ok: true });
    const m = (await (await fetch(`${mlp.url}/model`)).json()) as Record<string, unknown>;
    expect(m.inputShape).toEqual([784]);
    expect(m.outputShape).toEqual([10]);
    expect(m.labels).toEqual(FASHION_LABELS);
    expect(m.limits).toEqual({ maxBatch: MAX_BATCH, maxBodyBytes: MAX_BODY });
    // The build the server's engine runs (Node 20 validates only the baseline one).
    expect(m.kernels).toBe(loadKernels().isa);
    const c = (await (await fetch(`${cnn.url}/model`)).json()) as Record<string, unknown>;
    expect(c.inputShape).toEqual([10, 9, 2]);
    expect(c.labels).toBeNull();
    const head = await fetch(`${mlp.url}/model`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("unknown route: 404; wrong method: 405 with Allow", async () => {
    await expectClientError(fetch(`${mlp.url}/predictions`), 404, "not_found");
    const { res } = await expectClientError(fetch(`${mlp.url}/predict`), 405, "method_not_allowed");
    expect(res.headers.get("allow")).toBe("POST");
    const del = await expectClientError(
      fetch(`${mlp.url}/healthz`, { method: "DELETE" }),
      405,
      "method_not_allowed",
    );
    expect(del.res.headers.get("allow")).toBe("GET, HEAD");
  });
});

describe("edgenn serve: outputs identical to the engine", () => {
  it("one sample, a full batch as JSON and as raw float32", async () => {
    const one = (await (
      await postJson({ inputs: Array.from(edgeInput(0)) })
    ).json()) as PredictBody;
    expect(one.outputs).toEqual(want([edgeInput(0)]));
    expect(one.argmax).toEqual([argmaxOf(one.outputs[0])]);
    expect(one.labels).toEqual([FASHION_LABELS[one.argmax[0]]]);
    const xs = Array.from({ length: MAX_BATCH }, (_, i) => edgeInput(i));
    const j = (await (
      await postJson({ inputs: xs.map((x) => Array.from(x)) })
    ).json()) as PredictBody;
    expect(j.outputs).toEqual(want(xs));
    const b = (await (await postBinary(concat(xs))).json()) as PredictBody;
    expect(b.outputs).toEqual(want(xs));
  });

  it("nested inputs for a [h, w, c] model: one sample, a batch, flat rows; no labels field", async () => {
    const cnnOracle = InferenceEngine.loadSync(cnnBytes);
    const xs = [0, 1, 2].map((i) => edgeInput(i, 180));
    const nest = (f: Float32Array) =>
      Array.from({ length: 10 }, (_, h) =>
        Array.from({ length: 9 }, (_, w) => [f[(h * 9 + w) * 2], f[(h * 9 + w) * 2 + 1]]),
      );
    const expected = want(xs, cnnOracle);
    const one = (await (await postJson({ inputs: nest(xs[0]) }, cnn)).json()) as PredictBody;
    expect(one.outputs).toEqual(expected.slice(0, 1));
    expect(one.labels).toBeUndefined();
    const batch = (await (await postJson({ inputs: xs.map(nest) }, cnn)).json()) as PredictBody;
    expect(batch.outputs).toEqual(expected);
    const flat = (await (
      await postJson({ inputs: xs.map((x) => Array.from(x)) }, cnn)
    ).json()) as PredictBody;
    expect(flat.outputs).toEqual(expected);
    const bad = nest(xs[0]);
    bad[3][4] = [1];
    const { body } = await expectClientError(
      postJson({ inputs: bad }, cnn),
      400,
      "wrong_sample_length",
    );
    expect(body.detail).toContain("[3][4]");
  });

  it("200 concurrent requests, each answered with its own sample's outputs", async () => {
    const n = 200;
    const answers = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const r =
          i % 2 === 0
            ? await postBinary(edgeInput(i))
            : await postJson({ inputs: [Array.from(edgeInput(i))] });
        expect(r.status).toBe(200);
        return (await r.json()) as PredictBody;
      }),
    );
    answers.forEach((a, i) => expect(a.outputs).toEqual(want([edgeInput(i)])));
    expect(new Set(answers.map((a) => a.argmax.join())).size).toBeGreaterThan(1);
  });
});

describe("edgenn serve: every client mistake is a 4xx JSON answer", () => {
  const x = Array.from(edgeInput(0));

  it("content type, JSON and number checks (the Worker's cases)", async () => {
    const cases: [Promise<Response>, number, string][] = [
      [
        fetch(`${mlp.url}/predict`, {
          method: "POST",
          headers: { "content-type": "text/csv" },
          body: "1,2",
        }),
        415,
        "unsupported_media_type",
      ],
      [
        fetch(`${mlp.url}/predict`, { method: "POST", body: new Uint8Array(4) }),
        415,
        "unsupported_media_type",
      ],
      [postJson('{"inputs": [0.1,'), 400, "malformed_json"],
      [postJson('"inputs"'), 400, "invalid_request"],
      [postJson({ inputs: 3 }), 400, "invalid_request"],
      [postJson({ inputs: [] }), 400, "empty_batch"],
      [postJson({ inputs: [[...x.slice(0, 99), "0.5", ...x.slice(100)]] }), 400, "invalid_number"],
      [postJson({ inputs: [...x.slice(0, 99), null, ...x.slice(100)] }), 400, "invalid_number"],
      [
        postJson(JSON.stringify({ inputs: x }).replace(/^\{"inputs":\[[^,]+/, '{"inputs":[-1e400')),
        400,
        "invalid_number",
      ],
      [postBinary(new Float32Array([...x.slice(0, 783), NaN])), 400, "invalid_number"],
      [postBinary(new Float32Array([...x.slice(0, 783), Infinity])), 400, "invalid_number"],
      [postJson({ inputs: x.slice(0, 783) }), 400, "wrong_sample_length"],
      [postJson({ inputs: [x, [...x, 0]] }), 400, "wrong_sample_length"],
      [postJson({ inputs: [[[x]]] }), 400, "wrong_sample_length"],
      [postBinary(new Uint8Array(784 * 4 * 2 + 2)), 400, "wrong_sample_length"],
      [postBinary(new Uint8Array(0)), 400, "empty_batch"],
      [
        postJson({ inputs: Array.from({ length: MAX_BATCH + 1 }, () => [0]) }),
        413,
        "batch_too_large",
      ],
      [postBinary(new Uint8Array(784 * 4 * (MAX_BATCH + 1))), 413, "batch_too_large"],
      [postBinary(new Uint8Array(MAX_BODY + 1)), 413, "body_too_large"],
    ];
    for (const [r, status, error] of cases) await expectClientError(r, status, error);
  });

  it("values beyond float32's range: 400 at the input, 422 when finite inputs overflow the model", async () => {
    // 1e39 is a finite double but Infinity as a float32; "1e999" parses to Infinity itself.
    const big = await expectClientError(
      postJson({ inputs: [[1e39, ...x.slice(1)]] }),
      400,
      "invalid_number",
    );
    expect(big.body.detail).toMatch(/sample 0\[0\] is 1e\+39, outside float32's range/);
    const inf = await expectClientError(
      postJson(JSON.stringify({ inputs: x }).replace(/^\{"inputs":\[[^,]+/, '{"inputs":[1e999')),
      400,
      "invalid_number",
    );
    expect(inf.body.detail).toMatch(/got Infinity/);
    // -1e38 is a valid float32, but 784 of them overflow the first dense layer: no class to name.
    for (const r of [
      postJson({ inputs: [x, new Array(784).fill(-1e38)] }),
      postBinary(new Float32Array(784).fill(-1e38)),
    ]) {
      const { body } = await expectClientError(r, 422, "non_finite_output");
      expect(body.detail).toMatch(/^sample \d: the model's output is not finite/);
    }
  });

  it("a body over the limit streamed without a length: 413 before the client stops sending", async () => {
    let sent = 0;
    const chunk = new Uint8Array(64 * 1024);
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        sent += chunk.byteLength;
        c.enqueue(chunk);
      },
    });
    const r = fetch(`${mlp.url}/predict`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: endless,
      duplex: "half",
    } as RequestInit);
    const { res } = await expectClientError(r, 413, "body_too_large");
    // The server stopped reading: the rest is refused with the connection, not buffered.
    expect(res.headers.get("connection")).toBe("close");
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it("a declared length over the limit is refused from the headers alone", async () => {
    // Headers only, no body sent: the answer must still come (no waiting for 10 MB).
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${mlp.url}/predict`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": 10_000_000 },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode!);
        req.destroy();
      });
      req.on("error", reject);
      req.flushHeaders();
    });
    expect(status).toBe(413);
  });

  it("a body that never finishes is answered 408 at the request timeout, not left hanging", async () => {
    const s = await startServer({ model: mlpBytes, requestTimeoutMs: 1000 });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${s.url}/predict`, {
          method: "POST",
          headers: { "content-type": "application/json", "content-length": 100 },
        });
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on("error", reject);
        req.write('{"inputs": [');
      });
      expect(status).toBe(408);
    } finally {
      await s.close();
    }
  });

  it("still answers correctly after all of that", async () => {
    const b = (await (await postJson({ inputs: x })).json()) as PredictBody;
    expect(b.outputs).toEqual(want([edgeInput(0)]));
  });
});

describe("edgenn serve: the command", () => {
  it("serves a model file until stopped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgenn-serve-"));
    const file = join(dir, "m.enn");
    writeFileSync(file, mlpBytes);
    const lines: string[] = [];
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const run = runServe(
      [file, "--port", "0", "--max-batch", "4"],
      { log: (s) => lines.push(s), err: (s) => lines.push(s) },
      stopped,
    );
    for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const url = /http:\/\/127\.0\.0\.1:\d+/.exec(lines[0])![0];
    const b = (await (
      await postJson({ inputs: x4() }, { url } as RunningServer)
    ).json()) as PredictBody;
    expect(b.outputs).toEqual(want([0, 1, 2, 3].map((i) => edgeInput(i))));
    await expectClientError(
      postJson({ inputs: [...x4(), x4()[0]] }, { url } as RunningServer),
      413,
      "batch_too_large",
    );
    stop();
    expect(await run).toBe(0);
    expect(lines.at(-1)).toBe("edgenn serve: stopped");
  });

  it("CORS: preflight and allowed origins when configured, no CORS headers otherwise", async () => {
    const page = "https://app.example";
    const listed = await startServer({ model: mlpBytes, cors: `${page}, http://localhost:5173` });
    const any = await startServer({ model: mlpBytes, cors: "*" });
    try {
      const preflight = await fetch(`${listed.url}/predict`, {
        method: "OPTIONS",
        headers: {
          origin: page,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe(page);
      expect(preflight.headers.get("access-control-allow-methods")).toBe("POST, OPTIONS");
      expect(preflight.headers.get("access-control-allow-headers")).toBe("content-type");
      expect(preflight.headers.get("vary")).toBe("Origin");
      const post = (origin: string, server: RunningServer, body: unknown = { inputs: x4() }) =>
        fetch(`${server.url}/predict`, {
          method: "POST",
          headers: { "content-type": "application/json", origin },
          body: JSON.stringify(body),
        });
      const ok = await post(page, listed);
      expect(ok.status).toBe(200);
      expect(ok.headers.get("access-control-allow-origin")).toBe(page);
      // Errors carry it too, so the page can read what it got wrong.
      const bad = await post(page, listed, { inputs: [] });
      expect(bad.status).toBe(400);
      expect(bad.headers.get("access-control-allow-origin")).toBe(page);
      // An origin not on the list gets no grant (the browser then withholds the answer).
      const other = await post("https://evil.example", listed);
      expect(other.headers.get("access-control-allow-origin")).toBeNull();
      expect(
        (await post("https://evil.example", any)).headers.get("access-control-allow-origin"),
      ).toBe("*");
      // Not configured: no CORS headers, and OPTIONS is not a method of /predict.
      const plainPost = await post(page, mlp);
      expect(plainPost.headers.get("access-control-allow-origin")).toBeNull();
      const plainOptions = await fetch(`${mlp.url}/predict`, { method: "OPTIONS" });
      expect(plainOptions.status).toBe(405);
    } finally {
      await listed.close();
      await any.close();
    }
    await expect(startServer({ model: mlpBytes, cors: "https://app.example/" })).rejects.toThrow(
      /CORS origin "https:\/\/app.example\/" is not an origin/,
    );
  });

  it("command-line and model-file mistakes: exit 2 and 1 with a message", async () => {
    const errs: string[] = [];
    const out = { log: () => {}, err: (s: string) => errs.push(s), isTTY: false, write: () => {} };
    expect(await main(["serve"], out)).toBe(2);
    expect(errs.at(-1)).toMatch(/give one model file\nusage: edgenn serve/);
    expect(await main(["serve", "m.enn", "--port", "http"], out)).toBe(2);
    expect(errs.at(-1)).toMatch(/--port must be an integer/);
    expect(await main(["serve", "m.enn", "--cors", "app.example"], out)).toBe(2);
    expect(errs.at(-1)).toMatch(/CORS origin "app.example" is not an origin/);
    expect(await main(["serve", "m.enn", "--max-batch", "0"], out)).toBe(2);
    expect(errs.at(-1)).toMatch(/--max-batch must be an integer from 1/);
    expect(await main(["serve", join(tmpdir(), "no-such-model.enn"), "--port", "0"], out)).toBe(1);
    expect(errs.at(-1)).toMatch(/no-such-model\.enn/);
    const dir = mkdtempSync(join(tmpdir(), "edgenn-serve-"));
    writeFileSync(join(dir, "bad.enn"), new Uint8Array(100));
    expect(await main(["serve", join(dir, "bad.enn"), "--port", "0"], out)).toBe(1);
    expect(errs.at(-1)).toMatch(/ModelFormatError/);
  });
});

function x4(): number[][] {
  return [0, 1, 2, 3].map((i) => Array.from(edgeInput(i)));
}
