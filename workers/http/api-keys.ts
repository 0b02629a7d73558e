/**
 * @module /api/v1/api-keys: the caller's own API keys (sinas-spec §1.15, D-12, D-14).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { createApiKey, getApiKey, listApiKeys, revokeApiKey } from "../services/api-keys";
import { authenticate, principalOf, recordPermission } from "./auth";
import { PermissionKeySchema } from "./groups";
import { createRouter, errorResponse } from "./router";
import { DateTimeInput, jsonBody, jsonResponse, PermissionMapSchema, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["API keys"];
const KeyIdParams = z.object({ key_id: UuidSchema });

const ApiKeySchema = z
  .object({
    id: z.uuid(),
    user_id: z.uuid(),
    name: z.string(),
    key_prefix: z.string(),
    permissions: PermissionMapSchema,
    is_active: z.boolean(),
    last_used_at: z.string().nullable(),
    expires_at: z.string().nullable(),
    created_at: z.string(),
    revoked_at: z.string().nullable(),
  })
  .openapi("APIKeyResponse");

const ApiKeyCreatedSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    key: z.string().openapi({ description: "The plain key. Shown once; store it now." }),
    api_key: z.string().openapi({ description: "Same as `key` (console compatibility, D-14)." }),
    key_prefix: z.string(),
    permissions: PermissionMapSchema,
    expires_at: z.string().nullable(),
    created_at: z.string(),
  })
  .openapi("APIKeyCreated");

const createKeyRoute = createRoute({
  method: "post",
  path: "/api-keys",
  tags,
  security,
  summary: "Create an API key holding a subset of your permissions",
  description:
    "`{}` grants nothing. Permissions you do not hold are refused with 400 listing the violations.",
  request: {
    body: jsonBody(
      z
        .object({
          name: z.string().trim().min(1).max(255),
          // Keys follow the group grants' rule: a key can only hold what a group can grant.
          permissions: z
            .record(PermissionKeySchema, z.boolean())
            .default({})
            .openapi({ example: { "sinas.functions.*.get:own": true } }),
          expires_at: DateTimeInput.nullable().optional(),
        })
        .strict()
        .openapi("APIKeyCreate"),
    ),
  },
  responses: {
    201: jsonResponse(ApiKeyCreatedSchema, "Created"),
    400: errorResponse("Exceeds your permissions"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/api-keys",
  tags,
  security,
  summary: "Your API keys, newest first (revoked ones included)",
  responses: { 200: jsonResponse(z.array(ApiKeySchema), "Keys") },
});
const getRoute = createRoute({
  method: "get",
  path: "/api-keys/{key_id}",
  tags,
  security,
  summary: "One of your API keys",
  request: { params: KeyIdParams },
  responses: { 200: jsonResponse(ApiKeySchema, "Key"), 404: errorResponse("Not yours or unknown") },
});
const revokeRoute = createRoute({
  method: "delete",
  path: "/api-keys/{key_id}",
  tags,
  security,
  summary: "Revoke one of your API keys",
  request: { params: KeyIdParams },
  responses: { 204: { description: "Revoked" }, 404: errorResponse("Not yours or unknown") },
});

export const apiKeysRouter = createRouter();
apiKeysRouter.use("/api-keys", authenticate);
apiKeysRouter.use("/api-keys/*", authenticate);

apiKeysRouter
  .openapi(createKeyRoute, async (c) => {
    recordPermission(c, permissions.apiKeys("create"));
    const body = c.req.valid("json");
    const created = await createApiKey(c.get("services").db(), principalOf(c), {
      name: body.name,
      permissions: body.permissions,
      expires_at: body.expires_at ?? null,
    });
    return c.json(created, 201);
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, permissions.apiKeys("read"));
    return c.json(await listApiKeys(c.get("services").db(), principalOf(c)), 200);
  })
  .openapi(getRoute, async (c) => {
    recordPermission(c, permissions.apiKeys("read"));
    return c.json(await getApiKey(c.get("services").db(), principalOf(c), c.req.valid("param").key_id), 200);
  })
  .openapi(revokeRoute, async (c) => {
    recordPermission(c, permissions.apiKeys("delete"));
    await revokeApiKey(c.get("services").db(), principalOf(c), c.req.valid("param").key_id);
    return c.body(null, 204);
  });
