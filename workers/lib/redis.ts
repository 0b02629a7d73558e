/**
 * @module
 * The Worker's Redis client: Upstash's REST client, pointed at Upstash in production and at the local
 * bridge (`scripts/redis-bridge.ts`) in dev and tests.
 */
import { Redis } from "@upstash/redis/cloudflare";

/** The bindings `sharedRedis` reads. */
export interface RedisEnv {
  UPSTASH_REDIS_REST_URL: string;
  UPSTASH_REDIS_REST_TOKEN: string;
}

export type RedisPingResult = { ok: true; latencyMs: number } | { ok: false; error: string };

/**
 * Builds a client. Values are JSON-(de)serialized automatically. Auto-pipelining is off: it built a pipeline
 * object (hundreds of closures) per client and per command, and our commands are single calls or explicit
 * pipelines anyway. Telemetry is off: no SDK and platform headers on every call.
 * @see https://upstash.com/docs/redis/sdks/ts/overview
 */
function createRedis(env: RedisEnv): Redis {
  return new Redis({
    url: env.UPSTASH_REDIS_REST_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    enableAutoPipelining: false,
    enableTelemetry: false,
  });
}

const clients = new Map<string, Redis>();

/**
 * The isolate's client for these settings. Sharing one across requests is safe in a Worker: it holds no I/O
 * object (each command is a `fetch` of the request that sends it), only its settings.
 *
 * @example
 * ```ts
 * const redis = sharedRedis(c.env);
 * await redis.set("otp:ada@example.com", "123456", { ex: 600 });
 * ```
 */
export function sharedRedis(env: RedisEnv): Redis {
  const key = `${env.UPSTASH_REDIS_REST_URL}\n${env.UPSTASH_REDIS_REST_TOKEN}`;
  let client = clients.get(key);
  if (!client) {
    client = createRedis(env);
    clients.set(key, client);
  }
  return client;
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
