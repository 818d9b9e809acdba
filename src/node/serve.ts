// `edgenn serve`: the model over HTTP on 127.0.0.1 with the Cloudflare Worker's contract. Node's
// request and response are converted to web-standard Request/Response and handed to the same
// handler the Worker uses (src/serveHandler.ts), so both answer byte for byte alike.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import type { InferenceEngine } from "../engine.js";
import {
  DEFAULT_SERVE_LIMITS,
  handleRequest,
  jsonResponse,
  parseCorsPolicy,
  parseServeLimits,
  type CorsPolicy,
  type ServeLimits,
} from "../serveHandler.js";
import { InferenceEngine as NodeEngine, readModelFile } from "./engine.js";

export interface ServeOptions {
  /** A .enn file path, its bytes, or a loaded engine (whose maxBatch must cover limits.maxBatch). */
  model: string | Uint8Array | InferenceEngine;
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  maxBatch?: number;
  maxBodyBytes?: number;
  /** A request that has not finished arriving after this long is answered 408 (default 30 s). */
  requestTimeoutMs?: number;
  /** Browser origins whose pages may call the server (CORS): "*" or a comma-separated list. */
  cors?: string;
}

export interface RunningServer {
  url: string;
  port: number;
  engine: InferenceEngine;
  limits: ServeLimits;
  close: () => Promise<void>;
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const limits: ServeLimits = {
    maxBatch: opts.maxBatch ?? DEFAULT_SERVE_LIMITS.maxBatch,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_SERVE_LIMITS.maxBodyBytes,
  };
  const engine =
    typeof opts.model === "string" || opts.model instanceof Uint8Array
      ? NodeEngine.loadSync(
          typeof opts.model === "string" ? readModelFile(opts.model) : opts.model,
          { maxBatch: limits.maxBatch },
        )
      : opts.model;
  const cors = parseCorsPolicy(opts.cors);
  const host = opts.host ?? "127.0.0.1";
  const requestTimeout = opts.requestTimeoutMs ?? 30_000;
  const server = createServer(
    {
      requestTimeout,
      headersTimeout: Math.min(requestTimeout, 20_000),
      // Node checks the timeouts every 30 s by default: a stalled upload would wait that long.
      connectionsCheckingInterval: Math.min(5_000, Math.max(100, requestTimeout / 4)),
    },
    (req, res) => void serveOne(req, res, engine, limits, host, cors),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    engine,
    limits,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function serveOne(
  req: IncomingMessage,
  res: ServerResponse,
  engine: InferenceEngine,
  limits: ServeLimits,
  host: string,
  cors: CorsPolicy | undefined,
): Promise<void> {
  let response: Response;
  try {
    response = await handleRequest(toWebRequest(req, host), engine, limits, cors);
  } catch (e) {
    const err = e as Error;
    response = jsonResponse(500, {
      error: "internal_error",
      detail: `${err.name}: ${err.message}`,
    });
  }
  const body = req.method === "HEAD" ? undefined : new Uint8Array(await response.arrayBuffer());
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => (headers[k] = v));
  if (body) headers["content-length"] = String(body.byteLength);
  // An answer sent before the body finished arriving (413): close the connection rather than read
  // and throw away whatever the client still sends.
  if (!req.complete) headers["connection"] = "close";
  res.writeHead(response.status, headers);
  res.end(body);
}

/**
 * A web Request over Node's request. The body is a pull stream with backpressure: the handler
 * reads it chunk by chunk and may stop (cancel) at the size limit, leaving the rest unread.
 */
function toWebRequest(req: IncomingMessage, host: string): Request {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const url = `http://${req.headers.host ?? host}${req.url ?? "/"}`;
  const method = req.method ?? "GET";
  if (method === "GET" || method === "HEAD") return new Request(url, { method, headers });
  let done = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Buffer) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.on("end", () => {
        if (!done) controller.close();
        done = true;
      });
      req.on("error", (e) => {
        if (!done) controller.error(e);
        done = true;
      });
      req.on("aborted", () => {
        if (!done) controller.error(new Error("the client closed the connection"));
        done = true;
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      done = true;
      req.pause();
    },
  });
  return new Request(url, { method, headers, body, duplex: "half" } as RequestInit);
}

// ---- the command ---------------------------------------------------------------------------------

const USAGE =
  "usage: edgenn serve model.enn [--port P] [--max-batch N] [--max-body BYTES] [--cors ORIGINS]";

export interface ServeOut {
  log: (s: string) => void;
  err: (s: string) => void;
}

/**
 * Runs the server until SIGINT or SIGTERM (or `stop` resolves); returns the exit code.
 * 2: the command line is wrong; 1: the model cannot be served.
 */
export async function runServe(
  args: string[],
  out: ServeOut,
  stop?: Promise<void>,
): Promise<number> {
  let values: { port?: string; "max-batch"?: string; "max-body"?: string; cors?: string };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        port: { type: "string" },
        "max-batch": { type: "string" },
        "max-body": { type: "string" },
        cors: { type: "string" },
      },
    }));
    if (positionals.length !== 1) throw new Error("give one model file");
  } catch (e) {
    out.err(`edgenn serve: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  let port: number;
  let limits: ServeLimits;
  try {
    port = values.port === undefined ? 8080 : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new RangeError(`--port must be an integer from 0 to 65535, got "${values.port}"`);
    limits = parseServeLimits({ maxBatch: values["max-batch"], maxBodyBytes: values["max-body"] });
    parseCorsPolicy(values.cors);
  } catch (e) {
    out.err(
      `edgenn serve: ${(e as Error).message.replace(/^maxBatch/, "--max-batch").replace(/^maxBodyBytes/, "--max-body")}\n${USAGE}`,
    );
    return 2;
  }
  let server: RunningServer;
  try {
    server = await startServer({ model: positionals[0], port, ...limits, cors: values.cors });
  } catch (e) {
    const err = e as Error;
    out.err(
      `edgenn serve: ${err.name && err.name !== "Error" ? `${err.name}: ` : ""}${err.message}`,
    );
    return 1;
  }
  const e = server.engine;
  out.log(
    `edgenn serve: ${positionals[0]} (input [${e.inputShape.join(", ")}], output [${e.outputShape.join(", ")}]) on ${server.url}`,
  );
  out.log(
    `  POST ${server.url}/predict   GET ${server.url}/model   GET ${server.url}/healthz   (max batch ${limits.maxBatch}, max body ${limits.maxBodyBytes} bytes; Ctrl-C stops)`,
  );
  await new Promise<void>((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
    stop?.then(done);
  });
  await server.close();
  out.log("edgenn serve: stopped");
  return 0;
}
