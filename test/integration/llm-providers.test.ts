/**
 * LLM provider management through the real stack (sinas-spec §1.16, §10.6, S19): create, list, get by name, patch
 * and soft-delete by id, one default at a time, the key never returned but usable (decrypted inside workerd, where
 * the SDK adapters run: one chat message per wire format, plain and streamed, reaches the fake LLM with the key).
 */
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FakeLlm, startFakeLlm } from "../fixtures/fake-llm";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL } from "../helpers/auth";
import { contentOf, streamMessage } from "../helpers/chat";
import { openStackDb } from "../helpers/db";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let fake: FakeLlm;
let admin: Session;
let bob: Session;
let db: ReturnType<typeof openStackDb>;

type Provider = {
  id: string;
  name: string;
  provider_type: string;
  api_endpoint: string | null;
  default_model: string | null;
  config: Record<string, unknown>;
  is_default: boolean;
  is_active: boolean;
  created_at: string;
  updated_at: string;
};

beforeAll(async () => {
  fake = await startFakeLlm();
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  db = openStackDb(stack);
  [admin, bob] = await Promise.all([login(stack, SUPERADMIN_EMAIL), login(stack, "bob@acme.io")]);
});
afterAll(async () => {
  await db?.close();
  await stack?.stop();
  await fake?.close();
});
beforeEach(() => fake.reset());

async function create(body: Record<string, unknown>): Promise<Provider> {
  const response = await api(stack, admin, "POST", "/api/v1/llm-providers", body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body as Provider;
}

async function get(name: string) {
  return api(stack, admin, "GET", `/api/v1/llm-providers/${encodeURIComponent(name)}`);
}

describe("S19 LLM providers", () => {
  let fakeProvider: Provider;
  let fake2: Provider;

  it("creates a provider without ever returning its key (1)", async () => {
    const response = await api(stack, admin, "POST", "/api/v1/llm-providers", {
      name: "fake",
      provider_type: "openai",
      api_key: "sk-test",
      api_endpoint: fake.openaiUrl,
      default_model: "fake-model",
      is_default: true,
    });
    expect(response.status, JSON.stringify(response.body)).toBe(201);
    fakeProvider = response.body as Provider;
    expect(fakeProvider).not.toHaveProperty("api_key");
    expect(Object.keys(fakeProvider).sort()).toEqual(
      [
        "id",
        "name",
        "provider_type",
        "api_endpoint",
        "default_model",
        "config",
        "is_default",
        "is_active",
        "created_at",
        "updated_at",
      ].sort(),
    );
    expect(fakeProvider).toMatchObject({
      name: "fake",
      provider_type: "openai",
      api_endpoint: fake.openaiUrl,
      default_model: "fake-model",
      config: {},
      is_default: true,
      is_active: true,
    });
    // Encrypted at rest: the stored value is not the key.
    const stored = await db.db.execute(sql`select api_key from llm_providers where id = ${fakeProvider.id}`);
    const apiKey = (stored.rows[0] as { api_key: string }).api_key;
    expect(apiKey).not.toContain("sk-test");
    expect(apiKey).toMatch(/^v1\./);
  });

  it("keeps one default: a new default clears the old, PATCH moves it back (2)", async () => {
    fake2 = await create({
      name: "fake2",
      provider_type: "openai",
      is_default: true,
      config: { models: ["a"] },
    });
    expect(fake2).toMatchObject({ is_default: true, config: { models: ["a"] }, api_endpoint: null });
    const first = await get("fake");
    expect(first.status).toBe(200);
    expect((first.body as Provider).is_default).toBe(false);

    const patched = await api(stack, admin, "PATCH", `/api/v1/llm-providers/${fakeProvider.id}`, {
      is_default: true,
    });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body).toMatchObject({ id: fakeProvider.id, is_default: true, name: "fake" });
    expect(((await get("fake2")).body as Provider).is_default).toBe(false);
  });

  it("soft-deletes by id; the name stays taken (3)", async () => {
    const deleted = await api(stack, admin, "DELETE", `/api/v1/llm-providers/${fake2.id}`);
    expect(deleted.status).toBe(204);
    const gone = await get("fake2");
    expect(gone.status).toBe(404);
    expect((gone.body as { detail: string }).detail).toBe("Provider 'fake2' not found");
    const rows = await db.db.execute(sql`select is_active from llm_providers where id = ${fake2.id}`);
    expect((rows.rows[0] as { is_active: boolean }).is_active).toBe(false);

    const duplicate = await api(stack, admin, "POST", "/api/v1/llm-providers", {
      name: "fake2",
      provider_type: "openai",
    });
    expect(duplicate.status).toBe(400);
    expect((duplicate.body as { detail: string }).detail).toBe("Provider with name 'fake2' already exists");
  });

  it("lists active providers newest first", async () => {
    const third = await create({ name: "third", provider_type: "mistral" });
    const listed = await api(stack, admin, "GET", "/api/v1/llm-providers");
    expect(listed.status).toBe(200);
    const names = (listed.body as Provider[]).map((provider) => provider.name);
    expect(names[0]).toBe("third");
    expect(names).toContain("fake");
    expect(names).not.toContain("fake2");
    for (const provider of listed.body as Provider[]) expect(provider).not.toHaveProperty("api_key");
    await api(stack, admin, "DELETE", `/api/v1/llm-providers/${third.id}`);
  });

  it("patches fields, reactivates, and refuses a taken name", async () => {
    const reactivated = await api(stack, admin, "PATCH", `/api/v1/llm-providers/${fake2.id}`, {
      is_active: true,
      default_model: "m2",
      api_endpoint: "https://llm.example/v1",
    });
    expect(reactivated.status, JSON.stringify(reactivated.body)).toBe(200);
    expect(reactivated.body).toMatchObject({
      is_active: true,
      default_model: "m2",
      api_endpoint: "https://llm.example/v1",
    });
    expect((await get("fake2")).status).toBe(200);

    const taken = await api(stack, admin, "PATCH", `/api/v1/llm-providers/${fake2.id}`, { name: "fake" });
    expect(taken.status).toBe(400);
    expect((taken.body as { detail: string }).detail).toBe("Provider with name 'fake' already exists");

    const unknown = "00000000-0000-4000-8000-000000000000";
    const missing = await api(stack, admin, "PATCH", `/api/v1/llm-providers/${unknown}`, { name: "x" });
    expect(missing.status).toBe(404);
    expect((missing.body as { detail: string }).detail).toBe(`Provider '${unknown}' not found`);
    expect((await api(stack, admin, "DELETE", `/api/v1/llm-providers/${unknown}`)).status).toBe(404);
    await api(stack, admin, "DELETE", `/api/v1/llm-providers/${fake2.id}`);
  });
});

describe("validation and permissions", () => {
  it("refuses unknown provider types, non-http endpoints and unknown fields with 422", async () => {
    for (const body of [
      { name: "bad", provider_type: "gemini" },
      { name: "bad", provider_type: "openai", api_endpoint: "ftp://x" },
      { name: "bad", provider_type: "openai", api_endpoint: "not a url" },
      { name: "bad", provider_type: "openai", config: [] },
      { name: "bad", provider_type: "openai", surprise: true },
      { name: "", provider_type: "openai" },
      { provider_type: "openai" },
      // A key is sent as a header: a pasted newline failed every later call ("Invalid header value").
      { name: "bad", provider_type: "openai", api_key: "sk-abc\n" },
      { name: "bad", provider_type: "openai", config: { timeout: -1 } },
      { name: "bad", provider_type: "openai", config: { timeout: "abc" } },
      { name: "bad", provider_type: "openai", config: { timeout: 1e20 } },
    ]) {
      const response = await api(stack, admin, "POST", "/api/v1/llm-providers", body);
      expect(response.status, JSON.stringify(body)).toBe(422);
    }
    const withOtherConfig = await api(stack, admin, "POST", "/api/v1/llm-providers", {
      name: "configured",
      provider_type: "openai",
      config: { timeout: 30, organization: "acme" },
    });
    expect(withOtherConfig.status, JSON.stringify(withOtherConfig.body)).toBe(201);
    const badType = await api(stack, admin, "POST", "/api/v1/llm-providers", {
      name: "b",
      provider_type: "gemini",
    });
    expect(JSON.stringify(badType.body)).toContain("provider_type");
    const badId = await api(stack, admin, "PATCH", "/api/v1/llm-providers/not-a-uuid", { name: "x" });
    expect(badId.status).toBe(422);
  });

  it("accepts provider types in any case and stores them lower-case", async () => {
    const provider = await create({ name: "cased", provider_type: "Anthropic" });
    expect(provider.provider_type).toBe("anthropic");
    await api(stack, admin, "DELETE", `/api/v1/llm-providers/${provider.id}`);
  });

  it("is admin-only: each route names the permission it needs", async () => {
    const id = "00000000-0000-4000-8000-000000000000";
    const calls: [string, string, string, unknown?][] = [
      ["POST", "/api/v1/llm-providers", "post", { name: "x", provider_type: "openai" }],
      ["GET", "/api/v1/llm-providers", "get"],
      ["GET", "/api/v1/llm-providers/fake", "get"],
      ["PATCH", `/api/v1/llm-providers/${id}`, "put", { name: "y" }],
      ["DELETE", `/api/v1/llm-providers/${id}`, "delete"],
    ];
    for (const [method, path, action, body] of calls) {
      const response = await api(stack, bob, method, path, body);
      expect(response.status, `${method} ${path}`).toBe(403);
      expect((response.body as { detail: string }).detail).toBe(
        `Permission denied: sinas.llm_providers.${action}:all`,
      );
    }
    expect((await api(stack, null, "GET", "/api/v1/llm-providers")).status).toBe(401);
  });
});

describe("providers are callable from the Worker", () => {
  it.each([
    ["openai", () => fake.openaiUrl],
    ["anthropic", () => fake.url],
  ] as const)("a %s provider reaches the fake with its decrypted key (S19.4)", async (type, endpoint) => {
    const provider = await create({
      name: `call-${type}`,
      provider_type: type,
      api_key: "sk-test",
      api_endpoint: endpoint(),
      default_model: "fake-model",
    });
    const agent = await api(stack, admin, "POST", "/api/v1/agents", {
      name: `caller_${type}`,
      system_prompt: "Be brief.",
      llm_provider_id: provider.id,
      temperature: 0,
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    const chat = await api(stack, admin, "POST", `/agents/default/caller_${type}/chats`, {});
    expect(chat.status, JSON.stringify(chat.body)).toBe(200);
    const chatId = (chat.body as { id: string }).id;

    fake.script({ content: `Hi from ${type}` });
    const reply = await api(stack, admin, "POST", `/chats/${chatId}/messages`, { content: "Hello" });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(reply.body).toMatchObject({ role: "assistant", content: `Hi from ${type}` });

    const [sent] = fake.requests;
    expect(sent?.api).toBe(type);
    expect(sent?.headers.authorization).toBe("Bearer sk-test");
    expect(sent?.body.model).toBe("fake-model");
    expect(sent?.body.temperature).toBe(0);

    // Streaming through the same adapter inside workerd: the chunks arrive as SSE `message` events.
    fake.script({ chunks: ["Str", "eam", "ed"] });
    const streamed = await streamMessage(stack, admin, chatId, "Again");
    expect(streamed.status).toBe(200);
    expect(contentOf(streamed.events)).toBe("Streamed");
    expect(streamed.events.at(-1)?.event).toBe("done");
    expect(fake.requests[1]?.body.stream).toBe(true);
  });

  it("reports a provider error to the caller in the provider's words", async () => {
    const provider = await create({
      name: "failing",
      provider_type: "openai",
      api_key: "sk-wrong",
      api_endpoint: fake.openaiUrl,
      default_model: "fake-model",
    });
    await api(stack, admin, "POST", "/api/v1/agents", { name: "failing", llm_provider_id: provider.id });
    const chat = await api(stack, admin, "POST", "/agents/default/failing/chats", {});
    fake.script({ status: 401, error: "Incorrect API key provided" });
    const reply = await api(stack, admin, "POST", `/chats/${(chat.body as { id: string }).id}/messages`, {
      content: "Hello",
    });
    expect(reply.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(reply.body)).toContain("OpenAI API error (401): Incorrect API key provided");
  });
});
