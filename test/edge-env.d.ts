// The parts of @cloudflare/vitest-pool-workers' "cloudflare:test" module the workerd tests use,
// typed here because the package's own declarations need @cloudflare/workers-types.
declare module "cloudflare:test" {
  /** The Worker wrangler.toml describes (worker/edge.ts), called without a network. */
  export const SELF: {
    fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  };
  /** Its bindings (wrangler.toml vars plus the test config's miniflare additions). */
  export const env: {
    MAX_BATCH: string;
    MAX_BODY_BYTES: string;
    TEST_MODEL_KV: {
      get(key: string, type: "arrayBuffer"): Promise<ArrayBuffer | null>;
      put(key: string, value: ArrayBuffer | Uint8Array): Promise<void>;
    };
    TEST_MODEL_BUCKET: {
      get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null>;
      put(key: string, value: ArrayBuffer | Uint8Array): Promise<unknown>;
    };
  };
}
