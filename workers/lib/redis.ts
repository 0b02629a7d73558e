/**
 * @module
 * The Worker's Redis client: Upstash's REST client, pointed at Upstash in production and at the local
 * bridge (`scripts/redis-bridge.ts`) in dev and tests.
 */
import { Redis } from "@upstash/redis/cloudflare";

/** The bindings `createRedis` reads. */
export interface RedisEnv {
  UPSTASH_REDIS_REST_URL: string;
  UPSTASH_REDIS_REST_TOKEN: string;
}

export type RedisPingResult = { ok: true; latencyMs: number } | { ok: false; error: string };

/**
 * Builds a client from the per-request env. Values are JSON-(de)serialized automatically.
 *
 * @example
 * ```ts
 * const redis = createRedis(c.env);
 * await redis.set("otp:ada@example.com", "123456", { ex: 600 });
 * ```
 * @see https://upstash.com/docs/redis/sdks/ts/overview
 */
export function createRedis(env: RedisEnv): Redis {
  return new Redis({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN });
}

/** Round-trips a PING for health checks; failures are a value, never a throw. */
export async function pingRedis(redis: Pick<Redis, "ping">): Promise<RedisPingResult> {
  const startedAt = Date.now();
  try {
    await redis.ping();
    return { ok: true, latencyMs: Date.now() - startedAt };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}
