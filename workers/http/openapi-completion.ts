/**
 * @module Finishing the generated OpenAPI documents: what every route shares, added once per document.
 *
 * Routes document their success and their own errors; the errors that the framework raises for any route
 * come from what each operation declares, so they are added here rather than repeated in every `createRoute`:
 * - 401 when the operation has a non-empty `security` (no or bad credentials);
 * - 422 when it has parameters or a request body (zod validation; `detail` lists each field);
 * - 400 (malformed JSON) and 415 (a Content-Type other than JSON) when it has a request body.
 * An entry the route documents itself is never replaced. Every operation also gets an `operationId`.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { ERROR_SCHEMA_NAME } from "./router";

export type OpenApiDocument = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;
type Paths = NonNullable<OpenApiDocument["paths"]>;
type PathItem = Paths[string];
type Operation = NonNullable<PathItem["get"]>;
type Responses = NonNullable<Operation["responses"]>;

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;
const SCHEMA_REF_PREFIX = "#/components/schemas/";

function errorResponse(description: string) {
  return {
    description,
    content: { "application/json": { schema: { $ref: `${SCHEMA_REF_PREFIX}${ERROR_SCHEMA_NAME}` } } },
  };
}

const UNAUTHORIZED = errorResponse("Missing or invalid credentials");
const VALIDATION_FAILED = errorResponse("Invalid parameters or body; `detail` lists each field");
const MALFORMED_JSON = errorResponse("Malformed JSON in the request body");
const UNSUPPORTED_MEDIA_TYPE = errorResponse("Content-Type must be application/json");

/** The shared error responses that apply to `operation`, by status. */
function sharedErrorResponses(operation: Operation, pathItem: PathItem): Responses {
  const responses: Responses = {};
  const hasParameters = Boolean(operation.parameters?.length || pathItem.parameters?.length);
  if (operation.security?.length) responses[401] = UNAUTHORIZED;
  if (hasParameters || operation.requestBody) responses[422] = VALIDATION_FAILED;
  if (operation.requestBody) {
    responses[400] = MALFORMED_JSON;
    responses[415] = UNSUPPORTED_MEDIA_TYPE;
  }
  return responses;
}

function* operationsOf(paths: Paths): Generator<Operation> {
  for (const pathItem of Object.values(paths)) {
    for (const method of HTTP_METHODS) {
      const operation = pathItem[method];
      if (operation) yield operation;
    }
  }
}

/** `paths` with `transform` applied to every operation; path-level fields are kept. */
function mapOperations(
  paths: Paths,
  transform: (operation: Operation, method: string, path: string, pathItem: PathItem) => Operation,
): Paths {
  const mapped: Paths = {};
  for (const [path, pathItem] of Object.entries(paths)) {
    const item: PathItem = { ...pathItem };
    for (const method of HTTP_METHODS) {
      const operation = pathItem[method];
      if (operation) item[method] = transform(operation, method, path, pathItem);
    }
    mapped[path] = item;
  }
  return mapped;
}

/**
 * The operationId scheme: the method and the path as a client calls it (`pathPrefix` is the server's base
 * path), every run of other characters than letters and digits as one `_`; e.g. GET /api/v1/users/{user_id}
 * is `get_api_v1_users_user_id`. A clash (two paths differing only in punctuation) gets `_2`, `_3`, ... in
 * path order, which is registration order, so the ids are the same on every generation.
 */
function operationIdOf(method: string, path: string): string {
  return `${method}_${path}`.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
}

/** `paths` where every operation has a unique `operationId`; ids the routes set themselves are kept. */
export function withOperationIds(paths: Paths, pathPrefix = ""): Paths {
  const taken = new Set<string>();
  for (const operation of operationsOf(paths)) if (operation.operationId) taken.add(operation.operationId);
  return mapOperations(paths, (operation, method, path) => {
    if (operation.operationId) return operation;
    const base = operationIdOf(method, `${pathPrefix}${path}`);
    let operationId = base;
    for (let suffix = 2; taken.has(operationId); suffix++) operationId = `${base}_${suffix}`;
    taken.add(operationId);
    return { ...operation, operationId };
  });
}

/**
 * The document with the shared error responses and an `operationId` on every operation. `pathPrefix` is the
 * base path of the document's server (`/api/v1` for the management API), so that ids name the called path.
 */
export function completeOpenApiDocument(document: OpenApiDocument, pathPrefix = ""): OpenApiDocument {
  const withErrors = mapOperations(document.paths ?? {}, (operation, _method, _path, pathItem) => ({
    ...operation,
    responses: { ...sharedErrorResponses(operation, pathItem), ...operation.responses },
  }));
  return { ...document, paths: withOperationIds(withErrors, pathPrefix) };
}

/**
 * `dynamic` operations (one per webhook and agent, sinas-spec §1.7) with the responses of the static route
 * each is an instance of (`templateOf` names its path), under their own: they fail as that route does.
 */
export function withTemplateResponses(
  dynamic: Paths,
  staticPaths: Paths,
  templateOf: (path: string) => string | null,
): Paths {
  return mapOperations(dynamic, (operation, method, path) => {
    const templatePath = templateOf(path);
    const template = templatePath
      ? staticPaths[templatePath]?.[method as (typeof HTTP_METHODS)[number]]
      : undefined;
    return template
      ? { ...operation, responses: { ...template.responses, ...operation.responses } }
      : operation;
  });
}

/** The document without `prefix` and the paths under it (another document describes those). */
export function withoutPathsUnder(document: OpenApiDocument, prefix: string): OpenApiDocument {
  const kept = Object.entries(document.paths ?? {}).filter(
    ([path]) => path !== prefix && !path.startsWith(`${prefix}/`),
  );
  return { ...document, paths: Object.fromEntries(kept) };
}

/** Adds to `found` the component schema names that `value` refers to, at any depth. */
function collectSchemaRefs(value: unknown, found: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collectSchemaRefs(item, found);
    return;
  }
  if (typeof value !== "object" || value === null) return;
  for (const [key, child] of Object.entries(value)) {
    if (key === "$ref" && typeof child === "string" && child.startsWith(SCHEMA_REF_PREFIX)) {
      found.add(child.slice(SCHEMA_REF_PREFIX.length));
    } else {
      collectSchemaRefs(child, found);
    }
  }
}

/**
 * The document without the component schemas that no path uses, directly or through other schemas: those
 * left behind by `withoutPathsUnder` would otherwise show up in the docs page's schema list.
 */
export function withoutUnreferencedSchemas(document: OpenApiDocument): OpenApiDocument {
  const schemas = document.components?.schemas;
  if (!schemas) return document;
  const used = new Set<string>();
  collectSchemaRefs(document.paths, used);
  // Schemas used by used schemas are used too; `used` grows while it is walked.
  for (const name of used) collectSchemaRefs(schemas[name], used);
  const kept = Object.entries(schemas).filter(([name]) => used.has(name));
  return { ...document, components: { ...document.components, schemas: Object.fromEntries(kept) } };
}
