/**
 * @module Idempotency keys in Redis: the first request to claim a key stores its execution id there
 * (`SET NX`, 24 h), and every repeat, concurrent or later, reads that id instead of starting another run.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { AppError } from "./errors";

/** How long a key remembers its execution (the usual 24 h of Stripe and others). */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
const PREFIX = "sinas:idempotency:";

export type IdempotencyClaim = { kind: "claimed" } | { kind: "repeat"; executionId: string };

/**
 * Claims `key` for `executionId`. `claimed`: this caller is first and must start `executionId`;
 * `repeat`: an earlier request owns the key, here is its execution id.
 *
 * @example
 * const claim = await claimIdempotencyKey(redis, `webhook:${webhook.id}:${user.id}:${key}`, executionId);
 * if (claim.kind === "repeat") return answerFor(claim.executionId);
 */
export async function claimIdempotencyKey(
  redis: Redis,
  key: string,
  executionId: string,
  ttlSeconds = IDEMPOTENCY_TTL_SECONDS,
): Promise<IdempotencyClaim> {
  // Two tries: the key may expire between a refused SET NX and the GET.
  for (let attempt = 0; attempt < 2; attempt++) {
    const set = await redis.set(PREFIX + key, executionId, { nx: true, ex: ttlSeconds });
    if (set === "OK") return { kind: "claimed" };
    const existing = await redis.get<string>(PREFIX + key);
    // Our own id: the SET landed but its answer was lost, and the client's retry was refused.
    if (existing === executionId) return { kind: "claimed" };
    if (existing) return { kind: "repeat", executionId: existing };
  }
  throw new AppError("CONFLICT", "The Idempotency-Key changed hands while it was read; retry the request");
}

/**
 * Gives the key up when its run never started (the request failed before any execution was recorded), so a
 * retry can run. Only deletes the key while it still names `executionId`.
 */
export async function releaseIdempotencyKey(redis: Redis, key: string, executionId: string): Promise<void> {
  await redis.eval(
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
    [PREFIX + key],
    [executionId],
  );
}
