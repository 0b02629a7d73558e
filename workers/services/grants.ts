/**
 * @module Loading a user's effective group grants (sinas-spec §3.4): the union over active memberships,
 * read on every request so that changes apply immediately.
 */
import { and, eq } from "drizzle-orm";
import { mergeGrants } from "../auth/permissions";
import type { Database } from "../db/client";
import { groupMembers, groupPermissions, type PermissionMap } from "../db/schema";

export interface UserGrants {
  permissions: PermissionMap;
  groupIds: string[];
}

export async function loadUserGrants(db: Database, userId: string): Promise<UserGrants> {
  const rows = await db
    .select({
      groupId: groupMembers.groupId,
      key: groupPermissions.permissionKey,
      value: groupPermissions.permissionValue,
    })
    .from(groupMembers)
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groupMembers.groupId))
    .where(and(eq(groupMembers.userId, userId), eq(groupMembers.active, true)));
  const groupIds = [...new Set(rows.map((row) => row.groupId))];
  const grants = rows.flatMap((row) =>
    row.key === null || row.value === null ? [] : [{ key: row.key, value: row.value }],
  );
  return { permissions: mergeGrants(grants), groupIds };
}
