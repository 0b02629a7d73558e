/**
 * @module Loading a user's effective group grants (sinas-spec §3.4): the union over active memberships,
 * read on every request so that changes apply immediately.
 */

import { and, eq, type SQL, type SQLWrapper, sql } from "drizzle-orm";
import { mergeGrants } from "../auth/permissions";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { jsonColumn } from "../db/json";
import { preparedOnce } from "../db/prepared";
import { groupMembers, groupPermissions, type PermissionMap, type User, users } from "../db/schema";

export interface UserGrants {
  permissions: PermissionMap;
  groupIds: string[];
}

/** One row per active membership and permission of its group (the permission null for a group without any). */
interface GrantRow {
  groupId: string | null;
  key: string | null;
  value: boolean | null;
}

function grantsOf(rows: GrantRow[]): UserGrants {
  const groupIds = [...new Set(rows.flatMap((row) => (row.groupId === null ? [] : [row.groupId])))];
  const grants = rows.flatMap((row) =>
    row.key === null || row.value === null ? [] : [{ key: row.key, value: row.value }],
  );
  return { permissions: mergeGrants(grants), groupIds };
}

const grantColumns = {
  groupId: groupMembers.groupId,
  key: groupPermissions.permissionKey,
  value: groupPermissions.permissionValue,
};

export async function loadUserGrants(db: Database, userId: string): Promise<UserGrants> {
  const rows = await db
    .select(grantColumns)
    .from(groupMembers)
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groupMembers.groupId))
    .where(and(eq(groupMembers.userId, userId), eq(groupMembers.active, true)));
  return grantsOf(rows);
}

const userWithGrantsStatement = preparedOnce((db) =>
  db
    .select({ user: users, ...grantColumns })
    .from(users)
    .leftJoin(groupMembers, and(eq(groupMembers.userId, users.id), eq(groupMembers.active, true)))
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groupMembers.groupId))
    .where(eq(users.id, sql.placeholder("userId")))
    .prepare("user_with_grants"),
);

/**
 * The user and their grants in one prepared statement (every request's authentication reads both); null
 * without the user.
 */
/** The principal of a user acting by their own grants (a JWT, or a chat's user in a tool call). */
export function userPrincipal(user: User, grants: UserGrants): Principal {
  return { user, permissions: grants.permissions, groupIds: grants.groupIds, method: "jwt", apiKeyId: null };
}

export async function loadUserWithGrants(
  db: Database,
  userId: string,
): Promise<{ user: User; grants: UserGrants } | null> {
  const rows = await userWithGrantsStatement(db).execute({ userId });
  const [first] = rows;
  return first ? { user: first.user, grants: grantsOf(rows) } : null;
}

/** `select group_id` of the user's active memberships, as a subquery for other queries (`in (...)`). */
export function activeGroupIdsOf(userId: SQLWrapper): SQL {
  return sql`select ${groupMembers.groupId} from ${groupMembers} where ${groupMembers.userId} = ${userId} and ${groupMembers.active}`;
}

/** The user's active group ids as one `json` column, for folding into a query that reads the user. */
export function activeGroupIdsSql(userId: SQLWrapper): SQL<string[]> {
  return sql<
    string[]
  >`(select coalesce(json_agg(g.group_id), '[]'::json) from (${activeGroupIdsOf(userId)}) g)`.mapWith(
    jsonColumn<string[]>,
  );
}
