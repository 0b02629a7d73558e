import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// Unit tests inside workerd, against the real Worker entry and its bindings. They cover pure logic and
// routes that need no outside service; everything else is tested black-box through `wrangler dev`
// (test/integration), because this pool allows eval where production workerd does not.
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          ENVIRONMENT: "test",
          // Unreachable on purpose: unit tests must not depend on a database or Redis.
          DATABASE_URL: "postgresql://nobody@127.0.0.1:9/none?sslmode=disable",
          DB_WS_PROXY: "127.0.0.1:9",
          UPSTASH_REDIS_REST_URL: "http://127.0.0.1:9",
          UPSTASH_REDIS_REST_TOKEN: "unit-test",
        },
      },
    }),
  ],
  test: {
    include: ["test/unit/**/*.test.ts"],
  },
});
