// The Cloudflare Worker's request handler, apart from the entry file so tests (and other entries)
// can make an instance with their own kernel module, model and bindings. worker/edge.ts is the
// entry: it imports the kernel module and the bundled model statically and exports one instance.
// Platform-neutral: the R2 and KV bindings are typed structurally (no @cloudflare/workers-types).
import { InferenceEngine } from "./engine.js";
import {
  handleRequest,
  jsonResponse,
  parseCorsPolicy,
  parseServeLimits,
  type CorsPolicy,
  type ServeLimits,
} from "./serveHandler.js";

/** The Worker's bindings (wrangler.toml [vars], [[r2_buckets]], [[kv_namespaces]]). */
export interface EdgeEnv {
  /** Most samples per request (default 64). */
  MAX_BATCH?: string;
  /** Most request body bytes (default 4 MiB). */
  MAX_BODY_BYTES?: string;
  /** Browser origins whose pages may call the Worker (CORS): "*" or a comma-separated list. */
  CORS_ORIGIN?: string;
  /** Serve MODEL_KEY from this R2 bucket instead of the bundled model. */
  MODEL_BUCKET?: { get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null> };
  /** Serve MODEL_KEY from this KV namespace instead of the bundled model. */
  MODEL_KV?: { get(key: string, type: "arrayBuffer"): Promise<ArrayBuffer | null> };
  MODEL_KEY?: string;
}

export interface EdgeWorkerOptions {
  /** The compiled kernel module (a static `import kernels from "edgenn.wasm"`). */
  kernels: WebAssembly.Module;
  /** The model bundled as a Data module, used when no R2/KV binding is configured. */
  model?: ArrayBuffer | Uint8Array;
}

export interface EdgeWorker {
  fetch(request: Request, env?: EdgeEnv): Promise<Response>;
}

interface Loaded {
  source: string;
  limits: ServeLimits;
  cors: CorsPolicy | undefined;
  engine: Promise<InferenceEngine>;
}

/** A model the Worker could not load: a server fault (503), never the client's. */
class ModelUnavailableError extends Error {
  override name = "ModelUnavailableError";
}

export function createEdgeWorker(options: EdgeWorkerOptions): EdgeWorker {
  // One engine per isolate: kernels instantiated and the model planned on the first request, then
  // reused. Concurrent first requests share the one pending load.
  let loaded: Loaded | undefined;

  function engineFor(env: EdgeEnv): Loaded {
    const source = modelSource(env);
    if (loaded && loaded.source === source.name) return loaded;
    const limits = parseServeLimits({ maxBatch: env.MAX_BATCH, maxBodyBytes: env.MAX_BODY_BYTES });
    const cors = parseCorsPolicy(env.CORS_ORIGIN);
    const engine = source
      .bytes()
      .then((bytes) =>
        InferenceEngine.load({ module: options.kernels, bytes }, { maxBatch: limits.maxBatch }),
      )
      .catch((e: Error) => {
        throw e instanceof ModelUnavailableError
          ? e
          : new ModelUnavailableError(
              `${source.name} model: ${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${e.message}`,
            );
      });
    const entry: Loaded = { source: source.name, limits, cors, engine };
    // A failed load is retried by the next request instead of being cached for the isolate's life.
    engine.catch(() => {
      if (loaded === entry) loaded = undefined;
    });
    loaded = entry;
    return entry;
  }

  function modelSource(env: EdgeEnv): {
    name: string;
    bytes: () => Promise<ArrayBuffer | Uint8Array>;
  } {
    const key = env.MODEL_KEY;
    if (env.MODEL_BUCKET && key) {
      const bucket = env.MODEL_BUCKET;
      return {
        name: `r2:${key}`,
        bytes: async () => {
          const obj = await bucket.get(key);
          if (!obj) throw new ModelUnavailableError(`R2 object "${key}" not found in MODEL_BUCKET`);
          return obj.arrayBuffer();
        },
      };
    }
    if (env.MODEL_KV && key) {
      const kv = env.MODEL_KV;
      return {
        name: `kv:${key}`,
        bytes: async () => {
          const b = await kv.get(key, "arrayBuffer");
          if (!b) throw new ModelUnavailableError(`KV key "${key}" not found in MODEL_KV`);
          return b;
        },
      };
    }
    const bundled = options.model;
    return {
      name: "bundled",
      bytes: async () => {
        if (!bundled)
          throw new ModelUnavailableError(
            `no model: bundle one as a Data module or bind MODEL_BUCKET or MODEL_KV with MODEL_KEY`,
          );
        return bundled;
      },
    };
  }

  return {
    async fetch(request: Request, env: EdgeEnv = {}): Promise<Response> {
      let entry: Loaded;
      try {
        entry = engineFor(env);
      } catch (e) {
        return jsonResponse(500, { error: "server_misconfigured", detail: (e as Error).message });
      }
      try {
        return await handleRequest(request, () => entry.engine, entry.limits, entry.cors);
      } catch (e) {
        // handleRequest answers every client mistake itself: what gets here is the server's fault.
        const err = e as Error;
        return e instanceof ModelUnavailableError
          ? jsonResponse(503, { error: "model_unavailable", detail: err.message })
          : jsonResponse(500, { error: "internal_error", detail: `${err.name}: ${err.message}` });
      }
    },
  };
}
