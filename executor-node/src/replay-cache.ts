/**
 * @module The `jti` replay cache of signed requests (PROTOCOL.md §1): in memory for one executor, or Redis
 * `SET NX EX` when EXECUTOR_REDIS_URL is set so several executors behind one URL refuse each other's replays.
 */
import { Redis } from "ioredis";

export interface ReplayCache {
  /** Records `jti` for `ttlSeconds`; false when it was already recorded (a replay). */
  claim(jti: string, ttlSeconds: number): Promise<boolean>;
  close(): Promise<void>;
}

export class ReplayCacheUnavailableError extends Error {
  override readonly name = "ReplayCacheUnavailableError";
}

/** A Map of jti -> expiry (ms), swept as it is used. */
export function createMemoryReplayCache(now: () => number = Date.now): ReplayCache {
  const seen = new Map<string, number>();
  let nextSweep = 0;
  const sweep = (at: number) => {
    if (at < nextSweep) return;
    nextSweep = at + 10_000;
    for (const [jti, expiresAt] of seen) if (expiresAt <= at) seen.delete(jti);
  };
  return {
    async claim(jti, ttlSeconds) {
      const at = now();
      sweep(at);
      const expiresAt = seen.get(jti);
      if (expiresAt !== undefined && expiresAt > at) return false;
      seen.set(jti, at + ttlSeconds * 1000);
      return true;
    },
    async close() {
      seen.clear();
    },
  };
}

const KEY_PREFIX = "sinas:executor:jti:";

export function createRedisReplayCache(url: string): ReplayCache {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true });
  redis.on("error", () => {
    // Reported per request by claim(); ioredis reconnects by itself.
  });
  return {
    async claim(jti, ttlSeconds) {
      try {
        const answer = await redis.set(`${KEY_PREFIX}${jti}`, "1", "EX", Math.max(1, ttlSeconds), "NX");
        return answer === "OK";
      } catch (error) {
        throw new ReplayCacheUnavailableError(
          `replay cache (Redis) unavailable: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    },
    async close() {
      redis.disconnect();
    },
  };
}
