/**
 * @module States (sinas-spec §1.5, §8.1): key/value context entries owned by a user, optionally shared with
 * a group, optionally expiring, optionally encrypted at rest (SINAS Edge addition).
 *
 * Access is decided by `accessScope` over `sinas.states.<action>:<scope>` (D-6). Expired rows are invisible
 * to list and get, still reachable by put and delete (§8.1), purged by the cron tick (D-38), and never hold
 * their key against a new state, which replaces them.
 */
import { and, asc, eq, gt, ilike, inArray, isNull, lt, lte, or, type SQL, sql } from "drizzle-orm";
import { accessScope, can, isGroupMember } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Scope } from "../auth/permissions";
import type { Principal } from "../auth/principal";
import type { Database } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import { type JsonObject, type State, type StateVisibility, states } from "../db/schema";
import { requireSecret } from "../env";
import { decryptText, encryptText } from "../lib/crypto";
import { AppError } from "../lib/errors";
import type { Services } from "./services";

/** Who is asking, and where to note the permission that decided the request (the request log). */
export interface StateCaller {
  principal: Principal;
  recordPermission(permission: string, granted: boolean): void;
}

export interface StateCreateInput {
  namespace: string;
  key: string;
  value: JsonObject;
  visibility: StateVisibility;
  description?: string | null | undefined;
  tags: string[];
  relevance_score: number;
  expires_at?: Date | null | undefined;
  group_id?: string | null | undefined;
  encrypted: boolean;
}

/** Null or absent leaves a field unchanged (§8.1); `group_id` and `encrypted` never change. */
export interface StateUpdateInput {
  value?: JsonObject | null | undefined;
  description?: string | null | undefined;
  tags?: string[] | null | undefined;
  relevance_score?: number | null | undefined;
  expires_at?: Date | null | undefined;
  visibility?: StateVisibility | null | undefined;
}

export interface StateListQuery {
  namespace?: string | undefined;
  visibility?: StateVisibility | undefined;
  /** Every listed tag must be in the state's tags (D-52). */
  tags?: string[] | undefined;
  /** Case-insensitive substring of key or description. */
  search?: string | undefined;
  skip: number;
  limit: number;
}

/**
 * A state as the API shows it: the plaintext value, never the ciphertext. An encrypted value that cannot be
 * decrypted (e.g. sealed under a rotated-out key) is shown as `{}` with `decryptionFailed` set.
 */
export type StateView = Omit<State, "valueCiphertext"> & { decryptionFailed?: true };

/** The columns of a new state row, as the API and the chat's `save_context` fill them. */
export type NewStateRow = typeof states.$inferInsert;

type StateAction = "post" | "get" | "put" | "delete";

/** Rows deleted per purge statement, and statements per tick, so one tick never holds a long lock. */
const PURGE_BATCH_SIZE = 1000;
const PURGE_MAX_BATCHES = 20;

const notExpired = (): SQL | undefined => or(isNull(states.expiresAt), gt(states.expiresAt, sql`now()`));

const statePermission = (action: StateAction) => (scope: Scope) => permissions.states(action, scope);

/** `%`, `_` and `\` are literal in a search term, not LIKE wildcards. */
function likePattern(term: string): string {
  return `%${term.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
}

async function sealValue(services: Services, value: JsonObject): Promise<string> {
  return encryptText(JSON.stringify(value), requireSecret(services.config, "ENCRYPTION_KEY"));
}

/**
 * Drops the ciphertext and, for an encrypted state, puts the decrypted value in its place (the API, the LLM
 * state tools). A value that cannot be decrypted is logged and marked instead: one such row must not fail
 * every list that holds it.
 */
export async function toView(services: Services, row: State): Promise<StateView> {
  const { valueCiphertext, ...view } = row;
  if (!row.encrypted || valueCiphertext === null) return view;
  const secret = requireSecret(services.config, "ENCRYPTION_KEY");
  try {
    return { ...view, value: JSON.parse(await decryptText(valueCiphertext, secret)) as JsonObject };
  } catch (error) {
    console.error(`State ${row.id} (${row.namespace}/${row.key}) could not be decrypted: ${String(error)}`);
    return { ...view, value: {}, decryptionFailed: true };
  }
}

/** The scope under which the caller may act on `row`; group scope only counts for group-visible rows. */
function scopeFor(caller: StateCaller, action: StateAction, row: State): Scope | null {
  const groupId = row.visibility === "group" ? row.groupId : null;
  const scope = accessScope(caller.principal, statePermission(action), { userId: row.userId, groupId });
  caller.recordPermission(permissions.states(action, scope ?? "own"), scope !== null);
  return scope;
}

async function findState(services: Services, id: string): Promise<State> {
  const [row] = await services.db().select().from(states).where(eq(states.id, id)).limit(1);
  if (!row) throw new AppError("NOT_FOUND", "Context not found");
  return row;
}

/** The checks of §1.5 in the reference's order: permission, then group_id, then membership. */
function authorizeCreate(caller: StateCaller, input: StateCreateInput): void {
  const { principal } = caller;
  const scope: Scope = input.visibility === "group" ? "group" : "own";
  const permission = permissions.states("post", scope);
  const granted = can(principal, permission);
  caller.recordPermission(permission, granted);
  if (!granted) {
    const message =
      scope === "group" ? "Not authorized to create group contexts" : "Not authorized to create contexts";
    throw new AppError("FORBIDDEN", message);
  }
  if (input.visibility === "group" && !input.group_id) {
    throw new AppError("BAD_REQUEST", "group_id is required for group visibility");
  }
  // Any group_id must be one of the caller's active groups, so nobody files a state under a foreign group.
  if (input.group_id && !isGroupMember(principal, input.group_id)) {
    throw new AppError("FORBIDDEN", "Not a member of the specified group");
  }
}

/**
 * Inserts a state, or returns null when a live state already holds its user, namespace and key. An expired
 * state is absent everywhere (§8.1), so it must not hold its key until the purge: when it is what the unique
 * index refused, it is deleted and the insert tried once more. The index still decides between concurrent
 * inserts, and the usual insert costs one statement (no transaction, no extra query).
 */
export async function insertState(db: Database, values: NewStateRow): Promise<State | null> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const [row] = await db.insert(states).values(values).returning();
      if (!row) throw new Error("insert returned no row");
      return row;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    const expired = await db
      .delete(states)
      .where(
        and(
          eq(states.userId, values.userId),
          eq(states.namespace, values.namespace),
          eq(states.key, values.key),
          lte(states.expiresAt, sql`now()`),
        ),
      )
      .returning({ id: states.id });
    if (expired.length === 0) return null;
  }
  return null;
}

export async function createState(
  services: Services,
  caller: StateCaller,
  input: StateCreateInput,
): Promise<StateView> {
  authorizeCreate(caller, input);
  const valueCiphertext = input.encrypted ? await sealValue(services, input.value) : null;
  const row = await insertState(services.db(), {
    userId: caller.principal.user.id,
    groupId: input.group_id ?? null,
    namespace: input.namespace,
    key: input.key,
    value: input.encrypted ? {} : input.value,
    encrypted: input.encrypted,
    valueCiphertext,
    visibility: input.visibility,
    description: input.description ?? null,
    tags: input.tags,
    relevanceScore: input.relevance_score,
    expiresAt: input.expires_at ?? null,
  });
  if (!row) {
    throw new AppError(
      "BAD_REQUEST",
      `Context with namespace '${input.namespace}' and key '${input.key}' already exists`,
    );
  }
  const { valueCiphertext: _sealed, ...view } = row;
  return { ...view, value: input.value };
}

/** Which rows the caller may list: everything with `get:all`, own plus their groups' with `get:group`. */
function listScopeCondition(caller: StateCaller): SQL | undefined {
  const { principal } = caller;
  const permission = statePermission("get");
  const scope: Scope = can(principal, permission("all"))
    ? "all"
    : can(principal, permission("group"))
      ? "group"
      : "own";
  // Listing never answers 403 (§1.5); without even `get:own` (an API key made with `{}`) it lists nothing.
  const ownGranted = can(principal, permission("own"));
  caller.recordPermission(permission(scope), scope !== "own" || ownGranted);
  const own = eq(states.userId, principal.user.id);
  if (scope === "all") return undefined;
  if (scope === "own" && !ownGranted) return sql`false`;
  if (scope === "own" || principal.groupIds.length === 0) return own;
  return or(own, and(eq(states.visibility, "group"), inArray(states.groupId, principal.groupIds)));
}

export async function listStates(
  services: Services,
  caller: StateCaller,
  query: StateListQuery,
): Promise<StateView[]> {
  const conditions: (SQL | undefined)[] = [notExpired(), listScopeCondition(caller)];
  if (query.namespace !== undefined) conditions.push(eq(states.namespace, query.namespace));
  if (query.visibility !== undefined) conditions.push(eq(states.visibility, query.visibility));
  if (query.tags && query.tags.length > 0) {
    // Explicit jsonb containment with a bound parameter (D-52): every requested tag is in `tags`.
    conditions.push(sql`${states.tags}::jsonb @> ${JSON.stringify(query.tags)}::jsonb`);
  }
  if (query.search) {
    const pattern = likePattern(query.search);
    conditions.push(or(ilike(states.key, pattern), ilike(states.description, pattern)));
  }
  const rows = await services
    .db()
    .select()
    .from(states)
    .where(and(...conditions))
    .orderBy(asc(states.createdAt), asc(states.id))
    .offset(query.skip)
    .limit(query.limit);
  return Promise.all(rows.map((row) => toView(services, row)));
}

export async function getState(services: Services, caller: StateCaller, id: string): Promise<StateView> {
  const row = await findState(services, id);
  if (scopeFor(caller, "get", row) === null)
    throw new AppError("FORBIDDEN", "Not authorized to view this context");
  if (row.expiresAt !== null && row.expiresAt.getTime() <= Date.now()) {
    throw new AppError("NOT_FOUND", "Context has expired");
  }
  return toView(services, row);
}

/**
 * Making a state group-visible publishes it to its group, which creation guards (§1.5): the same `post:group`
 * grant and active membership of the group, so a user who has left it cannot publish into it. `put:all`, which
 * may update any state, needs no membership.
 */
function authorizeGroupPublish(caller: StateCaller, groupId: string): void {
  const { principal } = caller;
  const permission = permissions.states("post", "group");
  const granted = can(principal, permission);
  caller.recordPermission(permission, granted);
  if (!granted) throw new AppError("FORBIDDEN", "Not authorized to create group contexts");
  if (isGroupMember(principal, groupId) || can(principal, permissions.states("put", "all"))) return;
  throw new AppError("FORBIDDEN", "Not a member of the specified group");
}

export async function updateState(
  services: Services,
  caller: StateCaller,
  id: string,
  input: StateUpdateInput,
): Promise<StateView> {
  const row = await findState(services, id);
  if (scopeFor(caller, "put", row) === null)
    throw new AppError("FORBIDDEN", "Not authorized to update this context");
  if (input.visibility === "group") {
    if (row.groupId === null)
      throw new AppError("BAD_REQUEST", "Cannot change to group visibility without a group_id");
    if (row.visibility !== "group") authorizeGroupPublish(caller, row.groupId);
  }
  const changes: Partial<typeof states.$inferInsert> = { updatedAt: new Date() };
  if (input.value != null) {
    if (row.encrypted) changes.valueCiphertext = await sealValue(services, input.value);
    else changes.value = input.value;
  }
  if (input.description != null) changes.description = input.description;
  if (input.tags != null) changes.tags = input.tags;
  if (input.relevance_score != null) changes.relevanceScore = input.relevance_score;
  if (input.expires_at != null) changes.expiresAt = input.expires_at;
  if (input.visibility != null) changes.visibility = input.visibility;
  const [updated] = await services.db().update(states).set(changes).where(eq(states.id, id)).returning();
  if (!updated) throw new AppError("NOT_FOUND", "Context not found");
  return toView(services, updated);
}

export async function deleteState(
  services: Services,
  caller: StateCaller,
  id: string,
): Promise<{ message: string }> {
  const row = await findState(services, id);
  if (scopeFor(caller, "delete", row) === null)
    throw new AppError("FORBIDDEN", "Not authorized to delete this context");
  await services.db().delete(states).where(eq(states.id, id));
  return { message: `Context '${row.namespace}/${row.key}' deleted successfully` };
}

/** Deletes expired states in bounded batches (D-38); returns how many went. Run by the cron tick. */
export async function purgeExpiredStates(db: Database): Promise<number> {
  let purged = 0;
  for (let batch = 0; batch < PURGE_MAX_BATCHES; batch++) {
    const expired = db
      .select({ id: states.id })
      .from(states)
      .where(lt(states.expiresAt, sql`now()`))
      .limit(PURGE_BATCH_SIZE);
    const deleted = await db.delete(states).where(inArray(states.id, expired)).returning({ id: states.id });
    purged += deleted.length;
    if (deleted.length < PURGE_BATCH_SIZE) break;
  }
  return purged;
}
