import { sql } from "drizzle-orm";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStackDb } from "../helpers/db";
import { listMails, waitForMail } from "../helpers/mail";
import { startTestStack, type TestStack } from "../helpers/stack";

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe("the running stack", () => {
  it("reports database, Redis and executor healthy", async () => {
    const response = await stack.fetch("/health");
    expect(response.status).toBe(200);
    const report = (await response.json()) as {
      status: string;
      checks: Record<string, { status: string; latency_ms: number | null }>;
    };
    expect(report.status).toBe("healthy");
    expect(report.checks.database?.status).toBe("ok");
    expect(report.checks.redis?.status).toBe("ok");
    expect(report.checks.executor?.status).toBe("ok");
  });

  it("has the schema migrated, reachable through the same driver the Worker uses", async () => {
    const handle = openStackDb(stack);
    try {
      const result = await handle.db.execute(
        sql`select count(*)::int as tables from information_schema.tables where table_schema = 'public'`,
      );
      expect((result.rows[0] as { tables: number }).tables).toBeGreaterThanOrEqual(20);
      const migrations = await handle.db.execute(
        sql`select count(*)::int as applied from drizzle.__drizzle_migrations`,
      );
      expect((migrations.rows[0] as { applied: number }).applied).toBeGreaterThanOrEqual(1);
    } finally {
      await handle.close();
    }
  });

  it("serves both OpenAPI documents and an offline docs page", async () => {
    const runtime = await stack.fetch("/openapi.json");
    expect(runtime.status).toBe(200);
    const document = (await runtime.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toBe("3.1.0");
    expect(Object.keys(document.paths)).toContain("/health");
    expect((await stack.fetch("/api/v1/openapi.json")).status).toBe(200);

    const docs = await stack.fetch("/docs");
    expect(docs.status).toBe(200);
    expect(docs.headers.get("content-type")).toContain("text/html");
    const bundle = await stack.fetch("/docs-assets/swagger-ui-bundle.js");
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
    expect((await stack.fetch("/docs-assets/swagger-ui.css")).status).toBe(200);
  });

  it("answers unknown routes and wrong methods with the one error shape", async () => {
    const missing = await stack.fetch("/definitely/not/here");
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: "NOT_FOUND", message: "Not Found", detail: "Not Found" });
    expect(body.request_id).toBe(missing.headers.get("x-request-id"));

    const wrongMethod = await stack.fetch("/health", { method: "POST" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toContain("GET");
    expect(await wrongMethod.json()).toMatchObject({ code: "METHOD_NOT_ALLOWED" });

    // Paths match exactly, and an authenticated prefix answers 404/405 before asking for credentials.
    expect((await stack.fetch("/health/")).status).toBe(404);
    const put = await stack.fetch("/api/v1/users", { method: "PUT" });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, POST");
    expect((await stack.fetch("/api/v1/users")).status).toBe(401);
    // A body that is not JSON by its Content-Type.
    const form = await stack.fetch("/auth/login", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "email=a%40b.io",
    });
    expect(form.status).toBe(415);
    expect(await form.json()).toMatchObject({ code: "UNSUPPORTED_MEDIA_TYPE" });
  });

  it("runs the Cron Trigger and records the tick", async () => {
    const before = (await (await stack.fetch("/health")).json()) as { last_cron_tick: string | null };
    const tick = await stack.fetch("/__scheduled?cron=*+*+*+*+*");
    expect(tick.status).toBe(200);
    let after = before;
    for (let attempt = 0; attempt < 50 && after.last_cron_tick === before.last_cron_tick; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = (await (await stack.fetch("/health")).json()) as { last_cron_tick: string | null };
    }
    expect(after.last_cron_tick).not.toBeNull();
    expect(after.last_cron_tick).not.toBe(before.last_cron_tick);
  });

  it("lets CORS preflights and calls from any origin through", async () => {
    const response = await stack.fetch("/health", {
      method: "OPTIONS",
      headers: { origin: "https://console.example", "access-control-request-method": "GET" },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://console.example");
    expect(response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(response.headers.get("access-control-allow-methods")).toContain("PATCH");
    const asked = await stack.fetch("/api/v1/functions", {
      method: "OPTIONS",
      headers: {
        origin: "https://console.example",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(asked.headers.get("access-control-allow-headers")).toBe("authorization,content-type");
    expect(asked.headers.get("vary")).toContain("Origin");

    const answer = await stack.fetch("/health", { headers: { origin: "https://console.example" } });
    expect(answer.headers.get("access-control-allow-origin")).toBe("https://console.example");
    expect(answer.headers.get("access-control-allow-credentials")).toBe("true");
    expect(answer.headers.get("x-request-id")).toBeTruthy();
  });

  it("delivers mail over SMTP to the sink, readable by tests", async () => {
    const transport = nodemailer.createTransport({
      host: stack.smtp.host,
      port: stack.smtp.port,
      secure: false,
      ignoreTLS: true,
      auth: { user: "sinas", pass: "sinas" },
    });
    const to = `harness-${Date.now()}@example.com`;
    await transport.sendMail({
      from: "noreply@sinas.local",
      to,
      subject: "Your login code",
      text: "Code: 654321",
    });
    const mail = await waitForMail(stack, to);
    expect(mail.subject).toBe("Your login code");
    expect(await listMails(stack, to)).toHaveLength(1);
    expect(stack.logs().join("\n")).toContain(`OTP CODE FOR ${to}: 654321`);
  });
});
