/**
 * @module `npm run db:migrate`: applies migrations/ to DATABASE_URL.
 *
 * A loopback Postgres (or pglite-server) is reached through a temporary local WebSocket proxy, exactly as
 * the local Worker reaches it; any other host is treated as Neon and reached over its own WebSocket endpoint.
 */

import { runMigrations } from "./lib/migrate";
import { describeError } from "./lib/printable";
import { startWsProxy } from "./ws-proxy";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error(
      "DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/sinas?sslmode=disable)",
    );
    process.exit(2);
  }
  const local = LOOPBACK.has(new URL(databaseUrl).hostname);
  const proxy = local ? await startWsProxy({ port: 0 }) : undefined;
  try {
    await runMigrations({ databaseUrl, wsProxy: proxy?.address });
    console.log(`Migrations applied to ${new URL(databaseUrl).host}${new URL(databaseUrl).pathname}`);
  } finally {
    await proxy?.close();
  }
}

main().catch((error: unknown) => {
  console.error("Migration failed:", describeError(error));
  process.exit(1);
});
