import { SELF } from "cloudflare:test";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it } from "vitest";
import { toAppError } from "../../workers/http/fallbacks";

// The real Worker entry inside workerd. Database and Redis are unreachable here on purpose
// (vitest.unit.config.ts), which also exercises the unhealthy path.
describe("worker entry", () => {
  it("serves an OpenAPI 3.1 document generated from the route schemas", async () => {
    const response = await SELF.fetch("http://api.test/openapi.json");
    expect(response.status).toBe(200);
    const document = (await response.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toBe("3.1.0");
    expect(document.paths["/health"]).toBeDefined();
  });

  it("serves the management API document under /api/v1", async () => {
    const response = await SELF.fetch("http://api.test/api/v1/openapi.json");
    expect(response.status).toBe(200);
    expect(((await response.json()) as { openapi: string }).openapi).toBe("3.1.0");
  });

  it("serves a docs page that loads Swagger UI from local assets", async () => {
    const response = await SELF.fetch("http://api.test/docs");
    expect(response.status).toBe(200);
    const page = await response.text();
    expect(page).toContain('src="/docs-assets/swagger-ui-bundle.js"');
    expect(page).toContain('url: "/openapi.json"');
  });

  it("reports unhealthy with 503 when the database and Redis are unreachable", async () => {
    const response = await SELF.fetch("http://api.test/health");
    expect(response.status).toBe(503);
    const report = (await response.json()) as { status: string; checks: Record<string, { status: string }> };
    expect(report.status).toBe("unhealthy");
    expect(report.checks.database?.status).toBe("error");
    expect(report.checks.redis?.status).toBe("error");
  });

  it("gives every response a request id, also errors", async () => {
    const response = await SELF.fetch("http://api.test/no-such-route");
    expect(response.status).toBe(404);
    const id = response.headers.get("x-request-id");
    expect(id).toBeTruthy();
    expect(((await response.json()) as { request_id: string }).request_id).toBe(id);
  });
});

// Routing and body-parsing failures, all decided before any database access.
describe("fallbacks", () => {
  it("answers a path with a trailing slash 404, as the router does not match it", async () => {
    for (const [method, path] of [
      ["GET", "/health/"],
      ["POST", "/auth/login/"],
      ["GET", "/api/v1/openapi.json/"],
    ] as const) {
      const response = await SELF.fetch(`http://api.test${path}`, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(response.headers.get("allow")).toBeNull();
      expect(await response.json()).toMatchObject({ code: "NOT_FOUND" });
    }
  });

  it("answers a wrong method on an existing path 405 with Allow", async () => {
    const response = await SELF.fetch("http://api.test/auth/login");
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
    expect(await response.json()).toMatchObject({ code: "METHOD_NOT_ALLOWED" });
  });

  it("answers 404 and 405 before asking for credentials, under authenticated prefixes too", async () => {
    const wrongMethod = await SELF.fetch("http://api.test/api/v1/users", { method: "PUT" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET, POST");
    const unknown = await SELF.fetch("http://api.test/api/v1/users/a/b/c");
    expect(unknown.status).toBe(404);
    // A route that exists still asks for credentials first.
    const listed = await SELF.fetch("http://api.test/api/v1/users");
    expect(listed.status).toBe(401);
    expect(await listed.json()).toMatchObject({ code: "UNAUTHORIZED" });
  });

  it("answers a body that is not JSON by its Content-Type 415", async () => {
    for (const [contentType, body] of [
      ["text/plain", '{"email":"a@b.io"}'],
      ["application/x-www-form-urlencoded", "email=a%40b.io"],
    ] as const) {
      const response = await SELF.fetch("http://api.test/auth/login", {
        method: "POST",
        headers: { "content-type": contentType },
        body,
      });
      expect(response.status, contentType).toBe(415);
      expect(await response.json()).toMatchObject({
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "Content-Type must be application/json",
      });
    }
  });

  it("answers malformed JSON 400", async () => {
    const response = await SELF.fetch("http://api.test/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"email":',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ code: "BAD_REQUEST" });
  });

  it("gives Hono's HTTP exceptions the code of their status", () => {
    const cases: [number, string][] = [
      [401, "UNAUTHORIZED"],
      [404, "NOT_FOUND"],
      [405, "METHOD_NOT_ALLOWED"],
      [413, "PAYLOAD_TOO_LARGE"],
      [415, "UNSUPPORTED_MEDIA_TYPE"],
      [429, "RATE_LIMITED"],
      [418, "BAD_REQUEST"],
      [500, "INTERNAL"],
    ];
    for (const [status, code] of cases) {
      const error = toAppError(new HTTPException(status as 404));
      expect(error.code, String(status)).toBe(code);
      expect(error.status, String(status)).toBe(code === "BAD_REQUEST" ? 400 : status);
      expect(error.message, String(status)).not.toBe("");
    }
    // Hono's body limit throws with a response and no message.
    const tooLarge = toAppError(new HTTPException(413, { res: new Response("Payload Too Large") }));
    expect(tooLarge.message).toBe("Payload Too Large");
  });
});
