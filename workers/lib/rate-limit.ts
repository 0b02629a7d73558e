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
  if (weightedCount(Number(before ?? 0), now, windowMs) + count <= setting.limit) return;
  // Best effort: if the take-back fails, the count stays one high for this window, and the answer is a 429.
  await redis.decr(current).catch(() => undefined);
  const retryAfter = secondsUntilAdmitted(setting, now, count - 1, Number(before ?? 0));
  throw new AppError("RATE_LIMITED", `Too many requests. Try again in ${retryAfter} seconds.`, {
    headers: { "Retry-After": String(retryAfter) },
  });
}

/**
 * The previous window's calls as the sliding window still counts them at `at`: weighted by how much of that
 * window it covers, rounded up (rounded down, the first call of a new window saw 3 calls made a millisecond
 * earlier as 2, and a limit of 3 let a fourth through at once: a CI run hit it at a window's turn).
 */
function weightedCount(previous: number, at: number, windowMs: number): number {
  const stillCovered = 1 - (at % windowMs) / windowMs;
  return Math.ceil(previous * stillCovered);
}

/**
 * Seconds until one more call passes if no other is counted meanwhile (the `Retry-After`): later in this
 * window, once the previous window weighs little enough, or in the next one, where this window's `counted`
 * calls become the previous ones. Not simply the window's end: a client that retried then was refused again.
 */
export function secondsUntilAdmitted(
  setting: RateLimitSetting,
  now: number,
  counted: number,
  previous: number,
): number {
  const windowMs = setting.windowSeconds * 1000;
  const windowStart = now - (now % windowMs);
  const nextStart = windowStart + windowMs;
  const admits = (at: number) =>
    at < nextStart
      ? weightedCount(previous, at, windowMs) + counted + 1 <= setting.limit
      : weightedCount(counted, at, windowMs) + 1 <= setting.limit;
  // Where the weighted count first fits, solved for the covered fraction, then checked with the very formula
  // the limit uses (a float a hair above an integer would round up): a few milliseconds later at most. From
  // the window after next, this window's calls no longer count at all.
  const room = setting.limit - 1 - counted;
  const inThisWindow = room >= 0 && previous > 0 ? windowStart + (1 - room / previous) * windowMs : Infinity;
  const inNextWindow = nextStart + Math.max(0, 1 - (setting.limit - 1) / Math.max(counted, 1)) * windowMs;
  let at = Math.max(now + 1, Math.ceil(Math.min(inThisWindow, inNextWindow)));
  for (let step = 0; step < 1000 && at < nextStart + windowMs && !admits(at); step++) at++;
  return Math.max(1, Math.ceil((at - now) / 1000));
}
