/**
 * @module API keys (sinas-spec §1.15, §4.4, D-12, D-14): random, shown once, stored hashed, holding a
 * subset of the creator's own group permissions (and, when created with an API key, of that key's).
 */
import { type AnyColumn, and, desc, eq, type SQL, sql } from "drizzle-orm";
import { validatePermissionSubset } from "../auth/permissions";
import type { Principal } from "../auth/principal";
import { newOpaqueSecret } from "../auth/tokens";
import type { Database } from "../db/client";
import { type ApiKey, apiKeys, type PermissionMap } from "../db/schema";
import { AppError } from "../lib/errors";
import { loadUserGrants } from "./grants";

export function toApiKeyResponse(key: ApiKey) {
  return {
    id: key.id,
    user_id: key.userId,
    name: key.name,
    key_prefix: key.keyPrefix,
    permissions: key.permissions,
    is_active: key.isActive,
    last_used_at: key.lastUsedAt?.toISOString() ?? null,
    expires_at: key.expiresAt?.toISOString() ?? null,
    created_at: key.createdAt.toISOString(),
    revoked_at: key.revokedAt?.toISOString() ?? null,
  };
}

/**
 * SQL: true unless `keyId` names a key that is revoked or expired (null names none: the owner's login). For
 * the API key an owner's trigger runs with (`triggerApiKeyId`), read in the trigger's own query.
 */
export function runKeyUsableSql(keyId: AnyColumn | string | null): SQL<boolean> {
  const live = sql`${apiKeys.isActive} and (${apiKeys.expiresAt} is null or ${apiKeys.expiresAt} > now())`;
  return sql<boolean>`(${keyId}::uuid is null or exists (select 1 from ${apiKeys} where ${apiKeys.id} = ${keyId}::uuid and ${live}))`;
}

/**
 * Why a webhook without auth or a schedule does not run: the key its owner saved it with is revoked or expired.
 * Runs would get a context token that no longer authenticates, so nothing starts, and the error says the fix.
 */
export function runKeyRevokedError(trigger: "webhook" | "schedule"): AppError {
  return new AppError(
    "FORBIDDEN",
    `The API key this ${trigger} runs with (its owner's, saved with it) is revoked or expired; the owner must save the ${trigger} again, with a login or an active key`,
  );
}

/**
 * A key made with a key lives no longer than it: without `expires_at` it expires with the creating key, and a
 * later one is refused (else a leaked key with an expiry could mint itself a key without one).
 */
async function expiryWithin(
  db: Database,
  principal: Principal,
  requested: Date | null,
): Promise<Date | null> {
  if (principal.method !== "api_key" || !principal.apiKeyId) return requested;
  const [creator] = await db
    .select({ expiresAt: apiKeys.expiresAt })
    .from(apiKeys)
    .where(eq(apiKeys.id, principal.apiKeyId))
    .limit(1);
  const limit = creator?.expiresAt ?? null;
  if (!limit) return requested;
  if (!requested) return limit;
  if (requested > limit)
    throw new AppError(
      "BAD_REQUEST",
      `expires_at must not be later than the expiry of the API key creating it (${limit.toISOString()})`,
    );
  return requested;
}

/** Creates a key for the caller; a key can never hold more than the caller does (D-12). */
export async function createApiKey(
  db: Database,
  principal: Principal,
  input: { name: string; permissions: PermissionMap; expires_at?: Date | null },
) {
  if (input.expires_at && input.expires_at.getTime() <= Date.now()) {
    throw new AppError("BAD_REQUEST", "expires_at must be in the future");
  }
  const { permissions: grants } = await loadUserGrants(db, principal.user.id);
  const violations = new Set(validatePermissionSubset(input.permissions, grants).violations);
  if (principal.method === "api_key") {
    for (const key of validatePermissionSubset(input.permissions, principal.permissions).violations)
      violations.add(key);
  }
  if (violations.size > 0) {
    throw new AppError(
      "BAD_REQUEST",
      `API key permissions exceed user's group permissions. Violations: ${[...violations].join(", ")}`,
    );
  }
  const expiresAt = await expiryWithin(db, principal, input.expires_at ?? null);
  const secret = await newOpaqueSecret();
  const [key] = await db
    .insert(apiKeys)
    .values({
      userId: principal.user.id,
      name: input.name,
      keyHash: secret.hash,
      keyPrefix: secret.prefix,
      permissions: input.permissions,
      expiresAt,
      createdBy: principal.user.id,
    })
    .returning();
  if (!key) throw new Error("insert returned no row");
  return {
    id: key.id,
    name: key.name,
    key: secret.plain,
    api_key: secret.plain,
    key_prefix: key.keyPrefix,
    permissions: key.permissions,
    expires_at: key.expiresAt?.toISOString() ?? null,
    created_at: key.createdAt.toISOString(),
  };
}

export async function listApiKeys(db: Database, principal: Principal) {
  const rows = await db
    .select()
    .from(apiKeys)
    .where(eq(apiKeys.userId, principal.user.id))
    .orderBy(desc(apiKeys.createdAt));
  return rows.map(toApiKeyResponse);
}

/** The caller's own key; another user's key is "not found", never "forbidden". */
export async function getApiKey(db: Database, principal: Principal, keyId: string) {
  const [key] = await db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, keyId), eq(apiKeys.userId, principal.user.id)))
    .limit(1);
  if (!key) throw new AppError("NOT_FOUND", "API key not found");
  return toApiKeyResponse(key);
}

export async function revokeApiKey(db: Database, principal: Principal, keyId: string): Promise<void> {
  const revoked = await db
    .update(apiKeys)
    .set({
      isActive: false,
      revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())`,
      revokedBy: sql`coalesce(${apiKeys.revokedBy}, ${principal.user.id}::uuid)`,
    })
    .where(and(eq(apiKeys.id, keyId), eq(apiKeys.userId, principal.user.id)))
    .returning({ id: apiKeys.id });
  if (revoked.length === 0) throw new AppError("NOT_FOUND", "API key not found");
}
