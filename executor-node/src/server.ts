/**
 * @module The executor service (Node). Placeholder until the function-platform issue: it answers
 * `GET /health` so the launcher and the API's health check can see it.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";

const port = Number(process.env.EXECUTOR_PORT ?? 8788);
const host = process.env.EXECUTOR_HOST ?? "127.0.0.1";

const app = new Hono();
app.get("/health", (c) => c.json({ status: "ok", driver: "none", version: "0.1.0" }));
app.notFound((c) => c.json({ code: "NOT_FOUND", message: "Not Found", detail: "Not Found" }, 404));

const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => {
  console.log(`executor listening on http://${host}:${info.port}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
