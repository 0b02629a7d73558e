/**
 * @module Embedded Postgres for the launcher: PGlite behind pglite-socket's Postgres-protocol server.
 *
 * What pglite-socket's own CLI does, plus a start-up snapshot: creating a fresh PGlite runs initdb in
 * WebAssembly (~4.5 s of CPU in memory, ~6 s on disk), and every integration test file starts one. With
 * `--snapshot FILE`, a new database (in memory, or a folder without a cluster yet) is loaded from FILE, a
 * tarball of a freshly initialized data folder with every migration applied (~1 s in memory, ~2.3 s on
 * disk); when FILE does not exist yet it is made first: initdb, the migrations (drizzle's own migrator, as
 * `npm run db:migrate` applies them), dump. The launcher still runs its migrations afterwards, so a snapshot
 * never stands in for a migration it lacks.
 *
 * Plain JavaScript, run by node itself: loading it through tsx costs a second per start.
 *
 * Usage: node scripts/pglite-server.mjs --db memory:// | DIR --port 5481 [--max-connections 1024]
 *   [--snapshot FILE --migrations DIR]
 * Prints "PGlite listening on host:port" when ready; stops cleanly on SIGINT or SIGTERM.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";

const { values } = parseArgs({
  options: {
    db: { type: "string", default: "memory://" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "5432" },
    "max-connections": { type: "string", default: "1024" },
    snapshot: { type: "string" },
    migrations: { type: "string" },
  },
});

/** A fresh in-memory database with every migration, written to `file` (atomically: starts may race). */
async function makeSnapshot(file, migrationsFolder) {
  const fresh = await PGlite.create("memory://");
  await migrate(drizzle(fresh), { migrationsFolder });
  const dump = await fresh.dumpDataDir("none");
  await fresh.close();
  mkdirSync(dirname(file), { recursive: true });
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
  renameSync(partial, file);
}

/** A database folder that holds no cluster yet is made from the snapshot too. */
async function openDatabase() {
  const { db, snapshot, migrations } = values;
  const fresh = db === "memory://" || !existsSync(join(db, "PG_VERSION"));
  if (!fresh || !snapshot) return PGlite.create(db);
  if (!existsSync(snapshot)) {
    if (!migrations) throw new Error("--snapshot needs --migrations to make a missing snapshot");
    await makeSnapshot(snapshot, migrations);
  }
  return PGlite.create(db, { loadDataDir: new Blob([readFileSync(snapshot)]) });
}

const database = await openDatabase();
const server = new PGLiteSocketServer({
  db: database,
  host: values.host,
  port: Number(values.port),
  maxConnections: Number(values["max-connections"]),
});
await server.start();
console.log(`PGlite listening on ${values.host}:${values.port}`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop().catch(() => undefined);
  await database.close().catch(() => undefined);
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
// Started by the launcher: its pipe on stdin closes when the launcher dies, even by SIGKILL.
if (process.env.SINAS_STOP_WITH_LAUNCHER === "true") process.stdin.on("end", stop).on("error", stop).resume();
