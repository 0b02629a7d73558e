/**
 * Agent management through the real stack (sinas-spec §1.8, §5.1, S20 with D-5, D-7, D-16, D-19): CRUD, soft
 * delete, ownership, permissions and field validation.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { llmProviders } from "../../workers/db/schema";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let db: ReturnType<typeof openStackDb>;
let admin: Session;
let alice: Session;
let bob: Session;
let providerId: string;

type Row = Record<string, unknown>;
type Issue = { loc: (string | number)[]; msg: string; type: string };

const AGENT_RESPONSE_FIELDS = [
  "id",
  "user_id",
  "group_id",
  "namespace",
  "name",
  "description",
  "llm_provider_id",
  "model",
  "temperature",
  "max_tokens",
  "system_prompt",
  "input_schema",
  "output_schema",
  "initial_messages",
  "enabled_functions",
  "enabled_mcp_tools",
  "enabled_agents",
  "function_parameters",
  "mcp_tool_parameters",
  "state_namespaces_readonly",
  "state_namespaces_readwrite",
  "is_active",
  "created_at",
  "updated_at",
].sort();

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  db = openStackDb(stack);
  [admin, alice, bob] = await Promise.all([
    login(stack, SUPERADMIN_EMAIL),
    login(stack, "alice@acme.io"),
    login(stack, "bob@acme.io"),
  ]);
  // A provider row written directly: the provider API is another module's, and agents only reference it.
  const [provider] = await db.db
    .insert(llmProviders)
    .values({ name: "fake", providerType: "openai", defaultModel: "fake-model" })
    .returning({ id: llmProviders.id });
  providerId = provider?.id as string;
});
afterAll(async () => {
  await db?.close();
  await stack?.stop();
});

async function createAgent(session: Session, body: Row) {
  const response = await api(stack, session, "POST", "/api/v1/agents", body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body as Row & { id: string };
}

/** The fields a 422 names, e.g. `["body.name"]`. */
function fieldsOf(body: unknown): string[] {
  return ((body as { detail: Issue[] }).detail ?? []).map((issue) => issue.loc.join("."));
}

describe("agent CRUD (S20)", () => {
  it("creates with the documented defaults, refuses duplicates and bad names", async () => {
    const agent = await createAgent(admin, { name: "tmp", model: "fake-model" });
    expect(Object.keys(agent).sort()).toEqual(AGENT_RESPONSE_FIELDS);
    expect(agent).toMatchObject({
      namespace: "default",
      name: "tmp",
      model: "fake-model",
      temperature: 0.7,
      enabled_functions: [],
      enabled_mcp_tools: [],
      enabled_agents: [],
      function_parameters: {},
      mcp_tool_parameters: {},
      state_namespaces_readonly: [],
      state_namespaces_readwrite: [],
      input_schema: {},
      output_schema: {},
      initial_messages: null,
      llm_provider_id: null,
      group_id: null,
      is_active: true,
      user_id: admin.user.id,
    });

    const again = await api(stack, admin, "POST", "/api/v1/agents", { name: "tmp" });
    expect(again.status).toBe(400);
    expect((again.body as Row).detail).toBe("Agent 'default/tmp' already exists");

    const bad = await api(stack, admin, "POST", "/api/v1/agents", { name: "9bad" });
    expect(bad.status).toBe(422);
    expect(fieldsOf(bad.body)).toEqual(["body.name"]);
  });

  it("updates every given field, including schemas and initial messages (D-7)", async () => {
    const outputSchema = { type: "object", properties: { a: { type: "string" } } };
    const updated = await api(stack, admin, "PUT", "/api/v1/agents/default/tmp", {
      description: "d",
      output_schema: outputSchema,
      input_schema: { type: "object", properties: { q: { type: "string" } } },
      initial_messages: [{ role: "user", content: "hi" }],
      temperature: 0,
      model: null,
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body).toMatchObject({
      description: "d",
      output_schema: outputSchema,
      input_schema: { properties: { q: { type: "string" } } },
      initial_messages: [{ role: "user", content: "hi" }],
      temperature: 0,
      // null means "unchanged" (§1.8: non-null values overwrite).
      model: "fake-model",
    });
    const read = await api(stack, admin, "GET", "/api/v1/agents/default/tmp");
    expect((read.body as Row).output_schema).toEqual(outputSchema);
  });

  it("soft-deletes: gone from every lookup, name still taken", async () => {
    const deleted = await api(stack, admin, "DELETE", "/api/v1/agents/default/tmp");
    expect(deleted.status).toBe(204);
    const read = await api(stack, admin, "GET", "/api/v1/agents/default/tmp");
    expect(read.status).toBe(404);
    expect((read.body as Row).detail).toBe("Agent 'default/tmp' not found");
    expect((await api(stack, admin, "PUT", "/api/v1/agents/default/tmp", { description: "x" })).status).toBe(
      404,
    );
    expect((await api(stack, admin, "DELETE", "/api/v1/agents/default/tmp")).status).toBe(404);
    const list = (await api(stack, admin, "GET", "/api/v1/agents")).body as Row[];
    expect(list.map((agent) => agent.name)).not.toContain("tmp");
    const recreate = await api(stack, admin, "POST", "/api/v1/agents", { name: "tmp" });
    expect(recreate.status).toBe(400);
    expect((recreate.body as Row).detail).toBe("Agent 'default/tmp' already exists");
  });

  it("lets owners manage their agents (D-5) and hides them from others", async () => {
    const mine = await createAgent(alice, { name: "mine" });
    expect(mine.user_id).toBe(alice.user.id);
    const own = await api(stack, alice, "GET", "/api/v1/agents/default/mine");
    expect(own.status).toBe(200);
    expect((own.body as Row).id).toBe(mine.id);

    // An API key of the owner made with `{}` lists none of their agents (nor their functions).
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "bare", permissions: {} });
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    expect((await api(stack, alice, "GET", "/api/v1/agents")).body).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: "mine" })]),
    );
    expect((await api(stack, bare, "GET", "/api/v1/agents")).body).toEqual([]);
    expect((await api(stack, bare, "GET", "/api/v1/functions")).body).toEqual([]);
    // A key for one namespace pages through that namespace's functions only, not pages of others cut short.
    for (const [namespace, name] of [
      ["alpha", "a1"],
      ["alpha", "a2"],
      ["alpha", "a3"],
      ["beta", "b1"],
      ["beta", "b2"],
    ]) {
      const made = await api(stack, alice, "POST", "/api/v1/functions", {
        namespace,
        name,
        code: `def ${name}(input, context):\n    return {}`,
        input_schema: { type: "object" },
        output_schema: { type: "object" },
      });
      expect(made.status, JSON.stringify(made.body)).toBe(200);
    }
    const betaKey = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "beta",
      permissions: { "sinas.functions.beta.get:own": true },
    });
    const beta = { headers: { "x-api-key": (betaKey.body as { key: string }).key } };
    const page = await api(stack, beta, "GET", "/api/v1/functions?skip=0&limit=2");
    expect((page.body as Row[]).map((fn) => fn.name)).toEqual(["b1", "b2"]);

    const other = await api(stack, bob, "GET", "/api/v1/agents/default/mine");
    expect(other.status).toBe(404);
    expect((other.body as Row).detail).toBe("Agent 'default/mine' not found");
    const put = await api(stack, bob, "PUT", "/api/v1/agents/default/mine", { description: "bob was here" });
    expect(put.status).toBe(403);
    expect((put.body as Row).detail).toBe("Not authorized to update this agent");
    const del = await api(stack, bob, "DELETE", "/api/v1/agents/default/mine");
    expect(del.status).toBe(403);
    expect((del.body as Row).detail).toBe("Not authorized to delete this agent");

    // An admin (sinas.agents.{ns}.*:all) reaches any agent.
    expect((await api(stack, admin, "GET", "/api/v1/agents/default/mine")).status).toBe(200);
    const byAdmin = await api(stack, admin, "PUT", "/api/v1/agents/default/mine", {
      description: "by admin",
    });
    expect(byAdmin.status).toBe(200);
    const byOwner = await api(stack, alice, "PUT", "/api/v1/agents/default/mine", { max_tokens: 50 });
    expect(byOwner.body).toMatchObject({ description: "by admin", max_tokens: 50 });
  });

  it("lists own agents, or every active agent with sinas.agents.*.get:all, newest first", async () => {
    await createAgent(bob, { name: "bobs" });
    const bobs = (await api(stack, bob, "GET", "/api/v1/agents")).body as Row[];
    expect(bobs.map((agent) => agent.name)).toEqual(["bobs"]);
    const all = (await api(stack, admin, "GET", "/api/v1/agents")).body as Row[];
    const names = all.map((agent) => agent.name);
    expect(names).toEqual(expect.arrayContaining(["bobs", "mine"]));
    expect(names.indexOf("bobs")).toBeLessThan(names.indexOf("mine"));
  });

  it("addresses names with spaces and other namespaces, and renames", async () => {
    const spaced = await createAgent(alice, { namespace: "support", name: "Help Desk" });
    expect(spaced).toMatchObject({ namespace: "support", name: "Help Desk" });
    const read = await api(stack, alice, "GET", "/api/v1/agents/support/Help%20Desk");
    expect(read.status).toBe(200);

    const taken = await api(stack, alice, "PUT", "/api/v1/agents/support/Help%20Desk", {
      namespace: "default",
      name: "mine",
    });
    expect(taken.status).toBe(400);
    expect((taken.body as Row).detail).toBe("Agent 'default/mine' already exists");

    const renamed = await api(stack, alice, "PUT", "/api/v1/agents/support/Help%20Desk", {
      name: "Helpdesk",
    });
    expect(renamed.status).toBe(200);
    expect((renamed.body as Row).id).toBe(spaced.id);
    expect((await api(stack, alice, "GET", "/api/v1/agents/support/Helpdesk")).status).toBe(200);
    expect((await api(stack, alice, "GET", "/api/v1/agents/support/Help%20Desk")).status).toBe(404);
  });
});

/** `{"a": {"a": ... {}}}`, `depth` objects deep, built without recursion. */
function nested(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = {};
  for (let level = 1; level < depth; level++) value = { a: value };
  return value;
}

describe("agent fields", () => {
  it("stores temperature 0 (D-19) and every reference as given (D-16)", async () => {
    const childId = randomUUID();
    const agent = await createAgent(alice, {
      name: "full",
      description: "All fields",
      llm_provider_id: providerId,
      model: "fake-model",
      temperature: 0,
      max_tokens: 256,
      system_prompt: "You help {{ customer }}.",
      input_schema: { type: "object", properties: { customer: { type: "string" } }, required: ["customer"] },
      initial_messages: [
        { role: "system", content: "Be brief." },
        { role: "assistant", content: "Hello!" },
      ],
      enabled_functions: ["default/add"],
      enabled_mcp_tools: ["lookup"],
      enabled_agents: ["default/mine", childId],
      function_parameters: { "default/add": { a: 1, b: "{{ customer }}" } },
      mcp_tool_parameters: { lookup: { q: "x" } },
      state_namespaces_readonly: ["shared"],
      state_namespaces_readwrite: ["prefs"],
    });
    expect(agent).toMatchObject({
      llm_provider_id: providerId,
      temperature: 0,
      max_tokens: 256,
      enabled_agents: ["default/mine", childId],
      function_parameters: { "default/add": { a: 1, b: "{{ customer }}" } },
      initial_messages: [
        { role: "system", content: "Be brief." },
        { role: "assistant", content: "Hello!" },
      ],
      state_namespaces_readonly: ["shared"],
      state_namespaces_readwrite: ["prefs"],
    });
  });

  it.each([
    ["an unknown provider", { llm_provider_id: randomUUID() }, "body.llm_provider_id"],
    ["an unknown group", { group_id: randomUUID() }, "body.group_id"],
    ["a provider id that is no UUID", { llm_provider_id: "fake" }, "body.llm_provider_id"],
    ["a schema that is no object", { input_schema: [1, 2] }, "body.input_schema"],
    ["a schema with a bad type", { output_schema: { type: "strin" } }, "body.output_schema"],
    [
      "a schema with bad properties",
      { input_schema: { type: "object", properties: 3 } },
      "body.input_schema",
    ],
    ["a function reference without namespace", { enabled_functions: ["add"] }, "body.enabled_functions.0"],
    [
      "a parameter key without namespace",
      { function_parameters: { add: { a: 1 } } },
      "body.function_parameters.add",
    ],
    [
      "parameters that are no object",
      { function_parameters: { "default/add": 5 } },
      "body.function_parameters.default/add",
    ],
    ["an agent reference of neither kind", { enabled_agents: ["child"] }, "body.enabled_agents.0"],
    ["a temperature above 2", { temperature: 3 }, "body.temperature"],
    ["a negative max_tokens", { max_tokens: -1 }, "body.max_tokens"],
    [
      "a tool message among initial messages",
      { initial_messages: [{ role: "tool", content: "x" }] },
      "body.initial_messages.0.role",
    ],
    ["a bad namespace", { namespace: "has space" }, "body.namespace"],
    ["an unknown field", { colour: "blue" }, "body"],
    // A recursive walk of the templates overflowed: 500.
    [
      "parameters nested 2,000 deep",
      { function_parameters: { "default/add": nested(2_000) } },
      "body.function_parameters",
    ],
    [
      "an initial message with a NUL",
      { initial_messages: [{ role: "user", content: "a\u0000" }] },
      "body.initial_messages.0.content",
    ],
  ])("answers 422 naming the field for %s", async (_label, fields, field) => {
    const response = await api(stack, alice, "POST", "/api/v1/agents", {
      name: `bad${randomUUID().slice(0, 8)}`,
      ...fields,
    });
    expect(response.status, JSON.stringify(response.body)).toBe(422);
    expect(fieldsOf(response.body)).toContain(field);
  });

  it("validates references on update too", async () => {
    const response = await api(stack, alice, "PUT", "/api/v1/agents/default/mine", {
      llm_provider_id: randomUUID(),
    });
    expect(response.status).toBe(422);
    expect(fieldsOf(response.body)).toEqual(["body.llm_provider_id"]);
  });
});

describe("agent permissions", () => {
  it("needs sinas.agents.{namespace}.post:own to create", async () => {
    const created = await api(stack, admin, "POST", "/api/v1/users", { email: "guest@acme.io" });
    expect(created.status, JSON.stringify(created.body)).toBeLessThan(300);
    const guest = await login(stack, "guest@acme.io");
    const response = await api(stack, guest, "POST", "/api/v1/agents", { name: "guestbot" });
    expect(response.status).toBe(403);
    expect((response.body as Row).detail).toBe("Not authorized to create agents in namespace 'default'");
    expect(await api(stack, guest, "GET", "/api/v1/agents")).toMatchObject({ status: 200, body: [] });
  });

  it("documents the routes in the management OpenAPI document", async () => {
    const document = (await api(stack, null, "GET", "/api/v1/openapi.json")).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(document.paths["/agents"] ?? {}).sort()).toEqual(["get", "post"]);
    expect(Object.keys(document.paths["/agents/{namespace}/{name}"] ?? {}).sort()).toEqual([
      "delete",
      "get",
      "put",
    ]);
  });

  it("needs a token", async () => {
    expect((await api(stack, null, "GET", "/api/v1/agents")).status).toBe(401);
    expect((await api(stack, null, "POST", "/api/v1/agents", { name: "x" })).status).toBe(401);
  });
});
