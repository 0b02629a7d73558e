/**
 * @module The request-free half of the context: config, database and Redis, opened lazily.
 *
 * Middleware creates one `Services` per request and disposes it in `waitUntil`; tests and Durable Objects
 * call `createServices(env)` directly. Nothing here sees Hono's `Context`.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { createDb, type Database, type DbHandle } from "../db/client";
import { type AppConfig, type Env, loadConfig } from "../env";
import { createRedis } from "../lib/redis";

export interface Services {
  readonly env: Env;
  readonly config: AppConfig;
  /** Opens the request's pool on first use. */
  db(): Database;
  redis(): Redis;
  dispose(): Promise<void>;
}

/** Config is parsed on first use, so routes that need no dependency (docs) work even when it is bad. */
export function createServices(env: Env): Services {
  let dbHandle: DbHandle | undefined;
  let redis: Redis | undefined;
  return {
    env,
    get config() {
      return loadConfig(env);
    },
    db() {
      const config = loadConfig(env);
      dbHandle ??= createDb({ databaseUrl: config.DATABASE_URL, wsProxy: config.DB_WS_PROXY });
      return dbHandle.db;
    },
    redis() {
      const config = loadConfig(env);
      redis ??= createRedis({
        UPSTASH_REDIS_REST_URL: config.UPSTASH_REDIS_REST_URL,
        UPSTASH_REDIS_REST_TOKEN: config.UPSTASH_REDIS_REST_TOKEN,
      });
      return redis;
    },
    async dispose() {
      const handle = dbHandle;
      dbHandle = undefined;
      await handle?.close().catch(() => {});
    },
  };
}
