/**
 * @module Agent management (sinas-spec §1.8, §5.1 with D-5, D-7, D-16, D-19): CRUD of agents, soft delete, and
 * the active-agent lookup the runtime chat routes use.
 *
 * Access: `sinas.agents.{ns}.{action}:all` reaches every active agent; otherwise the caller must own the agent
 * and hold `...:own`. A soft-deleted agent is invisible everywhere and keeps its name taken (§1.8).
 */
import { and, desc, eq } from "drizzle-orm";
import { can } from "../auth/access";
import { permissions } from "../auth/catalogue";
import type { Principal } from "../auth/principal";
import type { Database, DbOrTx } from "../db/client";
import { isUniqueViolation } from "../db/errors";
import {
  type Agent,
  agents,
  groups,
  type InitialMessage,
  type JsonObject,
  type JsonSchema,
  llmProviders,
  type NewAgent,
} from "../db/schema";
import { AppError, type FieldIssue, validationError } from "../lib/errors";

/** D-19: applied only when the temperature is absent or null, so 0 is a real value. */
export const DEFAULT_TEMPERATURE = 0.7;

/** The configurable fields of an agent; absent or null means "not given" (stored as null, `{}` or `[]`). */
export interface AgentSettings {
  description?: string | null | undefined;
  llm_provider_id?: string | null | undefined;
  model?: string | null | undefined;
  temperature?: number | null | undefined;
  max_tokens?: number | null | undefined;
  system_prompt?: string | null | undefined;
  input_schema?: JsonSchema | null | undefined;
  output_schema?: JsonSchema | null | undefined;
  initial_messages?: InitialMessage[] | null | undefined;
  group_id?: string | null | undefined;
  enabled_functions?: string[] | null | undefined;
  enabled_mcp_tools?: string[] | null | undefined;
  /** `namespace/name` or agent UUIDs, stored as given (D-16). */
  enabled_agents?: string[] | null | undefined;
  function_parameters?: Record<string, JsonObject> | null | undefined;
  mcp_tool_parameters?: Record<string, JsonObject> | null | undefined;
  state_namespaces_readonly?: string[] | null | undefined;
  state_namespaces_readwrite?: string[] | null | undefined;
}

export interface AgentCreateInput extends AgentSettings {
  namespace: string;
  name: string;
}

/** `AgentUpdate`: every non-null value overwrites (§1.8), including the schemas and initial messages (D-7). */
export interface AgentUpdateInput extends AgentSettings {
  namespace?: string | null | undefined;
  name?: string | null | undefined;
  is_active?: boolean | null | undefined;
}

export type AgentAction = "get" | "put" | "delete";

export function toAgentResponse(agent: Agent) {
  return {
    id: agent.id,
    user_id: agent.userId,
    group_id: agent.groupId,
    namespace: agent.namespace,
    name: agent.name,
    description: agent.description,
    llm_provider_id: agent.llmProviderId,
    model: agent.model,
    temperature: agent.temperature,
    max_tokens: agent.maxTokens,
    system_prompt: agent.systemPrompt,
    input_schema: agent.inputSchema,
    output_schema: agent.outputSchema,
    initial_messages: agent.initialMessages,
    enabled_functions: agent.enabledFunctions,
    enabled_mcp_tools: agent.enabledMcpTools,
    enabled_agents: agent.enabledAgents,
    function_parameters: agent.functionParameters,
    mcp_tool_parameters: agent.mcpToolParameters,
    state_namespaces_readonly: agent.stateNamespacesReadonly,
    state_namespaces_readwrite: agent.stateNamespacesReadwrite,
    is_active: agent.isActive,
    created_at: agent.createdAt.toISOString(),
    updated_at: agent.updatedAt.toISOString(),
  };
}

export type AgentResponse = ReturnType<typeof toAgentResponse>;

function alreadyExists(namespace: string, name: string, cause: unknown): AppError {
  return new AppError("BAD_REQUEST", `Agent '${namespace}/${name}' already exists`, { cause });
}

/**
 * The referenced provider must be an active one and the group must exist: a 422 naming the field, where the
 * reference answered 500 from the foreign key (§5.1).
 */
async function ensureReferencesExist(db: DbOrTx, settings: AgentSettings): Promise<void> {
  const providerId = settings.llm_provider_id;
  const groupId = settings.group_id;
  const [provider, group] = await Promise.all([
    providerId
      ? db
          .select({ id: llmProviders.id })
          .from(llmProviders)
          .where(and(eq(llmProviders.id, providerId), eq(llmProviders.isActive, true)))
          .limit(1)
      : [{ id: null }],
    groupId
      ? db.select({ id: groups.id }).from(groups).where(eq(groups.id, groupId)).limit(1)
      : [{ id: null }],
  ]);
  const issues: FieldIssue[] = [];
  if (provider.length === 0) {
    issues.push({ loc: ["body", "llm_provider_id"], msg: "LLM provider not found", type: "value_error" });
  }
  if (group.length === 0)
    issues.push({ loc: ["body", "group_id"], msg: "Group not found", type: "value_error" });
  if (issues.length > 0) throw validationError(issues);
}

/** Column values for the settings that were given (non-null); the rest stay as they are. */
function settingsColumns(settings: AgentSettings): Partial<NewAgent> {
  const columns: Partial<NewAgent> = {};
  if (settings.description != null) columns.description = settings.description;
  if (settings.llm_provider_id != null) columns.llmProviderId = settings.llm_provider_id;
  if (settings.model != null) columns.model = settings.model;
  if (settings.temperature != null) columns.temperature = settings.temperature;
  if (settings.max_tokens != null) columns.maxTokens = settings.max_tokens;
  if (settings.system_prompt != null) columns.systemPrompt = settings.system_prompt;
  if (settings.input_schema != null) columns.inputSchema = settings.input_schema;
  if (settings.output_schema != null) columns.outputSchema = settings.output_schema;
  if (settings.initial_messages != null) columns.initialMessages = settings.initial_messages;
  if (settings.group_id != null) columns.groupId = settings.group_id;
  if (settings.enabled_functions != null) columns.enabledFunctions = settings.enabled_functions;
  if (settings.enabled_mcp_tools != null) columns.enabledMcpTools = settings.enabled_mcp_tools;
  if (settings.enabled_agents != null) columns.enabledAgents = settings.enabled_agents;
  if (settings.function_parameters != null) columns.functionParameters = settings.function_parameters;
  if (settings.mcp_tool_parameters != null) columns.mcpToolParameters = settings.mcp_tool_parameters;
  if (settings.state_namespaces_readonly != null) {
    columns.stateNamespacesReadonly = settings.state_namespaces_readonly;
  }
  if (settings.state_namespaces_readwrite != null) {
    columns.stateNamespacesReadwrite = settings.state_namespaces_readwrite;
  }
  return columns;
}

/** Creates an agent owned by the caller; the router has checked `sinas.agents.{ns}.post:own`. */
export async function createAgent(
  db: Database,
  principal: Principal,
  input: AgentCreateInput,
): Promise<Agent> {
  await ensureReferencesExist(db, input);
  try {
    const [agent] = await db
      .insert(agents)
      .values({
        // Defaults first: omitted lists and objects are stored as [] and {} (§1.8).
        inputSchema: {},
        outputSchema: {},
        enabledFunctions: [],
        enabledMcpTools: [],
        enabledAgents: [],
        functionParameters: {},
        mcpToolParameters: {},
        stateNamespacesReadonly: [],
        stateNamespacesReadwrite: [],
        ...settingsColumns(input),
        userId: principal.user.id,
        namespace: input.namespace,
        name: input.name,
        temperature: input.temperature ?? DEFAULT_TEMPERATURE,
        isActive: true,
      })
      .returning();
    if (!agent) throw new Error("insert returned no row");
    return agent;
  } catch (error) {
    // Also when the name belongs to a soft-deleted agent: names stay taken (§1.8).
    if (isUniqueViolation(error)) throw alreadyExists(input.namespace, input.name, error);
    throw error;
  }
}

/** Active agents, newest first: all of them with `sinas.agents.*.get:all`, otherwise the caller's own. */
export async function listAgents(db: Database, principal: Principal): Promise<Agent[]> {
  const everyone = can(principal, permissions.agentsNamespace("*", "get", "all"));
  const rows = await db
    .select()
    .from(agents)
    .where(
      everyone
        ? eq(agents.isActive, true)
        : and(eq(agents.isActive, true), eq(agents.userId, principal.user.id)),
    )
    .orderBy(desc(agents.createdAt), desc(agents.id));
  // Own rows need their `get:own` grant too, as each row's own route (an API key made with `{}` lists none).
  return everyone
    ? rows
    : rows.filter((agent) => can(principal, permissions.agentsNamespace(agent.namespace, "get", "own")));
}

/** The active agent `namespace/name`, or null. */
export async function findActiveAgent(db: DbOrTx, namespace: string, name: string): Promise<Agent | null> {
  const [agent] = await db
    .select()
    .from(agents)
    .where(and(eq(agents.namespace, namespace), eq(agents.name, name), eq(agents.isActive, true)))
    .limit(1);
  return agent ?? null;
}

const ACTION_WORDS = { get: "view", put: "update", delete: "delete" } as const;

/**
 * The active agent `namespace/name` for management. GET is an owner-filtered lookup (another user's agent is
 * a 404, D-5); PUT and DELETE find the agent first and answer 403 to a caller who may not change it (§1.8).
 */
export async function findManagedAgent(
  db: Database,
  principal: Principal,
  action: AgentAction,
  namespace: string,
  name: string,
): Promise<Agent> {
  const agent = await findActiveAgent(db, namespace, name);
  const anyAgent = can(principal, permissions.agentsNamespace(namespace, action, "all"));
  const owned = agent !== null && agent.userId === principal.user.id;
  if (!agent || (action === "get" && !anyAgent && !owned)) {
    throw new AppError("NOT_FOUND", `Agent '${namespace}/${name}' not found`);
  }
  if (!anyAgent && !(owned && can(principal, permissions.agentsNamespace(namespace, action, "own")))) {
    throw new AppError("FORBIDDEN", `Not authorized to ${ACTION_WORDS[action]} this agent`);
  }
  return agent;
}

/** Applies every non-null field (D-7); a rename onto a taken name is a 400 (the reference answered 500). */
export async function updateAgent(
  db: Database,
  principal: Principal,
  current: Agent,
  input: AgentUpdateInput,
): Promise<Agent> {
  const namespace = input.namespace ?? current.namespace;
  const name = input.name ?? current.name;
  if (namespace !== current.namespace) {
    // Moving an agent creates it in the new namespace.
    if (!can(principal, permissions.agentsNamespace(namespace, "post", "own"))) {
      throw new AppError("FORBIDDEN", `Not authorized to create agents in namespace '${namespace}'`);
    }
  }
  await ensureReferencesExist(db, input);
  try {
    const [updated] = await db
      .update(agents)
      .set({
        ...settingsColumns(input),
        namespace,
        name,
        ...(input.is_active != null && { isActive: input.is_active }),
      })
      .where(and(eq(agents.id, current.id), eq(agents.isActive, true)))
      .returning();
    if (!updated) throw new AppError("NOT_FOUND", `Agent '${current.namespace}/${current.name}' not found`);
    return updated;
  } catch (error) {
    if (isUniqueViolation(error)) throw alreadyExists(namespace, name, error);
    throw error;
  }
}

/** Soft delete: the agent disappears from every lookup, and its chats keep their audit copy of the name. */
export async function deleteAgent(db: Database, agent: Agent): Promise<void> {
  await db.update(agents).set({ isActive: false }).where(eq(agents.id, agent.id));
}
