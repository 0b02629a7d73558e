import { defineConfig } from "vitest/config";

// Black-box tests: each file boots the real stack (scripts/start.ts -> wrangler dev) on free ports with
// its own clean database, and talks HTTP to it.
export default defineConfig({
  test: {
    include: ["test/integration/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
