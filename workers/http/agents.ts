/**
 * @module /api/v1/agents: agent management (sinas-spec §1.8, §5.1 with D-5, D-7, D-16, D-19).
 *
 * Agents are addressed by `namespace/name`; names may hold spaces (URL-encode them in paths).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { templateSyntaxError } from "../lib/jinja";
import { schemaDefect } from "../lib/json-schema";
import {
  createAgent,
  deleteAgent,
  findManagedAgent,
  listAgents,
  toAgentResponse,
  updateAgent,
} from "../services/agents";
import { authenticate, principalOf, recordPermission, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Agents"];

const NAMESPACE_PATTERN = /^[a-zA-Z][a-zA-Z0-9_-]*$/;
const NAME_PATTERN = /^[a-zA-Z][a-zA-Z0-9 _-]*$/;
const FUNCTION_REF_PATTERN = /^[a-zA-Z_][a-zA-Z0-9_]*\/[a-zA-Z_][a-zA-Z0-9_]*$/;
const AGENT_REF_PATTERN = /^[a-zA-Z][a-zA-Z0-9_-]*\/[a-zA-Z][a-zA-Z0-9 _-]*$/;
const JSON_TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);

const AgentNamespaceSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(NAMESPACE_PATTERN, "must start with a letter and hold only letters, digits, _ and -")
  .openapi({ example: "default" });
const AgentNameSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(NAME_PATTERN, "must start with a letter and hold only letters, digits, spaces, _ and -")
  .openapi({ example: "helper" });
const FunctionRefSchema = z
  .string()
  .regex(FUNCTION_REF_PATTERN, "must be a function reference `namespace/name`")
  .openapi({ example: "default/add" });
const AgentRefSchema = z
  .string()
  .refine((ref) => UuidSchema.safeParse(ref).success || (ref.length <= 511 && AGENT_REF_PATTERN.test(ref)), {
    message: "must be an agent `namespace/name` or an agent id",
  })
  .openapi({ example: "default/child" });
const StateNamespaceSchema = z.string().min(1).max(100);
const JsonObjectSchema = z.record(z.string(), z.unknown()).openapi({ type: "object" });

/** Why `schema` cannot be a JSON Schema, or null: a structural check, then what validating would trip on. */
export function jsonSchemaProblem(schema: Record<string, unknown>): string | null {
  const { type, properties, required } = schema;
  const types = Array.isArray(type) ? type : type === undefined ? [] : [type];
  if (!types.every((name) => typeof name === "string" && JSON_TYPES.has(name))) {
    return "'type' must be a JSON type name or a list of them";
  }
  if (properties !== undefined) {
    const valid =
      properties !== null &&
      typeof properties === "object" &&
      !Array.isArray(properties) &&
      Object.values(properties).every(
        (value) => typeof value === "boolean" || (value !== null && typeof value === "object"),
      );
    if (!valid) return "'properties' must map names to schemas";
  }
  if (
    required !== undefined &&
    !(Array.isArray(required) && required.every((key) => typeof key === "string"))
  ) {
    return "'required' must be a list of property names";
  }
  return schemaDefect(schema);
}

const JsonSchemaSchema = JsonObjectSchema.superRefine((schema, context) => {
  const problem = jsonSchemaProblem(schema);
  if (problem) context.addIssue({ code: "custom", message: `Invalid JSON schema: ${problem}` });
}).openapi({ type: "object", example: { type: "object", properties: { customer: { type: "string" } } } });

const InitialMessageSchema = z
  .object({ role: z.enum(["user", "assistant", "system"]), content: z.string().max(100_000) })
  .strict();

/** A string that is not a valid Jinja template is refused when saved, not when a chat first renders it. */
function refineTemplate(source: string, context: z.RefinementCtx, path: (string | number)[]): void {
  const problem = templateSyntaxError(source);
  if (problem) context.addIssue({ code: "custom", path, message: `Invalid Jinja template: ${problem}` });
}

/** Every string of a `function_parameters` entry, at any depth, as a template. */
function refineTemplates(value: unknown, context: z.RefinementCtx, path: (string | number)[] = []): void {
  if (typeof value === "string") refineTemplate(value, context, path);
  else if (value !== null && typeof value === "object")
    for (const [key, item] of Object.entries(value))
      refineTemplates(item, context, [...path, Array.isArray(value) ? Number(key) : key]);
}

/** The settable fields; `null` means "not given" (create stores the default, update leaves the value). */
const AgentSettingsFields = {
  description: z.string().max(10_000).nullish(),
  llm_provider_id: UuidSchema.nullish().openapi({ description: "Null: the default provider" }),
  model: z.string().min(1).max(100).nullish().openapi({ description: "Null: the provider's default_model" }),
  temperature: z
    .number()
    .min(0)
    .max(2)
    .nullish()
    .openapi({ description: "0 is allowed; absent or null gives 0.7 at creation" }),
  max_tokens: z.number().int().min(1).max(1_000_000).nullish(),
  system_prompt: z
    .string()
    .max(100_000)
    .superRefine((source, context) => refineTemplate(source, context, []))
    .nullish()
    .openapi({ description: "Jinja, rendered with the chat input" }),
  input_schema: JsonSchemaSchema.nullish(),
  output_schema: JsonSchemaSchema.nullish(),
  initial_messages: z.array(InitialMessageSchema).max(100).nullish(),
  group_id: UuidSchema.nullish(),
  enabled_functions: z.array(FunctionRefSchema).max(200).nullish(),
  enabled_mcp_tools: z.array(z.string().min(1).max(255)).max(200).nullish(),
  enabled_agents: z
    .array(AgentRefSchema)
    .max(100)
    .nullish()
    .openapi({ description: "`namespace/name` or agent ids, stored as given" }),
  function_parameters: z
    .record(FunctionRefSchema, JsonObjectSchema.superRefine(refineTemplates))
    .nullish()
    .openapi({ description: '`{"ns/name": {param: value or Jinja template}}`' }),
  mcp_tool_parameters: z.record(z.string().min(1).max(255), JsonObjectSchema).nullish(),
  state_namespaces_readonly: z.array(StateNamespaceSchema).max(100).nullish(),
  state_namespaces_readwrite: z.array(StateNamespaceSchema).max(100).nullish(),
};

const AgentCreateSchema = z
  .object({
    namespace: AgentNamespaceSchema.default("default"),
    name: AgentNameSchema,
    ...AgentSettingsFields,
  })
  .strict()
  .openapi("AgentCreate");

const AgentUpdateSchema = z
  .object({
    namespace: AgentNamespaceSchema.nullish(),
    name: AgentNameSchema.nullish(),
    ...AgentSettingsFields,
    is_active: z.boolean().nullish().openapi({ description: "false deletes the agent (soft)" }),
  })
  .strict()
  .openapi("AgentUpdate", { description: "Every non-null field overwrites the stored value." });

const AgentSchema = z
  .object({
    id: z.uuid(),
    user_id: z.uuid().nullable(),
    group_id: z.uuid().nullable(),
    namespace: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    llm_provider_id: z.uuid().nullable(),
    model: z.string().nullable(),
    temperature: z.number(),
    max_tokens: z.number().int().nullable(),
    system_prompt: z.string().nullable(),
    input_schema: JsonObjectSchema,
    output_schema: JsonObjectSchema,
    initial_messages: z.array(z.object({ role: z.string(), content: z.string() })).nullable(),
    enabled_functions: z.array(z.string()),
    enabled_mcp_tools: z.array(z.string()),
    enabled_agents: z.array(z.string()),
    function_parameters: z.record(z.string(), JsonObjectSchema),
    mcp_tool_parameters: z.record(z.string(), JsonObjectSchema),
    state_namespaces_readonly: z.array(z.string()),
    state_namespaces_readwrite: z.array(z.string()),
    is_active: z.boolean(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("AgentResponse");

/** Path parameters are not pattern-checked: an impossible name is simply not found. */
const AgentParams = z.object({
  namespace: z.string().min(1).max(255).openapi({ example: "default" }),
  name: z.string().min(1).max(255).openapi({ example: "helper" }),
});

const createAgentRoute = createRoute({
  method: "post",
  path: "/agents",
  tags,
  security,
  summary: "Create an agent you own (sinas.agents.{namespace}.post:own)",
  request: { body: jsonBody(AgentCreateSchema) },
  responses: {
    201: jsonResponse(AgentSchema, "Created"),
    400: errorResponse("The namespace/name is taken (also by a deleted agent)"),
    403: errorResponse("Not allowed in this namespace"),
    422: errorResponse("Invalid fields, or an unknown llm_provider_id or group_id; `detail` names the field"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/agents",
  tags,
  security,
  summary: "Your active agents, newest first (every active agent with sinas.agents.*.get:all)",
  responses: { 200: jsonResponse(z.array(AgentSchema), "Agents") },
});
const getRoute = createRoute({
  method: "get",
  path: "/agents/{namespace}/{name}",
  tags,
  security,
  summary: "An active agent you own (any with sinas.agents.{namespace}.get:all)",
  request: { params: AgentParams },
  responses: {
    200: jsonResponse(AgentSchema, "Agent"),
    403: errorResponse("Your agent, but sinas.agents.{namespace}.get:own is missing"),
    404: errorResponse("Unknown, deleted, or someone else's"),
  },
});
const updateRoute = createRoute({
  method: "put",
  path: "/agents/{namespace}/{name}",
  tags,
  security,
  summary: "Update an agent (owner with sinas.agents.{namespace}.put:own, or put:all)",
  request: { params: AgentParams, body: jsonBody(AgentUpdateSchema) },
  responses: {
    200: jsonResponse(AgentSchema, "Updated"),
    400: errorResponse("The new namespace/name is taken"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown or deleted"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = createRoute({
  method: "delete",
  path: "/agents/{namespace}/{name}",
  tags,
  security,
  summary: "Delete an agent (soft: its name stays taken)",
  request: { params: AgentParams },
  responses: {
    204: { description: "Deleted" },
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown or deleted"),
  },
});

export const agentsRouter = createRouter();
agentsRouter.use("/agents", authenticate);
agentsRouter.use("/agents/*", authenticate);

agentsRouter
  .openapi(createAgentRoute, async (c) => {
    const body = c.req.valid("json");
    const principal = requirePermission(
      c,
      permissions.agentsNamespace(body.namespace, "post", "own"),
      `Not authorized to create agents in namespace '${body.namespace}'`,
    );
    const agent = await createAgent(c.get("services").db(), principal, body);
    return c.json(toAgentResponse(agent), 201);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, permissions.agentsNamespace("*", "get", "own"));
    const rows = await listAgents(c.get("services").db(), principalOf(c));
    return c.json(rows.map(toAgentResponse), 200);
  })
  .openapi(getRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.agentsNamespace(namespace, "get", "own"));
    const agent = await findManagedAgent(c.get("services").db(), principalOf(c), "get", namespace, name);
    return c.json(toAgentResponse(agent), 200);
  })
  .openapi(updateRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.agentsNamespace(namespace, "put", "own"));
    const db = c.get("services").db();
    const principal = principalOf(c);
    const current = await findManagedAgent(db, principal, "put", namespace, name);
    return c.json(toAgentResponse(await updateAgent(db, principal, current, c.req.valid("json"))), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.agentsNamespace(namespace, "delete", "own"));
    const db = c.get("services").db();
    await deleteAgent(db, await findManagedAgent(db, principalOf(c), "delete", namespace, name));
    return c.body(null, 204);
  });
