import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DbHandle } from "../../workers/db/client";
import {
  api,
  IDENTITY_VARS,
  login,
  requestOtp,
  type Session,
  SUPERADMIN_EMAIL,
  verifyOtp,
} from "../helpers/auth";
import { openStackDb } from "../helpers/db";
import { startTestStack, type TestStack } from "../helpers/stack";

// Request logs (sinas-spec §10.5, §1.20, scenario S36 on Postgres). Rows are written after the response,
// so every check of the table polls for up to 5 s.

const REDACTED = "***REDACTED***";
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ANY_UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

interface LogRow {
  request_id: string;
  timestamp: string;
  user_id: string | null;
  user_email: string | null;
  permission_used: string | null;
  has_permission: boolean;
  method: string;
  path: string;
  query_params: Record<string, string> | null;
  request_body: unknown;
  user_agent: string | null;
  referer: string | null;
  ip_address: string | null;
  status_code: number;
  response_time_ms: number;
  response_size_bytes: number;
  error_type: string | null;
  error_message: string | null;
  metadata: Record<string, unknown> | null;
}

interface Stats {
  total_requests: number;
  unique_users: number;
  avg_response_time_ms: number;
  error_rate: number;
  top_paths: { path: string; count: number }[];
  top_permissions: { permission: string; count: number }[];
}

let stack: TestStack;
let handle: DbHandle;
let admin: Session;
let alice: Session;
/** Every secret that crossed the API in this file; none may reach a log row. */
const secrets: { tokens: string[]; otpCodes: string[] } = { tokens: [], otpCodes: [] };

/** Logs in through the real OTP flow, keeping the code and the tokens as secrets to look for. */
async function loginRemembering(email: string): Promise<Session> {
  const { sessionId, code } = await requestOtp(stack, email);
  const response = await verifyOtp(stack, sessionId, code);
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as {
    access_token: string;
    refresh_token: string;
    user: Session["user"];
  };
  secrets.otpCodes.push(code);
  secrets.tokens.push(body.access_token, body.refresh_token);
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    user: body.user,
    headers: { authorization: `Bearer ${body.access_token}`, "content-type": "application/json" },
  };
}

async function allRows(): Promise<Record<string, unknown>[]> {
  const result = await handle.db.execute(sql`select * from request_logs`);
  return result.rows as Record<string, unknown>[];
}

/** Polls the table until `find` returns something (the insert runs in waitUntil, after the response). */
async function eventually<T>(
  find: (rows: Record<string, unknown>[]) => T | undefined,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find(await allRows());
    if (found !== undefined) return found;
    if (Date.now() > deadline)
      throw new Error(`the expected request_logs rows did not appear within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function rowWith(requestId: string | null) {
  return (rows: Record<string, unknown>[]) => rows.find((row) => row.request_id === requestId);
}

beforeAll(async () => {
  stack = await startTestStack({ workerVars: IDENTITY_VARS });
  handle = openStackDb(stack);
  admin = await login(stack, SUPERADMIN_EMAIL);
  alice = await loginRemembering("alice@acme.io");
});

afterAll(async () => {
  await handle?.close();
  await stack?.stop();
});

describe("writing request logs", () => {
  it("logs a request with caller, permission, status, timing and size, under the returned request id", async () => {
    const response = await stack.fetch("/api/v1/request-logs?limit=1", {
      headers: { ...alice.headers, "user-agent": "log-test/1.0", "x-forwarded-for": "203.0.113.7, 10.0.0.1" },
    });
    expect(response.status).toBe(200);
    const row = await eventually(rowWith(response.headers.get("x-request-id")));
    expect(row).toMatchObject({
      user_id: alice.user.id,
      user_email: "alice@acme.io",
      permission_used: "sinas.logs.get:own",
      has_permission: true,
      method: "GET",
      path: "/api/v1/request-logs",
      query_params: { limit: "1" },
      request_body: null,
      user_agent: "log-test/1.0",
      status_code: 200,
      error_type: null,
    });
    expect(row.response_time_ms).toBeGreaterThanOrEqual(0);
    expect(row.response_size_bytes).toBeGreaterThan(0);
    expect(typeof row.ip_address).toBe("string");
  });

  it("does not log GET /health", async () => {
    const response = await stack.fetch("/health");
    expect(response.status).toBe(200);
    // A later request's row proves the writer ran in the meantime.
    const marker = await stack.fetch("/api/v1/nothing-after-health");
    await eventually(rowWith(marker.headers.get("x-request-id")));
    expect((await allRows()).filter((row) => row.path === "/health")).toEqual([]);
  });

  it("never logs the body of an auth endpoint", async () => {
    const { sessionId, code } = await requestOtp(stack, "bob@acme.io");
    secrets.otpCodes.push(code);
    const verified = await verifyOtp(stack, sessionId, code);
    expect(verified.status).toBe(200);
    const tokens = (await verified.json()) as { access_token: string; refresh_token: string };
    secrets.tokens.push(tokens.access_token, tokens.refresh_token);
    const refreshed = await api(stack, null, "POST", "/auth/refresh", {
      refresh_token: tokens.refresh_token,
    });
    expect(refreshed.status).toBe(200);
    const rotated = refreshed.body as { access_token: string; refresh_token: string };
    secrets.tokens.push(rotated.access_token, rotated.refresh_token);

    const verifyRow = await eventually(rowWith(verified.headers.get("x-request-id")));
    expect(verifyRow).toMatchObject({
      method: "POST",
      path: "/auth/verify-otp",
      status_code: 200,
      request_body: null,
    });
    const refreshRow = await eventually(rowWith(refreshed.headers.get("x-request-id")));
    expect(refreshRow).toMatchObject({ path: "/auth/refresh", request_body: null });
    const loginRows = (await allRows()).filter((row) => row.path === "/auth/login");
    expect(loginRows.length).toBeGreaterThan(0);
    for (const row of loginRows) expect(row.request_body).toBeNull();
  });

  it("stores other JSON bodies with secrets redacted at any depth, also on failed requests", async () => {
    const body = {
      name: "t",
      permissions: {},
      token: alice.accessToken,
      password: "p",
      nested: { api_key: "nested-key-value", list: [{ Authorization: `Bearer ${alice.accessToken}` }] },
    };
    const notFound = await api(stack, alice, "POST", "/api/v1/nothing", body);
    expect(notFound.status).toBe(404);
    const row = await eventually(rowWith(notFound.headers.get("x-request-id")));
    expect(row.request_body).toEqual({
      name: "t",
      permissions: {},
      token: REDACTED,
      password: REDACTED,
      nested: { api_key: REDACTED, list: [{ Authorization: REDACTED }] },
    });

    // A webhook reads its body from the raw stream (for its size limit); the log still gets it.
    const hook = await api(stack, alice, "POST", "/webhooks/no/such/hook", { a: 1, token: "t" });
    expect(hook.status).toBe(404);
    const hookRow = await eventually(rowWith(hook.headers.get("x-request-id")));
    expect(hookRow.request_body).toEqual({ a: 1, token: REDACTED });

    // S36's body on the API-key route: refused (our schemas reject unknown fields), yet logged, redacted.
    const refused = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "t",
      permissions: {},
      token: "abc",
      password: "p",
    });
    expect(refused.status).toBe(422);
    const refusedRow = await eventually(rowWith(refused.headers.get("x-request-id")));
    expect(refusedRow).toMatchObject({
      path: "/api/v1/api-keys",
      status_code: 422,
      error_type: "VALIDATION_FAILED",
      request_body: { name: "t", permissions: {}, token: REDACTED, password: REDACTED },
    });
  });

  it("skips bodies over 64 KiB, declared or streamed, without disturbing the handler", async () => {
    const state = (key: string) =>
      JSON.stringify({ namespace: "request-logs", key, value: { blob: "x".repeat(70_000), token: "t" } });
    const declared = await stack.fetch("/states", {
      method: "POST",
      headers: alice.headers,
      body: state("declared"),
    });
    expect(declared.status, await declared.clone().text()).toBe(200);
    const bytes = new TextEncoder().encode(state("streamed"));
    const streamed = await stack.fetch("/states", {
      method: "POST",
      headers: alice.headers,
      // No Content-Length: the logger has to stop reading by itself.
      body: new ReadableStream({
        start(controller) {
          for (let offset = 0; offset < bytes.length; offset += 8_192)
            controller.enqueue(bytes.slice(offset, offset + 8_192));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status, await streamed.clone().text()).toBe(200);
    for (const response of [declared, streamed]) {
      const row = await eventually(rowWith(response.headers.get("x-request-id")));
      expect(row).toMatchObject({
        path: "/states",
        request_body: null,
        metadata: { request_body_skipped: "too_large" },
      });
    }
  });

  it("redacts secret query parameters and the referer's", async () => {
    const response = await stack.fetch(`/api/v1/request-logs?limit=1&token=${alice.accessToken}`, {
      headers: {
        ...alice.headers,
        referer: `https://console.test/page?access_token=${alice.accessToken}&tab=2`,
      },
    });
    expect(response.status).toBe(200);
    const row = await eventually(rowWith(response.headers.get("x-request-id")));
    expect(row.query_params).toEqual({ limit: "1", token: REDACTED });
    expect(row.referer).toBe(`https://console.test/page?access_token=${REDACTED}&tab=2`);
  });

  it("records the error and a denied permission", async () => {
    const denied = await api(stack, alice, "GET", `/api/v1/request-logs?user_id=${admin.user.id}`);
    expect(denied.status).toBe(403);
    const row = await eventually(rowWith(denied.headers.get("x-request-id")));
    expect(row).toMatchObject({
      status_code: 403,
      permission_used: "sinas.logs.get:all",
      has_permission: false,
      error_type: "FORBIDDEN",
      error_message: "You can only view your own request logs",
    });
  });

  it("keeps a client-chosen request id in metadata rather than as the row's key", async () => {
    const clientId = `client-${Date.now()}`;
    const response = await stack.fetch("/api/v1/nothing", { headers: { "x-request-id": clientId } });
    expect(response.headers.get("x-request-id")).toBe(clientId);
    const row = await eventually((rows) =>
      rows.find(
        (candidate) =>
          (candidate.metadata as { client_request_id?: string } | null)?.client_request_id === clientId,
      ),
    );
    expect(row.request_id).toMatch(UUID_PATTERN);
    expect(row.status_code).toBe(404);
  });

  it("logs a request whose path holds a NUL, and the requests batched with it", async () => {
    // jsonb refuses NUL: one such row lost its whole batch.
    const responses = await Promise.all([
      stack.fetch("/api/v1/nothing/%00"),
      ...Array.from({ length: 5 }, (_, index) => stack.fetch(`/api/v1/nothing?beside=${index}`)),
    ]);
    const ids = responses.map((response) => response.headers.get("x-request-id"));
    const logged = await eventually((rows) => {
      const matching = rows.filter((row) => ids.includes(row.request_id as string));
      return matching.length >= ids.length ? matching : undefined;
    });
    expect(logged.map((row) => row.path)).toContain("/api/v1/nothing/");
  });

  it("logs a body with a lone surrogate (U+FFFD in its place), and the requests batched with it", async () => {
    // jsonb refuses "\ud800": an unauthenticated body carrying one lost its whole batch, other callers' rows too.
    const json = { "content-type": "application/json" };
    const responses = await Promise.all([
      stack.fetch("/api/v1/functions", { method: "POST", headers: json, body: '{"description":"x\\ud800"}' }),
      ...Array.from({ length: 5 }, (_, index) => stack.fetch(`/api/v1/nothing?surrogate=${index}`)),
    ]);
    const ids = responses.map((response) => response.headers.get("x-request-id"));
    const logged = await eventually((rows) => {
      const matching = rows.filter((row) => ids.includes(row.request_id as string));
      return matching.length >= ids.length ? matching : undefined;
    });
    const withBody = logged.find((row) => row.request_id === ids[0]);
    expect(withBody?.request_body).toEqual({ description: "x\uFFFD" });
  });

  it("logs every one of many simultaneous requests exactly once (rows are written in batches)", async () => {
    // More than one batch (MAX_BATCH_ROWS = 100) arriving at once, then a straggler on its own.
    const burst = await Promise.all(
      Array.from({ length: 150 }, (_, index) => stack.fetch(`/api/v1/nothing?burst=${index}`)),
    );
    const straggler = await stack.fetch("/api/v1/nothing?burst=last");
    const ids = [...burst, straggler].map((response) => response.headers.get("x-request-id"));
    expect(new Set(ids).size).toBe(151);
    const logged = await eventually((rows) => {
      const matching = rows.filter((row) => ids.includes(row.request_id as string));
      return matching.length >= ids.length ? matching : undefined;
    }, 10_000);
    expect(logged).toHaveLength(151);
    expect(new Set(logged.map((row) => row.request_id)).size).toBe(151);
  });

  it("logs API-key creation as in S36, and no row contains the raw token, OTP or API key", async () => {
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", {
      name: "log-test",
      permissions: {},
    });
    expect(created.status).toBe(201);
    const apiKey = (created.body as { key: string }).key;
    secrets.tokens.push(apiKey);
    const createdRow = await eventually(rowWith(created.headers.get("x-request-id")));
    expect(createdRow).toMatchObject({
      method: "POST",
      status_code: 201,
      user_email: "alice@acme.io",
      permission_used: "sinas.api_keys.create:own",
      request_body: { name: "log-test", permissions: {} },
    });

    // The key in every place a client might put it: header, bearer, query string, body.
    const viaHeader = await stack.fetch(`/auth/me?api_key=${apiKey}`, { headers: { "x-api-key": apiKey } });
    expect(viaHeader.status).toBe(200);
    const viaBearer = await stack.fetch("/auth/me", { headers: { authorization: `Bearer ${apiKey}` } });
    expect(viaBearer.status).toBe(200);
    const inBody = await api(stack, alice, "POST", "/api/v1/nothing", {
      key: apiKey,
      otp: secrets.otpCodes[0],
    });
    expect(inBody.status).toBe(404);
    await eventually(rowWith(viaHeader.headers.get("x-request-id")));
    await eventually(rowWith(viaBearer.headers.get("x-request-id")));
    await eventually(rowWith(inBody.headers.get("x-request-id")));

    const rows = await allRows();
    const everything = JSON.stringify(rows);
    expect(secrets.tokens.length).toBeGreaterThanOrEqual(7);
    for (const token of secrets.tokens) expect(everything).not.toContain(token);
    // A 6-digit code could occur by chance inside a UUID or a number, so look only at text outside them.
    const text = JSON.stringify(
      rows.map((row) => Object.values(row).filter((value) => typeof value !== "number")),
    ).replace(ANY_UUID, "<uuid>");
    expect(secrets.otpCodes.length).toBeGreaterThanOrEqual(2);
    for (const code of secrets.otpCodes) expect(text).not.toContain(code);
  });
});

describe("GET /api/v1/request-logs", () => {
  it("lets an admin filter by user and path pattern (S36)", async () => {
    const { status, body } = await api(
      stack,
      admin,
      "GET",
      `/api/v1/request-logs?user_id=${alice.user.id}&path_pattern=/api/v1/api-keys`,
    );
    expect(status).toBe(200);
    const rows = body as LogRow[];
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row).toMatchObject({ user_id: alice.user.id, path: "/api/v1/api-keys" });
    expect(rows).toContainEqual(
      expect.objectContaining({
        method: "POST",
        status_code: 201,
        user_email: "alice@acme.io",
        permission_used: "sinas.api_keys.create:own",
      }),
    );
  });

  it("returns newest first, with ISO timestamps, honouring limit and offset", async () => {
    // Filtered on /auth/ paths, which this test does not call, so its own log rows cannot shift the offsets.
    const { body } = await api(stack, admin, "GET", "/api/v1/request-logs?limit=3&path_pattern=/auth/%25");
    const rows = body as LogRow[];
    expect(rows).toHaveLength(3);
    const times = rows.map((row) => Date.parse(row.timestamp));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(rows[0]?.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    const next = await api(
      stack,
      admin,
      "GET",
      "/api/v1/request-logs?limit=1&offset=1&path_pattern=/auth/%25",
    );
    expect((next.body as LogRow[]).map((row) => row.request_id)).toEqual([rows[1]?.request_id]);
  });

  it("orders requests logged in one batch by when each came, not by their ids", async () => {
    // Six requests one after another, sooner than one batch's flush: one INSERT stores them all.
    const ids: string[] = [];
    for (let index = 0; index < 6; index++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const response = await stack.fetch(`/api/v1/zz-order-${index}`);
      ids.push(response.headers.get("x-request-id") as string);
    }
    await eventually((rows) => (ids.every((id) => rowWith(id)(rows)) ? true : undefined));
    const { body } = await api(stack, admin, "GET", "/api/v1/request-logs?path_pattern=/api/v1/zz-order-%25");
    const rows = body as LogRow[];
    expect(rows.map((row) => row.path)).toEqual(
      [5, 4, 3, 2, 1, 0].map((index) => `/api/v1/zz-order-${index}`),
    );
    expect(new Set(rows.map((row) => row.timestamp)).size).toBe(6);
  });

  it("matches path_pattern with LIKE, bound as a parameter", async () => {
    const { body } = await api(stack, admin, "GET", "/api/v1/request-logs?path_pattern=/auth/%25");
    const rows = body as LogRow[];
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.path.startsWith("/auth/")).toBe(true);
    const injection = await api(
      stack,
      admin,
      "GET",
      `/api/v1/request-logs?path_pattern=${encodeURIComponent("x' OR '1'='1")}`,
    );
    expect(injection).toMatchObject({ status: 200, body: [] });
  });

  it("filters by status code, exact permission and time window", async () => {
    const notFound = (await api(stack, admin, "GET", "/api/v1/request-logs?status_code=404"))
      .body as LogRow[];
    expect(notFound.length).toBeGreaterThan(0);
    for (const row of notFound) expect(row.status_code).toBe(404);
    const create = (
      await api(stack, admin, "GET", "/api/v1/request-logs?permission=sinas.api_keys.create:own")
    ).body as LogRow[];
    expect(create.length).toBeGreaterThan(0);
    for (const row of create) expect(row.permission_used).toBe("sinas.api_keys.create:own");
    const future = await api(stack, admin, "GET", "/api/v1/request-logs?start_time=2999-01-01T00:00:00Z");
    expect(future).toMatchObject({ status: 200, body: [] });
    const past = await api(stack, admin, "GET", "/api/v1/request-logs?end_time=2000-01-01T00:00:00");
    expect(past).toMatchObject({ status: 200, body: [] });
  });

  it("shows a non-admin only their own rows and refuses another user's", async () => {
    const own = await api(stack, alice, "GET", "/api/v1/request-logs?limit=1000");
    expect(own.status).toBe(200);
    const rows = own.body as LogRow[];
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.user_id).toBe(alice.user.id);

    const explicitOwn = await api(stack, alice, "GET", `/api/v1/request-logs?user_id=${alice.user.id}`);
    expect(explicitOwn.status).toBe(200);
    const other = await api(stack, alice, "GET", `/api/v1/request-logs?user_id=${admin.user.id}`);
    expect(other).toMatchObject({ status: 403, body: { detail: "You can only view your own request logs" } });

    // An API key made with `{}` grants nothing, not even the owner's own rows.
    const created = await api(stack, alice, "POST", "/api/v1/api-keys", { name: "bare", permissions: {} });
    const bare = { headers: { "x-api-key": (created.body as { key: string }).key } };
    const detail = "Not authorized to view request logs (needs sinas.logs.get:own)";
    for (const path of ["/api/v1/request-logs", "/api/v1/request-logs/stats"]) {
      expect(await api(stack, bare, "GET", path)).toMatchObject({ status: 403, body: { detail } });
    }
  });

  it("needs authentication", async () => {
    expect((await api(stack, null, "GET", "/api/v1/request-logs")).status).toBe(401);
    expect((await api(stack, null, "GET", "/api/v1/request-logs/stats")).status).toBe(401);
  });

  it.each([
    ["limit=1001", "limit"],
    ["limit=0", "limit"],
    ["offset=-1", "offset"],
    ["status_code=abc", "status_code"],
    ["start_time=yesterday", "start_time"],
    ["end_time=2024-13-01T00:00:00Z", "end_time"],
    ["user_id=not-a-uuid", "user_id"],
  ])("refuses %s with 422 naming the field", async (query, field) => {
    const { status, body } = await api(stack, admin, "GET", `/api/v1/request-logs?${query}`);
    expect(status).toBe(422);
    const detail = (body as { detail: { loc: (string | number)[] }[] }).detail;
    expect(detail.map((issue) => issue.loc)).toContainEqual(["query", field]);
  });
});

describe("GET /api/v1/request-logs/stats", () => {
  it("summarises all logs for an admin (S36)", async () => {
    const { status, body } = await api(stack, admin, "GET", "/api/v1/request-logs/stats");
    expect(status).toBe(200);
    const stats = body as Stats;
    expect(stats.total_requests).toBeGreaterThan(0);
    expect(stats.unique_users).toBeGreaterThanOrEqual(2);
    expect(stats.avg_response_time_ms).toBeGreaterThanOrEqual(0);
    expect(stats.error_rate).toBeGreaterThan(0);
    expect(stats.error_rate).toBeLessThanOrEqual(1);
    expect(stats.top_paths.length).toBeGreaterThan(0);
    expect(stats.top_paths.length).toBeLessThanOrEqual(10);
    for (const entry of stats.top_paths) {
      expect(Object.keys(entry).sort()).toEqual(["count", "path"]);
      expect(entry.count).toBeGreaterThan(0);
    }
    expect(stats.top_permissions.length).toBeLessThanOrEqual(10);
    for (const entry of stats.top_permissions) expect(entry.permission).not.toBe("");
    expect(stats.top_permissions.map((entry) => entry.permission)).toContain("sinas.api_keys.create:own");
  });

  it("limits a non-admin to their own statistics", async () => {
    const own = await api(stack, alice, "GET", "/api/v1/request-logs/stats");
    expect(own.status).toBe(200);
    expect((own.body as Stats).unique_users).toBe(1);
    const other = await api(stack, alice, "GET", `/api/v1/request-logs/stats?user_id=${admin.user.id}`);
    expect(other).toMatchObject({ status: 403, body: { detail: "You can only view your own statistics" } });
  });

  it("is empty, not an error, for a window without requests", async () => {
    const { status, body } = await api(
      stack,
      admin,
      "GET",
      "/api/v1/request-logs/stats?start_time=2999-01-01T00:00:00Z",
    );
    expect(status).toBe(200);
    expect(body).toEqual({
      total_requests: 0,
      unique_users: 0,
      avg_response_time_ms: 0,
      error_rate: 0,
      top_paths: [],
      top_permissions: [],
    });
  });
});

describe("retention", () => {
  it("the cron tick deletes rows older than REQUEST_LOG_RETENTION_DAYS (30 by default) and keeps the rest", async () => {
    const old = crypto.randomUUID();
    const recent = crypto.randomUUID();
    await handle.db.execute(sql`
      insert into request_logs (request_id, timestamp, method, path, status_code, response_time_ms)
      values (${old}::uuid, now() - interval '31 days', 'GET', '/old', 200, 1),
             (${recent}::uuid, now() - interval '29 days', 'GET', '/recent', 200, 1)`);
    expect((await stack.fetch("/__scheduled?cron=*+*+*+*+*")).status).toBe(200);
    const present = async (id: string) =>
      (await handle.db.execute(sql`select 1 from request_logs where request_id = ${id}::uuid`)).rows.length >
      0;
    // The tick runs in waitUntil, after the trigger has answered.
    for (let attempt = 0; attempt < 100 && (await present(old)); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await present(old)).toBe(false);
    expect(await present(recent)).toBe(true);
  });
});
