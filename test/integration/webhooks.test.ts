import { Redis } from "@upstash/redis";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signWebhookBody } from "../../workers/lib/webhook-signature";
import { api, IDENTITY_VARS, login, type Session, SUPERADMIN_EMAIL, tokenHolds } from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { createFunction, GREET, pythonFunction, waitForFinalStatus } from "../helpers/functions";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;
let admin: Session;
let alice: Session;
let bob: Session;
let db: ReturnType<typeof openStackDb>;

type Row = Record<string, unknown>;

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  db = openStackDb(stack);
  [admin, alice, bob] = await Promise.all([
    login(stack, SUPERADMIN_EMAIL),
    login(stack, "alice@acme.io"),
    login(stack, "bob@acme.io"),
  ]);
  await createFunction(stack, alice, GREET);
  await createFunction(stack, alice, pythonFunction("echo", "    return input"));
});
afterAll(async () => {
  await db?.close();
  await stack?.stop();
});

/** A raw call to a webhook: `body` is sent as is. */
async function call(
  path: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    query?: string;
  } = {},
) {
  const response = await stack.fetch(`/webhooks/${path}${init.query ?? ""}`, {
    method: init.method ?? "POST",
    headers: init.headers ?? {},
    body: init.body,
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // keep the text
  }
  return { status: response.status, body: body as Row, headers: response.headers };
}

function json(session: Session | null, extra: Record<string, string> = {}) {
  return { "content-type": "application/json", ...(session?.headers ?? {}), ...extra };
}

async function createWebhook(session: Session, definition: Record<string, unknown>) {
  const response = await api(stack, session, "POST", "/api/v1/webhooks", definition);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body as Row & { id: string; secret?: string };
}

async function executionsOf(webhookId: string): Promise<Row[]> {
  const result = await db.db.execute(
    sql`select execution_id, status, input_data::text as input_text from executions where trigger_id = ${webhookId}`,
  );
  return result.rows as Row[];
}

describe("webhook end-to-end (S12)", () => {
  it("runs the function with the envelope and records the execution", async () => {
    const webhook = await createWebhook(alice, {
      path: "greet",
      function_name: "greet",
      default_values: { source: "test" },
    });
    expect(webhook).toMatchObject({
      path: "greet",
      http_method: "POST",
      requires_auth: true,
      is_active: true,
      async: false,
      verification: "none",
      default_values: { source: "test" },
    });
    expect(webhook).not.toHaveProperty("secret");

    const response = await call("greet", {
      headers: json(alice, { "X-Trace": "1" }),
      body: JSON.stringify({ name: "Ada" }),
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body).toMatchObject({
      success: true,
      result: { greeting: "Hello Ada", user: "alice@acme.io", trigger: "WEBHOOK" },
    });
    const executionId = response.body.execution_id as string;

    const execution = await api(stack, alice, "GET", `/executions/${executionId}`);
    expect(execution.status).toBe(200);
    const record = execution.body as Row;
    expect(record).toMatchObject({
      status: "COMPLETED",
      trigger_type: "WEBHOOK",
      trigger_id: webhook.id,
      function_name: "greet",
      output_data: response.body.result,
    });
    expect(record.completed_at).toBeTruthy();
    expect(record.duration_ms as number).toBeGreaterThanOrEqual(0);
    const input = record.input_data as Row;
    expect(input).toMatchObject({
      source: "test",
      body: { name: "Ada" },
      method: "POST",
      path: "/webhooks/greet",
      path_params: { path: "greet" },
    });
    expect((input.headers as Row)["x-trace"]).toBe("1");
    expect(input.headers).not.toHaveProperty("authorization");
    expect(input.url).toMatch(/\/webhooks\/greet$/);

    expect((await api(stack, alice, "GET", `/executions/${executionId}/steps`)).status).toBe(200);
    const listed = (await api(stack, alice, "GET", "/executions?function_name=greet")).body as Row[];
    expect(listed.map((row) => row.execution_id)).toContain(executionId);
  });
});

describe("webhook input envelope (S13)", () => {
  it("maps query (last value wins), empty body, method and path params of a GET webhook", async () => {
    await createWebhook(alice, { path: "tools/echo", function_name: "echo", http_method: "GET" });
    const response = await call("tools/echo", {
      method: "GET",
      headers: alice.headers,
      query: "?x=1&x=2&y=z",
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const result = response.body.result as Row;
    expect(result.query).toEqual({ x: "2", y: "z" });
    expect(result.body).toEqual({});
    expect(result.method).toBe("GET");
    expect(result.path_params).toEqual({ path: "tools/echo" });
    expect(result.path).toBe("/webhooks/tools/echo");
    expect(result.url).toMatch(/\/webhooks\/tools\/echo\?x=1&x=2&y=z$/);
  });

  it("reads form, text and invalid JSON bodies", async () => {
    await createWebhook(alice, { path: "form", function_name: "echo" });
    const form = await call("form", {
      headers: { ...alice.headers, "content-type": "application/x-www-form-urlencoded" },
      body: "a=b&c=d",
    });
    expect((form.body.result as Row).body).toEqual({ a: "b", c: "d" });
    const text = await call("form", {
      headers: { ...alice.headers, "content-type": "text/plain" },
      body: "hello",
    });
    expect((text.body.result as Row).body).toEqual({ raw: "hello" });
    const invalid = await call("form", { headers: json(alice), body: "{not json" });
    expect((invalid.body.result as Row).body).toEqual({});
  });

  it("lets the envelope win over default values", async () => {
    await createWebhook(alice, {
      path: "shadow",
      function_name: "echo",
      default_values: { body: "shadow", k: 1 },
    });
    const response = await call("shadow", { headers: json(alice), body: JSON.stringify({ n: 1 }) });
    const result = response.body.result as Row;
    expect(result.k).toBe(1);
    expect(result.body).toEqual({ n: 1 });
  });

  it("never passes credentials or webhook proofs to the function (D-36)", async () => {
    const key = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "webhook-test",
      permissions: { "sinas.functions.*.*.execute:own": true },
    });
    expect(key.status, JSON.stringify(key.body)).toBe(201);
    const apiKey = (key.body as { key: string }).key;
    const webhook = await createWebhook(alice, { path: "secrets/echo", function_name: "echo" });
    const secrets = {
      cookie: "session=cookie-secret-value",
      "x-webhook-secret": "whsec_header-secret-value",
      "x-signature-256": "sha256=signature-secret-value",
      "x-signature-timestamp": "1700000000",
      "proxy-authorization": "Basic proxy-secret-value",
      // How a browser's WebSocket carries a token (accepted as a credential with an upgrade).
      "sec-websocket-protocol": "sinas.v1, bearer.websocket-secret-value",
      "x-visible": "kept",
    };
    const credentialSets: Record<string, string>[] = [
      { authorization: `Bearer ${alice.accessToken}` },
      { "x-api-key": apiKey },
    ];
    for (const credentials of credentialSets) {
      const response = await call("secrets/echo", {
        headers: { "content-type": "application/json", ...credentials, ...secrets },
        body: "{}",
      });
      expect(response.status, JSON.stringify(response.body)).toBe(200);
      const headers = (response.body.result as Row).headers as Row;
      expect(headers["x-visible"]).toBe("kept");
      for (const name of [
        "authorization",
        "x-api-key",
        "cookie",
        "x-webhook-secret",
        "x-signature-256",
        "x-signature-timestamp",
        "proxy-authorization",
        "sec-websocket-protocol",
        "host",
        "user-agent",
        "accept-encoding",
      ]) {
        expect(headers).not.toHaveProperty(name);
      }
    }
    const rows = await executionsOf(webhook.id);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      const stored = row.input_text as string;
      for (const secret of [alice.accessToken, apiKey, "cookie-secret-value", "header-secret-value"]) {
        expect(stored).not.toContain(secret);
      }
      expect(stored).not.toContain("signature-secret-value");
      expect(stored).not.toContain("proxy-secret-value");
      expect(stored).not.toContain("websocket-secret-value");
    }
  });
});

describe("webhook routing, activation and auth (S14)", () => {
  it("looks webhooks up by path and method", async () => {
    const wrongMethod = await call("tools/echo", { headers: alice.headers });
    expect(wrongMethod.status).toBe(404);
    expect(wrongMethod.body.detail).toBe("No active webhook found for path 'tools/echo' and method 'POST'");
    expect((await call("nowhere/at/all", { headers: alice.headers })).status).toBe(404);
  });

  it("deactivates and reactivates a webhook (D-8)", async () => {
    const off = await api(stack, alice, "PATCH", "/api/v1/webhooks/tools/echo", { is_active: false });
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ is_active: false });
    expect((await call("tools/echo", { method: "GET", headers: alice.headers })).status).toBe(404);
    expect((await api(stack, alice, "GET", "/api/v1/webhooks/tools/echo")).body).toMatchObject({
      is_active: false,
    });
    const on = await api(stack, alice, "PATCH", "/api/v1/webhooks/tools/echo", { is_active: true });
    expect(on.body).toMatchObject({ is_active: true });
    expect((await call("tools/echo", { method: "GET", headers: alice.headers })).status).toBe(200);
  });

  it("lets an API key manage its owner's webhooks only with the webhook grants", async () => {
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "bare", permissions: {} });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    const patched = await api(stack, bare, "PATCH", "/api/v1/webhooks/tools/echo", {
      requires_auth: false,
      rotate_secret: true,
    });
    expect(patched.status).toBe(403);
    expect((await api(stack, bare, "GET", "/api/v1/webhooks")).body).toEqual([]);
    expect((await api(stack, alice, "GET", "/api/v1/webhooks/tools/echo")).body).toMatchObject({
      requires_auth: true,
    });
  });

  it("checks the execute permission of the caller and runs as the caller", async () => {
    const denied = await call("greet", { headers: json(bob), body: JSON.stringify({ name: "x" }) });
    expect(denied.status).toBe(403);
    expect(denied.body.detail).toBe("Not authorized to execute webhook 'greet'");
    const anonymous = await call("greet", { headers: json(null), body: JSON.stringify({ name: "x" }) });
    expect(anonymous.status).toBe(401);
    const root = await call("greet", { headers: json(admin), body: JSON.stringify({ name: "Root" }) });
    expect(root.status, JSON.stringify(root.body)).toBe(200);
    expect((root.body.result as Row).user).toBe(SUPERADMIN_EMAIL);
  });

  it("runs a webhook without auth as its owner (D-1)", async () => {
    const patched = await api(stack, alice, "PATCH", "/api/v1/webhooks/greet", { requires_auth: false });
    expect(patched.body).toMatchObject({ requires_auth: false });
    const response = await call("greet", { headers: json(null), body: JSON.stringify({ name: "Zed" }) });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body.result).toMatchObject({ greeting: "Hello Zed", user: "alice@acme.io" });
    // Even a caller with credentials runs it as the owner.
    const asBob = await call("greet", { headers: json(bob), body: JSON.stringify({ name: "B" }) });
    expect((asBob.body.result as Row).user).toBe("alice@acme.io");
    await api(stack, alice, "PATCH", "/api/v1/webhooks/greet", { requires_auth: true });
  });

  it("lets the function call what its run-as user may call: the owner's without auth, the caller's with", async () => {
    await createFunction(stack, alice, {
      ...pythonFunction("twice", '    return {"n": input["n"] * 2}'),
      namespace: "helpers",
    });
    await createFunction(stack, alice, {
      ...pythonFunction("doubler", '    return helpers.twice({"n": input["body"]["n"]}, context)'),
      enabled_namespaces: ["helpers"],
    });
    await createWebhook(alice, { path: "calls/public", function_name: "doubler", requires_auth: false });
    await createWebhook(alice, { path: "calls/private", function_name: "doubler" });
    const body = JSON.stringify({ n: 21 });
    const asOwner = await call("calls/public", { headers: json(null), body });
    expect(asOwner.status, JSON.stringify(asOwner.body)).toBe(200);
    expect(asOwner.body.result).toEqual({ n: 42 });
    const asAlice = await call("calls/private", { headers: json(alice), body });
    expect(asAlice.body.result).toEqual({ n: 42 });
    // The superadmin may execute alice's function, but runs it as itself: alice's helper is not its to call.
    const asAdmin = await call("calls/private", { headers: json(admin), body });
    expect(asAdmin.status).toBe(500);
    expect(asAdmin.body).toMatchObject({ code: "FUNCTION_FAILED" });
    expect(String(asAdmin.body.detail)).toContain("helpers");
  });

  it("never runs another user's function that took a deleted function's name", async () => {
    await createFunction(stack, alice, pythonFunction("handover", '    return {"by": "alice"}'));
    const webhook = await createWebhook(alice, {
      path: "handover",
      function_name: "handover",
      requires_auth: false,
    });
    expect((await call("handover", { headers: json(null), body: "{}" })).body.result).toEqual({
      by: "alice",
    });
    expect((await api(stack, alice, "DELETE", "/api/v1/functions/default/handover")).status).toBe(200);
    // Bob may create functions in the namespace: the name is free again.
    await createFunction(
      stack,
      bob,
      pythonFunction("handover", '    return {"by": "bob", "as": context["user_id"]}'),
    );
    const replaced = await call("handover", { headers: json(null), body: "{}" });
    expect(replaced.status).toBe(500);
    expect(replaced.body).toMatchObject({ code: "FUNCTION_FAILED" });
    expect(String(replaced.body.detail)).toContain("'default/handover' not found");
    // The attempt is recorded, as every attempt is (§6.2), under the webhook's owner.
    const rows = await executionsOf(webhook.id);
    expect(rows.map((row) => row.status).sort()).toEqual(["COMPLETED", "FAILED"]);
    expect(rows.map((row) => row.execution_id)).toContain(replaced.body.execution_id);
    // Nor does the public OpenAPI document describe the webhook with the other user's function.
    const spec = await (await stack.fetch("/openapi.json")).text();
    expect(spec).not.toContain("/webhooks/handover");
  });

  it("refuses duplicate paths, unknown functions and bad fields, storing nothing", async () => {
    const duplicate = await api(stack, alice, "POST", "/api/v1/webhooks", {
      path: "greet",
      function_name: "greet",
    });
    expect(duplicate.status).toBe(400);
    expect((duplicate.body as Row).detail).toBe("Webhook path 'greet' already exists");
    const otherUser = await api(stack, bob, "POST", "/api/v1/webhooks", {
      path: "greet",
      function_name: "greet",
    });
    expect(otherUser.status).toBe(404); // bob has no greet function
    const missing = await api(stack, alice, "POST", "/api/v1/webhooks", {
      path: "x",
      function_name: "missing",
    });
    expect(missing.status).toBe(404);
    expect((missing.body as Row).detail).toBe("Function 'default.missing' not found");
    const bobsOwn = await createFunction(stack, bob, pythonFunction("bobs", "    return {}"));
    const taken = await api(stack, bob, "POST", "/api/v1/webhooks", {
      path: "greet",
      function_name: bobsOwn.name,
    });
    expect(taken.status).toBe(400);

    const cases: [Record<string, unknown>, string][] = [
      [{ path: "bad path", function_name: "greet" }, "path"],
      [{ path: "/lead", function_name: "greet" }, "path"],
      [{ path: "a//b", function_name: "greet" }, "path"],
      [{ path: "bad-method", function_name: "greet", http_method: "FETCH" }, "http_method"],
      [{ path: "bad-fn", function_name: "bad-name" }, "function_name"],
      [{ path: "bad-limit", function_name: "greet", rate_limit: "lots" }, "rate_limit"],
      [{ path: "long-limit", function_name: "greet", rate_limit: "1/99999999999999999999s" }, "rate_limit"],
      // 0 per window refused every call for good.
      [{ path: "zero-limit", function_name: "greet", rate_limit: "0/1m" }, "rate_limit"],
      [{ path: "bad-verification", function_name: "greet", verification: "md5" }, "verification"],
      [{ path: "bad-extra", function_name: "greet", surprise: 1 }, ""],
    ];
    for (const [body, field] of cases) {
      const response = await api(stack, alice, "POST", "/api/v1/webhooks", body);
      expect(response.status, JSON.stringify(body)).toBe(422);
      if (field) expect((response.body as Row).message).toContain(`body.${field}`);
    }
    const stored = await db.db.execute(
      sql`select count(*)::int as n from webhooks where path in ('x', 'bad path', '/lead', 'a//b', 'bad-method', 'bad-fn', 'bad-limit', 'bad-verification', 'bad-extra')`,
    );
    expect((stored.rows[0] as { n: number }).n).toBe(0);
    expect((await api(stack, admin, "POST", "/api/v1/users", { email: "guest@acme.io" })).status).toBe(201);
    const guest = await login(stack, "guest@acme.io");
    const refused = await api(stack, guest, "POST", "/api/v1/webhooks", {
      path: "g",
      function_name: "greet",
    });
    expect(refused.status).toBe(403);
    expect((refused.body as Row).detail).toBe(
      "Not authorized to create webhooks for functions in namespace 'default'",
    );
  });

  it("shows, lists, updates and deletes webhooks for their owner (and admins)", async () => {
    const mine = (await api(stack, alice, "GET", "/api/v1/webhooks")).body as Row[];
    expect(mine.map((row) => row.path)).toEqual(expect.arrayContaining(["greet", "tools/echo", "form"]));
    const bobs = (await api(stack, bob, "GET", "/api/v1/webhooks")).body as Row[];
    expect(bobs.map((row) => row.path)).not.toContain("greet");
    expect((await api(stack, admin, "GET", "/api/v1/webhooks")).body as Row[]).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: "greet" })]),
    );
    expect((await api(stack, bob, "GET", "/api/v1/webhooks/greet")).body).toMatchObject({
      detail: "Webhook 'greet' not found",
    });
    expect((await api(stack, admin, "GET", "/api/v1/webhooks/greet")).status).toBe(200);

    await createWebhook(alice, { path: "temp/x", function_name: "echo" });
    const retarget = await api(stack, alice, "PATCH", "/api/v1/webhooks/temp/x", {
      function_name: "nothere",
    });
    expect(retarget.body).toMatchObject({ detail: "Function 'default.nothere' not found" });
    const patched = await api(stack, alice, "PATCH", "/api/v1/webhooks/temp/x", {
      function_name: "greet",
      http_method: "PUT",
      description: "d",
    });
    expect(patched.body).toMatchObject({ function_name: "greet", http_method: "PUT", description: "d" });
    expect((await api(stack, alice, "PATCH", "/api/v1/webhooks/temp/x", { path: "y" })).status).toBe(422);
    expect((await api(stack, bob, "DELETE", "/api/v1/webhooks/temp/x")).status).toBe(404);
    const deleted = await api(stack, alice, "DELETE", "/api/v1/webhooks/temp/x");
    expect(deleted.body).toEqual({ message: "Webhook 'temp/x' deleted successfully" });
    expect((await api(stack, alice, "GET", "/api/v1/webhooks/temp/x")).status).toBe(404);
  });

  it("documents the routes with a plain {path} parameter", async () => {
    await createWebhook(alice, { path: "documented", function_name: "greet" });
    const runtime = (await (await stack.fetch("/openapi.json")).json()) as { paths: Record<string, Row> };
    expect(Object.keys(runtime.paths["/webhooks/{path}"] ?? {})).toEqual(
      expect.arrayContaining(["get", "post", "put", "patch", "delete"]),
    );
    const management = (await (await stack.fetch("/api/v1/openapi.json")).json()) as {
      paths: Record<string, Row>;
    };
    expect(Object.keys(management.paths["/webhooks/{path}"] ?? {})).toEqual(["get", "patch", "delete"]);
    expect(JSON.stringify(management.paths)).not.toContain("{.+}");
    // A webhook's own path fails as the route does: its errors are documented with the Error schema.
    const greet = runtime.paths["/webhooks/documented"]?.post as
      | { responses: Record<string, Row> }
      | undefined;
    expect(Object.keys(greet?.responses ?? {})).toEqual(
      expect.arrayContaining(["200", "202", "401", "403", "404", "413", "429", "500"]),
    );
    expect(JSON.stringify(greet?.responses["429"])).toContain("#/components/schemas/Error");
  });
});

describe("the credential a public webhook's runs act with", () => {
  it("is the owner's API key the webhook was saved with, else the owner's login", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("whoami_hook", '    return {"token": context["access_token"]}'),
    );
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "hooks",
      permissions: {
        "sinas.webhooks.post:own": true,
        "sinas.webhooks.put:own": true,
        "sinas.functions.*.post:own": true,
      },
    });
    const key = { headers: { "x-api-key": (created.body as { key: string }).key } };
    const byKey = await api(stack, key, "POST", "/api/v1/webhooks", {
      path: "cred/by-key",
      function_name: "whoami_hook",
      requires_auth: false,
    });
    expect(byKey.status, JSON.stringify(byKey.body)).toBe(200);
    await createWebhook(alice, { path: "cred/by-login", function_name: "whoami_hook", requires_auth: false });
    // What a run's token may do: Alice's login may start chats; the key that saved the webhook may not.
    const mayStartChats = async (path: string) => {
      const run = await call(path, { headers: json(null), body: "{}" });
      expect(run.status, JSON.stringify(run.body)).toBe(200);
      const token = (run.body.result as { token: string }).token;
      return tokenHolds(stack, token, "sinas.chats.post:own");
    };
    expect(await mayStartChats("cred/by-key")).toBe(false);
    expect(await mayStartChats("cred/by-login")).toBe(true);
    // Saved again by her login (she decides), its runs act as her login; an admin's edit changes nothing.
    expect(
      (await api(stack, admin, "PATCH", "/api/v1/webhooks/cred/by-key", { description: "x" })).status,
    ).toBe(200);
    expect(await mayStartChats("cred/by-key")).toBe(false);
    // The key revoked, its runs would get a dead token: the call is refused, saying why, and nothing runs.
    const keyId = (created.body as { id: string }).id;
    expect((await api(stack, alice, "DELETE", `/api/v1/api-keys/${keyId}`)).status).toBe(204);
    const hookId = (byKey.body as { id: string }).id;
    const executionsBefore = (await executionsOf(hookId)).length;
    const refused = await call("cred/by-key", { headers: json(null), body: "{}" });
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toMatch(/API key this webhook runs with .* revoked or expired/);
    expect(await executionsOf(hookId)).toHaveLength(executionsBefore);
    expect(
      (await api(stack, alice, "PATCH", "/api/v1/webhooks/cred/by-key", { description: "y" })).status,
    ).toBe(200);
    expect(await mayStartChats("cred/by-key")).toBe(true);
  });
});

describe("execution failures are recorded (S15)", () => {
  it("records a schema violation of the input as a FAILED execution", async () => {
    const response = await call("greet", { headers: json(alice), body: "{}" });
    expect(response.status).toBe(500);
    expect(response.body.detail).toMatch(/^Function execution failed:/);
    expect(response.body.detail).toContain("Schema validation failed");
    expect(response.body.execution_id).toBeTruthy();
    const failed = (await api(stack, alice, "GET", "/executions?function_name=greet&status=FAILED"))
      .body as Row[];
    expect(failed[0]?.error).toContain("Schema validation failed");
    expect(failed[0]?.completed_at).toBeTruthy();
    expect(failed[0]?.execution_id).toBe(response.body.execution_id);
  });

  it("stores a refused attempt FAILED in one write: no RUNNING row without a run", async () => {
    // Every later write of a greet execution fails: an attempt that needed one was left RUNNING for good.
    await db.db.execute(
      sql.raw(`
      create or replace function test_refuse_update() returns trigger language plpgsql as $$
      begin raise exception 'injected failure'; end $$;
      create trigger test_refuse_update before update on executions for each row
        when (old.function_name = 'greet') execute function test_refuse_update();`),
    );
    try {
      const response = await call("greet", { headers: json(alice), body: "{}" });
      expect(response.status).toBe(500);
      expect(response.body.detail).toContain("Schema validation failed");
      const row = await api(stack, alice, "GET", `/executions/${response.body.execution_id}`);
      expect(row.body).toMatchObject({ status: "FAILED", error_type: "invalid_input" });
    } finally {
      await db.db.execute(sql.raw("drop trigger if exists test_refuse_update on executions"));
    }
  });

  it("records an exception of the function", async () => {
    await createFunction(stack, alice, pythonFunction("boom", '    raise ValueError("kaput")'));
    await createWebhook(alice, { path: "boom", function_name: "boom" });
    const response = await call("boom", { headers: json(alice), body: "{}" });
    expect(response.status).toBe(500);
    expect(response.body.detail).toContain("kaput");
    const execution = await waitForFinalStatus(stack, alice, response.body.execution_id as string);
    expect(execution.status).toBe("FAILED");
    expect(execution.error).toContain("kaput");
  });

  it("records an output that breaks the output schema", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("badout", '    return {"x": 1}', {
        output_schema: { type: "object", required: ["greeting"] },
      }),
    );
    await createWebhook(alice, { path: "badout", function_name: "badout" });
    const response = await call("badout", { headers: json(alice), body: "{}" });
    expect(response.status).toBe(500);
    const execution = await waitForFinalStatus(stack, alice, response.body.execution_id as string);
    expect(execution.status).toBe("FAILED");
    expect(execution.error).toContain("Schema validation failed");
  });

  it("always runs the latest code (D-33)", async () => {
    const updated = await api(stack, alice, "PUT", "/api/v1/functions/default/greet", {
      code: 'def greet(input, context):\n    return {"greeting": "v3"}\n',
    });
    expect(updated.status).toBe(200);
    const response = await call("greet", { headers: json(alice), body: JSON.stringify({ name: "a" }) });
    expect(response.body.result).toMatchObject({ greeting: "v3" });
  });
});

describe("webhook secrets and signatures", () => {
  const encoder = new TextEncoder();
  const now = () => String(Math.floor(Date.now() / 1000));

  it("accepts only a correctly signed, fresh body (hmac_sha256)", async () => {
    const webhook = await createWebhook(alice, {
      path: "signed/echo",
      function_name: "echo",
      requires_auth: false,
      verification: "hmac_sha256",
    });
    const secret = webhook.secret as string;
    expect(secret).toMatch(/^whsec_/);
    const shown = (await api(stack, alice, "GET", "/api/v1/webhooks/signed/echo")).body as Row;
    expect(shown).not.toHaveProperty("secret");
    expect(shown.verification).toBe("hmac_sha256");
    const stored = await db.db.execute(
      sql`select secret_ciphertext from webhooks where path = 'signed/echo'`,
    );
    const ciphertext = (stored.rows[0] as { secret_ciphertext: string }).secret_ciphertext;
    expect(ciphertext).toMatch(/^v1\./);
    expect(ciphertext).not.toContain(secret.slice(6));

    const body = JSON.stringify({ event: "push" });
    const signedHeaders = async (key: string, timestamp: string, signedBody = body) => ({
      "content-type": "application/json",
      "x-signature-timestamp": timestamp,
      "x-signature-256": await signWebhookBody(key, timestamp, encoder.encode(signedBody)),
    });
    const good = await call("signed/echo", { headers: await signedHeaders(secret, now()), body });
    expect(good.status, JSON.stringify(good.body)).toBe(200);
    const result = good.body.result as Row;
    expect(result.body).toEqual({ event: "push" });
    expect(result.headers).not.toHaveProperty("x-signature-256");
    expect(result.headers).not.toHaveProperty("x-signature-timestamp");

    const tampered = await call("signed/echo", {
      headers: await signedHeaders(secret, now(), '{"event":"other"}'),
      body,
    });
    expect(tampered.status).toBe(401);
    expect(tampered.body.detail).toBe("Invalid webhook signature");
    const wrongKey = await call("signed/echo", { headers: await signedHeaders("whsec_wrong", now()), body });
    expect(wrongKey.status).toBe(401);
    const stale = await call("signed/echo", {
      headers: await signedHeaders(secret, String(Math.floor(Date.now() / 1000) - 600)),
      body,
    });
    expect(stale.status).toBe(401);
    expect(stale.body.detail).toContain("timestamp");
    const missing = await call("signed/echo", { headers: { "content-type": "application/json" }, body });
    expect(missing.status).toBe(401);
    expect(missing.body.detail).toBe("Missing X-Signature-256 or X-Signature-Timestamp header");
    expect(await executionsOf(webhook.id)).toHaveLength(1);

    const rotated = await api(stack, alice, "PATCH", "/api/v1/webhooks/signed/echo", { rotate_secret: true });
    const newSecret = (rotated.body as Row).secret as string;
    expect(newSecret).toMatch(/^whsec_/);
    expect(newSecret).not.toBe(secret);
    expect((await call("signed/echo", { headers: await signedHeaders(secret, now()), body })).status).toBe(
      401,
    );
    expect((await call("signed/echo", { headers: await signedHeaders(newSecret, now()), body })).status).toBe(
      200,
    );
  });

  it("accepts the shared secret header (secret)", async () => {
    const webhook = await createWebhook(alice, {
      path: "shared/echo",
      function_name: "echo",
      requires_auth: false,
      verification: "secret",
    });
    const ok = await call("shared/echo", {
      headers: { "content-type": "application/json", "x-webhook-secret": webhook.secret as string },
      body: "{}",
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect((ok.body.result as Row).headers).not.toHaveProperty("x-webhook-secret");
    const wrong = await call("shared/echo", {
      headers: { "content-type": "application/json", "x-webhook-secret": "whsec_nope" },
      body: "{}",
    });
    expect(wrong.status).toBe(401);
    expect((await call("shared/echo", { body: "{}" })).status).toBe(401);
    const cleared = await api(stack, alice, "PATCH", "/api/v1/webhooks/shared/echo", {
      verification: "none",
    });
    expect(cleared.body).toMatchObject({ verification: "none" });
    expect((await call("shared/echo", { body: "{}" })).status).toBe(200);
  });
});

describe("async, idempotency and limits", () => {
  it("answers 202 for ?async=true and for async webhooks, and the run completes", async () => {
    const response = await call("greet", {
      headers: json(alice),
      body: JSON.stringify({ name: "later" }),
      query: "?async=true",
    });
    expect(response.status).toBe(202);
    const execution = await waitForFinalStatus(stack, alice, response.body.execution_id as string);
    expect(execution).toMatchObject({ status: "COMPLETED", trigger_type: "WEBHOOK" });

    await createWebhook(alice, { path: "async/echo", function_name: "echo", async: true });
    const configured = await call("async/echo", { headers: json(alice), body: JSON.stringify({ a: 1 }) });
    expect(configured.status).toBe(202);
    const done = await waitForFinalStatus(stack, alice, configured.body.execution_id as string);
    expect(done.status).toBe("COMPLETED");
    expect((done.output_data as Row).body).toEqual({ a: 1 });
  });

  it("runs once per Idempotency-Key, sequentially and concurrently", async () => {
    const webhook = await createWebhook(alice, { path: "idem/echo", function_name: "echo" });
    const headers = (key: string) => json(alice, { "idempotency-key": key });

    const first = await call("idem/echo", { headers: headers("k-1"), body: '{"n":1}' });
    const again = await call("idem/echo", { headers: headers("k-1"), body: '{"n":1}' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    expect(await executionsOf(webhook.id)).toHaveLength(1);

    const concurrent = await Promise.all(
      Array.from({ length: 5 }, () => call("idem/echo", { headers: headers("k-2"), body: '{"n":2}' })),
    );
    expect(concurrent.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(concurrent.map((response) => response.body.execution_id)).size).toBe(1);
    expect(await executionsOf(webhook.id)).toHaveLength(2);

    const asyncCalls = await Promise.all(
      Array.from({ length: 5 }, () =>
        call("idem/echo", { headers: headers("k-3"), body: "{}", query: "?async=true" }),
      ),
    );
    expect(asyncCalls.map((response) => response.status)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(asyncCalls.map((response) => response.body.execution_id)).size).toBe(1);
    expect(await executionsOf(webhook.id)).toHaveLength(3);
    const syncRepeat = await call("idem/echo", { headers: headers("k-3"), body: "{}" });
    expect(syncRepeat.status).toBe(200);
    expect(syncRepeat.body.execution_id).toBe(asyncCalls[0]?.body.execution_id);

    // The key reused for another request (body, query) is refused, naming the header, and nothing runs.
    for (const other of [{ body: '{"n":9}' }, { body: '{"n":1}', query: "?x=1" }]) {
      const reused = await call("idem/echo", { headers: headers("k-1"), ...other });
      expect(reused.status).toBe(422);
      expect(reused.body.detail).toEqual([expect.objectContaining({ loc: ["header", "idempotency-key"] })]);
    }
    expect(await executionsOf(webhook.id)).toHaveLength(3);

    // A failure is remembered too: the repeat answers with the same failed execution.
    const failed = await call("greet", { headers: json(alice, { "idempotency-key": "bad-1" }), body: "{}" });
    const failedAgain = await call("greet", {
      headers: json(alice, { "idempotency-key": "bad-1" }),
      body: "{}",
    });
    expect(failed.status).toBe(500);
    expect(failedAgain.status).toBe(500);
    expect(failedAgain.body.execution_id).toBe(failed.body.execution_id);

    // A key is claimed for a minute until its execution is recorded (a first request that dies mid-start does
    // not hold it for a day), then kept 24 h: the keys of recorded runs, and of the recorded failure, live long.
    const redis = new Redis({ url: stack.redisBridgeUrl, token: stack.redisToken });
    const keys = await redis.keys("sinas:idempotency:webhook:*");
    expect(keys.length).toBeGreaterThanOrEqual(4);
    for (const key of keys) expect(await redis.ttl(key)).toBeGreaterThan(23 * 3600);

    // Keys belong to the caller: the same key from another caller is another run.
    const adminRun = await call("idem/echo", {
      headers: json(admin, { "idempotency-key": "k-1" }),
      body: "{}",
    });
    expect(adminRun.body.execution_id).not.toBe(first.body.execution_id);
    expect(
      (await call("idem/echo", { headers: json(alice, { "idempotency-key": "has space" }), body: "{}" }))
        .status,
    ).toBe(422);
  });

  it("answers an async repeat only once the first request recorded its execution", async () => {
    const webhook = await createWebhook(alice, { path: "idem/slow-first", function_name: "echo" });
    const me = alice.user;
    // A first request that claimed the key and has not recorded its execution yet (claimed without a
    // fingerprint, which any request matches).
    const firstId = crypto.randomUUID();
    const redis = new Redis({ url: stack.redisBridgeUrl, token: stack.redisToken });
    await redis.set(`sinas:idempotency:webhook:${webhook.id}:${me.id}:k-slow`, firstId, { ex: 60 });
    let answered = false;
    const repeat = call("idem/slow-first", {
      headers: json(alice, { "idempotency-key": "k-slow" }),
      body: "{}",
      query: "?async=true",
    }).finally(() => {
      answered = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(answered).toBe(false);
    await db.db.execute(
      sql`insert into executions (user_id, execution_id, function_name, trigger_type, trigger_id, input_data)
          values (${me.id}, ${firstId}, 'echo', 'WEBHOOK', ${webhook.id}, '{}')`,
    );
    const answer = await repeat;
    expect(answer.status).toBe(202);
    expect(answer.body).toEqual({ execution_id: firstId });
    expect(answer.headers.get("idempotent-replayed")).toBe("true");
  });

  it("keeps to the Idempotency-Key when the function is gone: one FAILED attempt, repeats answer it", async () => {
    await createFunction(stack, alice, pythonFunction("fleeting", '    return {"ok": 1}'));
    const webhook = await createWebhook(alice, { path: "idem/fleeting", function_name: "fleeting" });
    const headers = (key: string) => json(alice, { "idempotency-key": key });
    const ran = await call("idem/fleeting", { headers: headers("f-1"), body: "{}" });
    expect(ran.status, JSON.stringify(ran.body)).toBe(200);
    const off = await api(stack, alice, "PUT", "/api/v1/functions/default/fleeting", { is_active: false });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    // The run before the function went: a repeat answers with it and records nothing.
    const repeat = await call("idem/fleeting", { headers: headers("f-1"), body: "{}" });
    expect(repeat.status).toBe(200);
    expect(repeat.body.execution_id).toBe(ran.body.execution_id);
    // A first call while it is gone is one FAILED attempt, which its repeats answer with.
    const missing = await call("idem/fleeting", { headers: headers("f-2"), body: "{}" });
    const missingAgain = await call("idem/fleeting", { headers: headers("f-2"), body: "{}" });
    expect(missing.status).toBe(500);
    expect(missingAgain.status).toBe(500);
    expect(missingAgain.body.execution_id).toBe(missing.body.execution_id);
    expect(await executionsOf(webhook.id)).toHaveLength(2);
    // A malformed key is 422 whether or not the function exists.
    const malformed = await call("idem/fleeting", { headers: headers("has space"), body: "{}" });
    expect(malformed.status).toBe(422);
    expect(await executionsOf(webhook.id)).toHaveLength(2);
  });

  it("runs a body under the limit whose JSON input is larger than a Durable Object's SQLite value (2 MB)", async () => {
    await createFunction(
      stack,
      alice,
      pythonFunction("measure", '    return {"n": len(input["body"]["raw"])}'),
    );
    await createWebhook(alice, { path: "big/measure", function_name: "measure" });
    // 600 000 control bytes: each is 6 characters as JSON (\u0001), a 3.6 MB input in the run's plan.
    const run = await call("big/measure", {
      headers: { ...alice.headers, "content-type": "text/plain" },
      body: "\u0001".repeat(600_000),
    });
    expect(run.status, JSON.stringify(run.body).slice(0, 500)).toBe(200);
    expect(run.body.result).toEqual({ n: 600_000 });
  });

  it("refuses bodies over the limit with 413 before running", async () => {
    const webhook = await createWebhook(alice, { path: "big/echo", function_name: "echo" });
    const big = await call("big/echo", {
      headers: { ...alice.headers, "content-type": "text/plain" },
      body: "x".repeat(1024 * 1024 + 1),
    });
    expect(big.status).toBe(413);
    expect(await executionsOf(webhook.id)).toHaveLength(0);
    const fits = await call("big/echo", {
      headers: { ...alice.headers, "content-type": "text/plain" },
      body: "x".repeat(1024 * 1024),
    });
    expect(fits.status, JSON.stringify(fits.body).slice(0, 500)).toBe(200);
  });

  it("refuses a body nested past 256 levels with 422 naming the body, running and recording nothing", async () => {
    // A public webhook: anyone could otherwise kill its owner's sandboxes with a deep body.
    await createFunction(stack, alice, pythonFunction("deep_ok", '    return {"ok": True}'));
    const webhook = await createWebhook(alice, {
      path: "deep/ok",
      function_name: "deep_ok",
      requires_auth: false,
    });
    const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
    for (const depth of [257, 5_000, 100_000]) {
      const refused = await call("deep/ok", { headers: json(null), body: nested(depth) });
      expect(refused.status, `${depth}: ${JSON.stringify(refused.body).slice(0, 300)}`).toBe(422);
      expect(refused.body.detail).toEqual([
        expect.objectContaining({
          loc: ["body"],
          msg: "must not nest arrays and objects more than 256 levels deep",
        }),
      ]);
    }
    expect(await executionsOf(webhook.id)).toHaveLength(0);
    // The same for default_values, which become part of every run's input.
    const deepDefaults = await api(stack, alice, "POST", "/api/v1/webhooks", {
      path: "deep/defaults",
      function_name: "deep_ok",
      default_values: JSON.parse(`{"a":${nested(256)}}`),
    });
    expect(deepDefaults.status).toBe(422);
    expect((deepDefaults.body as { detail: { loc: string[] }[] }).detail[0]?.loc).toEqual([
      "body",
      "default_values",
    ]);
    const fits = await call("deep/ok", { headers: json(null), body: nested(256) });
    expect(fits.status, JSON.stringify(fits.body).slice(0, 300)).toBe(200);
    expect(fits.body.result).toEqual({ ok: true });
  });

  it("applies the webhook's own rate limit with 429 and Retry-After", async () => {
    const webhook = await createWebhook(alice, {
      path: "limited",
      function_name: "echo",
      rate_limit: "2/1m",
    });
    expect(webhook.rate_limit).toBe("2/1m");
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let index = 0; index < 3; index++) {
      const response = await call("limited", { headers: json(alice), body: "{}" });
      statuses.push(response.status);
      if (response.status === 429) retryAfter = response.headers.get("retry-after");
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(await executionsOf(webhook.id)).toHaveLength(2);
  });

  it("stores X-Chat-Id only for a chat of the caller", async () => {
    const response = await call("tools/echo", {
      method: "GET",
      headers: { ...alice.headers, "x-chat-id": "not-a-uuid" },
    });
    expect(response.status).toBe(422);
    expect(response.body.message).toContain("x-chat-id");
  });
});
