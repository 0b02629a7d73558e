/**
 * @module GET /health: dependency status of the platform (no auth, never request-logged).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { checkHealth } from "../services/health";
import { createRouter } from "./router";

const DependencyCheckSchema = z.object({
  status: z.enum(["ok", "error", "not_configured"]),
  latency_ms: z.number().int().nullable(),
  error: z.string().nullable(),
});

const HealthSchema = z
  .object({
    status: z.enum(["healthy", "degraded", "unhealthy"]),
    environment: z.string(),
    checks: z.object({
      database: DependencyCheckSchema,
      redis: DependencyCheckSchema,
      executor: DependencyCheckSchema,
    }),
    last_cron_tick: z.string().nullable(),
  })
  .openapi("Health");

const healthRoute = createRoute({
  method: "get",
  path: "/health",
  tags: ["System"],
  summary: "Health of the API and its dependencies",
  description:
    "200 when the database and Redis answer (`degraded` if the executor does not); 503 `unhealthy` otherwise.",
  responses: {
    200: { description: "Healthy or degraded", content: { "application/json": { schema: HealthSchema } } },
    503: {
      description: "Database or Redis unavailable",
      content: { "application/json": { schema: HealthSchema } },
    },
  },
});

export const healthRouter = createRouter().openapi(healthRoute, async (c) => {
  const report = await checkHealth(c.get("services"));
  return c.json(report, report.status === "unhealthy" ? 503 : 200);
});
