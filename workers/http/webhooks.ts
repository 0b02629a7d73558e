/**
 * @module /api/v1/webhooks: webhook management (sinas-spec §1.10, §7.1, D-8). Paths may contain `/`, so the
 * single-webhook routes match `{path}` with Hono's `{.+}` pattern (see `slashParamRoute`).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { httpMethod, WEBHOOK_VERIFICATIONS } from "../db/schema";
import { parseRateLimit, RATE_LIMIT_FORMAT_MESSAGE } from "../env";
import {
  createWebhook,
  deleteWebhook,
  findManagedWebhook,
  listWebhooks,
  toWebhookResponse,
  updateWebhook,
} from "../services/webhooks";
import { authenticate, principalOf, recordPermission, requirePermission } from "./auth";
import { IdentifierSchema } from "./functions";
import { createRouter, errorResponse, slashParamRoute } from "./router";
import { jsonBody, jsonResponse, MessageSchema, PageQuerySchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Webhooks"];

const WebhookPathSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-zA-Z0-9_/-]+$/, "may hold only letters, digits, _, - and /")
  .refine((path) => !path.startsWith("/") && !path.endsWith("/") && !path.includes("//"), {
    message: "must not start or end with / nor contain //",
  })
  .openapi({ example: "tools/echo" });

const MethodSchema = z.enum(httpMethod.enumValues, { error: "must be one of GET, POST, PUT, DELETE, PATCH" });
const RateLimitSchema = z
  .string()
  .max(32)
  .refine((value) => parseRateLimit(value) !== null, { message: RATE_LIMIT_FORMAT_MESSAGE })
  // 0 per window refuses every call for good: a webhook that should not run is deactivated instead. (A 0 saved
  // before this check, or WEBHOOK_RATE_LIMIT=0/..., still refuses every call, as it always did.)
  .refine((value) => (parseRateLimit(value)?.limit ?? 1) > 0, {
    message: "must allow at least 1 call per window",
  })
  .nullable()
  .optional()
  .openapi({ example: "60/1m", description: "Overrides WEBHOOK_RATE_LIMIT for this webhook; null uses it" });
const VerificationSchema = z.enum(WEBHOOK_VERIFICATIONS).openapi({
  description:
    "`secret`: callers send X-Webhook-Secret; `hmac_sha256`: X-Signature-256 = sha256=HMAC(secret, `<X-Signature-Timestamp>.<body>`). The secret is returned once.",
});
const JsonObjectSchema = z.record(z.string(), z.unknown());

const WebhookCreateSchema = z
  .object({
    path: WebhookPathSchema,
    function_namespace: IdentifierSchema.default("default"),
    function_name: IdentifierSchema,
    http_method: MethodSchema.default("POST"),
    description: z.string().max(10_000).nullable().optional(),
    default_values: JsonObjectSchema.optional(),
    requires_auth: z.boolean().default(true),
    async: z.boolean().default(false),
    rate_limit: RateLimitSchema,
    verification: VerificationSchema.default("none"),
  })
  .strict()
  .openapi("WebhookCreate");

const WebhookUpdateSchema = z
  .object({
    function_namespace: IdentifierSchema.optional(),
    function_name: IdentifierSchema.optional(),
    http_method: MethodSchema.optional(),
    description: z.string().max(10_000).nullable().optional(),
    default_values: JsonObjectSchema.optional(),
    is_active: z.boolean().optional(),
    requires_auth: z.boolean().optional(),
    async: z.boolean().optional(),
    rate_limit: RateLimitSchema,
    verification: VerificationSchema.optional(),
    rotate_secret: z
      .boolean()
      .optional()
      .openapi({ description: "Replace the secret; the new one is returned once" }),
  })
  .strict()
  .openapi("WebhookUpdate");

const WebhookSchema = z
  .object({
    id: z.uuid(),
    path: z.string(),
    function_namespace: z.string(),
    function_name: z.string(),
    http_method: z.enum(httpMethod.enumValues),
    description: z.string().nullable(),
    default_values: JsonObjectSchema,
    is_active: z.boolean(),
    requires_auth: z.boolean(),
    async: z.boolean(),
    rate_limit: z.string().nullable(),
    verification: z.enum(WEBHOOK_VERIFICATIONS),
    secret: z.string().optional().openapi({ description: "Only in the answer that created or rotated it" }),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("WebhookResponse");

const WebhookParams = z.object({ path: z.string().min(1).max(255).openapi({ example: "tools/echo" }) });

const createWebhookRoute = createRoute({
  method: "post",
  path: "/webhooks",
  tags,
  security,
  summary: "Create a webhook for one of your functions (sinas.functions.{function_namespace}.post:own)",
  request: { body: jsonBody(WebhookCreateSchema) },
  responses: {
    200: jsonResponse(WebhookSchema, "Created (with `secret` once, when verification is not none)"),
    400: errorResponse("Path taken"),
    403: errorResponse("Not allowed"),
    404: errorResponse("No such active function of yours"),
    422: errorResponse("Invalid fields"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/webhooks",
  tags,
  security,
  summary: "Your webhooks (all with sinas.webhooks.get:all)",
  request: { query: PageQuerySchema },
  responses: { 200: jsonResponse(z.array(WebhookSchema), "Webhooks") },
});
const getRoute = createRoute({
  method: "get",
  path: "/webhooks/{path}",
  tags,
  security,
  summary: "A webhook you own, active or not (anyone's with sinas.webhooks.get:all)",
  request: { params: WebhookParams },
  responses: { 200: jsonResponse(WebhookSchema, "Webhook"), 404: errorResponse("Unknown") },
});
const updateRoute = createRoute({
  method: "patch",
  path: "/webhooks/{path}",
  tags,
  security,
  summary: "Update a webhook (the path is fixed); `rotate_secret: true` returns a new secret once",
  request: { params: WebhookParams, body: jsonBody(WebhookUpdateSchema) },
  responses: {
    200: jsonResponse(WebhookSchema, "Updated"),
    403: errorResponse("Not allowed in the new namespace"),
    404: errorResponse("Unknown webhook or function"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = createRoute({
  method: "delete",
  path: "/webhooks/{path}",
  tags,
  security,
  summary: "Delete a webhook",
  request: { params: WebhookParams },
  responses: { 200: jsonResponse(MessageSchema, "Deleted"), 404: errorResponse("Unknown") },
});

export const webhooksRouter = createRouter();
webhooksRouter.use("/webhooks", authenticate);
webhooksRouter.use("/webhooks/*", authenticate);

webhooksRouter
  .openapi(createWebhookRoute, async (c) => {
    const body = c.req.valid("json");
    const principal = requirePermission(
      c,
      permissions.functionsNamespace(body.function_namespace, "post", "own"),
      `Not authorized to create webhooks for functions in namespace '${body.function_namespace}'`,
    );
    return c.json(toWebhookResponse(await createWebhook(c.get("services"), principal, body)), 200);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, permissions.webhooks("get", "own"));
    const rows = await listWebhooks(c.get("services").db(), principalOf(c), c.req.valid("query"));
    return c.json(
      rows.map((webhook) => toWebhookResponse({ webhook, secret: null })),
      200,
    );
  })
  .openapi(slashParamRoute(webhooksRouter, getRoute, "path"), async (c) => {
    recordPermission(c, permissions.webhooks("get", "own"));
    const webhook = await findManagedWebhook(
      c.get("services").db(),
      principalOf(c),
      "get",
      c.req.valid("param").path,
    );
    return c.json(toWebhookResponse({ webhook, secret: null }), 200);
  })
  .openapi(slashParamRoute(webhooksRouter, updateRoute, "path"), async (c) => {
    recordPermission(c, permissions.webhooks("put", "own"));
    const services = c.get("services");
    const principal = principalOf(c);
    const current = await findManagedWebhook(services.db(), principal, "put", c.req.valid("param").path);
    return c.json(
      toWebhookResponse(await updateWebhook(services, principal, current, c.req.valid("json"))),
      200,
    );
  })
  .openapi(slashParamRoute(webhooksRouter, deleteRoute, "path"), async (c) => {
    const { path } = c.req.valid("param");
    recordPermission(c, permissions.webhooks("delete", "own"));
    const db = c.get("services").db();
    await deleteWebhook(db, await findManagedWebhook(db, principalOf(c), "delete", path));
    return c.json({ message: `Webhook '${path}' deleted successfully` }, 200);
  });
