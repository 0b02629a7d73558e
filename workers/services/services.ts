/**
 * @module The request-free half of the context: config, database and Redis, opened lazily.
 *
 * Middleware creates one `Services` per request and disposes it in `waitUntil`; tests and Durable Objects
 * call `createServices(env)` directly. Nothing here sees Hono's `Context`.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { createDb, type Database, type DbHandle, sharedHttpDb } from "../db/client";
import { type AppConfig, type Env, loadConfig } from "../env";
import { sharedRedis } from "../lib/redis";

export interface Services {
  readonly env: Env;
  readonly config: AppConfig;
  /** Opens the request's pool on first use. */
  db(): Database;
  /**
   * For single statements outside transactions, prepared ones (db/prepared.ts) above all: an isolate-wide
   * handle when such queries go over HTTP (it never connects, so requests may share it, and a statement is
   * prepared once per isolate), else the request's `db()`. Saves opening a request pool for a few reads.
   */
  statementDb(): Database;
  redis(): Redis;
  /**
   * Tracks work that runs after the response (the request log, `last_used_at` bookkeeping) so that
   * `dispose()` waits for it before closing the pool it uses. Resolves when `task` settles; never rejects,
   * so the caller handles `task`'s own failure. Pass the result to `waitUntil` as well.
   */
  runAfterResponse(task: Promise<unknown>): Promise<void>;
  /**
   * Closes the pool now (the next `db()` opens a new one). Handlers call it before waiting a long time,
   * e.g. for a synchronous run, so that waiting requests do not hold Postgres connections.
   */
  releaseDb(): Promise<void>;
  /** Waits for the tracked after-response work, then closes the pool. */
  dispose(): Promise<void>;
}

/** Config is parsed on first use, so routes that need no dependency (docs) work even when it is bad. */
export function createServices(env: Env, options: { maxConnections?: number } = {}): Services {
  let dbHandle: DbHandle | undefined;
  let statementHandle: Database | undefined;
  const pending = new Set<Promise<void>>();
  const releaseDb = async () => {
    const handle = dbHandle;
    dbHandle = undefined;
    await handle?.close().catch(() => {});
  };
  return {
    env,
    get config() {
      return loadConfig(env);
    },
    db() {
      const config = loadConfig(env);
      dbHandle ??= createDb({
        databaseUrl: config.DATABASE_URL,
        wsProxy: config.DB_WS_PROXY,
        maxConnections: options.maxConnections,
        httpQueries: config.DB_HTTP_QUERIES,
      });
      return dbHandle.db;
    },
    statementDb() {
      const config = loadConfig(env);
      if (!config.DB_HTTP_QUERIES) return this.db();
      statementHandle ??= sharedHttpDb({ databaseUrl: config.DATABASE_URL, wsProxy: config.DB_WS_PROXY });
      return statementHandle;
    },
    redis() {
      const config = loadConfig(env);
      return sharedRedis({
        UPSTASH_REDIS_REST_URL: config.UPSTASH_REDIS_REST_URL,
        UPSTASH_REDIS_REST_TOKEN: config.UPSTASH_REDIS_REST_TOKEN,
      });
    },
    runAfterResponse(task) {
      const settled = task.then(
        () => undefined,
        () => undefined,
      );
      pending.add(settled);
      void settled.then(() => pending.delete(settled));
      return settled;
    },
    releaseDb,
    async dispose() {
      // A task may register another while we wait (an insert after an auth bookkeeping write), hence the loop.
      while (pending.size > 0) await Promise.all(pending);
      await releaseDb();
    },
  };
}
