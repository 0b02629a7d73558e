/**
 * @module Groups, memberships and group permissions (sinas-spec §1.14).
 */
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import { can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import { ADMINS, DEFAULT_GROUP_NAMES } from "../auth/default-groups";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  type Group,
  type GroupMember,
  type GroupPermission,
  groupMembers,
  groupPermissions,
  groups,
  users,
} from "../db/schema";
import { AppError } from "../lib/errors";
import { ensureMembership } from "./users";

export interface GroupInput {
  name: string;
  description?: string | null;
  email_domain?: string | null;
  external_group_id?: string | null;
}

export function toGroupResponse(group: Group) {
  return {
    id: group.id,
    name: group.name,
    description: group.description,
    email_domain: group.emailDomain,
    external_group_id: group.externalGroupId,
    created_at: group.createdAt.toISOString(),
    updated_at: group.updatedAt.toISOString(),
  };
}

export function toMemberResponse(member: GroupMember, userEmail: string) {
  return {
    id: member.id,
    group_id: member.groupId,
    user_id: member.userId,
    user_email: userEmail,
    role: member.role,
    active: member.active,
    added_at: member.addedAt.toISOString(),
  };
}

export function toPermissionResponse(row: GroupPermission) {
  return {
    id: row.id,
    group_id: row.groupId,
    permission_key: row.permissionKey,
    permission_value: row.permissionValue,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export async function findGroup(db: Database, name: string): Promise<Group> {
  const [group] = await db.select().from(groups).where(eq(groups.name, name)).limit(1);
  if (!group) throw new AppError("NOT_FOUND", `Group '${name}' not found`);
  return group;
}

/** Readable by holders of `sinas.groups.get:all` and by active members. */
export async function findReadableGroup(db: Database, principal: Principal, name: string): Promise<Group> {
  const group = await findGroup(db, name);
  if (!can(principal, permissions.groups("get", "all")) && !principal.groupIds.includes(group.id)) {
    throw new AppError("FORBIDDEN", "Not authorized to view this group");
  }
  return group;
}

/** The unique constraint on `groups.external_group_id` (migrations/0000_init.sql); the other one is the name's. */
const EXTERNAL_ID_UNIQUE = "groups_external_group_id_unique";

/** The constraint a Postgres error names, read through drizzle's wrapper (`cause`) as db/errors.ts does. */
function violatedConstraint(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth++) {
    const constraint = (current as { constraint?: unknown }).constraint;
    if (typeof constraint === "string") return constraint;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function externalIdTaken(externalGroupId: string | null | undefined): AppError {
  return new AppError("BAD_REQUEST", `Group with external_group_id '${externalGroupId}' already exists`);
}

export async function createGroup(db: Database, principal: Principal, input: GroupInput): Promise<Group> {
  try {
    return await db.transaction(async (tx) => {
      const [group] = await tx
        .insert(groups)
        .values({
          name: input.name,
          description: input.description ?? null,
          emailDomain: input.email_domain ?? null,
          externalGroupId: input.external_group_id ?? null,
        })
        .returning();
      if (!group) throw new Error("insert returned no row");
      await ensureMembership(tx, {
        groupId: group.id,
        userId: principal.user.id,
        role: "admin",
        addedBy: principal.user.id,
      });
      return group;
    });
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    if (violatedConstraint(error) === EXTERNAL_ID_UNIQUE) throw externalIdTaken(input.external_group_id);
    throw new AppError("BAD_REQUEST", `Group '${input.name}' already exists`);
  }
}

function isDefaultGroupName(name: string): boolean {
  return (DEFAULT_GROUP_NAMES as readonly string[]).includes(name);
}

export async function listGroups(db: Database, principal: Principal, page: { skip: number; limit: number }) {
  const query = db.select().from(groups).orderBy(asc(groups.name)).offset(page.skip).limit(page.limit);
  if (can(principal, permissions.groups("get", "all"))) return query;
  if (principal.groupIds.length === 0) return [];
  return query.where(inArray(groups.id, principal.groupIds));
}

/**
 * Updates a group. A default group keeps its name and no group takes one: the Admins protections and the
 * start-up grants (bootstrap.ts) find the default groups by name, so a rename would move `sinas.*:all` to
 * whichever group carried the name next.
 */
export async function updateGroup(db: Database, name: string, input: Partial<GroupInput>): Promise<Group> {
  const group = await findGroup(db, name);
  if (input.name !== undefined && input.name !== group.name) {
    if (isDefaultGroupName(group.name))
      throw new AppError("FORBIDDEN", `Cannot rename default group '${group.name}'`);
    if (isDefaultGroupName(input.name))
      throw new AppError("FORBIDDEN", `'${input.name}' is the name of a default group`);
  }
  try {
    const [updated] = await db
      .update(groups)
      .set({
        ...(input.name !== undefined && { name: input.name }),
        ...(input.description !== undefined && { description: input.description }),
        ...(input.email_domain !== undefined && { emailDomain: input.email_domain }),
        ...(input.external_group_id !== undefined && { externalGroupId: input.external_group_id }),
      })
      .where(eq(groups.id, group.id))
      .returning();
    return updated ?? group;
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    if (violatedConstraint(error) === EXTERNAL_ID_UNIQUE) throw externalIdTaken(input.external_group_id);
    throw new AppError("BAD_REQUEST", `Group name '${input.name}' already exists`);
  }
}

/**
 * Deletes a group with its memberships, permissions and group states; resources keep existing, ungrouped.
 * The default groups are refused: every user's baseline grants live there.
 */
export async function deleteGroup(db: Database, name: string): Promise<void> {
  const group = await findGroup(db, name);
  if (isDefaultGroupName(group.name)) {
    throw new AppError("FORBIDDEN", `Cannot delete default group '${group.name}'`);
  }
  await db.delete(groups).where(eq(groups.id, group.id));
}

export async function listMembers(db: Database, groupId: string) {
  const rows = await db
    .select({ member: groupMembers, email: users.email })
    .from(groupMembers)
    .innerJoin(users, eq(users.id, groupMembers.userId))
    .where(and(eq(groupMembers.groupId, groupId), eq(groupMembers.active, true)))
    .orderBy(asc(groupMembers.addedAt));
  return rows.map((row) => toMemberResponse(row.member, row.email));
}

export async function addMember(
  db: Database,
  principal: Principal,
  group: Group,
  input: { user_id: string; role: string },
) {
  const [user] = await db.select().from(users).where(eq(users.id, input.user_id)).limit(1);
  if (!user) throw new AppError("NOT_FOUND", "User not found");
  const [existing] = await db
    .select()
    .from(groupMembers)
    .where(and(eq(groupMembers.groupId, group.id), eq(groupMembers.userId, user.id)))
    .limit(1);
  if (existing?.active) throw new AppError("BAD_REQUEST", "User is already a member of this group");
  const [member] = existing
    ? await db
        .update(groupMembers)
        .set({
          active: true,
          role: input.role,
          addedBy: principal.user.id,
          addedAt: sql`now()`,
          removedAt: null,
          removedBy: null,
        })
        .where(eq(groupMembers.id, existing.id))
        .returning()
    : await db
        .insert(groupMembers)
        .values({ groupId: group.id, userId: user.id, role: input.role, addedBy: principal.user.id })
        .onConflictDoNothing()
        .returning();
  if (!member) throw new AppError("BAD_REQUEST", "User is already a member of this group");
  return toMemberResponse(member, user.email);
}

export async function removeMember(
  db: Database,
  principal: Principal,
  group: Group,
  userId: string,
): Promise<void> {
  if (group.name === ADMINS) throw new AppError("FORBIDDEN", "Cannot remove members from Admins group");
  const removed = await db
    .update(groupMembers)
    .set({ active: false, removedAt: sql`now()`, removedBy: principal.user.id })
    .where(
      and(eq(groupMembers.groupId, group.id), eq(groupMembers.userId, userId), eq(groupMembers.active, true)),
    )
    .returning({ id: groupMembers.id });
  if (removed.length === 0) throw new AppError("NOT_FOUND", "Membership not found");
}

export async function listGroupPermissions(db: Database, groupId: string) {
  const rows = await db
    .select()
    .from(groupPermissions)
    .where(eq(groupPermissions.groupId, groupId))
    .orderBy(asc(groupPermissions.permissionKey));
  return rows.map(toPermissionResponse);
}

function refuseAdmins(group: Group): void {
  if (group.name === ADMINS) throw new AppError("FORBIDDEN", "Cannot modify Admins group permissions");
}

export async function setGroupPermission(
  db: Database,
  group: Group,
  input: { permission_key: string; permission_value: boolean },
) {
  refuseAdmins(group);
  const [row] = await db
    .insert(groupPermissions)
    .values({
      groupId: group.id,
      permissionKey: input.permission_key,
      permissionValue: input.permission_value,
    })
    .onConflictDoUpdate({
      target: [groupPermissions.groupId, groupPermissions.permissionKey],
      set: { permissionValue: input.permission_value, updatedAt: sql`now()` },
    })
    .returning();
  if (!row) throw new Error("upsert returned no row");
  return toPermissionResponse(row);
}

export async function deleteGroupPermission(
  db: Database,
  group: Group,
  permissionKey: string,
): Promise<void> {
  refuseAdmins(group);
  const deleted = await db
    .delete(groupPermissions)
    .where(and(eq(groupPermissions.groupId, group.id), eq(groupPermissions.permissionKey, permissionKey)))
    .returning({ id: groupPermissions.id });
  if (deleted.length === 0) throw new AppError("NOT_FOUND", "Permission not found");
}
