// The workerd tests: test/*.workers.test.ts run inside workerd through
// @cloudflare/vitest-pool-workers, against the Worker wrangler.toml describes (worker/edge.ts).
// This file must stay at the package root: the pool cannot load build/edgenn.wasm from outside the
// Vite root. vitest.config.ts runs it as the "workers" project beside the Node tests.
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      // Storage for the tests that serve a model from MODEL_KV / MODEL_BUCKET (named apart so the
      // Worker under SELF keeps serving its bundled model).
      miniflare: { kvNamespaces: ["TEST_MODEL_KV"], r2Buckets: ["TEST_MODEL_BUCKET"] },
    }),
  ],
  test: {
    name: "workers",
    include: ["test/**/*.workers.test.ts"],
    globalSetup: ["test/edgeSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
