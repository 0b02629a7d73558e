/**
 * @module API keys (sinas-spec §1.15, §4.4, D-12, D-14): random, shown once, stored hashed, holding a
 * subset of the creator's own group permissions (and, when created with an API key, of that key's).
 */
import { type AnyColumn, and, desc, eq, gt, isNull, or, type SQL, sql } from "drizzle-orm";
import { validatePermissionSubset } from "../auth/permissions";
import type { Principal } from "../auth/principal";
import { newOpaqueSecret } from "../auth/tokens";
import type { Database, DbTransaction } from "../db/client";
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
 * later one is refused (else a leaked key with an expiry could mint itself a key without one). Revocation
 * reaches it too (`revokeApiKey`).
 */
function expiryWithin(creator: ApiKey, requested: Date | null): Date | null {
  const limit = creator.expiresAt;
  if (!limit) return requested;
  if (!requested) return limit;
  if (requested > limit)
    throw new AppError(
      "BAD_REQUEST",
      `expires_at must not be later than the expiry of the API key creating it (${limit.toISOString()})`,
    );
  return requested;
}

/**
 * Serializes the key writes of one user (a key's descendants are all its owner's): a key minted with a key
 * while that key is being revoked is either in the tree the revocation reads or refused, never missed.
 */
async function lockUserKeys(tx: DbTransaction, userId: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`api_keys:${userId}`}, 0))`);
}

type NewKey = Omit<typeof apiKeys.$inferInsert, "expiresAt" | "parentKeyId">;

async function insertKey(db: Database, values: NewKey, expiresAt: Date | null): Promise<ApiKey> {
  const [key] = await db
    .insert(apiKeys)
    .values({ ...values, expiresAt })
    .returning();
  if (!key) throw new Error("insert returned no row");
  return key;
}

/** Inserts a key made with the key `parentId` if that key is still live, read under `lockUserKeys`. */
async function insertChildKey(
  db: Database,
  values: NewKey,
  parentId: string,
  requestedExpiry: Date | null,
): Promise<ApiKey> {
  return db.transaction(async (tx) => {
    await lockUserKeys(tx, values.userId);
    const [creator] = await tx
      .select()
      .from(apiKeys)
      .where(
        and(
          eq(apiKeys.id, parentId),
          eq(apiKeys.isActive, true),
          or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)),
        ),
      )
      .limit(1);
    if (!creator) throw new AppError("UNAUTHORIZED", "The API key creating this key is revoked or expired");
    const [key] = await tx
      .insert(apiKeys)
      .values({ ...values, expiresAt: expiryWithin(creator, requestedExpiry), parentKeyId: creator.id })
      .returning();
    if (!key) throw new Error("insert returned no row");
    return key;
  });
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
  const secret = await newOpaqueSecret();
  const values: NewKey = {
    userId: principal.user.id,
    name: input.name,
    keyHash: secret.hash,
    keyPrefix: secret.prefix,
    permissions: input.permissions,
    createdBy: principal.user.id,
  };
  // A key made with a key (or with a run's context token naming one) records it, so revocation reaches it.
  const parentId = principal.method === "api_key" ? principal.apiKeyId : undefined;
  const key = parentId
    ? await insertChildKey(db, values, parentId, input.expires_at ?? null)
    : await insertKey(db, values, input.expires_at ?? null);
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

/**
 * Revokes one of the caller's keys and every key made with it, at any depth (`parent_key_id`), in one
 * statement: a leaked key's offspring go with it, and authentication keeps reading only each key's own row.
 */
export async function revokeApiKey(db: Database, principal: Principal, keyId: string): Promise<void> {
  const tree = sql`with recursive tree(id) as (
      select k.id from ${apiKeys} k where k.id = ${keyId}::uuid and k.user_id = ${principal.user.id}::uuid
      union
      select child.id from ${apiKeys} child join tree on child.parent_key_id = tree.id
    ) select id from tree`;
  const revoked = await db.transaction(async (tx) => {
    await lockUserKeys(tx, principal.user.id);
    return tx
      .update(apiKeys)
      .set({
        isActive: false,
        revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())`,
        revokedBy: sql`coalesce(${apiKeys.revokedBy}, ${principal.user.id}::uuid)`,
      })
      .where(sql`${apiKeys.id} in (${tree})`)
      .returning({ id: apiKeys.id });
  });
  if (revoked.length === 0) throw new AppError("NOT_FOUND", "API key not found");
}
