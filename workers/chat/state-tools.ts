/**
 * @module LLM state tools (sinas-spec §5.5.1, §8.2, §8.3, D-39): `retrieve_context` when the agent has any state
 * namespace, and `save_context`, `update_context`, `delete_context` when it has read-write ones. They act as the
 * chat's user (the user's group grants are not consulted, as in SINAS; a turn sent with an API key is held to
 * the key's `sinas.states` grants) and are confined to the agent's namespaces: writes and deletes to read-write
 * ones, reads to read-only plus read-write ones. Expired states are absent to every tool.
 */
import { and, asc, desc, eq, gt, ilike, inArray, isNull, or, type SQL, sql } from "drizzle-orm";
import { permissions } from "../auth/catalogue";
import { isJsonObject } from "../db/json";
import { groupMembers, type JsonObject, type State, type StateVisibility, states } from "../db/schema";
import { requireSecret } from "../env";
import { encryptText } from "../lib/crypto";
import type { Services } from "../services/services";
import { insertState, toView } from "../services/states";
import { visibleStates } from "./prompt";
import {
  agentNamespaces,
  DEFAULT_RETRIEVE_LIMIT,
  MAX_LISTED_KEYS,
  MAX_RETRIEVE_LIMIT,
  namespaceDenial,
  readableNamespaces,
  STATE_TOOL_NAMES,
  type StateKey,
  stateToolDefinitions,
} from "./state-tool-definitions";
import { credentialAllows, type OfferedTool, readableContextScope, type ToolContext } from "./tools";

const notExpired = (): SQL | undefined => or(isNull(states.expiresAt), gt(states.expiresAt, sql`now()`));

/** The keys the credential may read, so retrieve_context's description names no key it could not read. */
async function availableKeys(ctx: ToolContext): Promise<StateKey[]> {
  const scope = readableContextScope(ctx);
  if (scope === "none") return [];
  return ctx.services
    .db()
    .select({ namespace: states.namespace, key: states.key })
    .from(states)
    .where(and(notExpired(), visibleStates(ctx.user.id, scope)))
    .orderBy(asc(states.namespace), asc(states.key))
    .limit(MAX_LISTED_KEYS);
}

export async function offerStateTools(ctx: ToolContext): Promise<OfferedTool[]> {
  const namespaces = agentNamespaces(ctx.agent);
  if (namespaces.readonly.length === 0 && namespaces.readwrite.length === 0) return [];
  // Every readable key is listed, not only the agent's namespaces (§5.5.1).
  const available = await availableKeys(ctx);
  return stateToolDefinitions(namespaces, available).map((definition) => ({ definition, kind: "state" }));
}

/** The states action each tool takes, as the states API names it. */
const TOOL_ACTIONS: Record<string, "get" | "post" | "put" | "delete"> = {
  retrieve_context: "get",
  save_context: "post",
  update_context: "put",
  delete_context: "delete",
};

/** Whether the turn's credential grants `action` on states at `scope` (see credentialAllows). */
function credentialGrants(
  ctx: ToolContext,
  action: "get" | "post" | "put" | "delete",
  scope: "own" | "group",
) {
  return credentialAllows(ctx, permissions.states(action, scope));
}

/** Runs a state tool call as the chat user. */
export async function runStateTool(ctx: ToolContext, tool: string, args: JsonObject): Promise<unknown> {
  if (!(STATE_TOOL_NAMES as readonly string[]).includes(tool))
    return { error: `Unknown context tool: ${tool}` };
  const namespaces = agentNamespaces(ctx.agent);
  const denial = namespaceDenial(tool, args, namespaces);
  if (denial) return denial;
  const action = TOOL_ACTIONS[tool] as "get" | "post" | "put" | "delete";
  const scope = tool === "save_context" && args.visibility === "group" ? "group" : "own";
  if (!credentialGrants(ctx, action, scope))
    return {
      error: `Not authorized: this chat's API key does not grant ${permissions.states(action, scope)}`,
    };
  if (tool === "retrieve_context") return retrieveContext(ctx, args, readableNamespaces(namespaces));
  // Past the denial, the namespace is one of the read-write ones.
  const key = args.key;
  if (typeof key !== "string" || key === "") return { error: "Missing required argument: key" };
  const address: StateKey = { namespace: String(args.namespace), key };
  const invalid =
    storableProblem("namespace", address.namespace, MAX_NAMESPACE_LENGTH) ??
    storableProblem("key", address.key, MAX_KEY_LENGTH);
  if (invalid) return { error: invalid };
  if (tool === "save_context") return saveContext(ctx, address, args);
  if (tool === "update_context") return updateContext(ctx, address, args);
  return deleteContext(ctx, address);
}

/** The lengths of the `states` columns, as the states API checks them. */
const MAX_NAMESPACE_LENGTH = 100;
const MAX_KEY_LENGTH = 255;

/** Why the argument cannot be stored in its column, or null: too long, or holding NUL, which Postgres refuses. */
function storableProblem(name: string, value: string, maxLength: number): string | null {
  if (value.length > maxLength) return `Invalid argument: ${name} must be at most ${maxLength} characters`;
  if (value.includes("\u0000")) return `Invalid argument: ${name} must not contain NUL characters`;
  return null;
}

/**
 * A state's value for the model under `field`: the plaintext, or `{}` with `decryption_failed` when the value
 * cannot be decrypted (toView logs it), so one such state does not fail the whole call.
 */
async function shownValue(services: Services, row: State, field: "value" | "existing_value") {
  const view = await toView(services, row);
  return view.decryptionFailed ? { [field]: view.value, decryption_failed: true } : { [field]: view.value };
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

/** `%`, `_` and `\` are literal in a search term, not LIKE wildcards. */
function likePattern(term: string): string {
  return `%${term.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
}

function retrieveLimit(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) return DEFAULT_RETRIEVE_LIMIT;
  return Math.min(MAX_RETRIEVE_LIMIT, Math.max(1, Math.trunc(value)));
}

async function retrieveContext(ctx: ToolContext, args: JsonObject, readable: string[]): Promise<unknown> {
  const { services } = ctx;
  // Group-visible states only when the credential may read them (an API key without get:group: its own).
  const visible = visibleStates(ctx.user.id, readableContextScope(ctx) === "group" ? "group" : "own");
  const conditions: (SQL | undefined)[] = [notExpired(), visible, inArray(states.namespace, readable)];
  const text = (name: string): string | undefined => {
    const value = args[name];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  const namespace = text("namespace");
  const key = text("key");
  const search = text("search");
  const tags = text("tags");
  if (namespace !== undefined) conditions.push(eq(states.namespace, namespace));
  if (key !== undefined) conditions.push(eq(states.key, key));
  if (search !== undefined) {
    const pattern = likePattern(search);
    conditions.push(or(ilike(states.key, pattern), ilike(states.description, pattern)));
  }
  const tagList = (tags ?? "")
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);
  // Every listed tag must be in the state's tags (D-52).
  if (tagList.length > 0) conditions.push(sql`${states.tags}::jsonb @> ${JSON.stringify(tagList)}::jsonb`);
  const rows = await services
    .db()
    .select()
    .from(states)
    .where(and(...conditions))
    .orderBy(desc(states.relevanceScore), asc(states.createdAt))
    .limit(retrieveLimit(args.limit));
  if (rows.length === 0) return { success: true, message: "No matching contexts found", contexts: [] };
  const contexts = await Promise.all(
    rows.map(async (row) => ({
      namespace: row.namespace,
      key: row.key,
      ...(await shownValue(services, row, "value")),
      description: row.description,
      tags: row.tags,
      visibility: row.visibility,
      created_at: row.createdAt.toISOString(),
      updated_at: row.updatedAt.toISOString(),
    })),
  );
  return { success: true, count: contexts.length, contexts };
}

/** The user's own row at `address`: its namespace and key, not expired. */
function ownStateCondition(ctx: ToolContext, address: StateKey): SQL | undefined {
  return and(
    eq(states.userId, ctx.user.id),
    eq(states.namespace, address.namespace),
    eq(states.key, address.key),
    notExpired(),
  );
}

async function ownState(ctx: ToolContext, address: StateKey): Promise<State | undefined> {
  const [row] = await ctx.services.db().select().from(states).where(ownStateCondition(ctx, address)).limit(1);
  return row;
}

/** Whether the turn's credential may read the user's own states: a replied value is a read too. */
function mayReadOwn(ctx: ToolContext): boolean {
  return credentialGrants(ctx, "get", "own");
}

async function alreadyExists(ctx: ToolContext, address: StateKey, existing: State | undefined) {
  const error = `Context already exists for namespace '${address.namespace}' and key '${address.key}'. Use update_context to modify it.`;
  // A key that may create but not read states learns that the key is taken, not what it holds.
  if (!mayReadOwn(ctx)) return { error };
  if (!existing) return { error, existing_value: null };
  return { error, ...(await shownValue(ctx.services, existing, "existing_value")) };
}

async function isActiveMember(services: Services, userId: string, groupId: string): Promise<boolean> {
  const [row] = await services
    .db()
    .select({ id: groupMembers.id })
    .from(groupMembers)
    .where(
      and(eq(groupMembers.userId, userId), eq(groupMembers.groupId, groupId), eq(groupMembers.active, true)),
    )
    .limit(1);
  return row !== undefined;
}

async function saveContext(ctx: ToolContext, address: StateKey, args: JsonObject): Promise<unknown> {
  const { services } = ctx;
  if (!isJsonObject(args.value)) return { error: "value must be a JSON object" };
  if (args.tags !== undefined && args.tags !== null && !isStringList(args.tags))
    return { error: "tags must be a list of strings" };
  const existing = await ownState(ctx, address);
  if (existing) return alreadyExists(ctx, address, existing);
  const visibility = args.visibility ?? "private";
  if (visibility !== "private" && visibility !== "group")
    return { error: `Invalid visibility '${String(visibility)}': use 'private' or 'group'` };
  let groupId: string | null = null;
  if (visibility === "group") {
    if (!ctx.chat.groupId) return { error: "Group visibility requires a group context" };
    if (!(await isActiveMember(services, ctx.user.id, ctx.chat.groupId)))
      return { error: "User is not a member of the specified group" };
    groupId = ctx.chat.groupId;
  }
  const row = await insertState(services.db(), {
    userId: ctx.user.id,
    groupId,
    namespace: address.namespace,
    key: address.key,
    value: args.value,
    visibility: visibility satisfies StateVisibility,
    description: typeof args.description === "string" ? args.description : null,
    tags: isStringList(args.tags) ? args.tags : [],
    relevanceScore: 1.0,
  });
  // A concurrent save of the same key won the unique index.
  if (!row) return alreadyExists(ctx, address, await ownState(ctx, address));
  return {
    success: true,
    message: `Saved context: ${address.namespace}/${address.key}`,
    context_id: row.id,
    value: row.value,
  };
}

async function updateContext(ctx: ToolContext, address: StateKey, args: JsonObject): Promise<unknown> {
  const { services } = ctx;
  if ("value" in args && !isJsonObject(args.value)) return { error: "value must be a JSON object" };
  if ("tags" in args && !isStringList(args.tags)) return { error: "tags must be a list of strings" };
  if ("description" in args && args.description !== null && typeof args.description !== "string")
    return { error: "description must be a string" };
  const row = await ownState(ctx, address);
  if (!row) {
    return {
      error: `Context not found for namespace '${address.namespace}' and key '${address.key}'`,
      suggestion: "Use save_context to create a new context entry",
    };
  }
  // Only the keys present are set (§8.3).
  const changes: Partial<typeof states.$inferInsert> = { updatedAt: new Date() };
  if (isJsonObject(args.value)) {
    if (row.encrypted) {
      const secret = requireSecret(services.config, "ENCRYPTION_KEY");
      changes.valueCiphertext = await encryptText(JSON.stringify(args.value), secret);
    } else changes.value = args.value;
  }
  if ("description" in args)
    changes.description = typeof args.description === "string" ? args.description : null;
  if (isStringList(args.tags)) changes.tags = args.tags;
  await services.db().update(states).set(changes).where(eq(states.id, row.id));
  const message = `Updated context: ${address.namespace}/${address.key}`;
  if (isJsonObject(args.value)) return { success: true, message, value: args.value };
  // Without a new value the reply shows the stored one, only to a credential that may read it.
  if (!mayReadOwn(ctx)) return { success: true, message };
  return { success: true, message, ...(await shownValue(services, row, "value")) };
}

async function deleteContext(ctx: ToolContext, address: StateKey): Promise<unknown> {
  const deleted = await ctx.services
    .db()
    .delete(states)
    .where(ownStateCondition(ctx, address))
    .returning({ id: states.id });
  if (deleted.length === 0)
    return { error: `Context not found for namespace '${address.namespace}' and key '${address.key}'` };
  return { success: true, message: `Deleted context: ${address.namespace}/${address.key}` };
}
