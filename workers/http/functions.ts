/**
 * @module /api/v1/functions: function management (sinas-spec §1.9, §6.1).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { permissions } from "../auth/catalogue";
import { isInstallableRequirement, REQUIREMENT_SPEC_DESCRIPTION } from "../lib/executor-protocol";
import { schemaDefect } from "../lib/json-schema";
import {
  createFunction,
  deleteFunction,
  findManagedFunction,
  listFunctions,
  listVersions,
  toFunctionResponse,
  updateFunction,
} from "../services/functions";
import { authenticate, principalOf, recordPermission, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, MessageSchema, PageQuerySchema } from "./schemas";

export const MAX_CODE_BYTES = 256 * 1024;
const security = [{ bearerAuth: [] }];
const tags = ["Functions"];

export const IdentifierSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, "must start with a letter or _ and hold only letters, digits and _");

/** A JSON Schema object; SINAS requires a `type` key (sinas-spec §6.1). */
const JsonSchemaObject = z
  .record(z.string(), z.unknown())
  .superRefine((schema, context) => {
    const problem = "type" in schema ? schemaDefect(schema) : "Schema must have a 'type' field";
    if (problem) context.addIssue({ code: "custom", message: `Invalid JSON schema: ${problem}` });
  })
  .openapi({ type: "object", example: { type: "object" } });

const CodeSchema = z
  .string()
  .min(1)
  .refine((code) => new TextEncoder().encode(code).length <= MAX_CODE_BYTES, {
    message: `must be at most ${MAX_CODE_BYTES / 1024} KiB`,
  });

/** One pip spec, in the form the executor installs (anything else would fail every run of its scope). */
const RequirementSchema = z
  .string()
  .min(1)
  .max(255)
  .refine(isInstallableRequirement, { message: REQUIREMENT_SPEC_DESCRIPTION })
  .openapi({ example: "requests>=2.0,<3" });

const FunctionFields = {
  description: z.string().max(10_000).nullable().optional(),
  requirements: z.array(RequirementSchema).max(100),
  enabled_namespaces: z.array(IdentifierSchema).max(100),
  shared_pool: z.boolean(),
  requires_approval: z.boolean(),
  timeout: z.number().int().min(1).max(3600).nullable().optional(),
};

const FunctionCreateSchema = z
  .object({
    namespace: IdentifierSchema.default("default"),
    name: IdentifierSchema,
    code: CodeSchema,
    input_schema: JsonSchemaObject,
    output_schema: JsonSchemaObject,
    ...FunctionFields,
    requirements: FunctionFields.requirements.default([]),
    enabled_namespaces: FunctionFields.enabled_namespaces.default([]),
    shared_pool: FunctionFields.shared_pool.default(false),
    requires_approval: FunctionFields.requires_approval.default(false),
  })
  .strict()
  .openapi("FunctionCreate");

const FunctionUpdateSchema = z
  .object({
    namespace: IdentifierSchema.optional(),
    name: IdentifierSchema.optional(),
    code: CodeSchema.optional(),
    input_schema: JsonSchemaObject.optional(),
    output_schema: JsonSchemaObject.optional(),
    description: FunctionFields.description,
    requirements: FunctionFields.requirements.optional(),
    enabled_namespaces: FunctionFields.enabled_namespaces.optional(),
    shared_pool: FunctionFields.shared_pool.optional(),
    requires_approval: FunctionFields.requires_approval.optional(),
    timeout: FunctionFields.timeout,
    is_active: z.boolean().optional(),
  })
  .strict()
  .openapi("FunctionUpdate");

const FunctionSchema = z
  .object({
    id: z.uuid(),
    namespace: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    code: z.string(),
    input_schema: z.record(z.string(), z.unknown()),
    output_schema: z.record(z.string(), z.unknown()),
    requirements: z.array(z.string()),
    enabled_namespaces: z.array(z.string()),
    shared_pool: z.boolean(),
    requires_approval: z.boolean(),
    timeout: z.number().int().nullable(),
    is_active: z.boolean(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("FunctionResponse");

const VersionSchema = z
  .object({
    id: z.uuid(),
    function_id: z.uuid(),
    version: z.number().int(),
    code: z.string(),
    input_schema: z.record(z.string(), z.unknown()),
    output_schema: z.record(z.string(), z.unknown()),
    created_at: z.string(),
    created_by: z.string(),
  })
  .openapi("FunctionVersion");

const FunctionParams = z.object({ namespace: IdentifierSchema, name: IdentifierSchema });

const createFunctionRoute = createRoute({
  method: "post",
  path: "/functions",
  tags,
  security,
  summary: "Create a function (sinas.functions.{namespace}.post:own); version 1 is recorded",
  request: { body: jsonBody(FunctionCreateSchema) },
  responses: {
    200: jsonResponse(FunctionSchema, "Created"),
    400: errorResponse("Exists, or unapproved packages"),
    403: errorResponse("Not allowed"),
    422: errorResponse("Invalid fields, Python syntax or JSON schema"),
    503: errorResponse("The executor (which checks the syntax) is unavailable"),
  },
});
const listRoute = createRoute({
  method: "get",
  path: "/functions",
  tags,
  security,
  summary: "Your functions (all with sinas.functions.*.get:all)",
  request: { query: PageQuerySchema },
  responses: { 200: jsonResponse(z.array(FunctionSchema), "Functions") },
});
const getRoute = createRoute({
  method: "get",
  path: "/functions/{namespace}/{name}",
  tags,
  security,
  summary: "A function you own (anyone's with sinas.functions.{namespace}.get:all)",
  request: { params: FunctionParams },
  responses: {
    200: jsonResponse(FunctionSchema, "Function"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const updateRoute = createRoute({
  method: "put",
  path: "/functions/{namespace}/{name}",
  tags,
  security,
  summary: "Update a function; a body with `code` records a new version",
  request: { params: FunctionParams, body: jsonBody(FunctionUpdateSchema) },
  responses: {
    200: jsonResponse(FunctionSchema, "Updated"),
    400: errorResponse("Name taken, or unapproved packages"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
    422: errorResponse("Invalid fields"),
  },
});
const deleteRoute = createRoute({
  method: "delete",
  path: "/functions/{namespace}/{name}",
  tags,
  security,
  summary: "Delete a function and its versions (executions stay)",
  request: { params: FunctionParams },
  responses: {
    200: jsonResponse(MessageSchema, "Deleted"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});
const versionsRoute = createRoute({
  method: "get",
  path: "/functions/{namespace}/{name}/versions",
  tags,
  security,
  summary: "Every recorded version, newest first",
  request: { params: FunctionParams },
  responses: {
    200: jsonResponse(z.array(VersionSchema), "Versions"),
    403: errorResponse("Not allowed"),
    404: errorResponse("Unknown"),
  },
});

export const functionsRouter = createRouter();
functionsRouter.use("/functions", authenticate);
functionsRouter.use("/functions/*", authenticate);

functionsRouter
  .openapi(createFunctionRoute, async (c) => {
    const body = c.req.valid("json");
    const principal = requirePermission(
      c,
      permissions.functionsNamespace(body.namespace, "post", "own"),
      "Not authorized to create functions in this namespace",
    );
    const services = c.get("services");
    return c.json(
      toFunctionResponse(await createFunction(services.db(), services.config, principal, body)),
      200,
    );
  })
  .openapi(listRoute, async (c) => {
    recordPermission(c, "sinas.functions.*.get:own");
    const rows = await listFunctions(c.get("services").db(), principalOf(c), c.req.valid("query"));
    return c.json(rows.map(toFunctionResponse), 200);
  })
  .openapi(getRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.functionsNamespace(namespace, "get", "own"));
    const fn = await findManagedFunction(c.get("services").db(), principalOf(c), "get", namespace, name);
    return c.json(toFunctionResponse(fn), 200);
  })
  .openapi(updateRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.functionsNamespace(namespace, "put", "own"));
    const services = c.get("services");
    const principal = principalOf(c);
    const current = await findManagedFunction(services.db(), principal, "put", namespace, name);
    const updated = await updateFunction(
      services.db(),
      services.config,
      principal,
      current,
      c.req.valid("json"),
    );
    return c.json(toFunctionResponse(updated), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.functionsNamespace(namespace, "delete", "own"));
    const db = c.get("services").db();
    await deleteFunction(db, await findManagedFunction(db, principalOf(c), "delete", namespace, name));
    return c.json({ message: `Function '${namespace}/${name}' deleted successfully` }, 200);
  })
  .openapi(versionsRoute, async (c) => {
    const { namespace, name } = c.req.valid("param");
    recordPermission(c, permissions.functionsNamespace(namespace, "get", "own"));
    const db = c.get("services").db();
    return c.json(
      await listVersions(db, await findManagedFunction(db, principalOf(c), "get", namespace, name)),
      200,
    );
  });
