/**
 * @module /states (sinas-spec §1.5, §8.1): create, list, get, update and delete context states.
 *
 * Every route needs a caller. The service decides access and records the permission that decided it; this
 * router only parses, calls the service and shapes the reply.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { isJsonObject } from "../db/json";
import { type JsonObject, STATE_VISIBILITIES } from "../db/schema";
import {
  createState,
  deleteState,
  getState,
  listStates,
  type StateCaller,
  type StateView,
  updateState,
} from "../services/states";
import type { AppEnv } from "./app-env";
import { authenticate, principalOf, recordPermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import {
  DateTimeInput,
  jsonBody,
  jsonResponse,
  MessageSchema,
  PageQuerySchema,
  storableText,
  UuidSchema,
} from "./schemas";

/**
 * A JSON object; arrays and scalars are refused (§8.1). Kept as parsed, not rebuilt by `z.record`, which would
 * drop a `__proto__` key: the stored value is the one sent.
 */
const JsonObjectValue = z
  .custom<JsonObject>(isJsonObject, { message: "must be a JSON object" })
  .openapi({ type: "object", example: { a: 1 } });
const RelevanceScore = z.number().min(0).max(1);
const Visibility = z.enum(STATE_VISIBILITIES);

const StateCreateSchema = z
  .strictObject({
    namespace: storableText(z.string().min(1).max(100)),
    key: storableText(z.string().min(1).max(255)),
    value: JsonObjectValue,
    visibility: Visibility.default("private"),
    description: storableText().nullish(),
    tags: z.array(storableText()).default([]),
    relevance_score: RelevanceScore.default(1),
    expires_at: DateTimeInput.nullish(),
    group_id: UuidSchema.nullish().openapi({ description: "Required when visibility is `group`" }),
    encrypted: z.boolean().default(false).openapi({
      description: "SINAS Edge: store the value as AES-256-GCM ciphertext; reads return plaintext",
    }),
  })
  .openapi("StateCreate");

const StateUpdateSchema = z
  .strictObject({
    value: JsonObjectValue.nullish(),
    description: storableText().nullish(),
    tags: z.array(storableText()).nullish(),
    relevance_score: RelevanceScore.nullish(),
    expires_at: DateTimeInput.nullish(),
    visibility: Visibility.nullish(),
  })
  .openapi("StateUpdate", {
    description: "Null or absent fields are left unchanged; group_id cannot change.",
  });

const StateListQuerySchema = PageQuerySchema.extend({
  namespace: storableText().optional(),
  visibility: Visibility.optional(),
  tags: storableText()
    .optional()
    .openapi({ description: "Comma-separated; every tag must be present", example: "x,y" }),
  search: storableText()
    .optional()
    .openapi({ description: "Case-insensitive substring of key or description" }),
});

const StateIdParams = z.object({
  id: UuidSchema.openapi({ param: { name: "id", in: "path" } }),
});

const StateResponseSchema = z
  .object({
    id: z.uuid(),
    user_id: z.uuid(),
    group_id: z.uuid().nullable(),
    namespace: z.string(),
    key: z.string(),
    value: z.record(z.string(), z.unknown()),
    visibility: Visibility,
    description: z.string().nullable(),
    tags: z.array(z.string()),
    relevance_score: z.number(),
    expires_at: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    encrypted: z.boolean(),
    decryption_failed: z.literal(true).optional().openapi({
      description: "SINAS Edge: present when an encrypted value cannot be decrypted; `value` is then `{}`",
    }),
  })
  .openapi("StateResponse");

type StateResponse = z.infer<typeof StateResponseSchema>;

function toStateResponse(state: StateView): StateResponse {
  return {
    id: state.id,
    user_id: state.userId,
    group_id: state.groupId,
    namespace: state.namespace,
    key: state.key,
    value: state.value,
    visibility: state.visibility,
    description: state.description,
    tags: state.tags,
    relevance_score: state.relevanceScore,
    expires_at: state.expiresAt?.toISOString() ?? null,
    created_at: state.createdAt.toISOString(),
    updated_at: state.updatedAt.toISOString(),
    encrypted: state.encrypted,
    ...(state.decryptionFailed && { decryption_failed: true }),
  };
}

function callerOf(c: Context<AppEnv>): StateCaller {
  return {
    principal: principalOf(c),
    recordPermission: (permission, granted) => recordPermission(c, permission, granted),
  };
}

/** `"x, y,,z"` -> `["x", "y", "z"]`. */
function parseTagList(tags: string | undefined): string[] | undefined {
  const list = tags
    ?.split(",")
    .map((tag) => tag.trim())
    .filter((tag) => tag.length > 0);
  return list && list.length > 0 ? list : undefined;
}

const security = [{ bearerAuth: [] }];
const tags = ["States"];

const commonErrors = {
  401: errorResponse("Missing or invalid credentials"),
  422: errorResponse("Invalid input; `detail` names each field"),
};

const createStateRoute = createRoute({
  method: "post",
  path: "/states",
  tags,
  security,
  summary: "Create a state",
  description:
    "`sinas.states.post:own`, or `post:group` (and membership of `group_id`) for group visibility.",
  request: { body: jsonBody(StateCreateSchema) },
  responses: {
    200: jsonResponse(StateResponseSchema, "The created state"),
    400: errorResponse("Duplicate namespace/key, or group visibility without group_id"),
    403: errorResponse("Permission missing, or not a member of the group"),
    ...commonErrors,
  },
});

const listStatesRoute = createRoute({
  method: "get",
  path: "/states",
  tags,
  security,
  summary: "List non-expired states visible to the caller",
  description:
    "`get:all` sees every state, `get:group` own plus group-visible states of the caller's groups.",
  request: { query: StateListQuerySchema },
  responses: {
    200: jsonResponse(z.array(StateResponseSchema), "Matching states, oldest first"),
    ...commonErrors,
  },
});

const getStateRoute = createRoute({
  method: "get",
  path: "/states/{id}",
  tags,
  security,
  summary: "Get a state",
  request: { params: StateIdParams },
  responses: {
    200: jsonResponse(StateResponseSchema, "The state"),
    403: errorResponse("Not authorized to view this context"),
    404: errorResponse("Context not found, or Context has expired"),
    ...commonErrors,
  },
});

const updateStateRoute = createRoute({
  method: "put",
  path: "/states/{id}",
  tags,
  security,
  summary: "Update a state",
  request: { params: StateIdParams, body: jsonBody(StateUpdateSchema) },
  responses: {
    200: jsonResponse(StateResponseSchema, "The updated state"),
    400: errorResponse("Cannot change to group visibility without a group_id"),
    403: errorResponse(
      "Not authorized to update this context; or, making it group-visible, no post:group or not a member of its group",
    ),
    404: errorResponse("Context not found"),
    ...commonErrors,
  },
});

const deleteStateRoute = createRoute({
  method: "delete",
  path: "/states/{id}",
  tags,
  security,
  summary: "Delete a state",
  request: { params: StateIdParams },
  responses: {
    200: jsonResponse(MessageSchema, "Context '{ns}/{key}' deleted successfully"),
    403: errorResponse("Not authorized to delete this context"),
    404: errorResponse("Context not found"),
    ...commonErrors,
  },
});

const router = createRouter();
router.use("/states", authenticate);
router.use("/states/*", authenticate);

export const statesRouter = router
  .openapi(createStateRoute, async (c) => {
    const state = await createState(c.get("services"), callerOf(c), c.req.valid("json"));
    return c.json(toStateResponse(state), 200);
  })
  .openapi(listStatesRoute, async (c) => {
    const { tags, ...query } = c.req.valid("query");
    const list = await listStates(c.get("services"), callerOf(c), { ...query, tags: parseTagList(tags) });
    return c.json(list.map(toStateResponse), 200);
  })
  .openapi(getStateRoute, async (c) => {
    const state = await getState(c.get("services"), callerOf(c), c.req.valid("param").id);
    return c.json(toStateResponse(state), 200);
  })
  .openapi(updateStateRoute, async (c) => {
    const { id } = c.req.valid("param");
    const state = await updateState(c.get("services"), callerOf(c), id, c.req.valid("json"));
    return c.json(toStateResponse(state), 200);
  })
  .openapi(deleteStateRoute, async (c) => {
    const result = await deleteState(c.get("services"), callerOf(c), c.req.valid("param").id);
    return c.json(result, 200);
  });
