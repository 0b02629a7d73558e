/**
 * @module Sliding-window rate limits in Upstash Redis; a refusal becomes 429 with `Retry-After`.
 *
 * The window is the usual two-counter approximation (as @upstash/ratelimit's `slidingWindow`): the calls of
 * the current fixed window plus the previous window's, weighted by how much of it the sliding window still
 * covers, rounded up (rounded down, a window's turn let a burst through). One pipelined round trip per call and
 * no Lua: the local in-memory Redis runs every script in a fresh JavaScript Lua VM (~1 ms each), and a script
 * was one per webhook call. A refused call is taken back (a second round trip, on refusals only), so refusals
 * do not count against the limit.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { AppError } from "./errors";

/** `limit` calls per `windowSeconds` (parsed from settings like `60/1m` by `parseRateLimit` in env.ts). */
export interface RateLimitSetting {
  limit: number;
  windowSeconds: number;
}

/**
 * Counts one request for `identifier` under limit `name`; throws 429 when over the limit. Nothing is cached
 * in the isolate, so Redis stays the single source of truth across isolates.
 */
export async function enforceRateLimit(
  redis: Redis,
  name: string,
  setting: RateLimitSetting,
  identifier: string,
  now = Date.now(),
): Promise<void> {
  const windowMs = setting.windowSeconds * 1000;
  const window = Math.floor(now / windowMs);
  const current = `sinas:ratelimit:${name}:${identifier}:${window}`;
  const previous = `sinas:ratelimit:${name}:${identifier}:${window - 1}`;
  const [count, , before] = await redis
    .pipeline()
    .incr(current)
    // Kept while the next window still reads it as its previous one.
    .pexpire(current, windowMs * 2 + 1000)
    .get<number>(previous)
    .exec<[number, number, number | null]>();
  const stillCovered = 1 - (now - window * windowMs) / windowMs;
  // Rounded up: rounded down, the first call of a new window saw 3 calls made a millisecond earlier as 2, and a
  // limit of 3 let a fourth through at once (a CI run hit it at a window's turn).
  if (Math.ceil(Number(before ?? 0) * stillCovered) + count <= setting.limit) return;
  // Best effort: if the take-back fails, the count stays one high for this window, and the answer is a 429.
  await redis.decr(current).catch(() => undefined);
  const retryAfter = Math.max(1, Math.ceil(((window + 1) * windowMs - now) / 1000));
  throw new AppError("RATE_LIMITED", `Too many requests. Try again in ${retryAfter} seconds.`, {
    headers: { "Retry-After": String(retryAfter) },
  });
}
