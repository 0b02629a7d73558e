/**
 * @module The dynamic part of the runtime OpenAPI document (sinas-spec §1.7): one path per active webhook
 * (its method, its function's input schema, security when it requires auth) and one chat-creation path per
 * active agent (its input schema). Generated on every request from the database.
 */
import { and, eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { agents, functions, type JsonObject, webhooks } from "../db/schema";

type PathItem = Record<string, JsonObject>;

const BEARER = [{ bearerAuth: [] }];

/** A webhook's function sees the request body as `input.body` (§7.1): document that part when it is described. */
function webhookBodySchema(inputSchema: JsonObject): JsonObject {
  const body = (inputSchema.properties as Record<string, JsonObject> | undefined)?.body;
  return body ?? inputSchema;
}

export async function dynamicOpenApiPaths(db: Database): Promise<Record<string, PathItem>> {
  const [hooks, activeAgents] = await Promise.all([
    db
      .select({
        path: webhooks.path,
        method: webhooks.httpMethod,
        description: webhooks.description,
        requiresAuth: webhooks.requiresAuth,
        namespace: functions.namespace,
        name: functions.name,
        inputSchema: functions.inputSchema,
      })
      .from(webhooks)
      .innerJoin(
        functions,
        and(
          eq(functions.namespace, webhooks.functionNamespace),
          eq(functions.name, webhooks.functionName),
          eq(functions.isActive, true),
          // The owner's function only, as the trigger runs it (another user may hold a deleted one's name).
          eq(functions.userId, webhooks.userId),
        ),
      )
      .where(eq(webhooks.isActive, true)),
    db
      .select({
        namespace: agents.namespace,
        name: agents.name,
        description: agents.description,
        inputSchema: agents.inputSchema,
      })
      .from(agents)
      .where(eq(agents.isActive, true)),
  ]);
  const paths: Record<string, PathItem> = {};
  for (const hook of hooks) {
    const method = hook.method.toLowerCase();
    const operation: JsonObject = {
      tags: ["Webhooks (dynamic)"],
      summary: `Run ${hook.namespace}/${hook.name}`,
      ...(hook.description ? { description: hook.description } : {}),
      security: hook.requiresAuth ? BEARER : [],
      responses: {
        200: { description: "The function's result (sync)" },
        202: { description: "Accepted (async): the execution id" },
      },
    };
    if (method !== "get") {
      operation.requestBody = {
        content: { "application/json": { schema: webhookBodySchema(hook.inputSchema) } },
      };
    }
    const path = `/webhooks/${hook.path}`;
    paths[path] = { ...paths[path], [method]: operation };
  }
  for (const agent of activeAgents) {
    paths[`/agents/${agent.namespace}/${agent.name}/chats`] = {
      post: {
        tags: ["Agents (dynamic)"],
        summary: `Start a chat with ${agent.namespace}/${agent.name}`,
        ...(agent.description ? { description: agent.description } : {}),
        security: BEARER,
        requestBody: {
          content: {
            "application/json": {
              schema: {
                type: "object",
                properties: { input: agent.inputSchema, title: { type: "string" } },
              },
            },
          },
        },
        responses: { 200: { description: "The chat (ChatResponse)" } },
      },
    };
  }
  return paths;
}
