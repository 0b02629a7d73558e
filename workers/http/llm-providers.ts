/**
 * @module /api/v1/llm-providers: LLM provider management, admin-only (sinas-spec §1.16, §10.6). GET takes the
 * provider's name, PATCH and DELETE its id; the API key is write-only.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { LLM_PROVIDER_TYPES } from "../db/schema";
import {
  createLlmProvider,
  deleteLlmProvider,
  findLlmProviderByName,
  listLlmProviders,
  toLlmProviderResponse,
  updateLlmProvider,
} from "../services/llm-providers";
import { authenticate, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["LLM providers"];

const ProviderTypeSchema = z
  .string()
  .transform((value) => value.toLowerCase())
  .pipe(z.enum(LLM_PROVIDER_TYPES, { error: `must be one of ${LLM_PROVIDER_TYPES.join(", ")}` }))
  .openapi({ type: "string", enum: [...LLM_PROVIDER_TYPES], example: "openai" });

const ProviderFields = {
  api_key: z
    .string()
    .max(10_000)
    // Sent as an HTTP header: a control character (a pasted newline) failed every later call of the provider.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused here
    .refine((key) => !/[\x00-\x1f\x7f]/.test(key), {
      message: "must not contain control characters (newlines, tabs, NUL)",
    })
    .nullable()
    .optional()
    .openapi({ description: "Stored encrypted; never returned" }),
  api_endpoint: z
    .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
    .max(500)
    .nullable()
    .optional()
    .openapi({ example: "https://api.openai.com/v1" }),
  default_model: z.string().trim().min(1).max(100).nullable().optional().openapi({ example: "gpt-4o-mini" }),
  config: z
    .object({
      timeout: z
        .number({ error: "must be a number of seconds" })
        .positive({ error: "must be > 0" })
        .max(3600, { error: "must be <= 3600" })
        .nullish(),
    })
    .catchall(z.unknown())
    .optional()
    .openapi({ description: "Free-form; `timeout` (seconds) bounds each call, 120 by default" }),
};
const NameSchema = z.string().trim().min(1).max(100).openapi({ example: "openai" });

const ProviderCreateSchema = z
  .object({
    name: NameSchema,
    provider_type: ProviderTypeSchema,
    ...ProviderFields,
    is_default: z.boolean().default(false),
  })
  .strict()
  .openapi("LLMProviderCreate");

const ProviderUpdateSchema = z
  .object({
    name: NameSchema.optional(),
    provider_type: ProviderTypeSchema.optional(),
    ...ProviderFields,
    is_default: z.boolean().optional(),
    is_active: z.boolean().optional(),
  })
  .strict()
  .openapi("LLMProviderUpdate");

const ProviderSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    provider_type: z.enum(LLM_PROVIDER_TYPES),
    api_endpoint: z.string().nullable(),
    default_model: z.string().nullable(),
    config: z.record(z.string(), z.unknown()),
    is_default: z.boolean(),
    is_active: z.boolean(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("LLMProviderResponse");

const NameParams = z.object({ name: z.string().min(1).max(100) });
const IdParams = z.object({ provider_id: UuidSchema });

const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ ...config, tags, security });

const createProviderRoute = route({
  method: "post",
  path: "/llm-providers",
  summary: "Create a provider; `is_default: true` clears the others (sinas.llm_providers.post:all)",
  request: { body: jsonBody(ProviderCreateSchema) },
  responses: {
    201: jsonResponse(ProviderSchema, "Created"),
    400: errorResponse("Name taken"),
    403: errorResponse("Not allowed"),
    422: errorResponse("Invalid fields"),
  },
});
const listRoute = route({
  method: "get",
  path: "/llm-providers",
  summary: "Active providers, newest first (sinas.llm_providers.get:all)",
  responses: { 200: jsonResponse(z.array(ProviderSchema), "Providers"), 403: errorResponse("Not allowed") },
});
const getRoute = route({
  method: "get",
  path: "/llm-providers/{name}",
  summary: "An active provider by name (sinas.llm_providers.get:all)",
  request: { params: NameParams },
  responses: {
    200: jsonResponse(ProviderSchema, "Provider"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown or inactive"),
  },
});
const updateRoute = route({
  method: "patch",
  path: "/llm-providers/{provider_id}",
  summary: "Update a provider by id, active or not (sinas.llm_providers.put:all)",
  request: { params: IdParams, body: jsonBody(ProviderUpdateSchema) },
  responses: {
    200: jsonResponse(ProviderSchema, "Updated"),
    400: errorResponse("Name taken"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = route({
  method: "delete",
  path: "/llm-providers/{provider_id}",
  summary: "Deactivate a provider (soft delete; sinas.llm_providers.delete:all)",
  request: { params: IdParams },
  responses: {
    204: { description: "Deactivated" },
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});

/** Every route needs the one `sinas.llm_providers.<action>:all` permission; a denial names it (§1.16). */
function requireProviderPermission(
  c: Parameters<typeof requirePermission>[0],
  action: "get" | "post" | "put" | "delete",
) {
  const permission = permissions.llmProviders(action);
  requirePermission(c, permission, `Permission denied: ${permission}`);
}

export const llmProvidersRouter = createRouter();
llmProvidersRouter.use("/llm-providers", authenticate);
llmProvidersRouter.use("/llm-providers/*", authenticate);

llmProvidersRouter
  .openapi(createProviderRoute, async (c) => {
    requireProviderPermission(c, "post");
    const provider = await createLlmProvider(c.get("services"), c.req.valid("json"));
    return c.json(toLlmProviderResponse(provider), 201);
  })
  .openapi(listRoute, async (c) => {
    requireProviderPermission(c, "get");
    const providers = await listLlmProviders(c.get("services").db());
    return c.json(providers.map(toLlmProviderResponse), 200);
  })
  .openapi(getRoute, async (c) => {
    requireProviderPermission(c, "get");
    const provider = await findLlmProviderByName(c.get("services").db(), c.req.valid("param").name);
    return c.json(toLlmProviderResponse(provider), 200);
  })
  .openapi(updateRoute, async (c) => {
    requireProviderPermission(c, "put");
    const { provider_id: id } = c.req.valid("param");
    const provider = await updateLlmProvider(c.get("services"), id, c.req.valid("json"));
    return c.json(toLlmProviderResponse(provider), 200);
  })
  .openapi(deleteRoute, async (c) => {
    requireProviderPermission(c, "delete");
    await deleteLlmProvider(c.get("services").db(), c.req.valid("param").provider_id);
    return c.body(null, 204);
  });
