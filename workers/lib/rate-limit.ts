/**
 * @module Sliding-window rate limits in Upstash Redis; a refusal becomes 429 with `Retry-After`.
 */
import { Ratelimit } from "@upstash/ratelimit";
import type { Redis } from "@upstash/redis/cloudflare";
import type { RateLimitSetting } from "../env";
import { AppError } from "./errors";

/**
 * Counts one request for `identifier` under limit `name`; throws 429 when over the limit.
 * Built per call (cheap): the Redis client belongs to the request, and no in-isolate cache is used, so
 * Redis stays the single source of truth across isolates.
 */
export async function enforceRateLimit(
  redis: Redis,
  name: string,
  setting: RateLimitSetting,
  identifier: string,
): Promise<void> {
  const limiter = new Ratelimit({
    redis,
    prefix: `sinas:ratelimit:${name}`,
    limiter: Ratelimit.slidingWindow(setting.limit, `${setting.windowSeconds} s`),
    ephemeralCache: false,
    analytics: false,
  });
  const { success, reset } = await limiter.limit(identifier);
  if (!success) {
    const retryAfter = Math.max(1, Math.ceil((reset - Date.now()) / 1000));
    throw new AppError("RATE_LIMITED", `Too many requests. Try again in ${retryAfter} seconds.`, {
      headers: { "Retry-After": String(retryAfter) },
    });
  }
}
