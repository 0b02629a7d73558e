import { defineConfig } from "vitest/config";

// Node-side tests: the launcher's dev servers (WebSocket proxy, Redis bridge, SMTP sink), migrations and,
// later, the executor. They run against real processes and sockets, never mocks.
export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
