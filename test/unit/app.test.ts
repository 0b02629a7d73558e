import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";

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
