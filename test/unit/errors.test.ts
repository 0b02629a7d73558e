import { createRoute, z } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import { installFallbacks } from "../../workers/http/fallbacks";
import { createRouter } from "../../workers/http/router";
import { AppError, ERROR_STATUS } from "../../workers/lib/errors";

// A small app built with the same router factory and fallbacks as the real one, with routes whose
// only purpose is to exercise parsing and error shaping.
function buildApp() {
  const app = createRouter();
  const createThing = createRoute({
    method: "post",
    path: "/things/{namespace}",
    request: {
      params: z.object({ namespace: z.string().regex(/^[a-z]+$/) }),
      body: {
        content: {
          "application/json": {
            schema: z.object({ email: z.email(), count: z.number().int().max(10) }).strict(),
          },
        },
      },
    },
    responses: { 201: { description: "created" } },
  });
  app.openapi(createThing, (c) => c.json({ ok: true }, 201) as never);
  app.get("/conflict", () => {
    throw new AppError("CONFLICT", "Thing 'x' already exists");
  });
  app.get("/crash", () => {
    throw new Error("secret internal detail");
  });
  installFallbacks(app);
  return app;
}

const post = (path: string, body: string) =>
  buildApp().request(path, { method: "POST", body, headers: { "content-type": "application/json" } });

describe("error shape", () => {
  it("names every invalid field in a 422", async () => {
    const response = await post("/things/abc", JSON.stringify({ email: "not-an-email", count: 11 }));
    expect(response.status).toBe(422);
    const body = (await response.json()) as { code: string; message: string; detail: { loc: string[] }[] };
    expect(body.code).toBe("VALIDATION_FAILED");
    expect(body.detail.map((issue) => issue.loc.join("."))).toEqual(["body.email", "body.count"]);
    expect(body.message).toContain("body.email");
    expect(body.message).toContain("body.count");
  });

  it("rejects unknown fields and bad path params with their location", async () => {
    const extra = await post("/things/abc", JSON.stringify({ email: "a@b.co", count: 1, admin: true }));
    expect(extra.status).toBe(422);
    expect(((await extra.json()) as { message: string }).message).toContain("admin");
    const badPath = await post("/things/ABC", JSON.stringify({ email: "a@b.co", count: 1 }));
    expect(badPath.status).toBe(422);
    expect(((await badPath.json()) as { detail: { loc: string[] }[] }).detail[0]?.loc).toEqual([
      "path",
      "namespace",
    ]);
  });

  it("answers malformed JSON with 400 BAD_REQUEST", async () => {
    const response = await post("/things/abc", "{not json");
    expect(response.status).toBe(400);
    expect(((await response.json()) as { code: string }).code).toBe("BAD_REQUEST");
  });

  it("maps AppError codes to their status", async () => {
    const response = await buildApp().request("/conflict");
    expect(response.status).toBe(ERROR_STATUS.CONFLICT);
    expect(await response.json()).toMatchObject({ code: "CONFLICT", detail: "Thing 'x' already exists" });
  });

  it("hides internal errors behind a 500 without their message", async () => {
    const response = await buildApp().request("/crash");
    expect(response.status).toBe(500);
    const text = await response.text();
    expect(text).not.toContain("secret internal detail");
    expect(JSON.parse(text)).toMatchObject({ code: "INTERNAL" });
  });

  it("tells 404 from 405 and lists allowed methods", async () => {
    const missing = await buildApp().request("/nothing-here");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "NOT_FOUND", detail: "Not Found" });
    const wrongMethod = await buildApp().request("/things/abc", { method: "DELETE" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("POST");
  });
});
