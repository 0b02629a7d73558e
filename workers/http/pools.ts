/**
 * @module /api/v1/containers and /api/v1/workers (sinas-spec §1.21): the executor's sandbox pools.
 */
import { createRoute, z } from "@hono/zod-openapi";
import {
  containerStats,
  listWorkers,
  reloadUserContainers,
  scaleWorkers,
  stopUserContainers,
} from "../services/pools";
import { authenticate, requirePermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { jsonBody, jsonResponse, UuidSchema } from "./schemas";

const security = [{ bearerAuth: [] }];
const tags = ["Containers and workers"];
const UserParams = z.object({ user_id: UuidSchema });
const StatusSchema = z.object({ status: z.string(), user_id: z.string() });
const denied = (permission: string) => `Permission denied: ${permission}`;

const statsRoute = createRoute({
  method: "get",
  path: "/containers/stats",
  tags,
  security,
  summary: "Per-user sandboxes (sinas.containers.get:all)",
  responses: {
    200: jsonResponse(
      z.array(
        z.object({
          user_id: z.string(),
          container_id: z.string(),
          status: z.string(),
          last_used: z.string(),
          idle_seconds: z.number(),
        }),
      ),
      "Sandboxes",
    ),
    403: errorResponse("Not allowed"),
  },
});
const reloadRoute = createRoute({
  method: "post",
  path: "/containers/{user_id}/reload",
  tags,
  security,
  summary: "Replace a user's sandboxes (sinas.containers.put:all)",
  request: { params: UserParams },
  responses: { 200: jsonResponse(StatusSchema, "Reloaded"), 403: errorResponse("Not allowed") },
});
const stopRoute = createRoute({
  method: "delete",
  path: "/containers/{user_id}",
  tags,
  security,
  summary: "Stop a user's sandboxes (sinas.containers.delete:all)",
  request: { params: UserParams },
  responses: { 200: jsonResponse(StatusSchema, "Stopped"), 403: errorResponse("Not allowed") },
});
const WorkerSchema = z.object({
  id: z.string(),
  container_name: z.string(),
  status: z.string(),
  created_at: z.string(),
  executions: z.number().int(),
});
const workersRoute = createRoute({
  method: "get",
  path: "/workers",
  tags,
  security,
  summary: "Shared-pool workers (sinas.workers.read:all)",
  responses: { 200: jsonResponse(z.array(WorkerSchema), "Workers"), 403: errorResponse("Not allowed") },
});
const countRoute = createRoute({
  method: "get",
  path: "/workers/count",
  tags,
  security,
  summary: "Number of shared-pool workers (sinas.workers.read:all)",
  responses: {
    200: jsonResponse(z.object({ count: z.number().int() }), "Count"),
    403: errorResponse("Not allowed"),
  },
});
const scaleRoute = createRoute({
  method: "post",
  path: "/workers/scale",
  tags,
  security,
  summary: "Scale the shared pool to 0..10 workers (sinas.workers.scale:all)",
  request: { body: jsonBody(z.object({ target_count: z.number().int() }).strict().openapi("WorkersScale")) },
  responses: {
    200: jsonResponse(
      z.object({
        action: z.string(),
        previous_count: z.number().int(),
        current_count: z.number().int(),
        added: z.number().int(),
        removed: z.number().int(),
      }),
      "Scaled",
    ),
    400: errorResponse("Out of range"),
    403: errorResponse("Not allowed"),
  },
});

export const poolsRouter = createRouter();
for (const path of ["/containers", "/containers/*", "/workers", "/workers/*"])
  poolsRouter.use(path, authenticate);

poolsRouter
  .openapi(statsRoute, async (c) => {
    requirePermission(c, "sinas.containers.get:all", denied("sinas.containers.get:all"));
    return c.json(await containerStats(c.get("services").config), 200);
  })
  .openapi(reloadRoute, async (c) => {
    requirePermission(c, "sinas.containers.put:all", denied("sinas.containers.put:all"));
    return c.json(await reloadUserContainers(c.get("services").config, c.req.valid("param").user_id), 200);
  })
  .openapi(stopRoute, async (c) => {
    requirePermission(c, "sinas.containers.delete:all", denied("sinas.containers.delete:all"));
    return c.json(await stopUserContainers(c.get("services").config, c.req.valid("param").user_id), 200);
  })
  .openapi(workersRoute, async (c) => {
    requirePermission(c, "sinas.workers.read:all", "Not authorized to view workers");
    return c.json(await listWorkers(c.get("services").config), 200);
  })
  .openapi(countRoute, async (c) => {
    requirePermission(c, "sinas.workers.read:all", "Not authorized to view workers");
    return c.json({ count: (await listWorkers(c.get("services").config)).length }, 200);
  })
  .openapi(scaleRoute, async (c) => {
    requirePermission(c, "sinas.workers.scale:all", "Not authorized to scale workers");
    return c.json(await scaleWorkers(c.get("services").config, c.req.valid("json").target_count), 200);
  });
