/**
 * @module Request authentication (sinas-spec §4.5): a bearer JWT or an API key becomes a Principal.
 */
import { and, eq, gt, isNull, lt, or, type SQL, sql } from "drizzle-orm";
import type { Principal } from "../auth/principal";
import { verifyAccessToken } from "../auth/tokens";
import { apiKeys, type User, users } from "../db/schema";
import { requireSecret } from "../env";
import { sha256Hex } from "../lib/crypto";
import { AppError } from "../lib/errors";
import { ensureBootstrapped } from "./bootstrap";
import { activeGroupIdsSql, loadUserWithGrants, userPrincipal } from "./grants";
import type { Services } from "./services";

const INVALID_CREDENTIALS = "Invalid or expired credentials";

export interface Authentication {
  principal: Principal;
  /** Bookkeeping to run after the response (`last_login_at`, `last_used_at`). */
  afterResponse(): Promise<void>;
}

function ensureActive(user: User): void {
  if (!user.isActive) throw new AppError("UNAUTHORIZED", "User is inactive");
}

/** When this isolate last refreshed a user's `last_login_at` or a key's `last_used_at` (cleared when full). */
const touchedAt = new Map<string, number>();
const TOUCH_INTERVAL_MS = 60_000;
const MAX_TOUCHED = 10_000;

/**
 * Whether `key`'s bookkeeping write is due: at most once a minute per isolate, so that reads do not each
 * cost a write (the stored times may lag by up to a minute, `last_login_at` by up to two).
 */
function touchDue(key: string): boolean {
  const now = Date.now();
  if (now - (touchedAt.get(key) ?? 0) < TOUCH_INTERVAL_MS) return false;
  if (touchedAt.size >= MAX_TOUCHED) touchedAt.clear();
  touchedAt.set(key, now);
  return true;
}

/** `last_login_at` is refreshed at most once a minute (the statement only changes an older value). */
async function touchUser(services: Services, userId: string): Promise<void> {
  if (!touchDue(`user:${userId}`)) return;
  await services
    .db()
    .update(users)
    .set({ lastLoginAt: sql`now()` })
    .where(
      and(
        eq(users.id, userId),
        or(isNull(users.lastLoginAt), lt(users.lastLoginAt, sql`now() - interval '1 minute'`)),
      ),
    );
}

async function authenticateApiKey(services: Services, token: string): Promise<Authentication> {
  return keyAuthentication(services, eq(apiKeys.keyHash, await sha256Hex(token)));
}

/** The active, unexpired key `which` selects, as a Principal with the key's own permissions (sinas-spec §3.4). */
async function keyAuthentication(services: Services, which: SQL): Promise<Authentication> {
  const db = services.db();
  const [row] = await db
    .select({ key: apiKeys, user: users, groupIds: activeGroupIdsSql(users.id) })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(
      and(
        which,
        eq(apiKeys.isActive, true),
        or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)),
      ),
    )
    .limit(1);
  if (!row) throw new AppError("UNAUTHORIZED", INVALID_CREDENTIALS);
  ensureActive(row.user);
  return {
    principal: {
      user: row.user,
      permissions: row.key.permissions,
      groupIds: row.groupIds,
      method: "api_key",
      apiKeyId: row.key.id,
    },
    afterResponse: async () => {
      if (touchDue(`key:${row.key.id}`))
        await db.update(apiKeys).set({ lastUsedAt: sql`now()` }).where(eq(apiKeys.id, row.key.id));
      await touchUser(services, row.user.id);
    },
  };
}

/** The user a bearer token names, once its signature and expiry are checked; null when it is no valid JWT. */
export interface TokenUser {
  userId: string;
  email: string;
  /** When the token expires (ms since the epoch). */
  expiresAt: number;
  afterResponse(): Promise<void>;
}

/**
 * A bearer JWT's user without reading the user row or grants: for a service that checks the user itself in
 * its own first statement (a chat turn). Null for an API key or any token `authenticate` would refuse.
 */
export async function verifyTokenUser(services: Services, token: string): Promise<TokenUser | null> {
  await ensureBootstrapped(services);
  const check = await verifyAccessToken(token, requireSecret(services.config, "SECRET_KEY"));
  // A key's context token is checked against its key: `authenticate` does that.
  if (check.kind !== "valid" || check.claims.apiKeyId) return null;
  const { sub: userId, email } = check.claims;
  return { userId, email, expiresAt: check.expiresAt, afterResponse: () => touchUser(services, userId) };
}

export async function authenticate(services: Services, token: string): Promise<Authentication> {
  // Default groups and the superadmin must exist before any grant is read.
  await ensureBootstrapped(services);
  const check = await verifyAccessToken(token, requireSecret(services.config, "SECRET_KEY"));
  if (check.kind === "not_a_valid_jwt") return authenticateApiKey(services, token);
  if (check.kind === "bad_payload") throw new AppError("UNAUTHORIZED", "Invalid token payload");
  // A run's context token for a run started with an API key acts as that key while it is active, never as the user.
  const { apiKeyId } = check.claims;
  if (apiKeyId)
    return keyAuthentication(
      services,
      and(eq(apiKeys.id, apiKeyId), eq(apiKeys.userId, check.claims.sub)) as SQL,
    );
  // The token names the user, so the grants are read with the user row, not after it.
  const found = await loadUserWithGrants(services.statementDb(), check.claims.sub);
  if (!found) throw new AppError("UNAUTHORIZED", "User not found");
  const { user, grants } = found;
  ensureActive(user);
  return {
    principal: userPrincipal(user, grants),
    afterResponse: () => touchUser(services, user.id),
  };
}
