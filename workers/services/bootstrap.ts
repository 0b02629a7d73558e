/**
 * @module Start-up work (sinas-spec §7.3 steps 2-3): default groups with their permissions (§3.5, D-2)
 * and the superadmin (§4.6, D-23). Workers have no start hook, so this runs once per isolate before the
 * first request that needs the database, and again after a failure.
 */
import { and, eq, sql } from "drizzle-orm";
import { ADMINS, DEFAULT_GROUP_NAMES, DEFAULT_GROUP_PERMISSIONS } from "../auth/default-groups";
import type { DbOrTx } from "../db/client";
import { groupMembers, groupPermissions, groups } from "../db/schema";
import type { Services } from "./services";
import { createUser, ensureMembership, findUserByEmail, normalizeEmail } from "./users";

/** Creates missing default groups and upserts their listed permissions (admin edits to those keys are reset). */
export async function ensureDefaultGroups(db: DbOrTx): Promise<Map<string, string>> {
  await db
    .insert(groups)
    .values(DEFAULT_GROUP_NAMES.map((name) => ({ name, description: `Default ${name} group` })))
    .onConflictDoNothing({ target: groups.name });
  const rows = await db.select({ id: groups.id, name: groups.name }).from(groups);
  const ids = new Map(rows.map((row) => [row.name, row.id]));
  const grants = DEFAULT_GROUP_NAMES.flatMap((name) =>
    Object.entries(DEFAULT_GROUP_PERMISSIONS[name] ?? {}).map(([permissionKey, permissionValue]) => ({
      groupId: ids.get(name) as string,
      permissionKey,
      permissionValue,
    })),
  );
  await db
    .insert(groupPermissions)
    .values(grants)
    .onConflictDoUpdate({
      target: [groupPermissions.groupId, groupPermissions.permissionKey],
      set: { permissionValue: sql`excluded.permission_value`, updatedAt: sql`now()` },
      setWhere: sql`${groupPermissions.permissionValue} is distinct from excluded.permission_value`,
    });
  return ids;
}

/** If Admins has no active member, SUPERADMIN_EMAIL becomes one (created if missing, without joining Users). */
export async function ensureSuperadmin(db: DbOrTx, email: string, adminsGroupId: string): Promise<void> {
  const [member] = await db
    .select({ id: groupMembers.id })
    .from(groupMembers)
    .where(and(eq(groupMembers.groupId, adminsGroupId), eq(groupMembers.active, true)))
    .limit(1);
  if (member) return;
  const user =
    (await findUserByEmail(db, email)) ??
    (await createUser(db, { email: normalizeEmail(email), groupName: null }).catch(async (error: unknown) => {
      const raced = await findUserByEmail(db, email);
      if (raced) return raced;
      throw error;
    }));
  await ensureMembership(db, { groupId: adminsGroupId, userId: user.id, role: "admin" });
}

let bootstrapped = false;

/**
 * Runs the start-up work until it has succeeded once in this isolate. Concurrent first requests each run
 * it (it is idempotent) rather than awaiting another request's promise, whose I/O could be cancelled
 * with that request.
 */
export async function ensureBootstrapped(services: Services): Promise<void> {
  if (bootstrapped) return;
  const db = services.db();
  const ids = await ensureDefaultGroups(db);
  const superadmin = services.config.SUPERADMIN_EMAIL;
  const adminsId = ids.get(ADMINS);
  if (superadmin && adminsId) await ensureSuperadmin(db, superadmin, adminsId);
  bootstrapped = true;
}
