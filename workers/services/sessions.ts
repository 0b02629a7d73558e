/**
 * @module Token issuance, refresh rotation with reuse detection, and logout (sinas-spec §4.2-4.3).
 *
 * SINAS Edge rotates refresh tokens (the issue overrides SINAS's reusable tokens): each refresh returns a
 * new refresh token and retires the old one. Presenting a retired token again means it leaked (or a
 * client raced itself), so the whole family, every token descended from that login, is revoked.
 */
import { and, eq, sql } from "drizzle-orm";
import { newOpaqueSecret, signAccessToken } from "../auth/tokens";
import type { DbOrTx } from "../db/client";
import { refreshTokens, type User, users } from "../db/schema";
import { type AppConfig, requireSecret } from "../env";
import { sha256Hex } from "../lib/crypto";
import { AppError } from "../lib/errors";

const INVALID_REFRESH = "Invalid or expired refresh token";

export interface IssuedTokens {
  access_token: string;
  refresh_token: string;
  token_type: "bearer";
  expires_in: number;
}

export async function issueAccessToken(config: AppConfig, user: Pick<User, "id" | "email">) {
  const ttl = Math.max(1, Math.round(config.ACCESS_TOKEN_EXPIRE_MINUTES * 60));
  const token = await signAccessToken(
    { sub: user.id, email: user.email },
    requireSecret(config, "SECRET_KEY"),
    ttl,
  );
  return { access_token: token, token_type: "bearer" as const, expires_in: ttl };
}

async function insertRefreshToken(db: DbOrTx, config: AppConfig, userId: string, familyId: string) {
  const secret = await newOpaqueSecret();
  const [row] = await db
    .insert(refreshTokens)
    .values({
      userId,
      familyId,
      tokenHash: secret.hash,
      tokenPrefix: secret.prefix,
      expiresAt: sql`now() + make_interval(days => ${config.REFRESH_TOKEN_EXPIRE_DAYS})`,
    })
    .returning({ id: refreshTokens.id });
  if (!row) throw new Error("refresh token insert returned no row");
  return { id: row.id, plain: secret.plain };
}

/** Access + refresh token for a fresh login (a new token family). */
export async function issueSession(db: DbOrTx, config: AppConfig, user: User): Promise<IssuedTokens> {
  const refresh = await insertRefreshToken(db, config, user.id, crypto.randomUUID());
  return { ...(await issueAccessToken(config, user)), refresh_token: refresh.plain };
}

async function revokeFamily(db: DbOrTx, familyId: string): Promise<void> {
  await db
    .update(refreshTokens)
    .set({ isRevoked: true, revokedAt: sql`coalesce(${refreshTokens.revokedAt}, now())` })
    .where(eq(refreshTokens.familyId, familyId));
}

/** Exchanges a refresh token for a new access token and a new refresh token. */
export async function refreshSession(
  db: DbOrTx,
  config: AppConfig,
  plainToken: string,
): Promise<IssuedTokens> {
  const hash = await sha256Hex(plainToken);
  const [current] = await db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, hash)).limit(1);
  if (!current) throw new AppError("UNAUTHORIZED", INVALID_REFRESH);
  if (current.isRevoked) {
    if (current.replacedBy) await revokeFamily(db, current.familyId);
    throw new AppError("UNAUTHORIZED", INVALID_REFRESH);
  }
  if (current.expiresAt.getTime() <= Date.now()) throw new AppError("UNAUTHORIZED", INVALID_REFRESH);
  const [user] = await db.select().from(users).where(eq(users.id, current.userId)).limit(1);
  if (!user) throw new AppError("UNAUTHORIZED", INVALID_REFRESH);
  if (!user.isActive) throw new AppError("UNAUTHORIZED", "User is inactive");

  const next = await insertRefreshToken(db, config, user.id, current.familyId);
  // Claim the old token atomically: of two concurrent refreshes, only one wins; the other sees reuse.
  const claimed = await db
    .update(refreshTokens)
    .set({ isRevoked: true, revokedAt: sql`now()`, replacedBy: next.id, lastUsedAt: sql`now()` })
    .where(and(eq(refreshTokens.id, current.id), eq(refreshTokens.isRevoked, false)))
    .returning({ id: refreshTokens.id });
  if (claimed.length === 0) {
    await revokeFamily(db, current.familyId);
    throw new AppError("UNAUTHORIZED", INVALID_REFRESH);
  }
  await db.update(users).set({ lastLoginAt: sql`now()` }).where(eq(users.id, user.id));
  return { ...(await issueAccessToken(config, user)), refresh_token: next.plain };
}

/** Revokes the token's whole family (the login session). Unknown token: 404; already revoked: fine. */
export async function logout(db: DbOrTx, plainToken: string): Promise<void> {
  const hash = await sha256Hex(plainToken);
  const [row] = await db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, hash)).limit(1);
  if (!row) throw new AppError("NOT_FOUND", "Refresh token not found");
  await revokeFamily(db, row.familyId);
}
