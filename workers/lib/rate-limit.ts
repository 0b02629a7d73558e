/**
 * @module Sliding-window rate limits in Upstash Redis; a refusal becomes 429 with `Retry-After`.
 */
import { Ratelimit } from "@upstash/ratelimit";
import type { Redis } from "@upstash/redis/cloudflare";
import type { RateLimitSetting } from "../env";
import { AppError } from "./errors";

const limiters = new WeakMap<Redis, Map<string, Ratelimit>>();

/** One limiter per client, name and setting: it keeps nothing between calls (no in-isolate cache). */
function limiterFor(redis: Redis, name: string, setting: RateLimitSetting): Ratelimit {
  const byKey = limiters.get(redis) ?? new Map<string, Ratelimit>();
  limiters.set(redis, byKey);
  const key = `${name}:${setting.limit}/${setting.windowSeconds}`;
  let limiter = byKey.get(key);
  if (!limiter) {
    limiter = new Ratelimit({
      redis,
      prefix: `sinas:ratelimit:${name}`,
      limiter: Ratelimit.slidingWindow(setting.limit, `${setting.windowSeconds} s`),
      ephemeralCache: false,
      analytics: false,
    });
    byKey.set(key, limiter);
  }
  return limiter;
}

/**
 * Counts one request for `identifier` under limit `name`; throws 429 when over the limit. No in-isolate
 * cache is used, so Redis stays the single source of truth across isolates.
 */
export async function enforceRateLimit(
  redis: Redis,
  name: string,
  setting: RateLimitSetting,
  identifier: string,
): Promise<void> {
  const limiter = limiterFor(redis, name, setting);
  const { success, reset } = await limiter.limit(identifier);
  if (!success) {
    const retryAfter = Math.max(1, Math.ceil((reset - Date.now()) / 1000));
    throw new AppError("RATE_LIMITED", `Too many requests. Try again in ${retryAfter} seconds.`, {
      headers: { "Retry-After": String(retryAfter) },
    });
  }
}
