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
      // A KV namespace for the test that serves a model from MODEL_KV.
      miniflare: { kvNamespaces: ["TEST_MODEL_KV"] },
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
