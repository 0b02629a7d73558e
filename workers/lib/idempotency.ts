/**
 * @module Idempotency keys in Redis: the first request to claim a key stores its execution id there
 * (`SET NX`, 24 h), and every repeat, concurrent or later, reads that id instead of starting another run.
 */
import type { Redis } from "@upstash/redis/cloudflare";
import { AppError } from "./errors";

/** How long a key remembers its execution (the usual 24 h of Stripe and others). */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/**
 * How long a claim lives until its execution is recorded (`confirmIdempotencyKey`): a first request that dies
 * before that (its Worker killed mid-start) holds the key this long, not a day of 409s and unknown ids.
 */
export const PENDING_CLAIM_TTL_SECONDS = 60;
const PREFIX = "sinas:idempotency:";

export type IdempotencyClaim =
  | { kind: "claimed" }
  | { kind: "repeat"; executionId: string }
  /** The key was claimed for a different request (its fingerprint differs). */
  | { kind: "mismatch" };

export interface ClaimOptions {
  ttlSeconds?: number;
  /** What identifies the request (e.g. a hash of its method, path, query and body); stored beside the id. */
  fingerprint?: string;
}

/** The 422 naming the `Idempotency-Key` header: malformed, or reused for another request. */
export function idempotencyKeyError(msg: string, type: string): AppError {
  return new AppError("VALIDATION_FAILED", `header.idempotency-key: ${msg}`, {
    issues: [{ loc: ["header", "idempotency-key"], msg, type }],
  });
}

/** The key's value: the execution id, then the request's fingerprint when there is one. */
function claimValue(executionId: string, fingerprint: string | undefined): string {
  return fingerprint ? `${executionId} ${fingerprint}` : executionId;
}

/**
 * Claims `key` for `executionId`. `claimed`: this caller is first and must start `executionId`;
 * `repeat`: an earlier request owns the key, here is its execution id; `mismatch`: an earlier request with
 * another fingerprint owns it (the IETF Idempotency-Key draft answers that with 422).
 *
 * @example
 * const claim = await claimIdempotencyKey(redis, `webhook:${webhook.id}:${user.id}:${key}`, executionId);
 * if (claim.kind === "repeat") return answerFor(claim.executionId);
 */
export async function claimIdempotencyKey(
  redis: Redis,
  key: string,
  executionId: string,
  { ttlSeconds = IDEMPOTENCY_TTL_SECONDS, fingerprint }: ClaimOptions = {},
): Promise<IdempotencyClaim> {
  const value = claimValue(executionId, fingerprint);
  // Two tries: the key may expire between a refused SET NX and the GET.
  for (let attempt = 0; attempt < 2; attempt++) {
    const set = await redis.set(PREFIX + key, value, { nx: true, ex: ttlSeconds });
    if (set === "OK") return { kind: "claimed" };
    const existing = await redis.get<string>(PREFIX + key);
    // Our own value: the SET landed but its answer was lost, and the client's retry was refused.
    if (existing === value) return { kind: "claimed" };
    if (existing) {
      const space = existing.indexOf(" ");
      const firstId = space < 0 ? existing : existing.slice(0, space);
      // A key stored without a fingerprint (before fingerprints, or by a caller without one) matches any.
      const firstFingerprint = space < 0 ? undefined : existing.slice(space + 1);
      if (fingerprint && firstFingerprint !== undefined && firstFingerprint !== fingerprint) {
        return { kind: "mismatch" };
      }
      return { kind: "repeat", executionId: firstId };
    }
  }
  throw new AppError("CONFLICT", "The Idempotency-Key changed hands while it was read; retry the request");
}

/** The claim's execution is recorded: the key now remembers it for `ttlSeconds` (24 h). */
export async function confirmIdempotencyKey(
  redis: Redis,
  key: string,
  ttlSeconds = IDEMPOTENCY_TTL_SECONDS,
): Promise<void> {
  await redis.expire(PREFIX + key, ttlSeconds);
}

/**
 * Gives the key up when its run never started (the request failed before any execution was recorded), so a
 * retry can run. Only deletes the key while it still names `executionId`.
 */
export async function releaseIdempotencyKey(
  redis: Redis,
  key: string,
  executionId: string,
  fingerprint?: string,
): Promise<void> {
  await redis.eval(
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
    [PREFIX + key],
    [claimValue(executionId, fingerprint)],
  );
}
