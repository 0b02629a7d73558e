/**
 * @module
 * The SINAS data model (spec §2) as one drizzle `pg-core` schema, with the §11 decisions applied.
 * This is the only place tables are declared: services derive row types from `$inferSelect`/`$inferInsert`.
 *
 * Delete behaviour (D-18): a user's memberships, API keys, refresh tokens, states, chats and executions go with
 * the user; owned functions, agents, webhooks and schedules block the delete (the API answers 409 first, the
 * foreign key is the backstop). A group takes its members, permissions and states with it; other resources
 * only lose their `group_id`. A chat takes its messages and pending approvals; executions keep running history
 * with `chat_id` nulled.
 */
import { type SQL, sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  bigint,
  boolean,
  customType,
  doublePrecision,
  index,
  integer,
  json,
  jsonb,
  pgEnum,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
  varchar,
} from "drizzle-orm/pg-core";

// ---------------------------------------------------------------------------------------------------------------
// Enums and column domains
// ---------------------------------------------------------------------------------------------------------------

/** API and MANUAL extend SINAS's three values: direct runs through the API and console runs. */
export const triggerType = pgEnum("triggertype", ["WEBHOOK", "SCHEDULE", "AGENT", "API", "MANUAL"]);
export const executionStatus = pgEnum("executionstatus", [
  "PENDING",
  "RUNNING",
  "AWAITING_INPUT",
  "COMPLETED",
  "FAILED",
]);
export const httpMethod = pgEnum("httpmethod", ["GET", "POST", "PUT", "DELETE", "PATCH"]);

export type TriggerType = (typeof triggerType.enumValues)[number];
export type ExecutionStatus = (typeof executionStatus.enumValues)[number];
export type HttpMethod = (typeof httpMethod.enumValues)[number];

// These stay varchar in the database (as in SINAS), so adding a value needs no migration; the lists only type
// the columns in TypeScript.
export const MESSAGE_ROLES = ["user", "assistant", "system", "tool"] as const;
export const STATE_VISIBILITIES = ["private", "group", "public"] as const;
export const LLM_PROVIDER_TYPES = ["openai", "anthropic", "mistral", "ollama"] as const;
export const MCP_PROTOCOLS = ["http", "sse", "stdio", "websocket"] as const;
export const MCP_CONNECTION_STATUSES = ["connected", "disconnected", "error"] as const;
/** How an anonymous webhook caller proves it holds the webhook's secret (SINAS Edge; README "Webhooks"). */
export const WEBHOOK_VERIFICATIONS = ["none", "secret", "hmac_sha256"] as const;

export type MessageRole = (typeof MESSAGE_ROLES)[number];
export type StateVisibility = (typeof STATE_VISIBILITIES)[number];
export type LlmProviderType = (typeof LLM_PROVIDER_TYPES)[number];
export type McpProtocol = (typeof MCP_PROTOCOLS)[number];
export type McpConnectionStatus = (typeof MCP_CONNECTION_STATUSES)[number];
export type WebhookVerification = (typeof WEBHOOK_VERIFICATIONS)[number];

// ---------------------------------------------------------------------------------------------------------------
// JSON shapes stored in json columns
// ---------------------------------------------------------------------------------------------------------------

export type JsonObject = Record<string, unknown>;
/** A JSON Schema document; validated elsewhere, stored as given. */
export type JsonSchema = Record<string, unknown>;
/** permission string -> granted, e.g. `{"sinas.agents.*.*.read:own": true}`. */
export type PermissionMap = Record<string, boolean>;
export type InitialMessage = { role: MessageRole; content: string };
/** OpenAI tool-call shape; `arguments` is a JSON string. */
export type ToolCall = {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
  index?: number;
};
/** What a paused tool round needs to resume after approval (§5). */
export type ConversationContext = {
  provider: string | null;
  model: string | null;
  temperature: number | null;
  max_tokens: number | null;
  messages: JsonObject[];
  tools: JsonObject[];
  /** The tool round that paused (0-based): the continuation goes on with the next, under the same cap. */
  round?: number;
};

// ---------------------------------------------------------------------------------------------------------------
// Shared columns
// ---------------------------------------------------------------------------------------------------------------

/** `bytea`, which pg-core lacks. Drivers return a Uint8Array (or Buffer); a text-mode driver returns `\x<hex>`. */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array | string }>({
  dataType: () => "bytea",
  fromDriver: (value) => (typeof value === "string" ? hexToBytes(value.replace(/^\\x/, "")) : value),
});

function hexToBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

const timestamptz = (name: string) => timestamp(name, { withTimezone: true });
const id = () => uuid("id").primaryKey().defaultRandom();
const createdAt = () => timestamptz("created_at").notNull().defaultNow();
const updatedAt = () =>
  timestamptz("updated_at")
    .notNull()
    .defaultNow()
    .$onUpdate(() => new Date());
const namespace = () => varchar("namespace", { length: 255 }).notNull().default("default");

/** "cfg" in §2: `managed_by = 'config'` marks rows owned by declarative config apply (§9.4). */
const configTracking = () => ({
  managedBy: text("managed_by"),
  configName: text("config_name"),
  configChecksum: text("config_checksum"),
});

/** Optional actor references (added_by, revoked_by...) survive their user as null. */
const userRef = (name: string) => uuid(name).references(() => users.id, { onDelete: "set null" });
/** Owner of a function, agent, webhook or schedule: deleting the owner is refused (D-18). */
const ownerRef = (name: string) => uuid(name).references(() => users.id);
/** Group ownership of a shared resource; the resource outlives the group. */
const groupRef = () => uuid("group_id").references(() => groups.id, { onDelete: "set null" });

// ---------------------------------------------------------------------------------------------------------------
// §2.1 Identity
// ---------------------------------------------------------------------------------------------------------------

export const users = pgTable("users", {
  id: id(),
  /** Normalized (trimmed, lowercased) before it gets here. */
  email: varchar("email", { length: 255 }).notNull().unique(),
  isActive: boolean("is_active").notNull().default(true),
  lastLoginAt: timestamptz("last_login_at"),
  externalUserId: varchar("external_user_id", { length: 255 }).unique(),
  externalMetadata: json("external_metadata").$type<JsonObject>(),
  lastExternalSync: timestamptz("last_external_sync"),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
  ...configTracking(),
});

export const groups = pgTable(
  "groups",
  {
    id: id(),
    name: varchar("name", { length: 255 }).notNull().unique(),
    description: text("description"),
    emailDomain: varchar("email_domain", { length: 255 }),
    externalGroupId: varchar("external_group_id", { length: 255 }).unique(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [index("groups_email_domain_idx").on(t.emailDomain)],
);

export const groupMembers = pgTable(
  "group_members",
  {
    id: id(),
    groupId: uuid("group_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** Free text: `admin` or `member`. */
    role: varchar("role", { length: 100 }),
    /** Removal is soft; re-adding reactivates the row. */
    active: boolean("active").notNull().default(true),
    addedAt: timestamptz("added_at").notNull().defaultNow(),
    addedBy: userRef("added_by"),
    removedBy: userRef("removed_by"),
    removedAt: timestamptz("removed_at"),
    managedBy: text("managed_by"),
  },
  (t) => [
    // SINAS only enforces one row per pair in the API; the index makes it race-free and allows upserts.
    uniqueIndex("group_members_group_id_user_id_key").on(t.groupId, t.userId),
    index("group_members_user_id_idx").on(t.userId),
  ],
);

export const groupPermissions = pgTable(
  "group_permissions",
  {
    id: id(),
    groupId: uuid("group_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
    permissionKey: varchar("permission_key", { length: 255 }).notNull(),
    permissionValue: boolean("permission_value").notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    managedBy: text("managed_by"),
  },
  (t) => [uniqueIndex("group_permissions_group_id_permission_key_key").on(t.groupId, t.permissionKey)],
);

/** Login sessions; no user FK because the user may be provisioned only after verification. */
export const otpSessions = pgTable(
  "otp_sessions",
  {
    id: id(),
    email: varchar("email", { length: 255 }).notNull(),
    // The code itself is never stored: the LoginSession Durable Object keeps its HMAC and the attempt
    // count; this row marks the newest session per e-mail (older ones are deleted on a new login).
    codeHash: varchar("code_hash", { length: 64 }).notNull(),
    expiresAt: timestamptz("expires_at").notNull(),
    verified: boolean("verified").notNull().default(false),
    /** Wrong codes so far; the session ends at 5 (D-22). */
    attempts: integer("attempts").notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [index("otp_sessions_email_idx").on(t.email)],
);

export const apiKeys = pgTable(
  "api_keys",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: varchar("name", { length: 255 }).notNull(),
    /** sha256 hex of the plain key. */
    keyHash: varchar("key_hash", { length: 64 }).notNull().unique(),
    keyPrefix: varchar("key_prefix", { length: 16 }).notNull(),
    /** The complete permission set of the key; `{}` grants nothing (D-12). */
    permissions: json("permissions").$type<PermissionMap>().notNull(),
    isActive: boolean("is_active").notNull().default(true),
    lastUsedAt: timestamptz("last_used_at"),
    expiresAt: timestamptz("expires_at"),
    revokedAt: timestamptz("revoked_at"),
    createdBy: userRef("created_by"),
    revokedBy: userRef("revoked_by"),
    /** The key this one was made with (null: made with a login); revoking a key revokes the keys it made. */
    parentKeyId: uuid("parent_key_id").references((): AnyPgColumn => apiKeys.id, { onDelete: "cascade" }),
    createdAt: createdAt(),
  },
  (t) => [index("api_keys_user_id_idx").on(t.userId), index("api_keys_parent_key_id_idx").on(t.parentKeyId)],
);

export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    tokenHash: varchar("token_hash", { length: 64 }).notNull().unique(),
    tokenPrefix: varchar("token_prefix", { length: 16 }).notNull(),
    /** Every token rotated from one login shares a family; reuse of a replaced token revokes the family. */
    familyId: uuid("family_id").notNull(),
    replacedBy: uuid("replaced_by").references((): AnyPgColumn => refreshTokens.id, { onDelete: "set null" }),
    isRevoked: boolean("is_revoked").notNull().default(false),
    expiresAt: timestamptz("expires_at").notNull(),
    lastUsedAt: timestamptz("last_used_at"),
    revokedAt: timestamptz("revoked_at"),
    createdAt: createdAt(),
  },
  (t) => [
    index("refresh_tokens_user_id_idx").on(t.userId),
    index("refresh_tokens_family_id_idx").on(t.familyId),
  ],
);

// ---------------------------------------------------------------------------------------------------------------
// §2.4 (part) LLM providers, declared before agents, which reference them
// ---------------------------------------------------------------------------------------------------------------

export const llmProviders = pgTable(
  "llm_providers",
  {
    id: id(),
    name: varchar("name", { length: 100 }).notNull().unique(),
    providerType: varchar("provider_type", { length: 50, enum: LLM_PROVIDER_TYPES }).notNull(),
    /** AES-256-GCM ciphertext, never returned by the API. */
    apiKey: text("api_key"),
    apiEndpoint: varchar("api_endpoint", { length: 500 }),
    defaultModel: varchar("default_model", { length: 100 }),
    /** Free-form; config apply stores `{"models": [...]}`. */
    config: json("config").$type<JsonObject>().notNull().default({}),
    isDefault: boolean("is_default").notNull().default(false),
    isActive: boolean("is_active").notNull().default(true),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  // "At most one default" is kept by the API clearing the others first; the partial index makes it a guarantee.
  (t) => [uniqueIndex("llm_providers_single_default_key").on(t.isDefault).where(sql`"is_default"`)],
);

// ---------------------------------------------------------------------------------------------------------------
// §2.2 Agents and chat
// ---------------------------------------------------------------------------------------------------------------

export const agents = pgTable(
  "agents",
  {
    id: id(),
    userId: ownerRef("user_id"),
    groupId: groupRef(),
    namespace: namespace(),
    name: varchar("name", { length: 255 }).notNull(),
    description: text("description"),
    /** Null means the default provider. */
    llmProviderId: uuid("llm_provider_id").references(() => llmProviders.id, { onDelete: "set null" }),
    /** Null means the provider's default_model. */
    model: varchar("model", { length: 100 }),
    temperature: doublePrecision("temperature").notNull().default(0.7),
    maxTokens: integer("max_tokens"),
    /** Jinja2 template rendered with the chat input (§5.3). */
    systemPrompt: text("system_prompt"),
    inputSchema: json("input_schema").$type<JsonSchema>().notNull().default({}),
    outputSchema: json("output_schema").$type<JsonSchema>().notNull().default({}),
    initialMessages: json("initial_messages").$type<InitialMessage[]>(),
    /** `namespace/name` references. */
    enabledFunctions: json("enabled_functions").$type<string[]>().notNull().default([]),
    enabledMcpTools: json("enabled_mcp_tools").$type<string[]>().notNull().default([]),
    /** `namespace/name` or agent UUIDs, both resolved to an agent id (D-16). */
    enabledAgents: json("enabled_agents").$type<string[]>().notNull().default([]),
    /** `{"ns/name": {param: value or Jinja2 template}}`. */
    functionParameters: json("function_parameters").$type<Record<string, JsonObject>>().notNull().default({}),
    mcpToolParameters: json("mcp_tool_parameters").$type<Record<string, JsonObject>>().notNull().default({}),
    stateNamespacesReadonly: json("state_namespaces_readonly").$type<string[]>().notNull().default([]),
    stateNamespacesReadwrite: json("state_namespaces_readwrite").$type<string[]>().notNull().default([]),
    /** Soft delete. */
    isActive: boolean("is_active").notNull().default(true),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [
    uniqueIndex("agents_namespace_name_key").on(t.namespace, t.name),
    index("agents_user_id_idx").on(t.userId),
  ],
);

export const chats = pgTable(
  "chats",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** Copied from the agent at creation. */
    groupId: groupRef(),
    agentId: uuid("agent_id").references(() => agents.id, { onDelete: "set null" }),
    // Audit copies, kept when the agent is renamed or removed.
    agentNamespace: varchar("agent_namespace", { length: 255 }),
    agentName: varchar("agent_name", { length: 255 }),
    title: varchar("title", { length: 500 }).notNull(),
    /** `{"agent_input": {...}}` (D-24). */
    chatMetadata: json("chat_metadata").$type<JsonObject>(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("chats_user_id_updated_at_idx").on(t.userId, t.updatedAt),
    index("chats_agent_id_idx").on(t.agentId),
  ],
);

export const messages = pgTable(
  "messages",
  {
    id: id(),
    chatId: uuid("chat_id")
      .notNull()
      .references(() => chats.id, { onDelete: "cascade" }),
    /**
     * The ordering key (D-17): `created_at` is transaction time, so messages committed together tie on it.
     * Identity values are handed out in insert order, also within one transaction.
     */
    sequence: bigint("sequence", { mode: "number" }).notNull().generatedAlwaysAsIdentity(),
    role: varchar("role", { length: 20, enum: MESSAGE_ROLES }).notNull(),
    /** Plain text, or a JSON-serialized array of content parts (§5.9), or a JSON-serialized tool result. */
    content: text("content"),
    toolCalls: json("tool_calls").$type<ToolCall[]>(),
    toolCallId: varchar("tool_call_id", { length: 255 }),
    /** Tool name for role=tool. */
    name: varchar("name", { length: 255 }),
    // Per-message overrides; stored, unused (as in SINAS).
    enabledFunctions: json("enabled_functions").$type<string[]>(),
    enabledMcpTools: json("enabled_mcp_tools").$type<string[]>(),
    createdAt: createdAt(),
  },
  (t) => [index("messages_chat_id_sequence_idx").on(t.chatId, t.sequence)],
);

export const pendingToolApprovals = pgTable(
  "pending_tool_approvals",
  {
    id: id(),
    chatId: uuid("chat_id")
      .notNull()
      .references(() => chats.id, { onDelete: "cascade" }),
    /** The assistant message holding the tool calls. */
    messageId: uuid("message_id")
      .notNull()
      .references(() => messages.id, { onDelete: "cascade" }),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /**
     * The provider's id of the call: unique per message, not globally as in sinas-spec §2.2. Local models and
     * proxies reuse ids (`call_0` in every answer), and a second chat's approval must not fail on the first's.
     */
    toolCallId: varchar("tool_call_id", { length: 255 }).notNull(),
    functionNamespace: varchar("function_namespace", { length: 255 }).notNull(),
    functionName: varchar("function_name", { length: 255 }).notNull(),
    arguments: json("arguments").$type<JsonObject>().notNull(),
    allToolCalls: json("all_tool_calls").$type<ToolCall[]>().notNull(),
    conversationContext: json("conversation_context").$type<ConversationContext>().notNull(),
    /** Null while pending, then true (approved) or false (rejected). */
    approved: boolean("approved"),
    createdAt: createdAt(),
  },
  // Calls run only once every approval of their message is decided (D-29), so lookups go by message.
  (t) => [
    uniqueIndex("pending_tool_approvals_message_id_tool_call_id_key").on(t.messageId, t.toolCallId),
    index("pending_tool_approvals_chat_id_idx").on(t.chatId),
  ],
);

// ---------------------------------------------------------------------------------------------------------------
// §2.3 Functions and execution
// ---------------------------------------------------------------------------------------------------------------

export const functions = pgTable(
  "functions",
  {
    id: id(),
    userId: ownerRef("user_id").notNull(),
    /** Set by config apply. */
    groupId: groupRef(),
    namespace: namespace(),
    /** Also the name of the Python `def` to call (§6.3). */
    name: varchar("name", { length: 255 }).notNull(),
    description: text("description"),
    /** Python source. */
    code: text("code").notNull(),
    inputSchema: json("input_schema").$type<JsonSchema>().notNull(),
    outputSchema: json("output_schema").$type<JsonSchema>().notNull(),
    /** pip specs; names must be approved packages. */
    requirements: json("requirements").$type<string[]>().notNull().default([]),
    /** Namespaces this function may call (§6.4). */
    enabledNamespaces: json("enabled_namespaces").$type<string[]>().notNull().default([]),
    isActive: boolean("is_active").notNull().default(true),
    /** Run on shared workers (admin only). */
    sharedPool: boolean("shared_pool").notNull().default(false),
    /** LLM tool calls of this function need the user's approval. */
    requiresApproval: boolean("requires_approval").notNull().default(false),
    /** Seconds a run may take; null means FUNCTION_TIMEOUT. */
    timeoutSeconds: integer("timeout_seconds"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [
    uniqueIndex("functions_namespace_name_key").on(t.namespace, t.name),
    index("functions_user_id_idx").on(t.userId),
    // Who may run what: `user_id = ? or group_id = any(<the user's groups>)`, on every run's start.
    index("functions_group_id_idx").on(t.groupId),
  ],
);

export const functionVersions = pgTable(
  "function_versions",
  {
    id: id(),
    functionId: uuid("function_id")
      .notNull()
      .references(() => functions.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    code: text("code").notNull(),
    inputSchema: json("input_schema").$type<JsonSchema>().notNull(),
    outputSchema: json("output_schema").$type<JsonSchema>().notNull(),
    createdAt: createdAt(),
    /** Not null (spec), so an author who edited someone else's function cannot be deleted. */
    createdBy: ownerRef("created_by").notNull(),
  },
  (t) => [
    uniqueIndex("function_versions_function_id_version_key").on(t.functionId, t.version),
    index("function_versions_created_by_idx").on(t.createdBy),
  ],
);

export const executions = pgTable(
  "executions",
  {
    id: id(),
    /** The user the function runs as. */
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** UUIDv4 string generated by the trigger; the key steps and the API use. */
    executionId: varchar("execution_id", { length: 255 }).notNull().unique(),
    /** SINAS stores only the bare name, which is ambiguous across namespaces. */
    functionNamespace: varchar("function_namespace", { length: 255 }).notNull().default("default"),
    functionName: varchar("function_name", { length: 255 }).notNull(),
    triggerType: triggerType("trigger_type").notNull(),
    /** webhook.id, schedule.id or chat.id (the literal `unknown` for agent calls without a chat). */
    triggerId: varchar("trigger_id", { length: 255 }).notNull(),
    chatId: uuid("chat_id").references(() => chats.id, { onDelete: "set null" }),
    status: executionStatus("status").notNull().default("RUNNING"),
    inputData: json("input_data").$type<JsonObject>().notNull(),
    /** Any JSON value. */
    outputData: json("output_data"),
    error: text("error"),
    /** Why it failed, from a closed set (`timeout`, `memory`, `killed`, `exception`, ...; executor-protocol.ts). */
    errorType: varchar("error_type", { length: 32 }),
    traceback: text("traceback"),
    startedAt: timestamptz("started_at").notNull().defaultNow(),
    completedAt: timestamptz("completed_at"),
    durationMs: integer("duration_ms"),
    /** Serialized paused generator (§6.7). */
    generatorState: bytea("generator_state"),
    /** Prompt and schema of the input awaited in AWAITING_INPUT. */
    inputPrompt: text("input_prompt"),
    inputSchema: json("input_schema").$type<JsonSchema>(),
  },
  (t) => [
    index("executions_user_id_started_at_idx").on(t.userId, t.startedAt),
    // An admin's list (every user's runs, newest first, optionally of one function) reads these, not the table.
    index("executions_started_at_idx").on(t.startedAt),
    index("executions_function_name_started_at_idx").on(t.functionName, t.startedAt),
    index("executions_status_idx").on(t.status),
    index("executions_chat_id_idx").on(t.chatId),
  ],
);

/** One row per tracked call inside an execution, nested through `parent_step_id` (§6.4, D-34). */
export const stepExecutions = pgTable(
  "step_executions",
  {
    id: id(),
    executionId: varchar("execution_id", { length: 255 })
      .notNull()
      .references(() => executions.executionId, { onDelete: "cascade" }),
    /** The calling step; null for calls made directly by the executed function. */
    parentStepId: uuid("parent_step_id").references((): AnyPgColumn => stepExecutions.id, {
      onDelete: "cascade",
    }),
    functionNamespace: varchar("function_namespace", { length: 255 }).notNull().default("default"),
    functionName: varchar("function_name", { length: 255 }).notNull(),
    status: executionStatus("status").notNull().default("RUNNING"),
    inputData: json("input_data").notNull(),
    outputData: json("output_data"),
    error: text("error"),
    traceback: text("traceback"),
    durationMs: integer("duration_ms"),
    startedAt: timestamptz("started_at").notNull(),
    completedAt: timestamptz("completed_at"),
  },
  (t) => [
    // Steps are listed per execution in start order.
    index("step_executions_execution_id_started_at_idx").on(t.executionId, t.startedAt),
    // Serves the self-referencing cascade, which would otherwise scan the table per deleted step.
    index("step_executions_parent_step_id_idx").on(t.parentStepId),
  ],
);

export const webhooks = pgTable(
  "webhooks",
  {
    id: id(),
    /** Owner, and the run-as user when `requires_auth` is false (D-1). */
    userId: ownerRef("user_id").notNull(),
    groupId: groupRef(),
    /** `^[a-zA-Z0-9_/-]+$`, no leading slash. */
    path: varchar("path", { length: 255 }).notNull(),
    functionNamespace: varchar("function_namespace", { length: 255 }).notNull().default("default"),
    functionName: varchar("function_name", { length: 255 }).notNull(),
    httpMethod: httpMethod("http_method").notNull().default("POST"),
    description: text("description"),
    /** Merged into the function input (§7.1). */
    defaultValues: json("default_values").$type<JsonObject>(),
    isActive: boolean("is_active").notNull().default(true),
    requiresAuth: boolean("requires_auth").notNull().default(true),
    /** SINAS Edge: answer 202 with the execution id at once (as `?async=true` does per call). */
    async: boolean("async").notNull().default(false),
    /** SINAS Edge: `N/window` (e.g. `60/1m`) replacing WEBHOOK_RATE_LIMIT for this webhook; null uses it. */
    rateLimit: varchar("rate_limit", { length: 32 }),
    /** SINAS Edge: `secret` (X-Webhook-Secret header) or `hmac_sha256` (signed body); `none` checks nothing. */
    verification: varchar("verification", { length: 16 })
      .$type<WebhookVerification>()
      .notNull()
      .default("none"),
    /** The secret of `verification`, AES-256-GCM under ENCRYPTION_KEY (HMAC needs it in clear); null for `none`. */
    secretCiphertext: text("secret_ciphertext"),
    /**
     * SINAS Edge: the owner's API key that created or last changed the webhook, else null. A call without auth
     * runs as the owner with a context token acting as that key (never as the owner's login, which the key
     * could otherwise reach by running code); a revoked key leaves such tokens unusable.
     */
    apiKeyId: uuid("api_key_id").references(() => apiKeys.id),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [
    // Both as in SINAS: the path alone is unique, so a path has one method; lookups go by (path, method).
    uniqueIndex("webhooks_path_key").on(t.path),
    uniqueIndex("webhooks_path_http_method_key").on(t.path, t.httpMethod),
    index("webhooks_user_id_idx").on(t.userId),
  ],
);

export const SCHEDULE_RUN_STATUSES = ["STARTED", "FAILED"] as const;
export type ScheduleRunStatus = (typeof SCHEDULE_RUN_STATUSES)[number];

export const scheduledJobs = pgTable(
  "scheduled_jobs",
  {
    id: id(),
    /** The run-as user. */
    userId: ownerRef("user_id").notNull(),
    groupId: groupRef(),
    name: varchar("name", { length: 255 }).notNull(),
    functionNamespace: varchar("function_namespace", { length: 255 }).notNull().default("default"),
    functionName: varchar("function_name", { length: 255 }).notNull(),
    description: text("description"),
    /** Five fields, standard cron weekdays (0 or 7 = Sunday, D-37). */
    cronExpression: varchar("cron_expression", { length: 255 }).notNull(),
    /** IANA zone name. */
    timezone: varchar("timezone", { length: 50 }).notNull().default("UTC"),
    /** Passed verbatim as the function input. */
    inputData: json("input_data").$type<JsonObject>().notNull(),
    isActive: boolean("is_active").notNull().default(true),
    /** When the Cron Trigger last claimed a run of this schedule. */
    lastRun: timestamptz("last_run"),
    /** The next due minute (UTC), computed in `timezone`; null while inactive. */
    nextRun: timestamptz("next_run"),
    /** SINAS Edge: outcome of the last dispatch, `STARTED` (the execution holds its result) or `FAILED`. */
    lastStatus: varchar("last_status", { length: 20, enum: SCHEDULE_RUN_STATUSES }),
    lastExecutionId: varchar("last_execution_id", { length: 255 }),
    /** Why the last dispatch failed (function gone, invalid input, executor down). */
    lastError: text("last_error"),
    /** SINAS Edge: the owner's API key that created or last changed the schedule (as `webhooks.api_key_id`). */
    apiKeyId: uuid("api_key_id").references(() => apiKeys.id),
    createdAt: createdAt(),
    // SINAS has no updated_at here; config apply updates these rows like the other kinds, so track it too.
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [
    // Both as in SINAS: names are globally unique; (user_id, name) gives the per-user 400 its index.
    uniqueIndex("scheduled_jobs_name_key").on(t.name),
    uniqueIndex("scheduled_jobs_user_id_name_key").on(t.userId, t.name),
    // The Cron Trigger's due scan.
    index("scheduled_jobs_due_idx").on(t.nextRun).where(sql`${t.isActive}`),
  ],
);

/**
 * A package name as PEP 503 compares it, in SQL: lowercase, runs of `-`, `_`, `.` as one `-`. The unique index
 * below and the lookups (services/functions.ts) use this one expression, so Postgres uses the index for them.
 */
export function normalizedPackageNameOf(name: AnyPgColumn): SQL {
  return sql`regexp_replace(lower(${name}), '[-_.]+', '-', 'g')`;
}

export const installedPackages = pgTable(
  "installed_packages",
  {
    id: id(),
    /** As the admin spelled it; unique as PEP 503 normalizes it (below). */
    packageName: varchar("package_name", { length: 255 }).notNull(),
    /** Locked version. */
    version: varchar("version", { length: 50 }),
    installedAt: timestamptz("installed_at").notNull().defaultNow(),
    installedBy: userRef("installed_by"),
  },
  (t) => [
    // One approval per package as pip names it (`PyYAML` is `pyyaml`, `typing_extensions` is
    // `typing-extensions`): with two spellings, runs picked either row and so either lock (0003 migration).
    uniqueIndex("installed_packages_normalized_name_key").on(normalizedPackageNameOf(t.packageName)),
  ],
);

// ---------------------------------------------------------------------------------------------------------------
// §2.4 Other resources
// ---------------------------------------------------------------------------------------------------------------

export const states = pgTable(
  "states",
  {
    id: id(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    groupId: uuid("group_id").references(() => groups.id, { onDelete: "cascade" }),
    namespace: varchar("namespace", { length: 100 }).notNull(),
    key: varchar("key", { length: 255 }).notNull(),
    /** The value; `{}` when `encrypted`, whose value lives only in `value_ciphertext`. */
    value: json("value").$type<JsonObject>().notNull(),
    /** SINAS Edge addition: the value is stored as AES-256-GCM ciphertext from ENCRYPTION_KEY. */
    encrypted: boolean("encrypted").notNull().default(false),
    valueCiphertext: text("value_ciphertext"),
    /** `public` is accepted but behaves like `private`. */
    visibility: varchar("visibility", { length: 20, enum: STATE_VISIBILITIES }).notNull().default("private"),
    description: text("description"),
    /** Plain json like the rest; tag filters cast to jsonb for containment (D-52). */
    tags: json("tags").$type<string[]>().notNull().default([]),
    /** 0..1; orders retrieval and injection. */
    relevanceScore: doublePrecision("relevance_score").notNull().default(1),
    /** Absolute expiry, time-zone aware (D-20). */
    expiresAt: timestamptz("expires_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("states_user_id_namespace_key_key").on(t.userId, t.namespace, t.key),
    index("states_namespace_visibility_idx").on(t.namespace, t.visibility),
    index("states_expires_at_idx").on(t.expiresAt),
    // The group-visible states of a user's groups (lists, and every chat turn with state tools).
    index("states_group_id_visible_idx").on(t.groupId).where(sql`${t.visibility} = 'group'`),
  ],
);

export const mcpServers = pgTable("mcp_servers", {
  id: id(),
  groupId: groupRef(),
  name: varchar("name", { length: 255 }).notNull().unique(),
  url: varchar("url", { length: 1000 }).notNull(),
  protocol: varchar("protocol", { length: 20, enum: MCP_PROTOCOLS }).notNull(),
  /** AES-256-GCM ciphertext (D-21); text, since the encoded ciphertext of a 500-char key exceeds varchar(500). */
  apiKey: text("api_key"),
  isActive: boolean("is_active").notNull().default(true),
  lastConnected: timestamptz("last_connected"),
  connectionStatus: varchar("connection_status", { length: 50, enum: MCP_CONNECTION_STATUSES })
    .notNull()
    .default("disconnected"),
  errorMessage: text("error_message"),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
  ...configTracking(),
});

export const templates = pgTable(
  "templates",
  {
    id: id(),
    namespace: namespace(),
    name: varchar("name", { length: 255 }).notNull(),
    description: text("description"),
    userId: userRef("user_id"),
    groupId: groupRef(),
    /** Jinja2: the email subject. */
    title: text("title"),
    htmlContent: text("html_content").notNull(),
    textContent: text("text_content"),
    variableSchema: json("variable_schema").$type<JsonSchema>().notNull().default({}),
    isActive: boolean("is_active").notNull().default(true),
    createdBy: userRef("created_by"),
    updatedBy: userRef("updated_by"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    ...configTracking(),
  },
  (t) => [uniqueIndex("templates_namespace_name_key").on(t.namespace, t.name)],
);

// ---------------------------------------------------------------------------------------------------------------
// §2.5 Request logs (SINAS Edge: Postgres by default; ClickHouse is an optional sink)
// ---------------------------------------------------------------------------------------------------------------

/**
 * One row per HTTP request (§10.5). Missing values are null rather than ClickHouse's `""`. No foreign keys:
 * logs outlive users and groups, and the fire-and-forget insert must not fail on them.
 */
export const requestLogs = pgTable(
  "request_logs",
  {
    requestId: uuid("request_id").primaryKey().defaultRandom(),
    timestamp: timestamptz("timestamp").notNull().defaultNow(),
    userId: uuid("user_id"),
    userEmail: text("user_email"),
    permissionUsed: text("permission_used"),
    hasPermission: boolean("has_permission").notNull().default(true),
    method: varchar("method", { length: 16 }).notNull(),
    /** Full path including `/api/v1`. */
    path: text("path").notNull(),
    // jsonb, unlike the resource tables: log payloads are only filtered and aggregated, never echoed key-for-key,
    // and jsonb stores them compactly and supports containment queries.
    /** Parsed from the raw query string, values not URL-decoded. */
    queryParams: jsonb("query_params").$type<Record<string, string>>(),
    /** Redacted JSON body (POST/PUT/PATCH with a JSON content type, not auth paths). */
    requestBody: jsonb("request_body"),
    userAgent: text("user_agent"),
    referer: text("referer"),
    ipAddress: text("ip_address"),
    statusCode: integer("status_code").notNull(),
    responseTimeMs: integer("response_time_ms").notNull(),
    responseSizeBytes: integer("response_size_bytes").notNull().default(0),
    resourceType: text("resource_type"),
    resourceId: text("resource_id"),
    groupId: uuid("group_id"),
    errorMessage: text("error_message"),
    errorType: text("error_type"),
    metadata: jsonb("metadata").$type<JsonObject>(),
  },
  (t) => [
    index("request_logs_timestamp_idx").on(t.timestamp),
    index("request_logs_user_id_timestamp_idx").on(t.userId, t.timestamp),
    index("request_logs_status_code_idx").on(t.statusCode),
    index("request_logs_permission_used_timestamp_idx").on(t.permissionUsed, t.timestamp),
    // text_pattern_ops so the log query's `path LIKE 'prefix%'` can use it, not only equality.
    index("request_logs_path_idx").on(t.path.op("text_pattern_ops")),
  ],
);

// ---------------------------------------------------------------------------------------------------------------
// Row types
// ---------------------------------------------------------------------------------------------------------------

export type User = typeof users.$inferSelect;
export type NewUser = typeof users.$inferInsert;
export type Group = typeof groups.$inferSelect;
export type NewGroup = typeof groups.$inferInsert;
export type GroupMember = typeof groupMembers.$inferSelect;
export type NewGroupMember = typeof groupMembers.$inferInsert;
export type GroupPermission = typeof groupPermissions.$inferSelect;
export type NewGroupPermission = typeof groupPermissions.$inferInsert;
export type OtpSession = typeof otpSessions.$inferSelect;
export type NewOtpSession = typeof otpSessions.$inferInsert;
export type ApiKey = typeof apiKeys.$inferSelect;
export type NewApiKey = typeof apiKeys.$inferInsert;
export type RefreshToken = typeof refreshTokens.$inferSelect;
export type NewRefreshToken = typeof refreshTokens.$inferInsert;
export type LlmProvider = typeof llmProviders.$inferSelect;
export type NewLlmProvider = typeof llmProviders.$inferInsert;
export type Agent = typeof agents.$inferSelect;
export type NewAgent = typeof agents.$inferInsert;
export type Chat = typeof chats.$inferSelect;
export type NewChat = typeof chats.$inferInsert;
export type Message = typeof messages.$inferSelect;
export type NewMessage = typeof messages.$inferInsert;
export type PendingToolApproval = typeof pendingToolApprovals.$inferSelect;
export type NewPendingToolApproval = typeof pendingToolApprovals.$inferInsert;
/** Not `Function`, which would shadow the global. */
export type StoredFunction = typeof functions.$inferSelect;
export type NewStoredFunction = typeof functions.$inferInsert;
export type FunctionVersion = typeof functionVersions.$inferSelect;
export type NewFunctionVersion = typeof functionVersions.$inferInsert;
export type Execution = typeof executions.$inferSelect;
export type NewExecution = typeof executions.$inferInsert;
export type StepExecution = typeof stepExecutions.$inferSelect;
export type NewStepExecution = typeof stepExecutions.$inferInsert;
export type Webhook = typeof webhooks.$inferSelect;
export type NewWebhook = typeof webhooks.$inferInsert;
export type ScheduledJob = typeof scheduledJobs.$inferSelect;
export type NewScheduledJob = typeof scheduledJobs.$inferInsert;
export type InstalledPackage = typeof installedPackages.$inferSelect;
export type NewInstalledPackage = typeof installedPackages.$inferInsert;
export type State = typeof states.$inferSelect;
export type NewState = typeof states.$inferInsert;
export type McpServer = typeof mcpServers.$inferSelect;
export type NewMcpServer = typeof mcpServers.$inferInsert;
export type Template = typeof templates.$inferSelect;
export type NewTemplate = typeof templates.$inferInsert;
export type RequestLog = typeof requestLogs.$inferSelect;
export type NewRequestLog = typeof requestLogs.$inferInsert;
