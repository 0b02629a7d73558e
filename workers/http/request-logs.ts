/**
 * @module /api/v1/request-logs (sinas-spec §1.20): the request log and its statistics.
 *
 * `sinas.logs.get:all` reads anyone's rows; everyone else reads only their own. The service decides that
 * and records the permission; this router parses, calls it and shapes the reply.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { RequestLog } from "../db/schema";
import {
  listRequestLogs,
  type RequestLogCaller,
  requestLogStats,
  scopeUserFilter,
} from "../services/request-logs";
import type { AppEnv } from "./app-env";
import { authenticate, principalOf, recordPermission } from "./auth";
import { createRouter, errorResponse } from "./router";
import { DateTimeInput } from "./schemas";

/** Lower-cased so it compares equal to the caller's id however the client spelled it. */
const UserIdInput = z
  .uuid()
  .transform((id) => id.toLowerCase())
  .openapi({ type: "string", format: "uuid" });

const StatsQuerySchema = z.object({
  user_id: UserIdInput.optional(),
  start_time: DateTimeInput.optional(),
  end_time: DateTimeInput.optional(),
});

const ListQuerySchema = StatsQuerySchema.extend({
  permission: z.string().max(500).optional().openapi({ description: "Exact permission_used" }),
  path_pattern: z.string().max(1000).optional().openapi({
    description: "SQL LIKE pattern on the full path (`%` any run, `_` one character)",
    example: "/api/v1/%",
  }),
  status_code: z.coerce.number().int().min(100).max(599).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

const RequestLogSchema = z
  .object({
    request_id: z.uuid(),
    timestamp: z.string().openapi({ format: "date-time" }),
    user_id: z.uuid().nullable(),
    user_email: z.string().nullable(),
    permission_used: z.string().nullable(),
    has_permission: z.boolean(),
    method: z.string(),
    path: z.string(),
    query_params: z.record(z.string(), z.string()).nullable(),
    request_body: z.unknown().openapi({ description: "Redacted JSON body, or null" }),
    user_agent: z.string().nullable(),
    referer: z.string().nullable(),
    ip_address: z.string().nullable(),
    status_code: z.number().int(),
    response_time_ms: z.number().int(),
    response_size_bytes: z.number().int(),
    resource_type: z.string().nullable(),
    resource_id: z.string().nullable(),
    group_id: z.uuid().nullable(),
    error_message: z.string().nullable(),
    error_type: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi("RequestLog");

const CountedPath = z.object({ path: z.string(), count: z.number().int() });
const CountedPermission = z.object({ permission: z.string(), count: z.number().int() });

const RequestLogStatsSchema = z
  .object({
    total_requests: z.number().int(),
    unique_users: z.number().int(),
    avg_response_time_ms: z.number(),
    error_rate: z.number().min(0).max(1).openapi({ description: "Share of responses with status >= 400" }),
    top_paths: z.array(CountedPath),
    top_permissions: z.array(CountedPermission),
  })
  .openapi("RequestLogStats");

type RequestLogResponse = z.infer<typeof RequestLogSchema>;

function toRequestLogResponse(row: RequestLog): RequestLogResponse {
  return {
    request_id: row.requestId,
    timestamp: row.timestamp.toISOString(),
    user_id: row.userId,
    user_email: row.userEmail,
    permission_used: row.permissionUsed,
    has_permission: row.hasPermission,
    method: row.method,
    path: row.path,
    query_params: row.queryParams,
    request_body: row.requestBody ?? null,
    user_agent: row.userAgent,
    referer: row.referer,
    ip_address: row.ipAddress,
    status_code: row.statusCode,
    response_time_ms: row.responseTimeMs,
    response_size_bytes: row.responseSizeBytes,
    resource_type: row.resourceType,
    resource_id: row.resourceId,
    group_id: row.groupId,
    error_message: row.errorMessage,
    error_type: row.errorType,
    metadata: row.metadata,
  };
}

function callerOf(c: Context<AppEnv>): RequestLogCaller {
  return {
    principal: principalOf(c),
    recordPermission: (permission, granted) => recordPermission(c, permission, granted),
  };
}

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

const commonErrors = {
  401: errorResponse("Missing or invalid credentials"),
  422: errorResponse("Invalid query; `detail` names each field"),
};

const listRoute = createRoute({
  method: "get",
  path: "/request-logs",
  tags: ["Request logs"],
  security: [{ bearerAuth: [] }],
  summary: "List request logs, newest first",
  description: "`sinas.logs.get:all` reads any user's logs; everyone else is limited to their own.",
  request: { query: ListQuerySchema },
  responses: {
    200: json(z.array(RequestLogSchema), "Matching log rows, newest first"),
    403: errorResponse("You can only view your own request logs"),
    ...commonErrors,
  },
});

const statsRoute = createRoute({
  method: "get",
  path: "/request-logs/stats",
  tags: ["Request logs"],
  security: [{ bearerAuth: [] }],
  summary: "Request statistics",
  description: "Totals, error rate and the ten most frequent paths and permissions, over the same filters.",
  request: { query: StatsQuerySchema },
  responses: {
    200: json(RequestLogStatsSchema, "Statistics"),
    403: errorResponse("You can only view your own statistics"),
    ...commonErrors,
  },
});

const router = createRouter();
router.use("/request-logs", authenticate);
router.use("/request-logs/*", authenticate);

export const requestLogsRouter = router
  .openapi(listRoute, async (c) => {
    const query = c.req.valid("query");
    const userId = scopeUserFilter(callerOf(c), query.user_id, "You can only view your own request logs");
    const rows = await listRequestLogs(c.get("services").db(), {
      userId,
      startTime: query.start_time,
      endTime: query.end_time,
      permission: query.permission,
      pathPattern: query.path_pattern,
      statusCode: query.status_code,
      limit: query.limit,
      offset: query.offset,
    });
    return c.json(rows.map(toRequestLogResponse), 200);
  })
  .openapi(statsRoute, async (c) => {
    const query = c.req.valid("query");
    const userId = scopeUserFilter(callerOf(c), query.user_id, "You can only view your own statistics");
    const stats = await requestLogStats(c.get("services").db(), {
      userId,
      startTime: query.start_time,
      endTime: query.end_time,
    });
    return c.json(stats, 200);
  });
