import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { managementRouters, runtimeRouters } from "../../workers/app";
import { withOperationIds } from "../../workers/http/openapi-completion";
import { ERROR_STATUS } from "../../workers/lib/errors";

interface Operation {
  operationId?: string;
  security?: unknown[];
  parameters?: { name: string; in: string; schema?: { pattern?: string } }[];
  requestBody?: unknown;
  responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
}

interface Document {
  openapi: string;
  info: { description?: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}

const HTTP_METHODS = new Set(["get", "put", "post", "delete", "options", "head", "patch", "trace"]);
const SCHEMA_REF_PREFIX = "#/components/schemas/";

const DOCUMENTS = [
  { name: "runtime", url: "http://api.test/openapi.json" },
  { name: "management", url: "http://api.test/api/v1/openapi.json" },
];

// The runtime document reads the (unreachable) database for its dynamic paths and leaves them out.
async function fetchDocument(url: string): Promise<Document> {
  const response = await SELF.fetch(url);
  expect(response.status).toBe(200);
  return (await response.json()) as Document;
}

function operationsOf(document: Document): { method: string; path: string; operation: Operation }[] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => HTTP_METHODS.has(method))
      .map(([method, operation]) => ({ method, path, operation })),
  );
}

/** Every object at any depth of `value`. */
function objectsIn(value: unknown): Record<string, unknown>[] {
  if (Array.isArray(value)) return value.flatMap(objectsIn);
  if (typeof value !== "object" || value === null) return [];
  const object = value as Record<string, unknown>;
  return [object, ...Object.values(object).flatMap(objectsIn)];
}

function schemaRefsIn(value: unknown): string[] {
  return objectsIn(value)
    .map((object) => object.$ref)
    .filter((ref): ref is string => typeof ref === "string");
}

describe.each(DOCUMENTS)("the $name OpenAPI document", ({ url }) => {
  it("has only patterns that are regular expressions, which the schemas' own examples match", async () => {
    const schemas = objectsIn(await fetchDocument(url)).filter(
      (object) => typeof object.pattern === "string",
    );
    expect(schemas.length).toBeGreaterThan(0);
    for (const schema of schemas) {
      const pattern = schema.pattern as string;
      // JSON Schema patterns are ECMA-262 with the `u` flag; a regex literal's flags are no part of them.
      expect(() => new RegExp(pattern, "u")).not.toThrow();
      expect(pattern, "a regex literal's flags leaked into the pattern").not.toMatch(/\/[dgimsuvy]+$/);
      if (typeof schema.example === "string") expect(schema.example).toMatch(new RegExp(pattern, "u"));
    }
  });

  it("resolves every $ref to a component, and has no component nothing refers to", async () => {
    const document = await fetchDocument(url);
    const refs = new Set(schemaRefsIn(document));
    for (const ref of refs) {
      expect(ref.startsWith(SCHEMA_REF_PREFIX), ref).toBe(true);
      expect(document.components.schemas[ref.slice(SCHEMA_REF_PREFIX.length)], ref).toBeDefined();
    }
    for (const name of Object.keys(document.components.schemas)) {
      expect(refs.has(`${SCHEMA_REF_PREFIX}${name}`), `unused component ${name}`).toBe(true);
    }
  });

  it("gives every operation responses and a unique operationId", async () => {
    const operations = operationsOf(await fetchDocument(url));
    expect(operations.length).toBeGreaterThan(10);
    const ids = new Set<string>();
    for (const { method, path, operation } of operations) {
      expect(Object.keys(operation.responses ?? {}).length, `${method} ${path}`).toBeGreaterThan(0);
      expect(operation.operationId, `${method} ${path}`).toMatch(/^[a-z]+_[A-Za-z0-9_]+$/);
      expect(ids.has(operation.operationId as string), `${operation.operationId} twice`).toBe(false);
      ids.add(operation.operationId as string);
    }
  });

  it("documents the errors every route shares, with the error shape", async () => {
    for (const { method, path, operation } of operationsOf(await fetchDocument(url))) {
      const expected = [
        ...(operation.security?.length ? ["401"] : []),
        ...(operation.parameters?.length || operation.requestBody ? ["422"] : []),
        ...(operation.requestBody ? ["400", "415"] : []),
      ];
      for (const status of expected) {
        const response = operation.responses?.[status];
        expect(response, `${method} ${path} ${status}`).toBeDefined();
        expect(response?.content?.["application/json"]?.schema?.$ref).toBe(`${SCHEMA_REF_PREFIX}Error`);
      }
    }
  });

  it("lists every error code in the error shape", async () => {
    const document = await fetchDocument(url);
    const error = document.components.schemas.Error as { properties: { code: { enum: string[] } } };
    expect(error.properties.code.enum).toEqual(Object.keys(ERROR_STATUS));
    expect(error.properties.code.enum).toContain("UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("the shared error responses", () => {
  it("keeps what a route documents itself", async () => {
    const runtime = await fetchDocument("http://api.test/openapi.json");
    expect(runtime.paths["/webhooks/{path}"]?.post?.responses?.["401"]).toMatchObject({
      description: "No or bad credentials, secret or signature",
    });
    const management = await fetchDocument("http://api.test/api/v1/openapi.json");
    expect(management.paths["/request-logs"]?.get?.responses?.["422"]).toMatchObject({
      description: "Invalid query; `detail` names each field",
    });
  });
});

describe("the runtime OpenAPI document", () => {
  it("leaves the management API to its own document", async () => {
    const document = await fetchDocument("http://api.test/openapi.json");
    expect(document.info.description).toContain("/api/v1/docs");
    expect(Object.keys(document.paths).filter((path) => path.startsWith("/api/v1"))).toEqual([]);
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(["/health", "/auth/login", "/chats"]));
    // Schemas only management routes use are gone with them; the runtime routes' stay.
    expect(Object.keys(document.components.schemas)).toEqual(
      expect.arrayContaining(["Error", "StateCreate", "StateResponse", "MessageResponse", "UserResponse"]),
    );
    expect(document.components.schemas.LLMProviderCreate).toBeUndefined();
    expect(document.components.schemas.ScheduleCreate).toBeUndefined();
  });

  it("names operations by method and path", async () => {
    const document = await fetchDocument("http://api.test/openapi.json");
    expect(document.paths["/chats/{chat_id}"]?.get?.operationId).toBe("get_chats_chat_id");
  });
});

describe("the management OpenAPI document", () => {
  it("documents a schedule name pattern that takes any name but / and control characters", async () => {
    const document = await fetchDocument("http://api.test/api/v1/openapi.json");
    const name = document.paths["/schedules/{name}"]?.get?.parameters?.find((p) => p.name === "name");
    const pattern = new RegExp(name?.schema?.pattern ?? "(?!)", "u");
    for (const accepted of ["nightly-report", "Zürich report 🕑", "a.b", "\u00a0"]) {
      expect(pattern.test(accepted), accepted).toBe(true);
    }
    for (const refused of ["a/b", "tab\there", "nul\u0000", "del\u007f", "c1\u0085", ""]) {
      expect(pattern.test(refused), JSON.stringify(refused)).toBe(false);
    }
  });

  it("says the request-log routes need a token", async () => {
    const document = await fetchDocument("http://api.test/api/v1/openapi.json");
    for (const path of ["/request-logs", "/request-logs/stats"]) {
      expect(document.paths[path]?.get?.security, path).toEqual([{ bearerAuth: [] }]);
      expect(document.paths[path]?.get?.responses?.["401"], path).toBeDefined();
    }
  });

  it("names operations by method and the path as called, with /api/v1", async () => {
    const document = await fetchDocument("http://api.test/api/v1/openapi.json");
    expect(document.paths["/users/{user_id}"]?.get?.operationId).toBe("get_api_v1_users_user_id");
  });
});

describe("withOperationIds", () => {
  it("keeps the ids there are and numbers the clashes, as the dynamic paths need", () => {
    const responses = { 200: { description: "ok" } };
    const paths = withOperationIds({
      "/webhooks/{path}": { post: { operationId: "post_webhooks_path", responses } },
      "/webhooks/path": { post: { responses }, get: { responses } },
      "/webhooks/path/": { post: { responses } },
      "/agents/ns/x-y.z/chats": { post: { responses } },
    });
    expect(paths["/webhooks/{path}"]?.post?.operationId).toBe("post_webhooks_path");
    expect(paths["/webhooks/path"]?.post?.operationId).toBe("post_webhooks_path_2");
    expect(paths["/webhooks/path"]?.get?.operationId).toBe("get_webhooks_path");
    expect(paths["/webhooks/path/"]?.post?.operationId).toBe("post_webhooks_path_3");
    expect(paths["/agents/ns/x-y.z/chats"]?.post?.operationId).toBe("post_agents_ns_x_y_z_chats");
  });
});

describe("component schema names", () => {
  it("stand for one schema each: every router's own document agrees with the API documents", async () => {
    const [runtime, management] = await Promise.all(DOCUMENTS.map(({ url }) => fetchDocument(url)));
    const combined = { ...management?.components.schemas, ...runtime?.components.schemas };
    for (const [name, schema] of Object.entries(runtime?.components.schemas ?? {})) {
      const other = management?.components.schemas[name];
      if (other) expect(other, name).toEqual(schema);
    }
    for (const router of [...runtimeRouters, ...managementRouters]) {
      const own = router.getOpenAPI31Document({
        openapi: "3.1.0",
        info: { title: "one router", version: "0" },
      });
      for (const [name, schema] of Object.entries(own.components?.schemas ?? {})) {
        expect(schema, `${name} has another shape elsewhere`).toEqual(combined[name]);
      }
    }
  });
});
