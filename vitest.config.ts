import { defineConfig } from "vitest/config";

// Two projects in one `vitest run`: the Node tests, and the workerd tests (test/*.workers.test.ts,
// configured in vitest.workers.config.ts, which must stay at the package root).
export default defineConfig({
  test: {
    // Under CI a JSON report too, from which .ci/run prints a plain "N passed, N failed" line.
    reporters: process.env.CI
      ? ["default", ["json", { outputFile: "test-results/vitest.json" }]]
      : ["default"],
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.workers.test.ts", "**/node_modules/**"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: "forks",
        },
      },
      "./vitest.workers.config.ts",
    ],
  },
});
