/**
 * @module Users (sinas-spec §1.13, §4): lookup, creation with a default group, deletion per D-18.
 */
import { and, asc, count, eq, inArray, ne, sql } from "drizzle-orm";
import type { Database, DbOrTx } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  agents,
  functions,
  functionVersions,
  groupMembers,
  groups,
  scheduledJobs,
  type User,
  users,
  webhooks,
} from "../db/schema";
import { AppError } from "../lib/errors";

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export interface UserResponse {
  id: string;
  email: string;
  is_active: boolean;
  last_login_at: string | null;
  created_at: string;
}

export function toUserResponse(user: User): UserResponse {
  return {
    id: user.id,
    email: user.email,
    is_active: user.isActive,
    last_login_at: user.lastLoginAt?.toISOString() ?? null,
    created_at: user.createdAt.toISOString(),
  };
}

export async function findUserByEmail(db: Database, email: string): Promise<User | undefined> {
  const [user] = await db
    .select()
    .from(users)
    .where(eq(users.email, normalizeEmail(email)))
    .limit(1);
  return user;
}

export async function getUser(db: Database, userId: string): Promise<User> {
  const [user] = await db.select().from(users).where(eq(users.id, userId)).limit(1);
  if (!user) throw new AppError("NOT_FOUND", "User not found");
  return user;
}

/** Adds (or reactivates) an active membership; idempotent. */
export async function ensureMembership(
  db: DbOrTx,
  input: { groupId: string; userId: string; role: string; addedBy?: string | null },
): Promise<void> {
  await db
    .insert(groupMembers)
    .values({
      groupId: input.groupId,
      userId: input.userId,
      role: input.role,
      addedBy: input.addedBy ?? null,
    })
    .onConflictDoUpdate({
      target: [groupMembers.groupId, groupMembers.userId],
      set: { active: true, removedAt: null, removedBy: null },
      setWhere: sql`${groupMembers.active} = false`,
    });
}

/**
 * Creates a user and its membership in `groupName` in one transaction (D-48: the user is kept even when
 * the group is missing). 409 when the e-mail is taken.
 */
export async function createUser(
  db: Database,
  input: { email: string; groupName: string | null; role?: string; addedBy?: string | null },
): Promise<User> {
  const email = normalizeEmail(input.email);
  try {
    return await db.transaction(async (tx) => {
      const [user] = await tx.insert(users).values({ email }).returning();
      if (!user) throw new Error("insert returned no row");
      if (input.groupName) {
        const [group] = await tx
          .select({ id: groups.id })
          .from(groups)
          .where(eq(groups.name, input.groupName));
        if (group) {
          await ensureMembership(tx, {
            groupId: group.id,
            userId: user.id,
            role: input.role ?? "member",
            addedBy: input.addedBy,
          });
        }
      }
      return user;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError("CONFLICT", `User with email '${email}' already exists`);
    throw error;
  }
}

/** The existing user, or a new one in `groupName` (concurrent first logins of one e-mail both succeed). */
export async function getOrCreateUser(db: Database, email: string, groupName: string): Promise<User> {
  const existing = await findUserByEmail(db, email);
  if (existing) return existing;
  try {
    return await createUser(db, { email, groupName });
  } catch (error) {
    const raced = await findUserByEmail(db, email);
    if (raced) return raced;
    throw error;
  }
}

export async function listUsers(db: Database, page: { skip: number; limit: number }): Promise<User[]> {
  // The id breaks ties, so that pages neither repeat nor skip users created in the same instant.
  return db
    .select()
    .from(users)
    .orderBy(asc(users.createdAt), asc(users.id))
    .offset(page.skip)
    .limit(page.limit);
}

/** Names of the user's active groups. */
export async function activeGroupNames(db: Database, userId: string): Promise<string[]> {
  const rows = await db
    .select({ name: groups.name })
    .from(groupMembers)
    .innerJoin(groups, eq(groups.id, groupMembers.groupId))
    .where(and(eq(groupMembers.userId, userId), eq(groupMembers.active, true)))
    .orderBy(asc(groups.name));
  return rows.map((row) => row.name);
}

export async function setUserActive(db: Database, userId: string, isActive: boolean): Promise<User> {
  const [user] = await db.update(users).set({ isActive }).where(eq(users.id, userId)).returning();
  if (!user) throw new AppError("NOT_FOUND", "User not found");
  return user;
}

/**
 * Deletes a user (D-18): memberships, API keys, refresh tokens, states, chats and executions go with it;
 * a user who still owns functions, agents, webhooks or schedules is refused with 409.
 */
export async function deleteUser(db: Database, userId: string, callerId: string): Promise<User> {
  if (userId === callerId) throw new AppError("BAD_REQUEST", "Cannot delete your own user account");
  const user = await getUser(db, userId);
  const owned = await Promise.all(
    [functions, agents, webhooks, scheduledJobs].map(async (table) => {
      const [row] = await db
        .select({ total: count() })
        .from(table)
        .where(inArray(table.userId, [userId]));
      return row?.total ?? 0;
    }),
  );
  const [ownedFunctions, ownedAgents, ownedWebhooks, ownedSchedules] = owned;
  // Versions they saved of other users' functions name them as author (kept, as the history's record).
  const [authored] = await db
    .select({ total: count() })
    .from(functionVersions)
    .innerJoin(functions, eq(functions.id, functionVersions.functionId))
    .where(and(eq(functionVersions.createdBy, userId), ne(functions.userId, userId)));
  const authoredVersions = authored?.total ?? 0;
  if (owned.some((total) => total > 0) || authoredVersions > 0) {
    throw new AppError(
      "CONFLICT",
      `User '${user.email}' still owns ${ownedFunctions} functions, ${ownedAgents} agents, ${ownedWebhooks} webhooks ` +
        `and ${ownedSchedules} schedules, and authored ${authoredVersions} versions of other users' functions; ` +
        "delete or reassign them first",
    );
  }
  await db.delete(users).where(eq(users.id, userId));
  return user;
}
